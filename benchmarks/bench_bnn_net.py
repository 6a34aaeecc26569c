"""Whole BNN networks: cmc's BinaryConv CUDA path against the same networks on FP16 cuDNN.

Networks: the BNN NIN sample (samples/bnn_nin.py, CIFAR 32x32) and a BNN ResNet-18 (samples/
bnn_resnet18.py, ImageNet 224x224, float stem / shortcuts / classifier), at batch 1, 16, 64, FP16
activations, inference (BatchNorm with running statistics, randomised so that the fold is not
trivial). Each binary convolution + its BatchNorm (+ReLU) is folded into the contract's epilogue
(scale = alpha * BN scale, shift = BN shift + BN scale * bias), as the exporter does, and runs as:

  cmc     one ext.binary_forward_ex call on weights prepared once (the kernel the device's rule picks:
          BMMA tensor cores on sm_80+), with packed 1-bit activations between two binary layers where
          nothing else sits between them (NIN's consecutive 1x1 layers, conv1 -> conv2 inside each
          ResNet block) — where the exporter would chain them;
  cudnn   binarize (x >= 0 -> +1, else -1) + one FP16 cuDNN convolution with the folded +-scale weights
          and the shift as its bias (+ReLU): the best the same network gets from cuDNN.

The float layers are the same FP16 modules in both. JSON: device description + per (network, batch,
implementation) median/min ms, images/s, the binary layers' MACs per second over the whole network's
time and that rate as a fraction of the roofline probe's `mma_b1` rate (limits.cu, same run), plus the
output deviation between the two (information, not a check: the exporter's verify is where parity is
proven). Timing: CUDA events around `--back-to-back` consecutive passes (default 5), per pass.

Eager PyTorch pays the host's per-layer cost (argument checks, allocation, launch) on every layer, so
at these sizes both paths are partly host-bound and the ratio depends on the lent machine's CPU. On a
GPU each network is therefore also captured once in a CUDA graph and its replay timed (impl
`cmc_graph` / `cudnn_fp16_graph`): the GPU's time for the same kernels, without the host. `speedups`
lists cmc over cuDNN per (network, batch), eager and graphed. --no-graph skips the capture.

    python benchmarks/bench_bnn_net.py --out /tmp/cmc_bnn_net.json [--batch 1 16 64] [--net nin resnet18]

GPU only; --smoke runs batch 1 on small images on the CPU (the cmc op's reference implementation,
unpacked) to check the code paths; its times mean nothing.
"""
from __future__ import annotations

import argparse
import copy
import sys

import torch
import torch.nn.functional as F
from torch import nn

from _common import device_info, guarded, read_roofline, require_cuda, roofline_fraction, write_json


def _randomise_bn(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 2.0)
            m.running_var.copy_(torch.rand(c, generator=g) * 4.0 + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.5)


