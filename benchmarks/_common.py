"""Shared pieces of the benchmark scripts: CUDA-event timing, device description, JSON output.

Numbers only ever come from running on a GPU; nothing here invents or estimates one. Result files are
run artefacts: write them outside the repository (or under out*/, which git ignores).
"""
from __future__ import annotations

import json
import platform
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `samples` (the research-style models) lives at the repo root


def require_cuda(smoke: bool) -> str:
    """'cuda', or 'cpu' for a --smoke run (a code-path check, not a measurement); exits otherwise."""
    if torch.cuda.is_available():
        return "cuda"
    if smoke:
        return "cpu"
    sys.exit("no CUDA GPU: these benchmarks only run on a GPU machine (use --smoke for a CPU code-path check)")


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), for the machine a CPU figure was measured on."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_info(device: str) -> dict:
    info = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version()}
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        info.update(device_name=p.name, capability=f"sm_{p.major}{p.minor}", sm_count=p.multi_processor_count,
                    memory_gib=round(p.total_memory / 2 ** 30, 1), cudnn=torch.backends.cudnn.version())
    else:
        info.update(device_name="cpu (smoke run: not a measurement)")
    return info


def time_ms(fn, device: str, warmup: int = 3, iters: int = 20, back_to_back: int = 1) -> dict:
    """Median / min milliseconds of one fn() call over `iters` timings (CUDA events on the GPU).

    back_to_back > 1: each timing spans that many consecutive calls and is divided by their number,
    so the host's per-call work (argument checks, allocation, launch) overlaps the GPU's work on the
    previous call, as in a network; with 1, a short kernel's time includes the host latency between
    the start event and its launch."""
    for _ in range(warmup):
        fn()
    times = []
    if device == "cuda":
        torch.cuda.synchronize()
        for _ in range(iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(back_to_back):
                fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / back_to_back)
    else:
        import time

        for _ in range(iters):
            t0 = time.perf_counter()
            for _ in range(back_to_back):
                fn()
            times.append((time.perf_counter() - t0) * 1e3 / back_to_back)
    return {"ms_median": statistics.median(times), "ms_min": min(times), "iters": iters,
            "back_to_back": back_to_back}


def guarded(fn, device: str, **kw) -> dict:
    """time_ms, or {"error": ...} (e.g. out of memory for the unfold formulation)."""
    try:
        return time_ms(fn, device, **kw)
    except torch.cuda.OutOfMemoryError as e:
        torch.cuda.empty_cache()
        return {"error": "out of memory", "detail": str(e).splitlines()[0]}
    except RuntimeError as e:
        if device == "cuda":
            torch.cuda.empty_cache()
        return {"error": type(e).__name__, "detail": str(e).splitlines()[0]}


def write_json(obj: dict, path: str | None) -> None:
    text = json.dumps(obj, indent=2)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
        print(f"wrote {path}", file=sys.stderr)
    else:
        print(text)


# ---------------------------------------------------------------- roofline (../shared/gpu/limits.cu)

def read_roofline(path: str | None = None) -> dict[str, float] | None:
    """The rates the roofline probe measured on this GPU, {mix: T ops/s} (adder_f32, adder_h2: taps/s;
    xnor_popc, mma_b1: binary MACs/s; mma_f16: fp16 MACs/s), or None when no probe output is at hand.

    Looked for in ``path``, else ``$CMC_LIMITS_FILE``, else ``$OUT/limits.txt`` (where the GPU suite
    writes it before the benchmarks run). A fraction of the roofline is only quoted from a probe run on
    the same machine in the same session: the file is never shipped with the repository."""
    import os
    import re

    candidates = [path, os.environ.get("CMC_LIMITS_FILE"),
                  os.path.join(os.environ["OUT"], "limits.txt") if os.environ.get("OUT") else None]
    for c in candidates:
        if c and Path(c).is_file():
            rates = {}
            for line in Path(c).read_text().splitlines():
                m = re.match(r"\s*(\w+)\s+[\d.]+\s+ms\s+([\d.]+)\s+T/s\s+\((.*)\)", line)
                if m and m.group(3).strip() == "no error":
                    rates[m.group(1)] = float(m.group(2))
            return rates or None
    return None


def roofline_fraction(rate_t_per_s: float, roofline: dict[str, float] | None, mix: str) -> float | None:
    """rate / the probe's rate for ``mix`` (both in T ops/s), or None without a probe figure."""
    if not roofline or not roofline.get(mix):
        return None
    return round(rate_t_per_s / roofline[mix], 4)


# ---------------------------------------------------------------- profiling (profile_*.py, for ncu)

def profile_setup(script: str, doc: str, default_layer: str, argv=None):
    """The --layer argument (any layer of bench_layers) and the CUDA extension: (ext, layer tuple)."""
    import argparse

    from bench_layers import SUITES

    layers = {l[0]: l for suite in SUITES.values() for l in suite}
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layer", default=default_layer, choices=sorted(layers))
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit(f"no CUDA GPU: {script} only runs on a GPU machine")
    from cmc.plugins._cuda import loader

    ext = loader.load()
    if ext is None:
        sys.exit(f"cmc CUDA extension unavailable: {loader.unavailable_reason()}")
    return ext, layers[args.layer]


def profiled_round(round_fn, what: str) -> None:
    """One untimed warm-up round, then one round between cudaProfilerStart/Stop (ncu
    --profile-from-start off captures exactly that round)."""
    round_fn()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    round_fn()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()
    print(f"profiled {what}", file=sys.stderr)

