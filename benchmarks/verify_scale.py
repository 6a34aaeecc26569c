"""Export + verify of an AdderNet ResNet-50 at 224x224 (issue 20): wall time and peak memory.

Builds samples.addernet_resnet50 with random weights in the research layout (adder2d layers, N(0, 1)
weights) and gives its BatchNorms running statistics from a calibration pass through cmc's layers (with
fresh BatchNorms ReLU zeroes everything and the parity check proves nothing); the classifier's BatchNorm
stays fresh (see calibrated_state_dict). Saves the state_dict, then runs as child processes
``cmc-export CKPT --arch samples.addernet_resnet50:resnet50 --input-shape 1x3x224x224 --to onnx`` (the
export with its verify step) and ``cmc-export verify`` of the artifact (the CI re-check). Each child's wall
time and peak RSS (its own, from wait4) are the figures; parity comes from report.json and the verdict JSON.
Last, on the export example, the float32 floor: the research code in float32 and the ONNX, each against the research
code in float64.

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
CLASSIFIER_BN = "bn2."  # samples.addernet_resnet50: the BatchNorm on the logits (see calibrated_state_dict)


def calibrated_state_dict(seed: int = 0) -> dict:
    """The research model's state_dict, its BatchNorm statistics measured on random 224x224 images."""
    from cmc.exporter.convert import convert_research_layers
    from samples.addernet_resnet50 import resnet50
    from samples.make_checkpoints import calibrate

    torch.manual_seed(seed)
    research = resnet50()
    fast, _ = convert_research_layers(copy.deepcopy(research))  # cmc's op: the research unfold needs GBs
    calibrate(fast, batches=BN_BATCHES, batch_size=BN_BATCH_SIZE, shape=(3, 224, 224), seed=seed)
    # The classifier's BatchNorm (top-level bn2, on the logits) keeps its fresh statistics. A random network's
    # pooled features are nearly constant (measured on one image: their std is 0.4 % of their mean), so logit
    # statistics measured on random images divide by a small std, and calibrated that BatchNorm amplified
    # float32 rounding 24-fold in that one layer (6e-4 of max|y| from float64 before it, 1.4e-2 after): the
    # research code's own float32 logits were 1.7e-2 from float64, and no float32 artifact could be checked at
    # 2e-3. Every BatchNorm after an
    # adder layer (where a trained AdderNet subtracts its large means too) is calibrated.
    bn_state = {k: v for k, v in fast.state_dict().items()
                if ("running_" in k or "num_batches" in k) and not k.startswith(CLASSIFIER_BN)}
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


def _float64_floor(ckpt: Path, onnx_path: Path, batch: int = 1) -> dict:
    """On the verify step's batch-1 input (the export example): how far the research code's own float32
    output, and the ONNX's, are from the same research code in float64 (the float32 floor of this model)."""
    import onnxruntime as ort

    from cmc.exporter.pipeline import example_input
    from samples.addernet_resnet50 import resnet50

    x = example_input((batch, 3, 224, 224)).numpy()
    sd = torch.load(ckpt)
    outs = {}
    for name, dtype in (("float32", torch.float32), ("float64", torch.float64)):
        model = resnet50().eval()
        model.load_state_dict(sd)
        model.to(dtype)
        with torch.no_grad():
            outs[name] = torch.cat([model(torch.from_numpy(x[i:i + 1]).to(dtype)) for i in range(batch)]).double()
        del model
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outs["onnx"] = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x})[0]).double()
    ref = outs["float64"]
    rel = {k: float((outs[k] - ref).abs().max() / ref.abs().max()) for k in ("float32", "onnx")}
    return {"input": f"the export example ({batch}x3x224x224), the verify step's batch-1 input",
            "research_float32_vs_float64": rel["float32"], "onnx_vs_float64": rel["onnx"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "verify_scale_cpu.json"))
    ap.add_argument("--verify-batch", default="1,5")
    ap.add_argument("--no-float64", action="store_true", help="skip the float64 floor (about a minute)")
    args = ap.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    with tempfile.TemporaryDirectory(prefix="cmc-verify-scale-") as tmp:
        ckpt = Path(tmp) / "addernet_resnet50.pth"
        torch.save(calibrated_state_dict(), ckpt)
        out_dir = Path(tmp) / "out"
        model_args = [str(ckpt), "--arch", "samples.addernet_resnet50:resnet50", "--input-shape", "1x3x224x224"]
        py = [sys.executable, "-m", "cmc.exporter.cli"]
        # 1. The export as a user runs it: its verify step included (one process, one load of the model).
        export = _run(py + model_args + ["--to", "onnx", "-o", str(out_dir), "--verify-batch", args.verify_batch], env)
        report = json.loads((out_dir / "report.json").read_text()) if export["rc"] == 0 else {}
        # 2. The CI re-check: cmc-export verify of that artifact, a process of its own.
        verdict, verify, floor = {}, None, None
        onnx_files = sorted(out_dir.glob("*.onnx"))
        if onnx_files:
            vjson = Path(tmp) / "verdict.json"
            verify = _run(py + ["verify", str(onnx_files[0])] + model_args + ["--verify-batch", args.verify_batch,
                                                                              "--json", str(vjson), "--junit",
                                                                              str(Path(tmp) / "verdict.xml")], env)
            if vjson.is_file():
                verdict = json.loads(vjson.read_text())
            if not args.no_float64:
                floor = _float64_floor(ckpt, onnx_files[0])
    targets = {"wall_s": 90, "peak_rss_gib": 2.0}

    def within(step):
        return step is not None and step["rc"] == 0 and all(step[k] <= v for k, v in targets.items())

    result = {
        "what": "AdderNet ResNet-50 (samples.addernet_resnet50: random research-layout weights, BatchNorms "
                f"calibrated on {BN_BATCHES * BN_BATCH_SIZE} random images, the logits' BatchNorm left fresh), "
                "224x224: `cmc-export --to onnx` (export and its verify step, one process), then `cmc-export "
                "verify` of that artifact (the CI re-check, its own process)",
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "load_average_at_end": os.getloadavg(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "verify_batches": [int(b) for b in args.verify_batch.split(",")],
        "export_with_verify": export, "verify_alone": verify,
        "targets": targets,
        "within_targets": {"export_with_verify": within(export), "verify_alone": within(verify)},
        "export_timings_s": report.get("timings_s"),
        "parity_export": {k: report.get("parity", {}).get(k) for k in ("passed", "tolerance", "worst",
                                                                         "reference_slices", "constant_outputs")},
        "parity_verify": {k: verdict.get(k) for k in ("passed", "tolerance", "worst", "reference_slices",
                                                     "constant_outputs") if k in verdict},
        "cases": [{"batch": c["batch"], **{n: o.get("rel_err") for n, o in c["outputs"].items()}}
                  for c in verdict.get("cases", [])],
        "float64_floor": floor,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
