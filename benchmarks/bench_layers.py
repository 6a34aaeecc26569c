"""Per-layer kernel times: the cmc AdderConv / BinaryConv CUDA kernels against cuDNN convolution of
the same shape (FP32 with TF32 off, and FP16) and against the research code's unfold formulation of
AdderNet (-sum |unfold(X) - W| through an [M, K, L] tensor); FP32 backward: the AdderConv backward
kernels (gradX + gradW with the adaptive scale) against cuDNN's conv input + weight gradients.

BinaryConv rows on prepared weights (binary_forward_ex): ``cmc_binary_bmma`` (the bit tensor-core
kernel, sm_80+), ``cmc_binary_popcount`` (the CUDA-core XNOR/popcount kernel), and for the BNN
workhorse layers ``cmc_binary_bmma_packed_io`` (1-bit packed input and output, as inside a chain of
binary layers). Each of them also gives its rate in T binary MACs/s (N*Ho*Wo*M*C*kh*kw per call) and
that rate as a fraction of the roofline probe's ``mma_b1`` rate (limits.cu, read by read_roofline()
from the same GPU run; null without one).

Tile sweep: on BMMA layers, ``cmc_binary_bmma_tile<i>`` (FP16) times each tile shape of the kernel
forced in turn (``ext.binary_bmma_force_tile``); ``binary_summary`` lists them with the fastest, the
data the tile rule (``binaryBmmaTileRule``) is tuned from. Timing: CUDA events around ``--back-to-back``
consecutive calls (default 10), divided by their number, so the binding's host work overlaps the GPU.

    python benchmarks/bench_layers.py --out /tmp/cmc_layers.json [--suite resnet20,resnet18,resnet50,bnn]

JSON: device description + one record per (layer, implementation, dtype) with median/min ms, or an
error (the unfold formulation runs out of memory on large layers). GPU only; --smoke runs tiny shapes
on the CPU to check the code paths (its times mean nothing).

AdderConv records also carry ``taps`` (N*M*Ho*Wo*C/g*kh*kw, one |x - w| each), ``taps_per_s_T`` and, for
the forward, ``roofline_fraction``: the rate over the roofline probe's ``adder_f32`` rate measured on the
same GPU in the same run (benchmarks/_common.read_roofline; None without a probe file). Both AdderConv
forwards compute in float32 — "fp16" is FP16 I/O (half X/Y, float32 W and arithmetic), so the same
roofline applies. ``adder_summary`` lists per layer: FP32 and FP16-I/O times, taps/s and roofline
fractions, FP16-I/O speed-up, and the backward kernels against cuDNN's input + weight gradients.
"""
from __future__ import annotations

import argparse
import re
import sys

import torch
import torch.nn.functional as F

from _common import device_info, guarded, read_roofline, require_cuda, roofline_fraction, write_json

# (name, N, C, H, W, M, k, stride, pad)
SUITES = {
    "resnet20": [  # AdderNet ResNet-20, CIFAR-10, batch 64
        ("r20.l1.3x3.16-16", 64, 16, 32, 32, 16, 3, 1, 1),
        ("r20.l2.3x3.16-32.s2", 64, 16, 32, 32, 32, 3, 2, 1),
        ("r20.l2.3x3.32-32", 64, 32, 16, 16, 32, 3, 1, 1),
        ("r20.l3.3x3.32-64.s2", 64, 32, 16, 16, 64, 3, 2, 1),
        ("r20.l3.3x3.64-64", 64, 64, 8, 8, 64, 3, 1, 1),
        ("r20.down.1x1.16-32.s2", 64, 16, 32, 32, 32, 1, 2, 0),
    ],
    "resnet18": [  # ImageNet, batch 16
        ("r18.l1.3x3.64-64", 16, 64, 56, 56, 64, 3, 1, 1),
        ("r18.l2.3x3.64-128.s2", 16, 64, 56, 56, 128, 3, 2, 1),
        ("r18.l2.3x3.128-128", 16, 128, 28, 28, 128, 3, 1, 1),
        ("r18.l3.3x3.256-256", 16, 256, 14, 14, 256, 3, 1, 1),
        ("r18.l4.3x3.512-512", 16, 512, 7, 7, 512, 3, 1, 1),
    ],
    "resnet50": [  # ImageNet bottlenecks, batch 16
        ("r50.l1.1x1.256-64", 16, 256, 56, 56, 64, 1, 1, 0),
        ("r50.l1.3x3.64-64", 16, 64, 56, 56, 64, 3, 1, 1),
        ("r50.l1.1x1.64-256", 16, 64, 56, 56, 256, 1, 1, 0),
        ("r50.l2.3x3.128-128", 16, 128, 28, 28, 128, 3, 1, 1),
        ("r50.l3.1x1.1024-256", 16, 1024, 14, 14, 256, 1, 1, 0),
        ("r50.l3.3x3.256-256", 16, 256, 14, 14, 256, 3, 1, 1),
        ("r50.l4.3x3.512-512", 16, 512, 7, 7, 512, 3, 1, 1),
    ],
    "bnn": [  # the binary-net workhorse layer
        ("bnn.3x3.256-256.14", 64, 256, 14, 14, 256, 3, 1, 1),
        ("bnn.3x3.256-256.28", 32, 256, 28, 28, 256, 3, 1, 1),
    ],
}
SMOKE = [("smoke.3x3.8-8", 2, 8, 6, 6, 8, 3, 1, 1), ("smoke.3x3.8-16.s2", 2, 8, 6, 6, 16, 3, 2, 1)]


