"""AdderConv: PyTorch op and ONNX function body against the contract's reference; the FP16 rule (half
activations, float32 weights and arithmetic); training semantics.

Accuracy is always measured on trained-AdderNet numerics (tests/plugins/adder_data.py: |w| up to 60,
post-ReLU inputs, a BatchNorm-like epilogue fitted to the layer's own output), after the epilogue."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cmc.plugins.adder_conv import AdderConv2d
from cmc.plugins.adder_conv.op import adder_conv
from cmc.plugins.adder_conv.reference import CONTRACT, reference
from cmc.plugins.registry import by_op_type

from . import adder_data
from .single_node import run_node

# (N, C, H, W, M, kh, kw, strides, pads, dilations, group, activation)
GRID = [
    (1, 3, 8, 8, 4, 3, 3, [1, 1], [1, 1, 1, 1], [1, 1], 1, 0),    # first layer: images
    (2, 5, 9, 7, 7, 3, 3, [2, 2], [0, 0, 0, 0], [1, 1], 1, 1),
    (3, 6, 10, 9, 4, 3, 2, [2, 1], [1, 0, 2, 1], [1, 2], 2, 0),   # asymmetric pads, dilation, groups
    (2, 33, 6, 6, 35, 1, 1, [1, 1], [0, 0, 0, 0], [1, 1], 1, 1),  # odd, non-multiple-of-32 channels
    (1, 4, 5, 5, 4, 3, 3, [1, 1], [2, 2, 2, 2], [1, 1], 4, 0),    # depthwise, pads wider than half the kernel
    (4, 64, 8, 8, 64, 3, 3, [1, 1], [1, 1, 1, 1], [1, 1], 1, 0),  # a ResNet-20 layer3 layer: K = 576 taps
]
IDS = [f"n{c[0]}c{c[1]}m{c[4]}k{c[5]}x{c[6]}g{c[10]}a{c[11]}" for c in GRID]


def _case(n, c, h, w, m, kh, kw, strides, pads, dilations, group, act, x_dtype=torch.float32):
    return adder_data.layer_case(n, c, h, w, m, kh, kw, strides, pads, dilations, group, act, x_dtype=x_dtype)


def _ref(x, w, scale, shift, a):
    return reference(x.double().numpy(), w.numpy(), scale.numpy(), shift.numpy(), **a)


def _op(x, w, scale, shift, a):
    return adder_conv(x, w, scale, shift, a["strides"], a["pads"], a["dilations"], a["group"], a["activation"], 0.2)


_rel = adder_data.rel_err


@pytest.mark.parametrize("case", GRID, ids=IDS)
def test_torch_op_matches_reference(case):
    x, w, scale, shift, a = _case(*case)
    assert _rel(_op(x, w, scale, shift, a), _ref(x, w, scale, shift, a)) <= CONTRACT.tol("float32")


@pytest.mark.parametrize("case", GRID, ids=IDS)
def test_onnx_function_body_matches_reference(case):
    x, w, scale, shift, a = _case(*case)
    y = run_node(by_op_type("AdderConv"), x.numpy(), w.numpy(), scale.numpy(), shift.numpy(), a)
    assert _rel(y, _ref(x, w, scale, shift, a)) <= CONTRACT.tol("float32")


# ---- FP16 = FP16 activations: X/Y half, W/scale/shift float32, float32 arithmetic -------------------
@pytest.mark.parametrize("case", GRID, ids=IDS)
def test_torch_op_float16_activations(case):
    x16, w, scale, shift, a = _case(*case, x_dtype=torch.float16)
    y = _op(x16, w, scale, shift, a)
    assert y.dtype == torch.float16 and w.dtype == torch.float32
    assert _rel(y, _ref(x16, w, scale, shift, a)) <= CONTRACT.tol("float16")
    # The rule exactly: the float32 computation on the (exactly) widened input, rounded once.
    assert torch.equal(y, _op(x16.float(), w, scale, shift, a).half())


@pytest.mark.parametrize("case", GRID, ids=IDS)
def test_onnx_function_body_float16_activations(case):
    x16, w, scale, shift, a = _case(*case, x_dtype=torch.float16)
    y = run_node(by_op_type("AdderConv"), x16.numpy(), w.numpy(), scale.numpy(), shift.numpy(), a)
    assert y.dtype == np.float16
    assert _rel(y, _ref(x16, w, scale, shift, a)) <= CONTRACT.tol("float16")


@pytest.mark.parametrize("case", GRID, ids=IDS)
def test_old_fp16_rule_fails_the_layer_tolerance(case):
    """The accuracy tests can fail: half weights and half 8-tap partial sums (the FP16 kernel before
    issue 10) miss the FP16 tolerance on every layer of the grid with trained-AdderNet numerics."""
    x16, w, scale, shift, a = _case(*case, x_dtype=torch.float16)
    old = adder_data.old_fp16_rule_adder(x16, w, scale, shift, a["strides"], a["pads"], a["dilations"], a["group"],
                                         a["activation"])
    assert _rel(old, _ref(x16, w, scale, shift, a)) > CONTRACT.tol("float16")


def test_half_weights_are_rejected():
    x16, w, scale, shift, a = _case(*GRID[2], x_dtype=torch.float16)
    with pytest.raises(ValueError, match="W must be float32"):
        _op(x16, w.half(), scale, shift, a)


def test_float64_is_computed_in_float64():
    x, w, scale, shift, a = _case(*GRID[5])
    y = adder_conv(x.double(), w, scale, shift, a["strides"], a["pads"], a["dilations"], a["group"], 0, 0.2)
    assert y.dtype == torch.float64
    assert _rel(y, _ref(x, w, scale, shift, a)) <= 1e-12


def test_model_half_keeps_adder_weights_and_epilogue_float32():
    torch.manual_seed(3)
    layer = AdderConv2d(8, 6, 3, padding=1, bias=True)
    with torch.no_grad():
        layer.weight.mul_(adder_data.W_MAX / layer.weight.abs().max())
        layer.scale.uniform_(0.01, 0.05)
        layer.shift.uniform_(-500, 500)
    net32 = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), layer)
    w0 = layer.weight.detach().clone()
    net16 = __import__("copy").deepcopy(net32).half()
    conv16, adder16 = net16[0], net16[1]
    assert conv16.weight.dtype == torch.float16  # the rest of the model does follow .half()
    for t in (adder16.weight, adder16.bias, adder16.scale, adder16.shift):
        assert t.dtype == torch.float32
    assert torch.equal(adder16.weight.detach(), w0)  # not rounded to half and back
    x = torch.randn(2, 3, 7, 7)
    h = conv16(x.half())
    y16 = adder16(h)
    assert y16.dtype == torch.float16
    assert torch.equal(y16, layer(h.float()).half())  # fp16 I/O, float32 inside: exactly the rule
    # training through it: gradients in float32 for the weights, half for the input
    hx = h.detach().requires_grad_(True)
    adder16(hx).float().sum().backward()
    assert adder16.weight.grad.dtype == torch.float32 and hx.grad.dtype == torch.float16
    # .double() still applies (the float64-exact path)
    assert net16.double()[1].weight.dtype == torch.float64


def test_float16_activation_gradients_are_float32_computations():
    x16, w, scale, shift, a = _case(*GRID[2], x_dtype=torch.float16)
    gy = torch.randn(_op(x16, w, scale, shift, a).shape, generator=torch.Generator().manual_seed(9))

    gy = gy.half().float()  # the gradient reaching a half output is half: give the float32 run the same

    def grads(x):
        xs, ws, ss, hs = (t.detach().clone().requires_grad_(True) for t in (x, w, scale, shift))
        (_op(xs, ws, ss, hs, a).float() * gy).sum().backward()
        return xs.grad, ws.grad, ss.grad, hs.grad

    got = grads(x16)
    want = grads(x16.float())
    assert got[0].dtype == torch.float16 and all(g.dtype == torch.float32 for g in got[1:])
    assert torch.equal(got[0], want[0].half())
    for g, wnt in zip(got[1:], want[1:]):
        assert torch.equal(g, wnt)  # the scale gradient's recomputed sum is float32, not rounded to half


def test_fake_kernel_and_export_with_half_activations():
    layer = AdderConv2d(3, 4, 3, padding=1).eval().half()
    ep = torch.export.export(layer, (torch.randn(2, 3, 8, 8).half(),))
    node = next(n for n in ep.graph.nodes if str(n.target) == "cmc.adder_conv.default")
    assert node.meta["val"].dtype == torch.float16
    assert node.args[1].meta["val"].dtype == torch.float32  # W


def test_padded_taps_contribute_abs_w():
    # A zero input: every tap (real or padded) sees x = 0, so the output is -sum|w| everywhere,
    # including at the borders where taps fall into the padding.
    w = torch.randn(2, 1, 3, 3)
    y = adder_conv(torch.zeros(1, 1, 4, 4), w, torch.ones(2), torch.zeros(2), [1, 1], [1, 1, 1, 1], [1, 1], 1, 0, 0.2)
    assert torch.allclose(y, -w.abs().sum(dim=(1, 2, 3)).view(1, 2, 1, 1).expand(1, 2, 4, 4))


def _research_grads(x, w, g_out, stride, padding):
    """The research code's backward, written out on the unfolded matrices."""
    m, c, k, _ = w.shape
    cols = F.unfold(x, k, padding=padding, stride=stride)  # [N, CK, L]
    xcol = cols.permute(1, 0, 2).reshape(c * k * k, -1)  # [CK, N*L]
    wcol = w.reshape(m, -1)
    go = g_out.reshape(g_out.shape[0], m, -1).permute(1, 0, 2).reshape(m, -1)  # [M, N*L]
    gw = ((xcol.unsqueeze(0) - wcol.unsqueeze(2)) * go.unsqueeze(1)).sum(2)
    gw = gw / gw.norm(p=2).clamp(min=1e-12) * math.sqrt(wcol.numel()) * 0.2
    gx = (-(xcol.unsqueeze(0) - wcol.unsqueeze(2)).clamp(-1, 1) * go.unsqueeze(1)).sum(0)  # [CK, N*L]
    gx = gx.reshape(c * k * k, x.shape[0], -1).permute(1, 0, 2)
    gx = F.fold(gx, x.shape[2:], k, padding=padding, stride=stride)
    return gx, gw.reshape(w.shape)


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0), (2, 1)])
def test_training_gradients_are_addernets(stride, padding):
    torch.manual_seed(1)
    layer = AdderConv2d(3, 5, 3, stride=stride, padding=padding)
    x = torch.randn(2, 3, 7, 7, requires_grad=True)
    y = layer(x)
    g = torch.randn_like(y)
    y.backward(g)
    gx_ref, gw_ref = _research_grads(x.detach(), layer.weight.detach(), g, stride, padding)
    assert torch.allclose(x.grad, gx_ref, atol=1e-4, rtol=1e-4)
    assert torch.allclose(layer.weight.grad, gw_ref, atol=1e-4, rtol=1e-4)
    # adaptive scale: ||gW|| = eta * sqrt(numel W)
    assert math.isclose(layer.weight.grad.norm().item(), 0.2 * math.sqrt(layer.weight.numel()), rel_tol=1e-4)


