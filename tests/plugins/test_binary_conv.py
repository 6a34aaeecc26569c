"""BinaryConv: packing layout, PyTorch ops and ONNX function body against the contract; BNN training semantics."""
import numpy as np
import pytest
import torch

from cmc.plugins.binary_conv import BinaryConv2d
from cmc.plugins.binary_conv import reference as ref
from cmc.plugins.binary_conv.op import binarize, binary_conv, binary_conv_train, pack_weights, unpack_weights
from cmc.plugins.registry import by_op_type

from .single_node import run_node

GRID = [
    # (N, C, H, W, M, kh, kw, strides, pads, dilations, group, binarize_input, activation)
    (1, 8, 6, 6, 4, 3, 3, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0),
    (2, 33, 7, 5, 5, 3, 3, [2, 2], [1, 0, 2, 1], [1, 1], 1, 1, 1),   # 33 channels: two words, tail bits
    (3, 64, 5, 5, 6, 1, 1, [1, 1], [0, 0, 0, 0], [1, 1], 2, 1, 0),   # groups
    (2, 6, 9, 9, 6, 3, 3, [1, 2], [2, 2, 2, 2], [2, 1], 6, 1, 0),    # depthwise, dilation
    (2, 40, 6, 6, 3, 3, 3, [1, 1], [1, 1, 1, 1], [1, 1], 1, 0, 1),   # float input, binary weights
]


def _case(n, c, h, w, m, kh, kw, strides, pads, dilations, group, bin_in, act, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g)
    x[0, 0, :2, :2] = 0.0  # exact zeros must binarize to +1
    wt = torch.randn(m, c // group, kh, kw, generator=g)
    scale = torch.rand(m, generator=g) + 0.5
    shift = torch.randn(m, generator=g)
    attrs = dict(kernel_shape=[kh, kw], strides=strides, pads=pads, dilations=dilations, group=group,
                 binarize_input=bin_in, activation=act)
    return x, wt, scale, shift, attrs


def _rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-12))


def test_binarize_zero_is_plus_one():
    assert binarize(torch.tensor([0.0, -0.0, -1e-30, 2.0])).tolist() == [1.0, 1.0, -1.0, 1.0]
    assert ref.binarize([0.0, -1e-30]).tolist() == [1.0, -1.0]


def test_packing_layout_is_the_contracts():
    w = -torch.ones(2, 35, 1, 1)
    w[0, 0] = 1.0    # word 0 bit 0
    w[0, 31] = 0.0   # 0 binarizes to +1: word 0 bit 31 (the int32 sign bit)
    w[1, 33] = 2.0   # word 1 bit 1
    p = pack_weights(w)
    assert p.dtype == torch.int32 and tuple(p.shape) == (2, 1, 1, 2)
    words = p.numpy().view(np.uint32)
    assert words[0, 0, 0].tolist() == [(1 << 0) | (1 << 31), 0]
    assert words[1, 0, 0].tolist() == [0, 1 << 1]  # channels 35..63 are tail bits: zero
    assert (ref.pack_weights(w.numpy()) == p.numpy()).all()


@pytest.mark.parametrize("cg", [1, 7, 32, 33, 64, 100])
def test_pack_unpack_round_trip(cg):
    w = torch.randn(3, cg, 3, 2)
    p = pack_weights(w)
    assert torch.equal(unpack_weights(p, cg), binarize(w))
    assert np.array_equal(ref.unpack_weights(p.numpy(), cg), binarize(w).numpy())


def test_tail_bits_are_checked():
    p = pack_weights(torch.randn(1, 3, 1, 1)).numpy().copy()
    p[..., 0] |= 1 << 5
    with pytest.raises(ValueError):
        ref.unpack_weights(p, 3)


@pytest.mark.parametrize("case", GRID)
def test_torch_ops_match_reference(case):
    x, w, scale, shift, a = _case(*case)
    r = ref.reference(x.numpy(), pack_weights(w).numpy(), scale.numpy(), shift.numpy(), **a)
    args = (scale, shift, a["strides"], a["pads"], a["dilations"], a["group"], a["binarize_input"], a["activation"])
    assert _rel(binary_conv(x, pack_weights(w), *args).numpy(), r) < 1e-6
    assert _rel(binary_conv_train(x, w, *args).numpy(), r) < 1e-6


@pytest.mark.parametrize("case", GRID)
def test_onnx_function_body_matches_reference(case):
    x, w, scale, shift, a = _case(*case)
    p = pack_weights(w).numpy()
    y = run_node(by_op_type("BinaryConv"), x.numpy(), p, scale.numpy(), shift.numpy(), a)
    assert _rel(y, ref.reference(x.numpy(), p, scale.numpy(), shift.numpy(), **a)) < 1e-6


def test_padded_taps_contribute_zero():
    # All inputs +1 and all weights +1: an interior output counts 9 taps, a corner only 4.
    x = torch.ones(1, 1, 4, 4)
    p = pack_weights(torch.ones(1, 1, 3, 3))
    y = binary_conv(x, p, torch.ones(1), torch.zeros(1), [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0)
    assert y[0, 0, 0, 0] == 4 and y[0, 0, 1, 1] == 9 and y[0, 0, 0, 1] == 6


def test_weights_are_stored_compactly():
    w = torch.randn(64, 64, 3, 3)
    assert pack_weights(w).numel() * 4 * 4 <= w.numel() * 4  # >= 4x smaller than float32 (here 32x)


def test_ste_gradients():
    torch.manual_seed(0)
    layer = BinaryConv2d(4, 3, 3, padding=1, use_alpha=False)
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5]).repeat(4 * 7).view(1, 4, 7, 7).requires_grad_()
    y = layer(x)
    g = torch.randn_like(y)
    y.backward(g)
    # Reference: the same conv on the binarized tensors, gradient passed straight through.
    xb = binarize(x.detach()).requires_grad_()
    wb = binarize(layer.weight.detach()).requires_grad_()
    torch.nn.functional.conv2d(xb, wb, padding=1).backward(g)
    assert torch.allclose(x.grad, xb.grad * (x.detach().abs() <= 1))  # saturating STE: zero where |x| > 1
    assert torch.allclose(layer.weight.grad, wb.grad)                   # identity STE for weights


def test_alpha_is_mean_abs_and_gets_gradient():
    torch.manual_seed(0)
    layer = BinaryConv2d(3, 2, 3, padding=1)
    assert torch.allclose(layer.alpha(), layer.weight.abs().mean(dim=(1, 2, 3)))
    x = torch.randn(2, 3, 5, 5)
    # The research formulation: conv(sign(x), alpha * sign(W)) with alpha in the autograd graph.
    w = layer.weight.detach().clone().requires_grad_()
    wq = binarize(w) + (w - w.detach())  # identity STE
    alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    torch.nn.functional.conv2d(binarize(x), wq * alpha, padding=1).sum().backward()
    layer(x).sum().backward()
    assert torch.allclose(layer.weight.grad, w.grad, atol=1e-5)


def test_packed_layer_equals_training_layer():
    torch.manual_seed(0)
    layer = BinaryConv2d(40, 6, 3, stride=2, padding=1, groups=2, bias=True).eval()
    x = torch.randn(2, 40, 9, 9)
    assert torch.allclose(layer(x), layer.to_packed()(x), atol=1e-6)


def test_survives_torch_export_as_one_node():
    layer = BinaryConv2d(8, 4, 3, padding=1).eval().to_packed()
    ep = torch.export.export(layer, (torch.randn(2, 8, 6, 6),))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert targets.count("cmc.binary_conv.default") == 1
