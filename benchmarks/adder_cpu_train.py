"""Benchmark (not a test): AdderConv2d forward+backward on the CPU, cmc vs the research unfold code.

Shape: ResNet-20 layer 1 (16 -> 16 channels, 3x3, padding 1, 32x32), batch 128 by default.
Each implementation runs in its own process; peak memory is that process's peak RSS growth over
one forward+backward at the full batch (ru_maxrss) after a batch-2 warm-up, so nothing is estimated. Writes JSON (machine named) and prints it.

    python benchmarks/adder_cpu_train.py [--batch 128] [--repeats 3] [--out benchmarks/results/adder_cpu_train.json]
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_now_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def child(impl: str, batch: int, repeats: int):
    import torch

    sys.path.insert(0, str(ROOT))
    torch.manual_seed(0)
    if impl == "cmc":
        from cmc.plugins.adder_conv import AdderConv2d

        layer = AdderConv2d(16, 16, 3, padding=1)
    else:
        from samples.addernet_resnet20 import adder2d

        layer = adder2d(16, 16, 3, stride=1, padding=1)
    # Warm up at batch 2 so one-time library initialisation (thread pools, kernels) is not counted.
    layer(torch.randn(2, 16, 32, 32, requires_grad=True)).backward(torch.randn(2, 16, 32, 32))
    layer.zero_grad()
    x = torch.randn(batch, 16, 32, 32, requires_grad=True)
    g = torch.randn(batch, 16, 32, 32)
    base = _rss_now_kb()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    layer(x).backward(g)
    first = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats):
        x.grad = None
        layer.zero_grad()
        t0 = time.perf_counter()
        layer(x).backward(g)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"impl": impl, "peak_rss_growth_mib": (max(peak, peak_before) - base) / 1024,
                      "first_step_s": first, "step_s_median": sorted(times)[len(times) // 2],
                      "threads": torch.get_num_threads()}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/adder_cpu_train.json"))
    ap.add_argument("--child", choices=["cmc", "unfold"])
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.batch, a.repeats)
    results = {}
    for impl in ("cmc", "unfold"):
        r = subprocess.run([sys.executable, __file__, "--child", impl, "--batch", str(a.batch), "--repeats", str(a.repeats)],
                           capture_output=True, text=True, check=True)
        results[impl] = json.loads(r.stdout.strip().splitlines()[-1])
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    out = {
        "benchmark": "AdderConv2d forward+backward, ResNet-20 layer-1 shape 16->16 3x3 pad 1, 32x32",
        "batch": a.batch,
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()},
        "results": results,
        "memory_ratio_cmc_over_unfold": results["cmc"]["peak_rss_growth_mib"] / results["unfold"]["peak_rss_growth_mib"],
        "speedup_cmc_over_unfold": results["unfold"]["step_s_median"] / results["cmc"]["step_s_median"],
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