def test_weight_grad_is_full_precision_not_sign():
    w = torch.zeros(1, 1, 1, 1, requires_grad=True)
    x = torch.tensor([[[[0.5, -2.0]]]])
    y = adder_conv(x, w, torch.ones(1), torch.zeros(1), [1, 1], [0, 0, 0, 0], [1, 1], 1, 0, 0.0)
    y.sum().backward()
    assert torch.allclose(w.grad.flatten(), torch.tensor([0.5 - 2.0]))  # sum(x - w), not sum(sign)


def test_input_grad_is_hardtanh():
    w = torch.tensor([[[[0.0]]]])
    x = torch.tensor([[[[0.5, -3.0, 2.0]]]], requires_grad=True)
    adder_conv(x, w, torch.ones(1), torch.zeros(1), [1, 1], [0, 0, 0, 0], [1, 1], 1, 0, 0.0).sum().backward()
    assert torch.allclose(x.grad.flatten(), torch.tensor([-0.5, 1.0, -1.0]))  # HardTanh(w - x)


def test_bias_and_epilogue_gradients():
    torch.manual_seed(2)
    x = torch.randn(2, 2, 4, 4)
    w = torch.randn(3, 2, 3, 3)
    scale = (torch.rand(3) + 0.5).requires_grad_()
    shift = torch.randn(3, requires_grad=True)
    y = adder_conv(x, w, scale, shift, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0.2)
    y.sum().backward()
    acc = adder_conv(x, w, torch.ones(3), torch.zeros(3), [1, 1], [1, 1, 1, 1], [1, 1], 1, 0, 0.2)
    mask = ((acc * scale.detach().view(1, 3, 1, 1) + shift.detach().view(1, 3, 1, 1)) > 0).float()
    assert torch.allclose(shift.grad, mask.sum(dim=(0, 2, 3)))
    assert torch.allclose(scale.grad, (mask * acc).sum(dim=(0, 2, 3)), rtol=1e-5)


