"""BatchNorm/ReLU folding into the epilogue is exact; `cmc-export verify` writes JSON + JUnit verdicts."""
import json
import xml.etree.ElementTree as ET

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from cmc.exporter.cli import main
from cmc.exporter.convert import pack_for_deployment
from cmc.exporter.onnx_export import export_onnx
from cmc.plugins.adder_conv import AdderConv2d
from cmc.plugins.binary_conv import BinaryConv2d


def _with_bn(layer, channels, relu):
    bn = torch.nn.BatchNorm2d(channels)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(channels, generator=g) * 10)
        bn.running_var.copy_(torch.rand(channels, generator=g) * 50 + 0.1)
        bn.weight.copy_(torch.randn(channels, generator=g))
        bn.bias.copy_(torch.randn(channels, generator=g))
    mods = [layer, bn] + ([torch.nn.ReLU()] if relu else [])
    return torch.nn.Sequential(*mods).eval()


def _run(model_proto, x):
    sess = ort.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("kind", ["adder", "binary"])
def test_bn_fold_is_exact(kind, relu):
    torch.manual_seed(0)
    layer = AdderConv2d(6, 10, 3, padding=1, bias=True) if kind == "adder" else BinaryConv2d(40, 10, 3, padding=1, bias=True)
    model = pack_for_deployment(_with_bn(layer, 10, relu))
    x = torch.randn(4, layer.in_channels, 7, 7)
    folded = export_onnx(model, x, fold_epilogues=True)
    plain = export_onnx(model, x, fold_epilogues=False)
    types = [n.op_type for n in folded.model.graph.node]
    assert "BatchNormalization" not in types and "Relu" not in types  # one node instead of three
    assert [n.op_type for n in plain.model.graph.node if n.op_type in ("BatchNormalization", "Relu")]
    assert folded.folded and folded.folded[0]["absorbed"] == ["BatchNormalization"] + (["Relu"] if relu else [])
    a, b = _run(folded.model, x.numpy()), _run(plain.model, x.numpy())
    # Exact in real arithmetic; float32 rounding of the folded scale/shift only.
    assert np.abs(a - b).max() <= 1e-6 * np.abs(b).max()
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(a - ref).max() <= 1e-5 * np.abs(ref).max()


def test_bn_with_a_second_consumer_is_not_folded():
    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = AdderConv2d(3, 4, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.a(x)
            return self.bn(y) + y  # the raw output is needed too: folding would be wrong

    res = export_onnx(Branchy().eval(), torch.randn(2, 3, 6, 6))
    assert res.folded == []


@pytest.fixture(scope="module")
def exported(tmp_path_factory, checkpoints):
    import os

    from tests.conftest import ROOT

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        out = tmp_path_factory.mktemp("exp")
        assert main([str(checkpoints["bnn_nin"]), "--arch", "samples.bnn_nin:nin", "-o", str(out), "--no-verify"]) == 0
    finally:
        os.chdir(cwd)
    return out / "bnn_nin.onnx", checkpoints["bnn_nin"]


def test_verify_subcommand_passes_and_writes_json_and_junit(exported, tmp_path, in_repo_root):
    onnx_path, ckpt = exported
    j, x = tmp_path / "v.json", tmp_path / "v.xml"
    rc = main(["verify", str(onnx_path), str(ckpt), "--arch", "samples.bnn_nin:nin", "--json", str(j), "--junit", str(x)])
    assert rc == 0
    verdict = json.loads(j.read_text())
    assert verdict["passed"] is True and [c["batch"] for c in verdict["cases"]] == [1, 5]
    suite = ET.parse(x).getroot().find("testsuite")
    # Per batch: PyTorch vs the unpacked form, and the packed chains vs that form (bit for bit).
    assert suite.get("tests") == "4" and suite.get("failures") == "0"
    assert verdict["packed_equals_unpacked"]["identical"] is True


def test_verify_subcommand_fails_on_a_tampered_artifact(exported, tmp_path, in_repo_root, capsys):
    onnx_path, ckpt = exported
    m = onnx.load(str(onnx_path))
    node = [n for n in m.graph.node if n.op_type.startswith("BinaryConv")][2]  # BinaryConv or a packed variant
    init = next(t for t in m.graph.initializer if t.name == node.input[3])  # its shift
    arr = onnx.numpy_helper.to_array(init) + 5.0
    init.CopyFrom(onnx.numpy_helper.from_array(arr.astype(np.float32), init.name))
    bad = tmp_path / "tampered.onnx"
    onnx.save(m, str(bad))
    j, x = tmp_path / "v.json", tmp_path / "v.xml"
    rc = main(["verify", str(bad), str(ckpt), "--arch", "samples.bnn_nin:nin", "--json", str(j), "--junit", str(x)])
    assert rc == 3
    verdict = json.loads(j.read_text())
    assert verdict["passed"] is False
    layer = node.name.split("/")[0]  # e.g. tnn_bin.5.tnn_bin_conv
    block = layer.rsplit(".", 1)[0]
    assert verdict["first_divergence"]["module"] == f"{block}.bn"
    assert ET.parse(x).getroot().find("testsuite").get("failures") == "2"
    assert "parity check failed" in capsys.readouterr().err.splitlines()[-1]
