"""The BMMA BinaryConv kernel's CPU model against the contract's NumPy reference, bit for bit.

trt_plugins/tests/bmma_model.cpp runs the kernel's own index functions (cmc_binary_layout.h: packed
layout, k-step walk, B gather, prepared A fragments, column terms, epilogue, packed-output bits) lane
by lane with an mma.sync.m16n8k256 AND-popc emulated from the PTX fragment tables. Here it is built
as a small shared library (g++, no CUDA) and driven through ctypes over the grid the GPU tests use:
odd / non-multiple-of-32/128 channels, stride, dilation, asymmetric pads, pads beyond the kernel,
batch 1-64, zeros in X and W. The raw sums (scale 1, shift 0) must equal plugins/binary_conv/
reference.py exactly, the packed output must be the sign of the unpacked one with zero pad bits.
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cmc.plugins.binary_conv import reference as binary_ref

ROOT = Path(__file__).resolve().parents[2]
TRT = ROOT / "trt_plugins"

# (N, C, H, W, M, (kh, kw), strides, pads [t, l, b, r], dilations)
GRID = [
    (1, 3, 8, 8, 16, (3, 3), [1, 1], [1, 1, 1, 1], [1, 1]),
    (2, 16, 9, 7, 16, (3, 3), [2, 2], [1, 1, 1, 1], [1, 1]),
    (4, 33, 7, 9, 17, (3, 3), [1, 1], [0, 1, 2, 1], [1, 1]),
    (3, 24, 10, 10, 40, (3, 3), [1, 1], [2, 2, 2, 2], [2, 2]),
    (64, 16, 4, 4, 32, (1, 1), [1, 1], [0, 0, 0, 0], [1, 1]),
    (5, 70, 6, 5, 65, (3, 2), [2, 1], [1, 0, 0, 1], [1, 2]),
    (2, 96, 5, 5, 33, (5, 5), [1, 1], [4, 4, 4, 4], [1, 1]),
    (1, 65, 4, 4, 130, (3, 3), [2, 2], [1, 1, 1, 1], [1, 1]),
    (2, 129, 5, 4, 31, (3, 3), [1, 2], [1, 0, 2, 1], [1, 1]),
    (1, 256, 6, 6, 64, (3, 3), [1, 1], [1, 1, 1, 1], [1, 1]),
    (2, 300, 4, 3, 20, (1, 1), [1, 1], [0, 0, 0, 0], [1, 1]),
    (2, 40, 1, 2, 9, (3, 3), [1, 1], [5, 5, 5, 5], [1, 1]),  # outputs with no valid tap
]
IDS = [f"n{c[0]}c{c[1]}m{c[4]}k{c[5][0]}x{c[5][1]}s{c[6][0]}{c[6][1]}d{c[8][0]}{c[8][1]}" for c in GRID]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no host C++ compiler (g++/c++) to build the BMMA CPU model")
    lib = tmp_path_factory.mktemp("bmma_model") / "libcmc_bmma_model.so"
    srcs = [TRT / "common" / "cmc_host.cpp", TRT / "common" / "cmc_binary_host.cpp", TRT / "tests" / "bmma_model.cpp"]
    cmd = [cxx, "-std=c++17", "-O2", "-shared", "-fPIC", f"-I{TRT / 'common'}", f"-I{TRT / 'tests'}",
           *map(str, srcs), "-o", str(lib)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"building the BMMA CPU model failed:\n{res.stderr[-4000:]}")
    so = ctypes.CDLL(str(lib))
    i32p, f32p, vp = ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_float), ctypes.c_void_p
    so.cmc_model_supports_bmma.argtypes = [i32p]
    so.cmc_model_packed_words_per_pixel.argtypes = [ctypes.c_int32]
    so.cmc_model_prepared_size.argtypes = [i32p]
    so.cmc_model_prepared_size.restype = ctypes.c_longlong
    so.cmc_model_pack_activations.argtypes = [ctypes.c_int32] * 4 + [f32p, i32p]
    so.cmc_model_prepare_weights.argtypes = [i32p, i32p, vp]
    so.cmc_model_bmma_forward.argtypes = [i32p, i32p, vp, f32p, f32p, ctypes.c_int, f32p, i32p, ctypes.c_int]
    return so


def _ptr(a, ctype):
    return a.ctypes.data_as(ctypes.POINTER(ctype))


def _geom(case):
    n, c, h, w, m, (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = case
    return np.array([n, c, h, w, m, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, 1], dtype=np.int32)


def _run(model, case, x, w_packed, scale, shift, relu, fused=False):
    n, c, h, w, m = case[:5]
    geom = _geom(case)
    assert model.cmc_model_supports_bmma(_ptr(geom, ctypes.c_int32)) == 1
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    wpp = model.cmc_model_packed_words_per_pixel(c)
    assert wpp == 4 * -(-c // 128)
    xp = np.zeros((n, h, w, wpp), dtype=np.int32)
    model.cmc_model_pack_activations(n, c, h, w, _ptr(x32, ctypes.c_float), _ptr(xp, ctypes.c_int32))
    prep = np.zeros(int(model.cmc_model_prepared_size(_ptr(geom, ctypes.c_int32))) // 4 + 4, dtype=np.int32)
    wp = np.ascontiguousarray(w_packed, dtype=np.int32)
    model.cmc_model_prepare_weights(_ptr(geom, ctypes.c_int32), _ptr(wp, ctypes.c_int32), prep.ctypes.data)
    ho = (h + geom[9] + geom[11] - geom[13] * (geom[5] - 1) - 1) // geom[7] + 1
    wo = (w + geom[10] + geom[12] - geom[14] * (geom[6] - 1) - 1) // geom[8] + 1
    y = np.full((n, m, ho, wo), np.nan, dtype=np.float32)
    yp = np.full((n, ho, wo, model.cmc_model_packed_words_per_pixel(m)), 0x5A5A5A5A, dtype=np.int32)
    sc, sh = np.ascontiguousarray(scale, np.float32), np.ascontiguousarray(shift, np.float32)
    rc = model.cmc_model_bmma_forward(_ptr(geom, ctypes.c_int32), _ptr(xp, ctypes.c_int32), prep.ctypes.data,
                                      _ptr(sc, ctypes.c_float), _ptr(sh, ctypes.c_float), int(relu),
                                      _ptr(y, ctypes.c_float), _ptr(yp, ctypes.c_int32), int(fused))
    assert rc == 0
    return y, yp


def _data(case, seed):
    n, c, h, w, m, (kh, kw) = case[:6]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    x[rng.random(x.shape) < 0.2] = 0.0  # exact zeros (after a ReLU): binarize(0) = +1
    wt = rng.standard_normal((m, c, kh, kw)).astype(np.float32)
    wt.reshape(-1)[::7] = 0.0
    return x, wt


@pytest.mark.parametrize("fused", [False, True], ids=["prepass", "fused"])
@pytest.mark.parametrize("case", GRID, ids=IDS)
def test_model_raw_sums_equal_reference(model, case, fused):
    """Both kernel variants: P_a from the pre-pass, or folded into the k-loop (fused tiles)."""
    x, wt = _data(case, 11)
    m = case[4]
    packed = binary_ref.pack_weights(wt)
    attrs = dict(kernel_shape=list(case[5]), strides=case[6], pads=case[7], dilations=case[8], group=1,
                 binarize_input=1, activation=0)
    want = binary_ref.reference(x.astype(np.float64), packed, np.ones(m), np.zeros(m), **attrs)
    y, _ = _run(model, case, x, packed, np.ones(m), np.zeros(m), relu=False, fused=fused)
    assert y.shape == want.shape
    np.testing.assert_array_equal(y.astype(np.float64), want)  # exact integers


@pytest.mark.parametrize("fused", [False, True], ids=["prepass", "fused"])
@pytest.mark.parametrize("case", GRID, ids=IDS)
@pytest.mark.parametrize("relu", [0, 1])
def test_model_epilogue_and_packed_bits(model, case, relu, fused):
    x, wt = _data(case, 12)
    m = case[4]
    rng = np.random.default_rng(13)
    scale = (rng.random(m) + 0.25).astype(np.float32) * np.where(np.arange(m) % 3 == 0, -1, 1).astype(np.float32)
    shift = rng.standard_normal(m).astype(np.float32)
    shift[::4] = 0.0
    packed = binary_ref.pack_weights(wt)
    attrs = dict(kernel_shape=list(case[5]), strides=case[6], pads=case[7], dilations=case[8], group=1,
                 binarize_input=1, activation=relu)
    want = binary_ref.reference(x.astype(np.float64), packed, scale, shift, **attrs)
    y, yp = _run(model, case, x, packed, scale, shift, relu=bool(relu), fused=fused)
    assert np.abs(y - want).max() <= binary_ref.CONTRACT.tol("float32") * max(np.abs(want).max(), 1e-12)
    # packed bits: the sign the next layer takes of exactly these float values; pad bits zero
    words = yp.view(np.uint32).astype(np.uint64)
    bits = ((words[..., None] >> np.arange(32, dtype=np.uint64)) & 1).reshape(*yp.shape[:3], -1)
    np.testing.assert_array_equal(bits[..., :m], (y.transpose(0, 2, 3, 1) >= 0).astype(np.uint64))
    assert not bits[..., m:].any()
