"""Kept float layers do not recompute their weights on every inference (issue 17, item 8).

A layer that stays the user's own ops and derives its effective weight from its parameters in forward
(weight standardisation, rotation by learned matrices + sign binarization, DoReFa quantization:
``samples.weight_transforms``) must leave no node in the exported ONNX whose inputs all derive from
initializers alone; the folded constants must give the same outputs, and com.cmc nodes and their
function bodies stay as they are.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from cmc.exporter import onnx_export
from cmc.exporter.cli import main
from cmc.plugins.adder_conv import AdderConv2d
from cmc.plugins.registry import by_op_type
from samples.weight_transforms import StandardizedConv2d, weight_transform_net

from .parity import assert_onnx_matches

ARCH = "samples.weight_transforms:WeightTransformNet"


def parameter_only_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes whose every input derives from initializers (or Constant nodes) only: computed from
    parameters alone, the same on every inference. Written apart from the exporter's own pass."""
    graph_inputs = {i.name for i in model.graph.input}
    known = {t.name for t in model.graph.initializer if t.name not in graph_inputs}
    found = []
    for node in model.graph.node:
        if node.op_type == "Constant":
            known.update(node.output)
            continue
        inputs = [i for i in node.input if i]
        if inputs and all(i in known for i in inputs):
            found.append(node)
            known.update(node.output)
    return found


def _no_folding(monkeypatch):
    monkeypatch.setattr(onnx_export, "fold_parameter_subgraphs", lambda model: {"nodes": 0, "constants": 0, "ops": {}},
                        raising=False)  # (absent before the pass existed: the test then fails on its asserts)


def _ort(model: onnx.ModelProto, x: torch.Tensor) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """The sample exported with cmc-export as shipped, and the same export with folding switched off."""
    tmp = tmp_path_factory.mktemp("fold")
    model = weight_transform_net()
    ckpt = tmp / "wt.pth"
    torch.save(model.state_dict(), ckpt)
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(_repo_root())   # --arch imports samples.* from the repository root
        for name in ("folded", "unfolded"):
            if name == "unfolded":
                _no_folding(mp)
            rc = main([str(ckpt), "--arch", ARCH, "--input-shape", "1x3x32x32", "-o", str(tmp / name)])
            assert rc == 0
            out[name] = (onnx.load(str(tmp / name / "wt.onnx")), json.loads((tmp / name / "report.json").read_text()))
    return model, out


def _repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[2]


def test_kept_layers_hold_no_parameter_only_node(exports):
    model, out = exports
    folded, report = out["folded"]
    unfolded, _ = out["unfolded"]
    before = parameter_only_nodes(unfolded)
    ops = {n.op_type for n in before}
    # what the layers compute from their weights, as exported without folding
    assert {"MatMul", "ReduceMean", "Sign", "Abs", "Sqrt", "Tanh", "Round"} <= ops, ops
    assert parameter_only_nodes(folded) == [], [n.op_type for n in parameter_only_nodes(folded)]
    # the report counts what went, and says so in the export notes
    assert report["export"]["parameter_folding"]["nodes"] == len(before)
    assert any(n.startswith(f"folded {len(before)} parameter-only node(s) (") for n in report["export"]["notes"])
    assert report["parity"]["passed"]


def test_folding_changes_no_output_bit(exports):
    """The constants are what onnxruntime computed from the parameters on each inference before."""
    model, out = exports
    x = torch.randn(7, 3, 32, 32, generator=torch.Generator().manual_seed(11))
    for a, b in zip(_ort(out["folded"][0], x), _ort(out["unfolded"][0], x)):
        assert np.array_equal(a, b)
    assert_onnx_matches(model, out["folded"][0], x, tol=1e-4)


class _AdderThenStandardized(nn.Module):
    """A com.cmc node next to a kept layer that standardises its weights."""

    def __init__(self):
        super().__init__()
        self.adder = AdderConv2d(3, 64, 3, padding=1)
        self.bn = nn.BatchNorm2d(64)
        self.ws = StandardizedConv2d(64, 64, 3, padding=1)

    def forward(self, x):
        return self.ws(torch.relu(self.bn(self.adder(x))))


def test_cmc_nodes_and_function_bodies_are_left_alone(monkeypatch):
    torch.manual_seed(0)
    model = _AdderThenStandardized().eval()
    x = torch.randn(1, 3, 16, 16)
    res = onnx_export.export_onnx(model, x)
    _no_folding(monkeypatch)
    plain = onnx_export.export_onnx(model, x)
    assert res.parameter_folding["nodes"] == len(parameter_only_nodes(plain.model)) > 0
    assert parameter_only_nodes(res.model) == []
    cmc = [n for n in res.model.graph.node if n.domain == "com.cmc"]
    assert [n.SerializeToString() for n in cmc] == \
        [n.SerializeToString() for n in plain.model.graph.node if n.domain == "com.cmc"]
    assert len(cmc) == 1 and [f.SerializeToString() for f in res.model.functions] == \
        [by_op_type("AdderConv")["body"](extra_attributes=onnx_export.PLUGIN_ATTRS).SerializeToString()]
    xb = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    for a, b in zip(_ort(res.model, xb), _ort(plain.model, xb)):
        assert np.array_equal(a, b)


def test_a_sub_graph_onnxruntime_cannot_evaluate_is_kept_and_said(monkeypatch):
    from cmc.exporter import param_folding

    def refuse(proto):
        raise RuntimeError("no kernel for this op")

    monkeypatch.setattr(param_folding, "_evaluate", refuse)
    torch.manual_seed(0)
    model = _AdderThenStandardized().eval()
    res = onnx_export.export_onnx(model, torch.randn(1, 3, 16, 16))
    kept = parameter_only_nodes(res.model)
    assert kept and res.parameter_folding["nodes"] == 0
    assert res.notes == [f"{len(kept)} parameter-only node(s) kept: onnxruntime could not evaluate them "
                         "(RuntimeError: no kernel for this op)"]
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(_ort(res.model, x)[0] - ref).max() <= 1e-4 * np.abs(ref).max()