def unfold_adder(x, w, stride, pad):
    """The research formulation: [M, K, L] differences, summed over K (forward only here)."""
    from samples.addernet_resnet20 import adder2d_function

    return adder2d_function(x, w, stride, pad)


def adder_taps(n, c, h, w, m, k, stride, pad, groups=1) -> int:
    """|x - w| evaluations of one AdderConv forward."""
    ho = (h + 2 * pad - k) // stride + 1
    wo = (w + 2 * pad - k) // stride + 1
    return n * m * ho * wo * (c // groups) * k * k


ADDER_FWD = ("cmc_adder_kernel", "cmc_adder_op_cpu")
ADDER_BWD = ("cmc_adder_backward_kernels",)


def add_adder_rates(rec: dict, roofline) -> dict:
    """taps, taps_per_s_T and (forward) the fraction of the adder_f32 roofline, for AdderConv records."""
    if rec["impl"] not in ADDER_FWD + ADDER_BWD or "ms_median" not in rec:
        return rec
    taps = adder_taps(rec["n"], rec["c"], rec["h"], rec["w"], rec["m"], rec["k"], rec["stride"], rec["pad"])
    rate = taps / (rec["ms_median"] * 1e-3) / 1e12
    rec.update(taps=taps, taps_per_s_T=float(f"{rate:.4g}"))
    if rec["impl"] in ADDER_FWD:
        # FP32 and FP16-I/O both run float32 arithmetic: one roofline (adder_f32) for both.
        rec["roofline_fraction"] = roofline_fraction(rate, roofline, "adder_f32")
    return rec


def adder_summary(records: list[dict]) -> list[dict]:
    """Per layer: the figures the AdderConv acceptance asks for, side by side."""
    by = {}
    for r in records:
        by.setdefault(r["layer"], {})[(r["impl"], r["dtype"])] = r
    out = []
    for layer, rs in by.items():
        fwd32 = rs.get(("cmc_adder_kernel", "fp32")) or rs.get(("cmc_adder_op_cpu", "fp32"))
        fwd16 = rs.get(("cmc_adder_kernel", "fp16")) or rs.get(("cmc_adder_op_cpu", "fp16"))
        bwd = rs.get(("cmc_adder_backward_kernels", "fp32"))
        cudnn_bwd = rs.get(("conv_backward_input_weight", "fp32"))
        ms = lambda r: r.get("ms_median") if r else None  # noqa: E731
        row = {"layer": layer,
               "fwd_fp32_ms": ms(fwd32), "fwd_fp32_taps_per_s_T": (fwd32 or {}).get("taps_per_s_T"),
               "fwd_fp32_roofline_fraction": (fwd32 or {}).get("roofline_fraction"),
               "fwd_fp16io_ms": ms(fwd16), "fwd_fp16io_taps_per_s_T": (fwd16 or {}).get("taps_per_s_T"),
               "fwd_fp16io_roofline_fraction": (fwd16 or {}).get("roofline_fraction"),
               "bwd_ms": ms(bwd), "cudnn_bwd_input_weight_ms": ms(cudnn_bwd)}
        if row["fwd_fp32_ms"] and row["fwd_fp16io_ms"]:
            row["fp16io_speedup_vs_fp32"] = round(row["fwd_fp32_ms"] / row["fwd_fp16io_ms"], 3)
        if row["bwd_ms"] and row["cudnn_bwd_input_weight_ms"]:
            row["bwd_time_vs_cudnn"] = round(row["bwd_ms"] / row["cudnn_bwd_input_weight_ms"], 3)
        if any(v is not None for k, v in row.items() if k != "layer"):
            out.append(row)
    return out


def int8_gemm_operands(pixels: int, k: int, m: int, device):
    """int8 A [pixels, K] and B [K, M] for ``torch._int_mm`` (M = out channels, K = C*kh*kw, rows = N*Ho*Wo),
    K and M rounded up to multiples of 8 and rows to at least 17, as the cuBLASLt int8 path requires."""
    def up(v, q):
        return max(q, (v + q - 1) // q * q)

    g = torch.Generator().manual_seed(1)
    a = torch.randint(-127, 128, (max(17, pixels), up(k, 8)), generator=g, dtype=torch.int8)
    b = torch.randint(-127, 128, (up(k, 8), up(m, 8)), generator=g, dtype=torch.int8)
    return a.to(device), b.t().contiguous().t().to(device)  # B column-major, as cuBLASLt wants it


def binary_summary(records: list[dict]) -> list[dict]:
    """Per layer, FP16: cuDNN FP16 time, each BinaryConv path's time and speed-up over it, the rule's
    BMMA tile and the fastest forced tile (the sweep that tunes the rule)."""
    by = {}
    for r in records:
        if r["dtype"] == "fp16" and "ms_median" in r:
            by.setdefault(r["layer"], {})[r["impl"]] = r
    out = []
    for layer, rs in by.items():
        base = rs.get("cudnn_conv")
        if not base or not any(k.startswith("cmc_binary") for k in rs):
            continue
        row = {"layer": layer, "cudnn_fp16_ms": base["ms_median"]}
        int8 = rs.get("int8_int_mm")
        if int8:
            row["int8_int_mm_ms"] = int8["ms_median"]
        for impl in ("cmc_binary_kernel", "cmc_binary_popcount", "cmc_binary_bmma", "cmc_binary_bmma_packed_io"):
            if impl in rs:
                row[f"{impl}_ms"] = rs[impl]["ms_median"]
                row[f"{impl}_speedup_vs_cudnn_fp16"] = round(base["ms_median"] / rs[impl]["ms_median"], 3)
                if int8:
                    row[f"{impl}_speedup_vs_int8"] = round(int8["ms_median"] / rs[impl]["ms_median"], 3)
                if rs[impl].get("fraction_of_mma_b1") is not None:
                    row[f"{impl}_fraction_of_mma_b1"] = rs[impl]["fraction_of_mma_b1"]
        tiles = {r["tile"]: r["ms_median"] for k, r in rs.items() if k.startswith("cmc_binary_bmma_tile")}
        if tiles:
            best = min(tiles, key=tiles.get)
            row.update(tile_ms=tiles, best_tile=best, best_tile_ms=tiles[best],
                       best_tile_speedup_vs_cudnn_fp16=round(base["ms_median"] / tiles[best], 3))
            # the pre-pass kernel's best against the fused kernel's (P_a in the k-loop): what the rule
            # should pick from
            for kind, pick in (("prepass", lambda t: not t.startswith("fused")), ("fused", lambda t: t.startswith("fused"))):
                sub = {t: ms for t, ms in tiles.items() if pick(t)}
                if sub:
                    b = min(sub, key=sub.get)
                    row.update({f"best_{kind}_tile": b, f"best_{kind}_tile_ms": sub[b],
                                f"best_{kind}_tile_speedup_vs_cudnn_fp16": round(base["ms_median"] / sub[b], 3)})
        packed = {r["tile"]: r["ms_median"] for k, r in rs.items() if k.startswith("cmc_binary_bmma_packed_io_tile")}
        if packed:
            b = min(packed, key=packed.get)
            row.update(packed_io_tile_ms=packed, best_packed_io_tile=b,
                       best_packed_io_tile_speedup_vs_cudnn_fp16=round(base["ms_median"] / packed[b], 3))
        out.append(row)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="resnet20,resnet18,resnet50,bnn")
    ap.add_argument("--out", help="JSON file (default: stdout)")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--no-unfold", action="store_true", help="skip the unfold formulation")
    ap.add_argument("--no-backward", action="store_true", help="skip the backward timings")
    ap.add_argument("--back-to-back", type=int, default=10,
                    help="calls per timing (per-call time = timing / calls; 1: each call timed alone, host latency included)")
    ap.add_argument("--no-tile-sweep", action="store_true", help="skip timing every BMMA tile shape")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, CPU allowed: code-path check only")
    args = ap.parse_args(argv)
    device = require_cuda(args.smoke)
    torch.backends.cudnn.allow_tf32 = False  # FP32 cuDNN baseline is true FP32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True

    ext = None
    if device == "cuda":
        from cmc.plugins._cuda import loader

        ext = loader.load()
        if ext is None:
            sys.exit(f"cmc CUDA extension unavailable: {loader.unavailable_reason()}")
    from cmc.plugins.binary_conv.op import pack_weights

    roofline = read_roofline()
    layers = SMOKE if args.smoke else [l for s in args.suite.split(",") for l in SUITES[s]]
    workhorse = {l[0] for l in SUITES["bnn"]}
    records = []
    for name, n, c, h, w, m, k, s, p in layers:
        shape = dict(n=n, c=c, h=h, w=w, m=m, k=k, stride=s, pad=p)
        gen = torch.Generator().manual_seed(0)
        x32 = torch.randn(n, c, h, w, generator=gen).to(device)
        w32 = torch.randn(m, c, k, k, generator=gen).to(device)
        ones, zeros = torch.ones(m, device=device), torch.zeros(m, device=device)
        wp = pack_weights(w32.cpu()).to(device)
        st, pads, dil = [s, s], [p, p, p, p], [1, 1]
        prep = ext.binary_prepare_weights(wp, c, 1) if ext is not None else None
        bmma = ext is not None and ext.binary_kernel_choice(n, c, h, w, m, k, k, st, pads, dil, 1, 1) == 2
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        binary_macs = n * ho * wo * m * c * k * k
        runs = []
        for dt_name, dt in (("fp32", torch.float32), ("fp16", torch.float16)):
            x, wt = x32.to(dt), w32.to(dt)
            if device == "cuda":
                runs.append(("cudnn_conv", dt_name, lambda x=x, wt=wt: F.conv2d(x, wt, None, s, p)))
                if dt == torch.float16:  # the INT8 reference: the layer's GEMM alone (im2col excluded: a lower bound)
                    a8, b8 = int8_gemm_operands(n * ho * wo, c * k * k, m, device)
                    runs.append(("int8_int_mm", dt_name, lambda a8=a8, b8=b8: torch._int_mm(a8, b8)))
            elif dt == torch.float32:  # --smoke on the CPU (no half conv there)
                runs.append(("torch_conv_cpu", dt_name, lambda x=x, wt=wt: F.conv2d(x, wt, None, s, p)))
            if dt == torch.float32 and not args.no_backward:
                gy = torch.randn(F.conv2d(x[:1], wt, None, s, p).shape[1:], device=device).expand(
                    n, -1, -1, -1).contiguous()
                runs.append(("conv_backward_input_weight", dt_name,
                             lambda x=x, wt=wt, gy=gy: (torch.nn.grad.conv2d_input(x.shape, wt, gy, s, p),
                                                        torch.nn.grad.conv2d_weight(x, wt.shape, gy, s, p))))
                if ext is not None:
                    runs.append(("cmc_adder_backward_kernels", dt_name,
                                 lambda x=x, wt=wt, gy=gy: ext.adder_backward(x, wt, gy, st, pads, dil, 1, 0.2,
                                                                              True, True)))
            if ext is not None:  # AdderConv weights are float32 at both I/O precisions (FP16 = FP16 I/O)
                runs.append(("cmc_adder_kernel", dt_name,
                             lambda x=x: ext.adder_forward(x, w32, ones, zeros, st, pads, dil, 1, 0)))
            elif args.smoke:  # the op's CPU implementation, to check the taps/s code path
                from cmc.plugins.adder_conv.op import adder_conv

                runs.append(("cmc_adder_op_cpu", dt_name,
                             lambda x=x: adder_conv(x, w32, ones, zeros, st, pads, dil, 1, 0, 0.2)))
            if ext is not None:
                runs.append(("cmc_binary_kernel", dt_name,
                             lambda x=x: ext.binary_forward(x, wp, ones, zeros, st, pads, dil, 1, 1, 0)))
                runs.append(("cmc_binary_kernel_float_input", dt_name,
                             lambda x=x: ext.binary_forward(x, wp, ones, zeros, st, pads, dil, 1, 0, 0)))
                # every value a lambda uses is bound now (default arguments): the runs execute after the loop
                code = 0 if dt == torch.float32 else 1
                bx = lambda x, kernel, i_p=False, o_p=False, code=code, prep=prep, c=c, m=m, k=k, st=st, \
                    pads=pads, ones=ones, zeros=zeros: ext.binary_forward_ex(  # noqa: E731
                        x, prep, ones, zeros, c, m, k, k, st, pads, dil, 1, 1, 0, i_p, o_p, code, kernel)
                runs.append(("cmc_binary_popcount", dt_name, lambda x=x, bx=bx: bx(x, 1)))
                if bmma:
                    runs.append(("cmc_binary_bmma", dt_name, lambda x=x, bx=bx: bx(x, 2)))
                    if dt == torch.float16 and not args.no_tile_sweep:  # every tile shape, forced (tuning)
                        for i in range(len(ext.binary_bmma_tiles())):
                            runs.append((f"cmc_binary_bmma_tile{i}", dt_name, lambda x=x, bx=bx: bx(x, 2)))
                    if name in workhorse:
                        xp = ext.binary_pack_activations(x)
                        runs.append(("cmc_binary_bmma_packed_io", dt_name,
                                     lambda xp=xp, bx=bx: bx(xp, 2, True, True)))
                        if dt == torch.float16 and not args.no_tile_sweep:  # the fused tiles, packed chain
                            for i, tname in enumerate(ext.binary_bmma_tiles()):
                                if tname.startswith("fused"):
                                    runs.append((f"cmc_binary_bmma_packed_io_tile{i}", dt_name,
                                                 lambda xp=xp, bx=bx: bx(xp, 2, True, True)))
            if not args.no_unfold and dt == torch.float32:
                runs.append(("unfold_adder", dt_name, lambda x=x, wt=wt: unfold_adder(x, wt, s, p)))
        for impl, dt_name, fn in runs:
            forced = re.fullmatch(r"cmc_binary_bmma(?:_packed_io)?_tile(\d+)", impl)
            tile = int(forced.group(1)) if forced else -1
            if ext is not None:
                ext.binary_bmma_force_tile(tile)
            with torch.no_grad():
                r = guarded(fn, device, iters=args.iters,  # the unfold formulation takes ms: timed alone
                            back_to_back=1 if impl == "unfold_adder" else args.back_to_back)
            if ext is not None:
                ext.binary_bmma_force_tile(-1)
            if tile >= 0:
                r["tile"] = ext.binary_bmma_tiles()[tile]
            if impl.startswith("cmc_binary") and "ms_median" in r:
                rate = binary_macs / (r["ms_median"] * 1e-3) / 1e12
                r.update(binary_mac_t_per_s=round(rate, 3), fraction_of_mma_b1=roofline_fraction(rate, roofline, "mma_b1"))
            rec = add_adder_rates(dict(layer=name, **shape, impl=impl, dtype=dt_name, **r), roofline)
            records.append(rec)
            extra = f"  {rec['taps_per_s_T']} Ttaps/s" if "taps_per_s_T" in rec else ""
            extra += f"  roofline {rec['roofline_fraction']}" if rec.get("roofline_fraction") is not None else ""
            print(f"{name:28s} {impl:30s} {dt_name}  {r.get('ms_median', r.get('error'))}{extra}", file=sys.stderr)
    write_json({"benchmark": "layers", **device_info(device), "tf32": False, "roofline_T_per_s": roofline,
                "records": records, "adder_summary": adder_summary(records),
                "binary_summary": binary_summary(records)}, args.out)


if __name__ == "__main__":
    main()
