"""Does channel alignment pay on onnxruntime CPU? Shrunk exactly (round_to=1) vs aligned (--align-channels 8).

    python benchmarks/align_cpu.py [--runs 200] [--out benchmarks/results/align_cpu.json]

For pruned sample models whose kept channel counts are not multiples of 8, shrink twice — removing
every pruned channel, and keeping some so conv widths stay multiples of 8 — export both with
torch.onnx (dynamo, dynamic batch) and time them in onnxruntime on the CPU at batch 1 and 32
(medians, and best, of interleaved runs after warm-up). Aligned pays if it is faster despite its
extra FLOPs. Writes JSON with machine information. A benchmark, not a test: no target, no exit code.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cmc.exporter.shrink import shrink  # noqa: E402
from shrink_cpu import export, machine, session, time_pair  # noqa: E402

MODELS = {
    # name: (builder, kwargs): kept widths that are not multiples of 8
    "vgg16_slimmed": ("samples.pruning.vgg_slim:vgg16_slimmed", {}),
    "resnet56_l1_30pct": ("samples.pruning.resnet56_l1:resnet56_l1", {"ratios": (0.3, 0.3, 0.3)}),
    "preresnet56_slimmed": ("samples.pruning.preresnet_cs:preresnet_slimmed", {"depth": 56}),
}


def bench(name, runs, threads, tmp):
    spec, kw = MODELS[name]
    mod, fn = spec.split(":")
    f = getattr(importlib.import_module(mod), fn)
    model = f(**kw)
    x = torch.randn(1, *f.input_shape[1:])
    exact, aligned = shrink(model, (x,), round_to=1), shrink(model, (x,), round_to=8)
    pe, pa = Path(tmp) / f"{name}.exact.onnx", Path(tmp) / f"{name}.aligned.onnx"
    export(exact.model, x, pe)
    export(aligned.model, x, pa)
    se, sa = session(pe, threads), session(pa, threads)
    widths = {}
    for key, res in (("exact", exact), ("aligned", aligned)):
        convs = [e["out_after"] for e in res.report["layers"] if e["type"] == "Conv2d"]
        widths[key] = {"conv_out_channels_multiple_of_8": sum(c % 8 == 0 for c in convs), "convs": len(convs)}
    out = {"spec": spec, "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()},
           "params": {"exact": exact.report["params"]["after"], "aligned": aligned.report["params"]["after"]},
           "flops_per_sample": {"exact": exact.report["flops"]["after"], "aligned": aligned.report["flops"]["after"]},
           "widths": widths, "batches": {}}
    extra = aligned.report["flops"]["after"] / exact.report["flops"]["after"]
    for b in (1, 32):
        xb = np.random.default_rng(0).standard_normal((b, *f.input_shape[1:])).astype(np.float32)
        ye = se.run(None, {se.get_inputs()[0].name: xb})[0]
        ya = sa.run(None, {sa.get_inputs()[0].name: xb})[0]
        n = runs if b == 1 else max(5, runs // 8)
        (te, ta), (be, ba) = time_pair(se, sa, xb, n)
        out["batches"][str(b)] = {"exact_ms": round(te * 1e3, 3), "aligned_ms": round(ta * 1e3, 3),
                                  "exact_best_ms": round(be * 1e3, 3), "aligned_best_ms": round(ba * 1e3, 3),
                                  "aligned_speedup": round(te / ta, 3), "aligned_speedup_best": round(be / ba, 3),
                                  "aligned_flops_factor": round(extra, 4), "runs": n,
                                  "onnx_max_rel_err_exact_vs_aligned": float(np.abs(ye - ya).max() / np.abs(ye).max())}
        print(f"{name:20s} batch {b:2d}: exact {te*1e3:8.2f} ms  aligned {ta*1e3:8.2f} ms  "
              f"aligned/exact speed {te / ta:.3f}x (best-of {be / ba:.3f}x) for {extra:.3f}x the FLOPs", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200, help="timed runs at batch 1 (batch 32: runs / 8)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "align_cpu.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {"benchmark": "onnxruntime CPU latency, shrunk exactly (round_to=1) vs aligned to multiples of 8",
              "question": "does --align-channels 8 pay on onnxruntime CPU?",
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "threads": args.threads, "load_average_at_start": os.getloadavg(),
              "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            result["models"][name] = bench(name, args.runs, args.threads, tmp)
    result["load_average_at_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
