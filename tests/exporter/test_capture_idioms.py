"""Research-code idioms in forward through the whole pipeline: captured exactly (parity proves it) or
refused with one line that names the user's file and line, the idiom and what to change."""
import inspect
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from cmc.exporter.cli import main
from cmc.exporter.idioms import cpu_device_calls
from samples.pruning import resnet_l1_data
from samples.pruning.resnet56_l1 import l1_prune_first_convs

from . import idiom_models, xnor_models

SHAPE_8 = "1x3x8x8"


def _export(tmp_path, module, builder, shape=SHAPE_8, model=None, extra=()):
    """Save the builder's state_dict and run cmc-export on it; returns (rc, out dir)."""
    ckpt = tmp_path / f"{builder}.pth"
    torch.save((model if model is not None else getattr(module, builder)()).state_dict(), ckpt)
    out = tmp_path / f"out_{builder}"
    rc = main([str(ckpt), "--arch", f"{module.__name__}:{builder}", "--input-shape", shape, "-o", str(out), *extra])
    return rc, out


@pytest.fixture
def arch_module(tmp_path, monkeypatch):
    """Write a one-function --arch module into tmp_path (importable for the test only)."""
    import re
    import sys

    written = []

    def write(stem, body):
        name = stem + "_" + re.sub(r"\W", "_", tmp_path.name)  # unique: a module name is cached once imported
        (tmp_path / f"{name}.py").write_text(body)
        written.append(name)
        return name

    monkeypatch.syspath_prepend(str(tmp_path))
    yield write
    for name in written:
        sys.modules.pop(name, None)


def _errors(capsys):
    err = capsys.readouterr().err
    return [line for line in err.splitlines() if not line.startswith("[cmc]")]


def _line(cls_or_fn, text):
    lines, start = inspect.getsourcelines(cls_or_fn)
    return start + next(i for i, l in enumerate(lines) if text in l)


def _onnx_vs_float64(onnx_path, model, shape, batches=(1, 3)):
    """max|y_onnx - y_float64| / max|y_float64| over seeded inputs: the eager model run in float64."""
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref_model = model.double()
    worst = 0.0
    for b in batches:
        x = torch.randn(b, *shape[1:], generator=torch.Generator().manual_seed(10 + b), dtype=torch.float64)
        with torch.no_grad(), cpu_device_calls():  # what the model computes on the CPU
            ref = ref_model(x).numpy()
        got = sess.run(None, {sess.get_inputs()[0].name: x.float().numpy()})[0]
        assert got.shape == ref.shape
        worst = max(worst, float(np.abs(got - ref).max() / np.abs(ref).max()))
    return worst


def _shims_restored():
    return not any(k in torch.Tensor.__dict__ for k in ("data", "cuda", "to")) and \
        torch.autograd.Function.__dict__["__call__"].__module__ == "torch.autograd.function"


# ---------------------------------------------------------------- the L1-pruning ResNet's .data shortcut

def _export_resnet(tmp_path, arch_module, build: str, model, extra=()):
    arch = arch_module("resnet_arch", "from samples.pruning.resnet_l1_data import resnet_l1_data\n"
                                      "from samples.pruning.resnet56_l1 import l1_prune_first_convs\n"
                                      f"def build():\n    return {build}\n")
    ckpt = tmp_path / "resnet.pth"
    torch.save(model.state_dict(), ckpt)
    out = tmp_path / "out"
    rc = main([str(ckpt), "--arch", f"{arch}:build", "--input-shape", "1x3x32x32", "-o", str(out), *extra])
    return rc, out


def test_resnet_data_shortcut_exports_with_dynamic_batch_and_parity(tmp_path, arch_module, in_repo_root, capsys):
    model = resnet_l1_data.resnet_l1_data(depth=20)
    # The shortcut really hits torch.export's ".data" failure without cmc (a fake tensor among the constants).
    with pytest.raises(RuntimeError, match="fake tensor"):
        torch.export.export(model, (torch.randn(2, 3, 32, 32),), strict=False)
    capsys.readouterr()
    rc, out = _export_resnet(tmp_path, arch_module, "resnet_l1_data(depth=20)", model, ["--no-shrink"])
    assert rc == 0, _errors(capsys)
    report = json.loads((out / "report.json").read_text())
    assert report["parity"]["passed"] and report["export"]["dynamic_batch"] is True
    assert [c["batch"] for c in report["parity"]["cases"]] == [1, 5]
    assert _onnx_vs_float64(out / "resnet.onnx", resnet_l1_data.resnet_l1_data(depth=20), (1, 3, 32, 32)) < 1e-5
    assert _shims_restored()


