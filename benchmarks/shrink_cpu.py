"""onnxruntime CPU latency of pruned models, masked vs shrunk (a benchmark, not a test).

    python benchmarks/shrink_cpu.py [--runs 100] [--out benchmarks/results/shrink_cpu.json]

For VGG-16 with Network Slimming and ResNet-56 with L1 filter pruning (samples/pruning): shrink,
export the masked and the shrunk model with torch.onnx (dynamo, dynamic batch), and time both in
onnxruntime on the CPU at batch 1 and 32 (median, and best, of interleaved runs after warm-up). The
target is a speed-up (of medians) of at least 0.7 x the FLOPs ratio. Writes JSON with machine
information; exits 1 when a target is missed.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from cmc.exporter.shrink import shrink  # noqa: E402

MODELS = {
    "vgg16_slimmed": "samples.pruning.vgg_slim:vgg16_slimmed",
    "resnet56_l1": "samples.pruning.resnet56_l1:resnet56_l1",
}
TARGET = 0.7


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "memory": mem, "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": ort.__version__,
            "note": "shared machine (other jobs may run); medians of interleaved runs"}


def export(model, x, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = torch.export.Dim("batch", min=1, max=1024)
        prog = torch.onnx.export(model, (x,), dynamo=True, verbose=False, dynamic_shapes=({0: batch},))
        prog.save(str(path))


def session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def time_pair(sa, sb, x, runs, warmup=3):
    feed_a = {sa.get_inputs()[0].name: x}
    feed_b = {sb.get_inputs()[0].name: x}
    for _ in range(warmup):
        sa.run(None, feed_a)
        sb.run(None, feed_b)
    ta, tb = [], []
    for _ in range(runs):
        t = time.perf_counter(); sa.run(None, feed_a); ta.append(time.perf_counter() - t)
        t = time.perf_counter(); sb.run(None, feed_b); tb.append(time.perf_counter() - t)
    return (statistics.median(ta), statistics.median(tb)), (min(ta), min(tb))


def bench(name, spec, runs, threads, tmp):
    import importlib
    mod, fn = spec.split(":")
    f = getattr(importlib.import_module(mod), fn)
    model = f()
    x = torch.randn(1, *f.input_shape[1:])
    t0 = time.perf_counter()
    res = shrink(model, (x,))
    t_shrink = time.perf_counter() - t0
    pm, ps = Path(tmp) / f"{name}.masked.onnx", Path(tmp) / f"{name}.shrunk.onnx"
    export(model, x, pm)
    export(res.model, x, ps)
    sm, ss = session(pm, threads), session(ps, threads)
    out = {"spec": spec, "shrink_seconds": round(t_shrink, 2), "round_to": res.report["round_to"],
           "params": res.report["params"], "flops_per_sample": res.report["flops"],
           "onnx_bytes": {"masked": pm.stat().st_size, "shrunk": ps.stat().st_size},
           "max_rel_err_torch": res.report["verification"]["max_rel_err"], "batches": {}}
    ratio = res.report["flops"]["ratio"]
    for b in (1, 32):
        xb = np.random.default_rng(0).standard_normal((b, *f.input_shape[1:])).astype(np.float32)
        ym = sm.run(None, {sm.get_inputs()[0].name: xb})[0]
        ys = ss.run(None, {ss.get_inputs()[0].name: xb})[0]
        err = float(np.abs(ym - ys).max() / np.abs(ym).max())
        n = runs if b == 1 else max(5, runs // 8)
        (tm, ts), (bm, bs) = time_pair(sm, ss, xb, n)
        speed = tm / ts
        out["batches"][str(b)] = {"masked_ms": round(tm * 1e3, 3), "shrunk_ms": round(ts * 1e3, 3),
                                  "masked_best_ms": round(bm * 1e3, 3), "shrunk_best_ms": round(bs * 1e3, 3),
                                  "speedup": round(speed, 3), "speedup_best": round(bm / bs, 3),
                                  "flops_ratio": round(ratio, 3),
                                  "speedup_over_flops_ratio": round(speed / ratio, 3),
                                  "meets_target": bool(speed >= TARGET * ratio), "runs": n,
                                  "onnx_max_rel_err_masked_vs_shrunk": err}
        print(f"{name:14s} batch {b:2d}: masked {tm*1e3:8.2f} ms  shrunk {ts*1e3:8.2f} ms  "
              f"speed-up {speed:.2f}x (best-of {bm / bs:.2f}x)  FLOPs ratio {ratio:.2f}x  ({speed / ratio:.2f} of it)",
              flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100, help="timed runs at batch 1 (batch 32: runs / 8)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "shrink_cpu.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {"benchmark": "onnxruntime CPU latency, masked vs shrunk", "target": f"speed-up >= {TARGET} x FLOPs ratio",
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "threads": args.threads, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            result["models"][name] = bench(name, MODELS[name], args.runs, args.threads, tmp)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    ok = all(b["meets_target"] for m in result["models"].values() for b in m["batches"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
