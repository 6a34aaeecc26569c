"""AdderConv: PyTorch op and ONNX function body against the contract's reference; training semantics."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cmc.plugins.adder_conv import AdderConv2d
from cmc.plugins.adder_conv.op import adder_conv
from cmc.plugins.adder_conv.reference import CONTRACT, reference
from cmc.plugins.registry import by_op_type

from .single_node import run_node

# (N, C, H, W, M, kh, kw, strides, pads, dilations, group, activation)
GRID = [
    (1, 3, 8, 8, 4, 3, 3, [1, 1], [1, 1, 1, 1], [1, 1], 1, 0),
    (2, 5, 9, 7, 7, 3, 3, [2, 2], [0, 0, 0, 0], [1, 1], 1, 1),
    (3, 6, 10, 9, 4, 3, 2, [2, 1], [1, 0, 2, 1], [1, 2], 2, 0),   # asymmetric pads, dilation, groups
    (2, 33, 6, 6, 35, 1, 1, [1, 1], [0, 0, 0, 0], [1, 1], 1, 1),  # odd, non-multiple-of-32 channels
    (1, 4, 5, 5, 4, 3, 3, [1, 1], [2, 2, 2, 2], [1, 1], 4, 0),    # depthwise, pads wider than half the kernel
]


def _case(n, c, h, w, m, kh, kw, strides, pads, dilations, group, act, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g)
    wt = torch.randn(m, c // group, kh, kw, generator=g)
    scale = torch.rand(m, generator=g) + 0.5
    shift = torch.randn(m, generator=g)
    attrs = dict(kernel_shape=[kh, kw], strides=strides, pads=pads, dilations=dilations, group=group, activation=act)
    return x, wt, scale, shift, attrs


def _rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.mark.parametrize("case", GRID)
def test_torch_op_matches_reference(case):
    x, w, scale, shift, a = _case(*case)
    y = adder_conv(x, w, scale, shift, a["strides"], a["pads"], a["dilations"], a["group"], a["activation"], 0.2)
    assert _rel(y.numpy(), reference(x.numpy(), w.numpy(), scale.numpy(), shift.numpy(), **a)) < 1e-5


@pytest.mark.parametrize("case", GRID)
def test_onnx_function_body_matches_reference(case):
    x, w, scale, shift, a = _case(*case)
    y = run_node(by_op_type("AdderConv"), x.numpy(), w.numpy(), scale.numpy(), shift.numpy(), a)
    assert _rel(y, reference(x.numpy(), w.numpy(), scale.numpy(), shift.numpy(), **a)) < 1e-5


def test_onnx_function_body_float16_within_contract_tolerance():
    x, w, scale, shift, a = _case(*GRID[2])
    y = run_node(by_op_type("AdderConv"), x.numpy().astype(np.float16), w.numpy().astype(np.float16),
                 scale.numpy(), shift.numpy(), a)
    assert y.dtype == np.float16
    ref = reference(x.numpy().astype(np.float16), w.numpy().astype(np.float16), scale.numpy(), shift.numpy(), **a)
    assert _rel(y, ref) <= CONTRACT.tol("float16")


def test_torch_op_float16_on_cpu_within_contract_tolerance():
    x, w, scale, shift, a = _case(*GRID[2])
    y = adder_conv(x.half(), w.half(), scale, shift, a["strides"], a["pads"], a["dilations"], a["group"], a["activation"], 0.2)
    assert y.dtype == torch.float16
    ref = reference(x.half().numpy(), w.half().numpy(), scale.numpy(), shift.numpy(), **a)
    assert _rel(y.float().numpy(), ref) <= CONTRACT.tol("float16")


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