def test_pruned_resnet_data_shortcut_is_shrunk_and_exported(tmp_path, arch_module, in_repo_root, capsys):
    """Shrinking traces the model with torch.export too: the .data shortcut must not stop it."""
    build = "l1_prune_first_convs(resnet_l1_data(depth=20))"
    model = l1_prune_first_convs(resnet_l1_data.resnet_l1_data(depth=20))
    rc, out = _export_resnet(tmp_path, arch_module, build, model)
    assert rc == 0, _errors(capsys)
    report = json.loads((out / "report.json").read_text())
    assert report["parity"]["passed"]
    assert report["shrink"]["report"]["params"]["after"] < 0.6 * report["shrink"]["report"]["params"]["before"]
    ref = l1_prune_first_convs(resnet_l1_data.resnet_l1_data(depth=20))
    assert _onnx_vs_float64(out / "resnet.onnx", ref, (1, 3, 32, 32)) < 1e-5


def test_physically_pruned_cfg_resnet_exports(tmp_path, arch_module, in_repo_root, capsys):
    """The repository's pruned network is rebuilt from cfg (odd widths): same shortcut, same capture."""
    cfg = [5, 16, 9, 13, 32, 7, 40, 17, 64]
    model = resnet_l1_data.resnet_l1_data(depth=20, dataset="cifar100", cfg=cfg)
    rc, out = _export_resnet(tmp_path, arch_module, f"resnet_l1_data(depth=20, dataset='cifar100', cfg={cfg})", model)
    assert rc == 0, _errors(capsys)
    assert _onnx_vs_float64(out / "resnet.onnx", model, (1, 3, 32, 32)) < 1e-5


# ---------------------------------------------------------------- captured exactly

@pytest.mark.parametrize("builder", ["variable_wrapped", "activation_clamp_via_data", "cuda_zeros"])
def test_idiom_is_captured_exactly(builder, tmp_path, in_repo_root, capsys):
    rc, out = _export(tmp_path, idiom_models, builder)
    assert rc == 0, _errors(capsys)
    report = json.loads((out / "report.json").read_text())
    assert report["parity"]["passed"] and report["export"]["dynamic_batch"] is True
    assert _onnx_vs_float64(out / f"{builder}.onnx", getattr(idiom_models, builder)(), (1, 3, 8, 8)) < 1e-5
    if builder == "cuda_zeros":  # the neutralised device moves are reported with their lines
        notes = report["export"]["notes"]
        for call, text in (("Tensor.cuda", "pad = torch.zeros("), ("Tensor.to", ".to('cuda', non_blocking")):
            line = _line(idiom_models.CudaZeros, text)
            assert any(n.startswith(f"{call}() to CUDA at tests/exporter/idiom_models.py:{line} ") for n in notes), notes
    assert _shims_restored()


