"""Export + verify of an AdderNet ResNet-50 at 224x224 (issue 20): wall time and peak memory.

Builds samples.addernet_resnet50 with random weights in the research layout (adder2d layers, N(0, 1)
weights), gives its BatchNorms running statistics (from a calibration pass through cmc's layers, so the
parity check compares outputs that vary with the input; with fresh BatchNorms ReLU zeroes everything),
saves the state_dict and runs ``cmc-export CKPT --arch samples.addernet_resnet50:resnet50 --input-shape
1x3x224x224 --to onnx --no-verify`` and ``cmc-export verify`` as child processes: their wall times and
peak RSS (each child's own, from wait4) are the figures; the parity figures come from the verdict JSON.

    python benchmarks/verify_scale.py [--out benchmarks/results/verify_scale_cpu.json] [--verify-batch 1,5]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import cpu_name  # noqa: E402  (benchmarks/ is the script folder)

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# BatchNorm calibration images (2-core CPU: ~4 s per image through cmc's op at 224x224).
BN_BATCHES, BN_BATCH_SIZE = 2, 4


def calibrated_state_dict(seed: int = 0) -> dict:
    """The research model's state_dict, its BatchNorm statistics measured on random 224x224 images."""
    from cmc.exporter.convert import convert_research_layers
    from samples.addernet_resnet50 import resnet50
    from samples.make_checkpoints import calibrate

    torch.manual_seed(seed)
    research = resnet50()
    fast, _ = convert_research_layers(copy.deepcopy(research))  # cmc's op: the research unfold needs GBs
    calibrate(fast, batches=BN_BATCHES, batch_size=BN_BATCH_SIZE, shape=(3, 224, 224), seed=seed)
    bn_state = {k: v for k, v in fast.state_dict().items() if "running_" in k or "num_batches" in k}
    missing = set(bn_state) - set(research.state_dict())
    assert not missing, f"BatchNorm names differ after conversion: {sorted(missing)[:3]}"
    research.load_state_dict(bn_state, strict=False)
    return research.state_dict()




def _run(cmd, env) -> dict:
    """One child process: wall time, its own peak RSS (wait4), exit code, last stderr lines."""
    with tempfile.TemporaryFile("w+") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # reaped here, so its rusage is this child's alone
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        lines = [ln for ln in log.read().splitlines() if ln.strip()]
    return {"cmd": " ".join(cmd[2:]), "rc": proc.returncode, "wall_s": round(wall, 1),
            "peak_rss_gib": round(usage.ru_maxrss / 2 ** 20, 3), "output_tail": lines[-8:]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "verify_scale_cpu.json"))
    ap.add_argument("--verify-batch", default="1,5")
    args = ap.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    with tempfile.TemporaryDirectory(prefix="cmc-verify-scale-") as tmp:
        ckpt = Path(tmp) / "addernet_resnet50.pth"
        torch.save(calibrated_state_dict(), ckpt)
        out_dir = Path(tmp) / "out"
        model_args = [str(ckpt), "--arch", "samples.addernet_resnet50:resnet50", "--input-shape", "1x3x224x224"]
        py = [sys.executable, "-m", "cmc.exporter.cli"]
        # Export and verify as two processes (the export's own verify step is the same verify() call):
        # each one's time and peak are measured, and the verdict JSON is written even when parity fails.
        export = _run(py + model_args[:1] + ["--arch", model_args[2], "--input-shape", model_args[4], "--to", "onnx",
                                              "-o", str(out_dir), "--no-verify"], env)
        verdict, verify = {}, None
        if export["rc"] == 0:
            onnx_path = next(out_dir.glob("*.onnx"))
            vjson = Path(tmp) / "verdict.json"
            verify = _run(py + ["verify", str(onnx_path)] + model_args + ["--verify-batch", args.verify_batch,
                                                                          "--json", str(vjson), "--junit",
                                                                          str(Path(tmp) / "verdict.xml")], env)
            if vjson.is_file():
                verdict = json.loads(vjson.read_text())
    steps = [r for r in (export, verify) if r is not None]
    result = {
        "what": "AdderNet ResNet-50 (samples.addernet_resnet50: random research-layout weights, BatchNorms "
                f"calibrated on {BN_BATCHES * BN_BATCH_SIZE} random images), 224x224: cmc-export --to onnx "
                "--no-verify, then cmc-export verify",
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "load_average_at_end": os.getloadavg(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "verify_batches": [int(b) for b in args.verify_batch.split(",")],
        "export": export, "verify": verify,
        "wall_s": round(sum(r["wall_s"] for r in steps), 1),
        "peak_rss_gib": max(r["peak_rss_gib"] for r in steps),
        "targets": {"wall_s": 90, "peak_rss_gib": 2.0},
        "parity": {k: verdict.get(k) for k in ("passed", "tolerance", "worst", "constant_outputs") if k in verdict},
        "cases": [{"batch": c["batch"], **{n: o.get("rel_err") for n, o in c["outputs"].items()}}
                  for c in verdict.get("cases", [])],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
