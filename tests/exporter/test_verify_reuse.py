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
    example, out = memo["example_output"]
    assert torch.equal(example, x)
    with torch.no_grad():
        again = ref(x)
    assert torch.equal(out, again)


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


class _ScalesItsInput(torch.nn.Module):
    """Research code that normalises its input in place in forward."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        x.mul_(0.5)
        return self.conv(x).flatten(1)


def test_an_input_changed_in_place_keeps_the_example_and_its_output_paired(tmp_path, in_repo_root, monkeypatch):
    import sys

    mod = type(sys)("scales_its_input")
    mod.build = _ScalesItsInput
    monkeypatch.setitem(sys.modules, "scales_its_input", mod)
    torch.manual_seed(0)
    ckpt = tmp_path / "m.pth"
    torch.save(_ScalesItsInput().state_dict(), ckpt)
    memo = {}
    ref, _, _, _ = prepare(ExportOptions(model=str(ckpt), arch="scales_its_input:build", input_shape=(1, 3, 8, 8),
                                         shrink=False), Steps(), memo)
    example, out = memo["example_output"]
    with torch.no_grad():
        again = ref(example.clone())
    assert torch.equal(out, again)  # the output of this very example, not of a halved one