def test_xnor_legacy_function_runs_and_is_captured_by_its_forward(tmp_path, in_repo_root, capsys):
    """Without a recogniser that converts BinActive + conv, the legacy Function reaches capture: its forward is
    traced (inference-exact), the parity check proves it and the report names the call site."""
    rc, out = _export(tmp_path, xnor_models, "tiny_xnor")
    assert rc == 0, _errors(capsys)
    report = json.loads((out / "report.json").read_text())
    assert report["parity"]["passed"]
    line = _line(xnor_models.BinConv2d.forward, "BinActive()(x)")
    assert report["export"]["notes"] == [f"legacy autograd Function BinActive called at "
                                         f"tests/exporter/xnor_models.py:{line} ran its forward (inference only)"]
    model = xnor_models.tiny_xnor()
    sess = ort.InferenceSession(str(out / "tiny_xnor.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = xnor_models.reference_forward(model, x).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()
    # `cmc-export verify` runs the same eager reference (legacy Function included) for the user's CI
    rc = main(["verify", str(out / "tiny_xnor.onnx"), str(tmp_path / "tiny_xnor.pth"), "--arch",
               "tests.exporter.xnor_models:tiny_xnor", "--input-shape", SHAPE_8,
               "--json", str(tmp_path / "v.json"), "--junit", str(tmp_path / "v.xml")])
    assert rc == 0 and json.loads((tmp_path / "v.json").read_text())["passed"] is True
    assert _shims_restored()


# ---------------------------------------------------------------- refused with the user's line

BLOCKERS = {
    # builder: (class whose source holds the line, text on that line, words the error must contain)
    "mean_center_in_forward": (idiom_models.MeanCenterInForward, "w.data.sub_",
                               ["changes parameter 'conv2.weight' in place", "`sub_`"]),
    "weight_org_in_model_forward": (idiom_models.WeightOrgInModelForward, "weight.data = torch.sign",
                                    ["replaces a parameter's values", "training loop"]),
    "data_dependent_branch": (idiom_models.DataDependentBranch, "if residual.data.max() > 1",
                              ["branches on tensor values", "torch.where", "torch.cond"]),
    "numpy_in_forward": (idiom_models.NumpyInForward, ".numpy()", ["NumPy", "torch operations"]),
    "cuda_factory": (idiom_models.CudaFactory, "device='cuda'", ["on CUDA", "device=x.device"]),
    "buggy_forward": (idiom_models.BuggyForward, "['b']", ["KeyError", "not in its input"]),
}


@pytest.mark.parametrize("builder", list(BLOCKERS))
def test_blocker_is_one_line_naming_file_line_and_fix(builder, tmp_path, in_repo_root, capsys):
    cls, text, words = BLOCKERS[builder]
    rc, out = _export(tmp_path, idiom_models, builder)
    errors = _errors(capsys)
    assert rc == 2 and len(errors) == 1, errors
    msg = errors[0]
    assert msg.startswith("cmc-export: error: ")
    assert f"tests/exporter/idiom_models.py:{_line(cls, text)} " in msg and text in msg, msg
    for w in words:
        assert w in msg, (w, msg)
    assert "--input-shape" not in msg
    assert not out.exists()
    assert _shims_restored()


def test_a_clamp_in_forward_that_settles_is_exported_in_its_settled_state(tmp_path, in_repo_root):
    """A clamp reaches its fixed point after one call (issue 17): exported, the line in the report; a
    centring that changes the weights on every call stays refused (``mean_center_in_forward`` above)."""
    import json

    rc, out = _export(tmp_path, idiom_models, "clamp_in_model_forward")
    assert rc == 0
    report = json.loads(next(out.glob("report.json")).read_text())
    line = _line(idiom_models.ClampInModelForward, "weight.data.clamp_")
    (note,) = report["state_updates"]
    assert f"tests/exporter/idiom_models.py:{line} " in note and "parameter 'conv2.weight'" in note
    assert report["parity"]["passed"] and _shims_restored()


def test_binarynet_layer_is_recognised_before_capture(tmp_path, in_repo_root):
    """BinaryNet's `input.data = sign(...)` / `weight.org` forward never reaches torch.export: the binary
    layer is recognised by what it computes and replaced by a BinaryConv first (plugins/binary_conv/research.py)."""
    import json

    rc, out = _export(tmp_path, idiom_models, "binarynet_style")
    assert rc == 0
    report = json.loads(next(out.glob("report.json")).read_text())
    assert report["export"]["custom_nodes"] == {"BinaryConv": 1} and report["parity"]["passed"]


def test_legacy_function_whose_forward_cannot_be_captured_names_the_line(tmp_path, in_repo_root, capsys):
    class NumpySign(torch.autograd.Function):
        def forward(self, x):
            return torch.from_numpy(np.sign(x.numpy()))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(NumpySign()(x))

    from cmc.exporter.errors import CmcError
    from cmc.exporter.onnx_export import export_onnx

    with pytest.raises(CmcError) as e:
        export_onnx(Net().eval(), torch.randn(1, 3, 8, 8))
    line = _line(NumpySign, "np.sign(x.numpy())")
    assert f"test_capture_idioms.py:{line} " in str(e.value) and "NumPy" in str(e.value)
    assert _shims_restored()


# ---------------------------------------------------------------- --input-shape is blamed only for shapes

def test_shape_mismatch_names_layer_and_line_and_blames_input_shape(tmp_path, in_repo_root, capsys):
    rc, out = _export(tmp_path, xnor_models, "tiny_xnor", shape="1x1x8x8")
    errors = _errors(capsys)
    assert rc == 2 and len(errors) == 1, errors
    line = _line(xnor_models.TinyXnorNet.forward, "x = self.xnor(x)")
    assert "input of shape 1x1x8x8" in errors[0] and "layer 'xnor.0' (Conv2d)" in errors[0]
    assert f"tests/exporter/xnor_models.py:{line} " in errors[0] and errors[0].endswith("check --input-shape")


def test_calibration_run_failure_names_the_line():
    from cmc.exporter.convert import convert_research_layers
    from cmc.exporter.errors import CmcError

    model = idiom_models.buggy_forward()
    with pytest.raises(CmcError) as e:
        convert_research_layers(model, torch.randn(1, 3, 8, 8))
    line = _line(idiom_models.BuggyForward, "['b']")
    assert f"idiom_models.py:{line} " in str(e.value) and "calibration run" in str(e.value)
