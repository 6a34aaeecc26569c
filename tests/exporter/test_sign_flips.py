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
    monkeypatch.setattr(verify_mod, "make_feeds", lambda name, shape, batches, seed=0, first=None: [{name: x.numpy()}])
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


# ---------------------------------------------------------------- the forms convert emits

def _shift_input_of(model: onnx.ModelProto, pick, delta: float) -> onnx.ModelProto:
    """The export with input 0 of the first node ``pick`` accepts moved by ``delta``."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    i = next(k for k, n in enumerate(g.node) if pick(n))
    src = g.node[i].input[0]
    g.initializer.append(onnx.numpy_helper.from_array(np.array(delta, np.float32), "cmc_test_delta"))
    g.node[i].input[0] = "cmc_test_shifted"
    g.node.insert(i, onnx.helper.make_node("Add", [src, "cmc_test_delta"], ["cmc_test_shifted"]))
    return m


def _converted_export(user, x):
    from cmc.exporter.convert import convert_research_layers
    from cmc.exporter.sign_flips import annotate_binarization_points

    converted, info = convert_research_layers(user, x)
    res = export_onnx(pack_for_deployment(converted).eval(), x)
    return res.model, info, annotate_binarization_points


class _SignModule(nn.Module):
    def forward(self, x):
        return torch.sign(x)


class _QuantConv(nn.Conv2d):
    """sign(W) * mean|W| weights, input used as it is (a sign module in front binarizes it)."""

    def forward(self, x):
        a = self.weight.abs().mean((1, 2, 3), keepdim=True)
        return nn.functional.conv2d(x, torch.sign(self.weight) * a, self.bias, self.stride, self.padding)


class _SignThenConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.act = _SignModule()
        self.conv = _QuantConv(6, 5, 3, padding=1)

    def forward(self, x):
        return self.conv(self.act(x))


class _BinLinear(nn.Linear):
    def forward(self, x):
        return nn.functional.linear(torch.sign(x), torch.sign(self.weight), self.bias)


class _FlatLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = _BinLinear(6 * 4 * 4, 7)

    def forward(self, x):
        return self.fc(x.flatten(1))


class _SignInParent(nn.Module):
    """XNOR-Net's shape: BatchNorm, a sign in the parent's forward, a conv with two-valued weights."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(6)
        self.conv = nn.Conv2d(6, 5, 3, padding=1)
        with torch.no_grad():
            self.bn.running_mean.fill_(0.5)
            self.conv.weight.copy_(torch.sign(self.conv.weight) * 0.25)

    def forward(self, x):
        return self.conv(torch.sign(self.bn(x)))


def _near_zero_input():
    torch.manual_seed(0)
    x = torch.randn(3, 6, 4, 4)
    x[0, 2, 3, 3], x[1, 5, 0, 3], x[2, 0, 1, 1] = 1e-9, 2e-9, 1.5e-9
    return x


@pytest.mark.parametrize("case", ["absorbed sign module", "linear as 1x1", "sign in the parent's forward"])
def test_rounding_flips_are_mapped_for_every_emitted_form(case):
    """Each binarization point must be compared with the PyTorch value it really takes the sign of;
    without the convert step's record, a rounding flip would be reported as genuine divergence."""
    x = _near_zero_input()
    if case == "absorbed sign module":
        user, pick, key = _SignThenConv().eval(), (lambda n: n.op_type == "BinaryConv"), "act"
    elif case == "linear as 1x1":
        user, pick, key = _FlatLinear().eval(), (lambda n: n.op_type == "BinaryConv"), "fc"
    else:
        user, pick, key = _SignInParent().eval(), (lambda n: n.op_type == "Sign"), "bn:output"
        x[0, 2, 3, 3], x[1, 5, 0, 3], x[2, 0, 1, 1] = 0.5, 0.5, 0.5  # BatchNorm output exactly 0 there
    onnx_model, info, annotate = _converted_export(user, x)
    assert sum(n.op_type == "BinaryConv" for n in onnx_model.graph.node) == 1
    name = onnx_model.graph.output[0].name
    ref = _torch_out(user, x)
    shifted = _shift_input_of(onnx_model, pick, -4e-9)

    if case != "linear as 1x1":  # (there the scope finds the linear layer; its [N, F] input is reshaped)
        blind = attribute_flips(user, shifted, {"input": x.numpy()}, {name: ref})
        # The scope alone points at a value that is already +-1 (or at none): the flips stay unexplained.
        assert blind.genuine is not None or blind.forced == 0

    assert annotate(onnx_model, info) >= 1
    shifted = _shift_input_of(onnx_model, pick, -4e-9)
    rep = attribute_flips(user, shifted, {"input": x.numpy()}, {name: ref})
    assert rep.genuine is None and rep.forced == 3, rep.to_dict()
    assert rep.outputs[0]["max_abs_err"] <= 1e-5 * rep.outputs[0]["max_abs_ref"]
    binarizing = [n for n in shifted.graph.node if pick(n)][0]
    assert {p.key: p.value for p in binarizing.metadata_props}["cmc.binarized_value"] == key

    bad = attribute_flips(user, _shift_input_of(onnx_model, pick, -0.3), {"input": x.numpy()}, {name: ref})
    assert bad.genuine is not None and bad.genuine["module"] == key
