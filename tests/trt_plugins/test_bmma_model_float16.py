"""The BMMA kernel's CPU model at BinaryConv's float16 rounding boundary (contract.json "float16_rounding";
issue 21 item 2): the kernels store a float16 Y with math::keepNonzeroHalfBits over the round-to-nearest bits
(a nonzero result never becomes +-0), so a packed output bit (taken from the float32 value) is the sign of the
stored float16 value. The model computes the round-to-nearest bits in integer arithmetic
(math::halfBitsRoundNearest, the function the host shares with the device); both are checked against NumPy
here. The CUDA kernels' side runs on a GPU (tests/trt_plugins/test_binary_bmma_gpu.py, marked gpu)."""
from __future__ import annotations

import ctypes

import numpy as np

from cmc.plugins.binary_conv import reference as binary_ref

from ..plugins.test_binary_float16_sign import BOUNDARY
from .test_bmma_model import _geom, _ptr, model  # noqa: F401 - model is the shared library fixture

CASE = (2, 16, 6, 5, 16, (3, 3), [1, 1], [1, 1, 1, 1], [1, 1])


def _bind(so):
    so.cmc_model_binary_half_bits.argtypes = [ctypes.c_float]
    so.cmc_model_binary_half_bits.restype = ctypes.c_uint16
    i32p, f32p, vp = ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_float), ctypes.c_void_p
    so.cmc_model_bmma_forward_half.argtypes = [i32p, i32p, vp, f32p, f32p, ctypes.c_int,
                                               ctypes.POINTER(ctypes.c_uint16), i32p, ctypes.c_int]
    return so


def _half_bits(so, values):
    return np.array([so.cmc_model_binary_half_bits(float(v)) for v in values], np.uint16)


def _values(rng):
    """Every float16 range: NaN/inf, the overflow tie at 65520, normals, subnormals, the underflow boundary."""
    return np.concatenate([
        BOUNDARY, [np.inf, -np.inf, 65504.0, 65519.99, 65520.0, -65520.0, 1e6, 2.0 ** -14, 2.0 ** -14 * 0.99951172,
                   -(2.0 ** -24) * 0.5000001, 2.0 ** -24 * 1.5, 2.0 ** -24 * 2.5, 0.0, -0.0],
        rng.standard_normal(2000) * 10.0 ** rng.integers(-9, 5, 2000),
        np.frombuffer(rng.integers(0, 2 ** 32, 3000, dtype=np.uint64).astype(np.uint32).tobytes(), np.float32),
    ]).astype(np.float32)


def test_model_float16_rounding_equals_numpy_and_the_rule(model):  # noqa: F811 - the fixture
    so = _bind(model)
    with np.errstate(over="ignore", invalid="ignore"):  # random bit patterns include NaNs and huge values
        values = _values(np.random.default_rng(0))
    got = _half_bits(so, values)
    want = binary_ref.round_to_float16(values).view(np.uint16)
    nan = np.isnan(values)
    assert np.isnan(got[nan].view(np.float16)).all()
    np.testing.assert_array_equal(got[~nan], want[~nan])
    # the boundary itself: plain rounding gives +-0 for six of these values; the rule keeps their signs
    h = got[: len(BOUNDARY)].view(np.float16)
    np.testing.assert_array_equal(binary_ref.binarize(h), binary_ref.binarize(BOUNDARY))
    np.testing.assert_array_equal(np.sign(h), np.sign(BOUNDARY))


def _forward_half(so, case, x, w_packed, scale, shift):
    n, c, h, w, m = case[:5]
    geom = _geom(case)
    x32 = np.ascontiguousarray(x, np.float32)
    xp = np.zeros((n, h, w, so.cmc_model_packed_words_per_pixel(c)), np.int32)
    so.cmc_model_pack_activations(n, c, h, w, _ptr(x32, ctypes.c_float), _ptr(xp, ctypes.c_int32))
    prep = np.zeros(int(so.cmc_model_prepared_size(_ptr(geom, ctypes.c_int32))) // 4 + 4, np.int32)
    wp = np.ascontiguousarray(w_packed, np.int32)
    so.cmc_model_prepare_weights(_ptr(geom, ctypes.c_int32), _ptr(wp, ctypes.c_int32), prep.ctypes.data)
    y = np.full((n, m, h, w), 0x7E00, np.uint16)  # CASE keeps H x W (3x3, pads 1, stride 1)
    yp = np.full((n, h, w, so.cmc_model_packed_words_per_pixel(m)), 0x5A5A5A5A, np.int32)
    sc, sf = np.ascontiguousarray(scale, np.float32), np.ascontiguousarray(shift, np.float32)
    rc = so.cmc_model_bmma_forward_half(_ptr(geom, ctypes.c_int32), _ptr(xp, ctypes.c_int32), prep.ctypes.data,
                                        _ptr(sc, ctypes.c_float), _ptr(sf, ctypes.c_float), 0,
                                        y.ctypes.data_as(ctypes.POINTER(ctypes.c_uint16)), _ptr(yp, ctypes.c_int32), 0)
    assert rc == 0
    return y.view(np.float16), yp


def test_model_float16_output_at_the_underflow_boundary(model):  # noqa: F811
    """scale 0: every output of row m is 0 * B + shift[m] = shift[m] (the boundary values): the float16 Y is
    the contract's rounding of it, and the packed bit is the sign of that float16 value."""
    so = _bind(model)
    n, c, h, w, m = CASE[:5]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wp = binary_ref.pack_weights(rng.standard_normal((m, c, 3, 3)))
    shift = np.resize(BOUNDARY, m).astype(np.float32)
    y16, yp = _forward_half(so, CASE, x, wp, np.zeros(m, np.float32), shift)
    want = binary_ref.round_to_float16(shift)
    for row in range(m):
        np.testing.assert_array_equal(y16[:, row], np.full((n, h, w), want[row], np.float16), err_msg=f"row {row}")
    signs = binary_ref.unpack_activations(yp, m)
    np.testing.assert_array_equal(signs, binary_ref.binarize(y16.astype(np.float32)))
    np.testing.assert_array_equal(signs[0, :, 0, 0], binary_ref.binarize(shift))


def test_model_float16_output_equals_the_rounded_reference(model):  # noqa: F811
    """Realistic values: the float16 Y is round_to_float16 of the contract reference (exact sums, float32 epilogue)."""
    so = _bind(model)
    n, c, h, w, m = CASE[:5]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wp = binary_ref.pack_weights(rng.standard_normal((m, c, 3, 3)))
    scale = (rng.random(m) * 0.01).astype(np.float32)
    shift = rng.standard_normal(m).astype(np.float32) * 0.05
    y16, _ = _forward_half(so, CASE, x, wp, scale, shift)
    raw = binary_ref.reference(x, wp, np.ones(m, np.float32), np.zeros(m, np.float32), kernel_shape=[3, 3],
                               pads=[1, 1, 1, 1]).astype(np.float32)
    y32 = (raw * scale[None, :, None, None]).astype(np.float32) + shift[None, :, None, None]  # two roundings
    np.testing.assert_array_equal(y16, binary_ref.round_to_float16(y32))
