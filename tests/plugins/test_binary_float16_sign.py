"""BinaryConv's float16 rounding keeps the sign a later binarization takes (contract.json "float16_rounding";
issue 21 item 2): a negative result in [-2^-25, 0) rounds to -0 in plain float16, and binarize(-0) = +1 where
the float32 value binarizes to -1 (and (0, 2^-25] rounds to +0, whose Sign is 0). The contract stores
+-2^-24 with the value's sign there instead. Boundary tests of the rule in the
reference, the PyTorch op (CPU), the ONNX body (unpacked and packed output); the CPU kernel model's and the
CUDA kernels' are in tests/trt_plugins (test_bmma_model.py, test_binary_bmma_gpu.py)."""
import numpy as np
import pytest
import torch

from cmc.plugins.binary_conv import reference as ref
from cmc.plugins.binary_conv.op import binary_conv, round_output

from .test_binary_conv_packed import OUT, run

TIE = np.float32(-2.0 ** -25)  # exactly half the least float16 subnormal: plain rounding gives -0 (ties to even)
# results at and around float16's underflow; y = 0 * B + shift = shift exactly, for each shift below
BOUNDARY = np.array([TIE, np.nextafter(TIE, np.float32(-1)), np.nextafter(TIE, np.float32(0)), -2.0 ** -27,
                     -1e-9, -2.0 ** -24, -2.0 ** -24 * 1.5, 2.0 ** -27, 2.0 ** -25, 2.0 ** -24, -1.0, 0.0],
                    np.float32)


def _plain_half(v):
    return np.asarray(v, np.float32).astype(np.float16)


def test_plain_rounding_loses_the_sign_the_rule_keeps():
    """The premise: numpy's float16 rounding turns [-2^-25, 0) into -0, which binarizes to +1."""
    lost = _plain_half(BOUNDARY)
    assert ((BOUNDARY < 0) & (lost == 0)).sum() == 4  # TIE, its neighbour towards 0, -2^-27, -1e-9
    assert ((BOUNDARY > 0) & (lost == 0)).sum() == 2  # 2^-27 and 2^-25 (a tie): Sign 0 instead of 1
    assert not np.array_equal(ref.binarize(lost), ref.binarize(BOUNDARY))


def _check_rule(got16, v32):
    """got16 is the contract's float16 of v32: binarization kept, and otherwise plain round-to-nearest."""
    got16 = np.asarray(got16)
    assert got16.dtype == np.float16
    np.testing.assert_array_equal(ref.binarize(got16), ref.binarize(v32))
    np.testing.assert_array_equal(np.sign(got16), np.sign(v32))
    lost = (v32 != 0) & (_plain_half(v32) == 0)
    assert lost.sum() == 6
    np.testing.assert_array_equal(got16[lost], np.copysign(np.float16(2.0 ** -24), v32[lost]).astype(np.float16))
    np.testing.assert_array_equal(got16[~lost], _plain_half(v32)[~lost])


def test_reference_rounding():
    _check_rule(ref.round_to_float16(BOUNDARY), BOUNDARY)
    assert np.isnan(ref.round_to_float16(np.float32(np.nan)))
    assert np.signbit(ref.round_to_float16(np.float32(-0.0)))  # zeros stay as they are (-0 binarizes to +1)


def _layer_case():
    """x = +1 everywhere, W = +1, scale 0: Y[m] = 0 * B + shift[m] = shift[m] exactly (one output per shift)."""
    m = len(BOUNDARY)
    x = np.ones((1, 4, 2, 2), np.float32)
    wp = ref.pack_weights(np.ones((m, 4, 1, 1)))
    return x, wp, np.zeros(m, np.float32), BOUNDARY.copy(), dict(kernel_shape=[1, 1])


def test_pytorch_op_float16():
    x, wp, s, t, _ = _layer_case()
    args = ([1, 1], [0, 0, 0, 0], [1, 1], 1, 1, 0)
    y32 = binary_conv(torch.from_numpy(x), torch.from_numpy(wp), torch.from_numpy(s), torch.from_numpy(t), *args)
    y16 = binary_conv(torch.from_numpy(x).half(), torch.from_numpy(wp), torch.from_numpy(s), torch.from_numpy(t), *args)
    assert np.array_equal(y32[0, :, 0, 0].numpy(), BOUNDARY)
    _check_rule(y16[0, :, 0, 0].numpy(), BOUNDARY)
    _check_rule(round_output(torch.from_numpy(BOUNDARY), torch.float16).numpy(), BOUNDARY)


def test_pytorch_op_float16_sums_in_float32():
    """Half sums are inexact above 2048: a 3x3 layer over 512 channels reaches 4608. The CPU op sums in float32."""
    x = torch.ones(1, 512, 3, 3, dtype=torch.float16)
    wp = torch.from_numpy(ref.pack_weights(np.ones((1, 512, 3, 3))))
    y = binary_conv(x, wp, torch.ones(1), torch.full((1,), 1.0), [1, 1], [0, 0, 0, 0], [1, 1], 1, 1, 0)
    assert float(y) == float(np.float16(4609.0))


def test_onnx_body_float16_output_and_packed_bits():
    x, wp, s, t, a = _layer_case()
    y32 = run("BinaryConv", x, wp, s, t, **a)
    y16 = run("BinaryConv", x.astype(np.float16), wp, s, t, **a)
    assert np.array_equal(y32[0, :, 0, 0], BOUNDARY)
    _check_rule(y16[0, :, 0, 0], BOUNDARY)
    # the packed output (bits of the value rounded to X's type) is the same for float32 and float16 X,
    # and is the float32 value's sign: a packed chain binarizes as the unpacked float32 path does
    p32, p16 = run(OUT, x, wp, s, t, **a), run(OUT, x.astype(np.float16), wp, s, t, **a)
    assert np.array_equal(p32, p16)
    assert np.array_equal(p32, ref.pack_activations(y32)) and np.array_equal(p16, ref.pack_activations(y16))
    assert np.array_equal(ref.unpack_activations(p16, len(BOUNDARY))[0, :, 0, 0], ref.binarize(BOUNDARY))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_onnx_body_binarizes_its_input_as_the_reference(dtype):
    """The other side of the boundary: binarize(X) on the rounded values (-2^-24 -> -1, -0 -> +1)."""
    xv = ref.round_to_float16(BOUNDARY) if dtype == np.float16 else BOUNDARY
    x = np.asarray(xv, dtype).reshape(1, -1, 1, 1)
    wp = ref.pack_weights(np.eye(x.shape[1]).reshape(x.shape[1], x.shape[1], 1, 1))
    m = x.shape[1]
    y = run("BinaryConv", x, wp, np.ones(m, np.float32), np.zeros(m, np.float32), kernel_shape=[1, 1])
    # with identity-like +-1 weights each output is sum_c w[m, c] * binarize(x_c); compare with the reference
    want = ref.reference(x, wp, np.ones(m, np.float32), np.zeros(m, np.float32), kernel_shape=[1, 1])
    np.testing.assert_array_equal(np.asarray(y, np.float64), want)