def test_survives_torch_export_as_one_node():
    layer = AdderConv2d(3, 4, 3, padding=1).eval()
    ep = torch.export.export(layer, (torch.randn(2, 3, 8, 8),))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert targets.count("cmc.adder_conv.default") == 1


def test_torch_compile_runs_the_op():
    layer = AdderConv2d(3, 4, 3, padding=1).eval()
    x = torch.randn(2, 3, 8, 8)
    compiled = torch.compile(layer, backend="eager", fullgraph=True)
    assert torch.allclose(compiled(x), layer(x))


def test_bad_geometry_is_rejected():
    with pytest.raises(ValueError):
        adder_conv(torch.randn(1, 3, 4, 4), torch.randn(2, 2, 3, 3), torch.ones(2), torch.zeros(2),
                   [1, 1], [0, 0, 0, 0], [1, 1], 1, 0, 0.2)


def test_half_model_exports_float32_adder_weights_and_runs_in_onnxruntime():
    """model.half() on a cmc AdderNet (epilogue already fused) exports X/Y float16 with W, scale and shift
    float32 initializers; onnxruntime runs the function body at FP16 activations within the tolerance."""
    import onnx
    import onnxruntime as ort

    from cmc.exporter.onnx_export import export_onnx

    x16, w, scale, shift, a = _case(*GRID[5], x_dtype=torch.float16)
    layer = AdderConv2d(64, 64, 3, padding=1)
    with torch.no_grad():
        layer.weight.copy_(w)
        layer.scale.copy_(scale)
        layer.shift.copy_(shift)
    res = export_onnx(layer.eval().half(), x16)
    inits = {i.name: i for i in res.model.graph.initializer}
    node = next(n for n in res.model.graph.node if n.op_type == "AdderConv")
    assert [inits[name].data_type for name in node.input[1:]] == [onnx.TensorProto.FLOAT] * 3
    sess = ort.InferenceSession(res.model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {res.input_names[0]: x16.numpy()})[0]
    assert y.dtype == np.float16
    assert _rel(y, _ref(x16, w, scale, shift, a)) <= CONTRACT.tol("float16")
