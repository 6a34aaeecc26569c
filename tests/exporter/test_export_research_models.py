"""Acceptance: research-code models export with one command and onnxruntime matches PyTorch."""
import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from cmc.exporter.cli import main
from cmc.exporter.packed_chains import compare_with_unpacked, unpack_chains
from cmc.plugins.binary_conv.reference import VARIANTS
from samples import addernet_resnet20, bnn_nin, spconv_resnet

from .parity import assert_onnx_matches

CASES = {
    # name: (arch, builder, research layer class, expected com.cmc op, tolerance)
    "addernet_resnet20": ("samples.addernet_resnet20:resnet20", addernet_resnet20.resnet20, addernet_resnet20.adder2d, "AdderConv", 2e-3),
    "bnn_nin": ("samples.bnn_nin:nin", bnn_nin.nin, bnn_nin.Conv2d_Q, "BinaryConv", 1e-4),
    "spconv_resnet20": ("samples.spconv_resnet:sp_resnet20", spconv_resnet.sp_resnet20, None, None, 1e-4),
}


def _user_model(name, ckpt):
    arch, builder, *_ = CASES[name]
    model = builder()
    sd = torch.load(ckpt, weights_only=True)
    sd = sd.get("state_dict", sd)
    model.load_state_dict({k.removeprefix("module."): v for k, v in sd.items()})
    return model.eval()


@pytest.mark.parametrize("name", list(CASES))
def test_export_matches_pytorch_at_batch_1_and_5(name, checkpoints, tmp_path, in_repo_root):
    arch, _, layer_cls, op, tol = CASES[name]
    out = tmp_path / "out"
    rc = main([str(checkpoints[name]), "--arch", arch, "--input-shape", "1x3x32x32", "--to", "onnx", "-o", str(out)])
    assert rc == 0
    onnx_path = out / f"{name}.onnx"
    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model, full_check=True)

    user = _user_model(name, checkpoints[name])
    n_research = sum(isinstance(m, layer_cls) for m in user.modules()) if layer_cls else 0
    # BinaryConvs between binary layers pass packed bits on (packed chains): their packed op variants.
    family = {op, *VARIANTS} if op == "BinaryConv" else {op}
    cmc_nodes = [n for n in model.graph.node if n.domain == "com.cmc"]
    assert len(cmc_nodes) == n_research and all(n.op_type in family for n in cmc_nodes)
    if op:
        assert {(f.domain, f.name) for f in model.functions} == {("com.cmc", n.op_type) for n in cmc_nodes}

    # PyTorch against the unpacked form (where rounding flips can be attributed); the packed model must
    # reproduce that form bit for bit.
    unpacked = unpack_chains(model)
    for batch in (1, 5):
        x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch + 100))
        assert_onnx_matches(user, unpacked, x, tol)
        assert compare_with_unpacked(model, unpacked, [{"input": x.numpy()}])["identical"]

    report = json.loads((out / "report.json").read_text())
    assert report["parity"]["passed"] is True
    assert len(report["converted"]) == n_research
    assert sum(report["export"]["custom_nodes"].values()) == n_research
    assert set(report["export"]["custom_nodes"]) <= family
    assert report["artifacts"][f"{name}.onnx"]["bytes"] == onnx_path.stat().st_size


def test_console_script_and_polygraphy_run(checkpoints, tmp_path, in_repo_root):
    exe = shutil.which("cmc-export")
    assert exe, "cmc-export console script is not installed"
    out = tmp_path / "o"
    r = subprocess.run([exe, str(checkpoints["bnn_nin"]), "--arch", "samples.bnn_nin:nin", "--input-shape",
                        "1x3x32x32", "--to", "onnx", "-o", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "cmc-export: ok" in r.stdout
    poly = shutil.which("polygraphy")
    assert poly, "polygraphy is a dependency and must be on PATH"
    r = subprocess.run([poly, "run", str(out / "bnn_nin.onnx"), "--onnxrt"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "PASSED" in r.stdout + r.stderr


def test_binary_weights_are_compact_in_the_onnx_file(checkpoints, tmp_path, in_repo_root):
    out = tmp_path / "o"
    assert main([str(checkpoints["bnn_nin"]), "--arch", "samples.bnn_nin:nin", "-o", str(out), "--no-verify"]) == 0
    model = onnx.load(str(out / "bnn_nin.onnx"))
    user = _user_model("bnn_nin", checkpoints["bnn_nin"])
    float_bytes = sum(m.weight.numel() * 4 for m in user.modules() if isinstance(m, bnn_nin.Conv2d_Q))
    inits = {t.name: t for t in model.graph.initializer}
    packed_bytes = sum(onnx.numpy_helper.to_array(inits[n.input[1]]).nbytes
                       for n in model.graph.node if n.op_type in {"BinaryConv", *VARIANTS})
    assert packed_bytes * 4 <= float_bytes


def test_pt2_program_exports(tmp_path, in_repo_root):
    from cmc.plugins.adder_conv import AdderConv2d

    model = torch.nn.Sequential(AdderConv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU()).eval()
    ep = torch.export.export(model, (torch.randn(2, 3, 16, 16),),
                             dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    path = tmp_path / "m.pt2"
    torch.export.save(ep, str(path))
    out = tmp_path / "o"
    assert main([str(path), "-o", str(out), "--allow-pickle"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["export"]["custom_nodes"] == {"AdderConv": 1}
    assert report["export"]["dynamic_batch"] is True
    assert report["export"]["folded_epilogues"][0]["absorbed"] == ["BatchNormalization", "Relu"]


def test_fixed_batch_model_falls_back_to_static_batch(tmp_path, in_repo_root):
    path = tmp_path / "fixed.pth"
    from tests.exporter import user_models

    torch.save(user_models.fixed_batch().state_dict(), path)
    out = tmp_path / "o"
    assert main([str(path), "--arch", "tests.exporter.user_models:fixed_batch", "--input-shape", "2x3x8x8", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["export"]["dynamic_batch"] is False
    assert any("static batch" in n for n in report["export"]["notes"])
    assert [c["batch"] for c in report["parity"]["cases"]] == [2]


def test_layer_without_cmc_operator_exports_as_exact_float_ops(tmp_path, in_repo_root):
    from tests.exporter import user_models

    path = tmp_path / "ternary.pth"
    torch.save(user_models.tiny_ternary().state_dict(), path)
    out = tmp_path / "o"
    assert main([str(path), "--arch", "tests.exporter.user_models:tiny_ternary", "--input-shape", "1x3x8x8", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["parity"]["passed"] and report["export"]["custom_nodes"] == {}
    assert all("not binary" in c["to"] for c in report["converted"])  # exact float convs, reported


def test_general_case_odd_channels_split_concat_two_outputs(tmp_path, in_repo_root):
    from tests.exporter import user_models

    model = user_models.odd_split_concat()
    path = tmp_path / "odd.pth"
    torch.save(torch.nn.DataParallel(model).state_dict(), path)
    out = tmp_path / "o"
    assert main([str(path), "--arch", "tests.exporter.user_models:odd_split_concat", "--input-shape", "1x3x12x12",
                 "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["export"]["custom_nodes"] == {"AdderConv": 2, "BinaryConv": 1}
    sess = ort.InferenceSession(str(out / "odd.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(4, 3, 12, 12)
    with torch.no_grad():
        refs = model(x)
    outs = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    assert len(outs) == 2
    for got, ref in zip(outs, refs):
        assert np.abs(got - ref.numpy()).max() <= 2e-3 * np.abs(ref.numpy()).max()
