"""Export + verify of an AdderNet ResNet-50 at 224x224 (issue 20): wall time and peak memory.

Builds samples.addernet_resnet50 with random weights in the research layout (adder2d layers, N(0, 1)
weights), gives its BatchNorms running statistics (from a calibration pass through cmc's layers, so the
parity check compares outputs that vary with the input; with fresh BatchNorms ReLU zeroes everything),
saves the state_dict and runs ``cmc-export CKPT --arch samples.addernet_resnet50:resnet50 --input-shape
1x3x224x224 --to onnx`` as a child process: its wall time and peak RSS (getrusage of the children) are
the figures, the parity figures come from its report.json.

    python benchmarks/verify_scale.py [--out benchmarks/results/verify_scale_cpu.json] [--verify-batch 1,5]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def calibrated_state_dict(seed: int = 0) -> dict:
    """The research model's state_dict, its BatchNorm statistics measured on random 224x224 images."""
    from cmc.exporter.convert import convert_research_layers
    from samples.addernet_resnet50 import resnet50
    from samples.make_checkpoints import calibrate

    torch.manual_seed(seed)
    research = resnet50()
    fast, _ = convert_research_layers(copy.deepcopy(research))  # cmc's op: the research unfold needs GBs
    calibrate(fast, batches=1, batch_size=4, shape=(3, 224, 224), seed=seed)
    bn_state = {k: v for k, v in fast.state_dict().items() if "running_" in k or "num_batches" in k}
    missing = set(bn_state) - set(research.state_dict())
    assert not missing, f"BatchNorm names differ after conversion: {sorted(missing)[:3]}"
    research.load_state_dict(bn_state, strict=False)
    return research.state_dict()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "verify_scale_cpu.json"))
    ap.add_argument("--verify-batch", default="1,5")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cmc-verify-scale-") as tmp:
        ckpt = Path(tmp) / "addernet_resnet50.pth"
        torch.save(calibrated_state_dict(), ckpt)
        cmd = [sys.executable, "-m", "cmc.exporter.cli", str(ckpt), "--arch", "samples.addernet_resnet50:resnet50",
               "--input-shape", "1x3x224x224", "--to", "onnx", "-o", str(Path(tmp) / "out"),
               "--verify-batch", args.verify_batch]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child: the export
        if proc.returncode != 0:
            sys.exit(f"cmc-export failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
        report = json.loads((Path(tmp) / "out" / "report.json").read_text())
    parity = report.get("parity", {})
    result = {
        "what": "cmc-export of an AdderNet ResNet-50 (random research-layout weights, calibrated BatchNorms), "
                "224x224, --to onnx with verify",
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "verify_batches": [int(b) for b in args.verify_batch.split(",")],
        "wall_s": round(wall, 1),
        "peak_rss_gib": round(peak_kib / 2 ** 20, 3),
        "targets": {"wall_s": 90, "peak_rss_gib": 2.0},
        "parity": {k: parity.get(k) for k in ("passed", "tolerance", "worst", "constant_outputs") if k in parity},
        "stderr_steps": [ln for ln in proc.stderr.splitlines() if ln.strip()][-12:],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
