"""Rounding flips at binarization points are told apart from real divergence (cmc.exporter.sign_flips)."""
import numpy as np
import onnx
import pytest
import torch
from torch import nn

from cmc.exporter.convert import pack_for_deployment
from cmc.exporter.onnx_export import export_onnx
from cmc.exporter.sign_flips import attribute_flips, binarization_points
from cmc.exporter.verify import verify
from cmc.plugins.binary_conv import BinaryConv2d


class TwoBinary(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = BinaryConv2d(8, 16, 3, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(16)
        self.conv2 = BinaryConv2d(16, 4, 3, padding=1)

    def forward(self, x):
        return self.conv2(self.bn(self.conv1(x)))


def _model_and_input():
    torch.manual_seed(0)
    m = TwoBinary()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-3, 3)
        m.bn.running_var.uniform_(1, 4)
    m = pack_for_deployment(m.eval())
    x = torch.randn(3, 8, 6, 6)
    # A few inputs within rounding of 0: their sign is what an implementation's rounding makes it.
    x[0, 2, 3, 3], x[1, 5, 0, 4], x[2, 0, 5, 5] = 1e-9, 2e-9, 1.5e-9
    return m, x


def _shift_binarized_input(model: onnx.ModelProto, delta: float) -> onnx.ModelProto:
    """The export with conv1's binarized input moved by ``delta`` (a stand-in for other rounding)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    i = next(k for k, n in enumerate(g.node) if n.op_type == "BinaryConv")
    src = g.node[i].input[0]
    g.initializer.append(onnx.numpy_helper.from_array(np.array(delta, np.float32), "cmc_test_delta"))
    g.node[i].input[0] = "cmc_test_shifted"
    g.node.insert(i, onnx.helper.make_node("Add", [src, "cmc_test_delta"], ["cmc_test_shifted"]))
    return m


def _torch_out(m, x):
    with torch.no_grad():
        return m(x).numpy()


def test_points_are_the_binarized_inputs():
    m, x = _model_and_input()
    res = export_onnx(m, x)
    pts = binarization_points(res.model)
    assert len(pts) == 2 and all(p.kind == "binarize" for p in pts)


def test_rounding_flip_is_forced_and_the_rest_must_agree():
    m, x = _model_and_input()
    onnx_model = _shift_binarized_input(export_onnx(m, x).model, -4e-9)
    name = onnx_model.graph.output[0].name
    ref = _torch_out(m, x)
    rep = attribute_flips(m, onnx_model, {"input": x.numpy()}, {name: ref})
    assert rep.genuine is None
    assert rep.forced == 3
    assert rep.largest_forced_rel < 1e-8
    assert rep.outputs[0]["max_abs_err"] <= 1e-5 * rep.outputs[0]["max_abs_ref"]


@pytest.mark.parametrize("delta, passes", [(-4e-9, True), (-0.3, False)])
def test_verify_forces_only_rounding_flips(monkeypatch, delta, passes):
    import cmc.exporter.verify as verify_mod

    m, x = _model_and_input()
    onnx_model = _shift_binarized_input(export_onnx(m, x).model, delta)
    monkeypatch.setattr(verify_mod, "make_feeds", lambda name, shape, batches, seed=0: [{name: x.numpy()}])
    v = verify(m, onnx_model, tuple(x.shape), batches=(3,))
    assert v.polygraphy_passed is False  # the plain comparison sees the flips
    assert v.passed is passes
    if passes:
        assert v.cases[0]["passed_with_rounding_flips_forced"] and v.rounding_flips() == 3
        assert v.worst() <= 1e-5
    else:
        assert v.cases[0]["sign_flips"]["genuine_divergence"]["module"] == "conv1"


def test_real_divergence_is_not_explained():
    m, x = _model_and_input()
    onnx_model = _shift_binarized_input(export_onnx(m, x).model, -0.3)
    name = onnx_model.graph.output[0].name
    rep = attribute_flips(m, onnx_model, {"input": x.numpy()}, {name: _torch_out(m, x)})
    assert rep.genuine is not None and rep.genuine["module"] == "conv1"
    assert rep.genuine["count"] > 3


def test_a_wrong_weight_bit_still_fails_after_forcing():
    m, x = _model_and_input()
    onnx_model = _shift_binarized_input(export_onnx(m, x).model, -4e-9)
    # Flip one weight bit of conv2: not a rounding effect, must stay visible.
    init = next(t for t in onnx_model.graph.initializer
                if onnx.numpy_helper.to_array(t).dtype == np.int32 and onnx.numpy_helper.to_array(t).shape[0] == 4)
    w = onnx.numpy_helper.to_array(init).copy()
    w[0, 1, 1, 0] ^= 1
    init.CopyFrom(onnx.numpy_helper.from_array(w, init.name))
    name = onnx_model.graph.output[0].name
    rep = attribute_flips(m, onnx_model, {"input": x.numpy()}, {name: _torch_out(m, x)})
    assert rep.genuine is None and rep.forced == 3
    assert rep.outputs[0]["max_abs_err"] > 1e-3 * rep.outputs[0]["max_abs_ref"]