class FoldedBinaryConv:
    """One research Conv2d_Q (A=2, W=2) + its BatchNorm (+ReLU), folded into the contract's epilogue."""

    def __init__(self, conv, bn, relu: bool, ext, device: str, dtype: torch.dtype):
        from cmc.plugins.binary_conv.op import pack_weights

        w = conv.weight.detach().float()
        alpha = w.abs().mean(dim=(1, 2, 3))
        bn_scale = bn.weight.detach().float() / torch.sqrt(bn.running_var.float() + bn.eps)
        bn_shift = bn.bias.detach().float() - bn.running_mean.float() * bn_scale
        bias = conv.bias.detach().float() if conv.bias is not None else torch.zeros_like(alpha)
        self.scale, self.shift = (alpha * bn_scale).to(device), (bn_shift + bn_scale * bias).to(device)
        self.relu, self.ext = relu, ext
        self.m, self.c, self.kh, self.kw = w.shape[0], w.shape[1] * conv.groups, w.shape[2], w.shape[3]
        self.strides, self.dil, self.groups = list(conv.stride), list(conv.dilation), conv.groups
        p = conv.padding
        self.pads = [p[0], p[1], p[0], p[1]]
        self.w_packed = pack_weights(w).to(device)
        self.prepared = ext.binary_prepare_weights(self.w_packed, self.c, self.groups) if ext is not None else None
        self.dtype_code = 0 if dtype == torch.float32 else 1
        wb = torch.where(w >= 0, 1.0, -1.0) * (alpha * bn_scale).view(-1, 1, 1, 1)
        self.w_cudnn, self.b_cudnn = wb.to(device, dtype), self.shift.to(device, dtype)

    macs_seen: list[int] | None = None  # when a list: each cmc() call appends its binary MACs

    def cmc(self, x, in_packed=False, out_packed=False):
        if FoldedBinaryConv.macs_seen is not None:
            n, h, w = (x.shape[0], x.shape[1], x.shape[2]) if in_packed else (x.shape[0], x.shape[2], x.shape[3])
            ho = (h + 2 * self.pads[0] - self.dil[0] * (self.kh - 1) - 1) // self.strides[0] + 1
            wo = (w + 2 * self.pads[1] - self.dil[1] * (self.kw - 1) - 1) // self.strides[1] + 1
            FoldedBinaryConv.macs_seen.append(n * ho * wo * self.m * (self.c // self.groups) * self.kh * self.kw)
        if self.prepared is None:  # --smoke on a CPU: the op's reference implementation, unpacked
            from cmc.plugins.binary_conv.op import binary_conv

            return binary_conv(x, self.w_packed, self.scale, self.shift, self.strides, self.pads, self.dil, self.groups,
                               1, int(self.relu))
        return self.ext.binary_forward_ex(x, self.prepared, self.scale, self.shift, self.c, self.m, self.kh, self.kw,
                                          self.strides, self.pads, self.dil, self.groups, 1, int(self.relu), in_packed,
                                          out_packed, self.dtype_code, 0)

    def cudnn(self, x):
        xb = torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
        y = F.conv2d(xb, self.w_cudnn, self.b_cudnn, self.strides, self.pads[:2], self.dil, self.groups)
        return F.relu(y) if self.relu else y


def nin_runners(net, ext, device, dtype, packed):
    from samples.bnn_nin import Tnn_Bin_Conv2d

    stages = []
    for mod in net.tnn_bin:
        if isinstance(mod, Tnn_Bin_Conv2d):
            stages.append(FoldedBinaryConv(mod.tnn_bin_conv, mod.bn, bool(mod.last_relu), ext, device, dtype))
        else:
            stages.append(copy.deepcopy(mod).to(device, dtype).eval())

    def run(x, use_cmc):
        prev_packed = False
        for i, st in enumerate(stages):
            if isinstance(st, FoldedBinaryConv):
                next_binary = i + 1 < len(stages) and isinstance(stages[i + 1], FoldedBinaryConv)
                if use_cmc:
                    out_packed = packed and next_binary
                    x = st.cmc(x, in_packed=prev_packed, out_packed=out_packed)
                    prev_packed = out_packed
                else:
                    x = st.cudnn(x)
            else:
                x = st(x)
        return x.flatten(1)

    return run


def resnet18_runners(net, ext, device, dtype, packed):
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    stem = copy.deepcopy(stem).to(device, dtype).eval()
    head = copy.deepcopy(nn.Sequential(net.avgpool, nn.Flatten(1), net.fc)).to(device, dtype).eval()
    blocks = []
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        for b in layer:
            ds = copy.deepcopy(b.downsample).to(device, dtype).eval() if b.downsample is not None else None
            blocks.append((FoldedBinaryConv(b.conv1, b.bn1, False, ext, device, dtype),
                           FoldedBinaryConv(b.conv2, b.bn2, False, ext, device, dtype), ds))

    def run(x, use_cmc):
        x = stem(x)
        for f1, f2, ds in blocks:
            identity = x if ds is None else ds(x)
            if use_cmc:  # conv1 -> conv2: nothing but the epilogue and the next sign between them
                out = f2.cmc(f1.cmc(x, out_packed=packed), in_packed=packed)
            else:
                out = f2.cudnn(f1.cudnn(x))
            x = out + identity
        return head(x)

    return run


NETS = {
    "nin": ("samples.bnn_nin", "nin", nin_runners, 32),
    "resnet18": ("samples.bnn_resnet18", "resnet18", resnet18_runners, 224),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--net", nargs="+", default=list(NETS), choices=list(NETS))
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--out", help="JSON file (default: stdout)")
    ap.add_argument("--back-to-back", type=int, default=5,
                    help="forward passes per timing (per-pass time = timing / passes; 1: each pass timed alone)")
    ap.add_argument("--smoke", action="store_true", help="batch 1, small images, CPU allowed: code-path check only")
    ap.add_argument("--no-graph", action="store_true", help="time eager passes only (no CUDA graph replay)")
    args = ap.parse_args(argv)
    device = require_cuda(args.smoke)
    torch.backends.cudnn.benchmark = True
    ext = None
    if device == "cuda":
        from cmc.plugins._cuda import loader

        ext = loader.load()
        if ext is None:
            sys.exit(f"cmc CUDA extension unavailable: {loader.unavailable_reason()}")
    dtype = torch.float16 if device == "cuda" else torch.float32  # CPU convolutions take no half
    batches = [1] if args.smoke else args.batch
    iters = 2 if args.smoke else args.iters
    roofline = read_roofline()
    records = []
    for name in args.net:
        import importlib

        mod_name, fn, runners, size = NETS[name]
        if args.smoke:
            size = 32 if name == "nin" else 64
        torch.manual_seed(0)
        net = getattr(importlib.import_module(mod_name), fn)().eval()
        _randomise_bn(net, 1)
        run = runners(net, ext, device, dtype, packed=ext is not None)
        kernel = None
        if ext is not None:  # what the rule picks for this net's workhorse binary layer
            kernel = {1: "popcount", 2: "bmma"}[ext.binary_kernel_choice(
                16, 256, 14, 14, 256, 3, 3, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1)]
        for batch in batches:
            x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch)).to(device, dtype)
            with torch.no_grad():
                FoldedBinaryConv.macs_seen = []
                y_cmc = run(x, True).float()
                binary_macs, FoldedBinaryConv.macs_seen = sum(FoldedBinaryConv.macs_seen), None
                y_cudnn = run(x, False).float()
                dev = float((y_cmc - y_cudnn).abs().max() / y_cudnn.abs().max().clamp_min(1e-12))
                impls = [("cmc", True, False), ("cudnn_fp16" if device == "cuda" else "torch_cpu", False, False)]
                if device == "cuda" and not args.no_graph:
                    impls += [("cmc_graph", True, True), ("cudnn_fp16_graph", False, True)]
                for impl, use_cmc, graph in impls:
                    fn = (lambda use_cmc=use_cmc: run(x, use_cmc))
                    if graph:
                        fn = graph_replay(fn)
                    r = fn if isinstance(fn, dict) else guarded(
                        fn, device, iters=iters, back_to_back=args.back_to_back, **({"warmup": 1} if args.smoke else {}))
                    if "ms_median" in r:
                        r["images_per_s"] = round(batch / (r["ms_median"] * 1e-3), 1)
                        # the binary layers' MACs over the whole network's time (float layers included)
                        rate = binary_macs / (r["ms_median"] * 1e-3) / 1e12
                        r.update(binary_macs=binary_macs, binary_mac_t_per_s=round(rate, 3),
                                 fraction_of_mma_b1=roofline_fraction(rate, roofline, "mma_b1"))
                    records.append(dict(net=name, batch=batch, image=size, impl=impl, dtype=str(dtype).split(".")[-1],
                                        packed_chains=bool(use_cmc and ext is not None),
                                        rel_dev_cmc_vs_cudnn=round(dev, 6), **r))
                    print(f"{name:9s} batch {batch:3d} {impl:11s} {r.get('ms_median', r.get('error'))}", file=sys.stderr)
    write_json({"benchmark": "bnn_net", **device_info(device), "binary_kernel_rule_for_3x3_256": kernel,
                "roofline_T_per_s": roofline, "speedups": speedups(records),
                "records": records}, args.out)


def graph_replay(fn):
    """fn captured in a CUDA graph (after warm-up passes on a side stream, as PyTorch requires): the
    graph's replay, or {"error": ...} when the capture fails (the record then says why)."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return graph.replay
    except RuntimeError as e:
        torch.cuda.synchronize()
        return {"error": "CUDA graph capture failed", "detail": str(e).splitlines()[0]}


def speedups(records: list[dict]) -> list[dict]:
    """cmc over the cuDNN network per (network, batch): eager passes and (where timed) graph replays."""
    by = {}
    for r in records:
        if "ms_median" in r:
            by.setdefault((r["net"], r["batch"]), {})[r["impl"]] = r["ms_median"]
    out = []
    for (net, batch), ms in by.items():
        row = {"net": net, "batch": batch}
        for mode, (ours, base) in (("eager", ("cmc", "cudnn_fp16")), ("graph", ("cmc_graph", "cudnn_fp16_graph"))):
            if ours in ms and base in ms:
                row[f"{mode}_cmc_ms"], row[f"{mode}_cudnn_fp16_ms"] = ms[ours], ms[base]
                row[f"{mode}_speedup"] = round(ms[base] / ms[ours], 3)
        if len(row) > 2:
            out.append(row)
    return out


if __name__ == "__main__":
    main()
