"""The export's first run of the user's model is also the verify step's reference output for the example
(issue 20: a research AdderNet at 224x224 costs ~10 s a sample): reused only where the reference is that very
model, unchanged since."""
import json

import torch

from cmc.exporter.cli import main
from cmc.exporter.pipeline import ExportOptions, Steps, prepare

from . import round3_models as r3

SAMPLE = "samples/checkpoints/addernet_resnet20.pth"
SAMPLE_ARCH = "samples.addernet_resnet20:resnet20"


def test_first_run_output_is_what_the_reference_computes(in_repo_root):
    memo = {}
    ref, _, x, _ = prepare(ExportOptions(model=SAMPLE, arch=SAMPLE_ARCH, input_shape=(1, 3, 32, 32), shrink=False),
                           Steps(), memo)
    with torch.no_grad():
        again = ref(x)
    assert torch.equal(memo["example_output"], again)


def test_a_first_run_that_changed_the_state_is_not_reused(tmp_path, in_repo_root):
    from cmc.exporter.arch import build_arch

    arch = "tests.exporter.round3_models:clamped_bn_arch"
    ckpt = tmp_path / "clamped.pth"
    torch.save(r3._calibrated(build_arch(arch, {})).state_dict(), ckpt)
    memo = {}
    _, _, _, report = prepare(ExportOptions(model=str(ckpt), arch=arch, input_shape=(1, 3, 16, 16)), Steps(), memo)
    assert report["state_updates"] and "example_output" not in memo  # its first output predates the clamp


def test_export_verify_computes_each_reference_sample_once(tmp_path, in_repo_root):
    out = tmp_path / "o"
    assert main([SAMPLE, "--arch", SAMPLE_ARCH, "--input-shape", "1x3x32x32", "--to", "onnx", "-o", str(out)]) == 0
    parity = json.loads((out / "report.json").read_text())["parity"]
    assert parity["passed"] and [c["batch"] for c in parity["cases"]] == [1, 5]
    # Batch 1 is the example (its output from the first run), batch 5 opens with it: 4 samples computed.
    assert parity["reference_slices"] == {"size": 1, "computed": 4, "reused": 2, "first_is_the_export_example": True}
