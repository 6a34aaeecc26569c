"""GPU tests of BinaryConv's tensor-core (BMMA) path, packed activations and the binding's checks.

* BMMA (forced, kernel=2) equals the contract reference bit for bit on the full grid (raw sums with
  scale 1 / shift 0), agrees with the popcount kernel, and its epilogue / packed bits match;
  groups and small channel counts run the popcount fallback through the same entry point;
* packed chains (layer 1 packed out -> layer 2 packed in) equal the unpacked path bit for bit;
* every argument of the binding fed a wrong shape, dtype, device, contiguity or value raises a
  Python exception (never a crash);
* the TF32 policy: the training op's CUDA gradients match float64 even where TF32 is allowed.

Marked ``gpu`` and skipped with the reason where there is no CUDA GPU. First GPU run: NVIDIA H200,
2026-11-28, all passed (the tile-shape test was added after that run).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cmc.plugins.binary_conv import reference as binary_ref
from cmc.plugins.binary_conv.op import binary_conv_train

from .cuda_ext import load_extension

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="no CUDA GPU (torch.cuda.is_available() is False"
                              + (", CPU-only PyTorch build)" if torch.version.cuda is None else ")")),
]

DEV = "cuda"
AUTO, POPCOUNT, BMMA = 0, 1, 2

# (N, C, H, W, M, (kh, kw), strides, pads [t, l, b, r], dilations, group)
GRID = [
    (1, 3, 8, 8, 16, (3, 3), [1, 1], [1, 1, 1, 1], [1, 1], 1),      # 3 channels
    (2, 16, 9, 7, 16, (3, 3), [2, 2], [1, 1, 1, 1], [1, 1], 1),     # stride 2
    (4, 33, 7, 9, 17, (3, 3), [1, 1], [0, 1, 2, 1], [1, 1], 1),     # odd channels, asymmetric pads
    (3, 24, 10, 10, 40, (3, 3), [1, 1], [2, 2, 2, 2], [2, 2], 1),   # dilation 2
    (2, 12, 6, 6, 18, (3, 3), [1, 1], [1, 1, 1, 1], [1, 1], 3),     # groups (popcount fallback)
    (64, 16, 8, 8, 32, (1, 1), [1, 1], [0, 0, 0, 0], [1, 1], 1),    # batch 64, 1x1
    (5, 70, 6, 5, 65, (3, 2), [2, 1], [1, 0, 0, 1], [1, 2], 1),     # rectangular everything, M > 64
    (2, 96, 5, 5, 33, (5, 5), [1, 1], [4, 4, 4, 4], [1, 1], 1),     # pads beyond the kernel's reach
    (1, 65, 4, 4, 130, (3, 3), [2, 2], [1, 1, 1, 1], [1, 1], 1),    # 65 channels, M = 130
    (2, 129, 7, 6, 48, (3, 3), [1, 1], [1, 1, 1, 1], [1, 1], 1),    # 2 chunks per tap
    (8, 256, 14, 14, 256, (3, 3), [1, 1], [1, 1, 1, 1], [1, 1], 1),  # the workhorse layer
    (3, 300, 5, 5, 70, (1, 1), [2, 2], [0, 0, 0, 0], [1, 1], 1),    # 3 chunks, 1x1 stride 2
    (2, 40, 1, 2, 9, (3, 3), [1, 1], [5, 5, 5, 5], [1, 1], 1),      # outputs with no valid tap
]
IDS = [f"n{c[0]}c{c[1]}m{c[4]}k{c[5][0]}x{c[5][1]}s{c[6][0]}d{c[8][0]}g{c[9]}" for c in GRID]


@pytest.fixture(scope="module")
def ext():
    return load_extension()


def _sm():
    major, minor = torch.cuda.get_device_capability()
    return major * 10 + minor


def _data(case, seed, dtype=torch.float32):
    n, c, h, w, m, (kh, kw), strides, pads, dil, group = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g)
    x[torch.rand(x.shape, generator=g) < 0.2] = 0.0  # exact zeros: binarize(0) = +1
    wt = torch.randn(m, c // group, kh, kw, generator=g)
    wt.view(-1)[::7] = 0.0
    scale = torch.rand(m, generator=g) + 0.25
    scale[::3] *= -1
    shift = torch.randn(m, generator=g)
    shift[::4] = 0.0
    return x.to(dtype), wt, scale, shift


def _args(case):
    n, c, h, w, m, (kh, kw), strides, pads, dil, group = case
    return dict(c=c, m=m, kh=kh, kw=kw, strides=strides, pads=pads, dil=dil, group=group)


def _fwd(ext, x, prep, scale, shift, a, *, bin_in=1, act=0, in_packed=False, out_packed=False, dtype=0, kernel=AUTO):
    return ext.binary_forward_ex(x, prep, scale, shift, a["c"], a["m"], a["kh"], a["kw"], a["strides"], a["pads"],
                                 a["dil"], a["group"], bin_in, act, in_packed, out_packed, dtype, kernel)


def _bmma_ok(case):
    return case[9] == 1 and _sm() >= 80


def _bits(packed, count):
    """int32 [..., words] -> uint8 [..., count] bits (LSB first)."""
    words = packed.cpu().numpy().view(np.uint32).astype(np.uint64)
    b = ((words[..., None] >> np.arange(32, dtype=np.uint64)) & 1).reshape(*words.shape[:-1], -1)
    return b[..., :count].astype(np.uint8), b[..., count:]


def _raw_sums_case(ext, x, wt, a):
    """The contract's raw sums (scale 1, shift 0, binarized input), the prepared weights, ones, zeros."""
    packed = binary_ref.pack_weights(wt.numpy())
    want = binary_ref.reference(x.double().numpy(), packed, np.ones(a["m"]), np.zeros(a["m"]),
                                kernel_shape=[a["kh"], a["kw"]], strides=a["strides"], pads=a["pads"],
                                dilations=a["dil"], group=a["group"], binarize_input=1, activation=0)
    prep = ext.binary_prepare_weights(torch.from_numpy(packed).to(DEV), a["c"], a["group"])
    return want, prep, torch.ones(a["m"], device=DEV), torch.zeros(a["m"], device=DEV)


# ---- BMMA vs the contract, bit for bit -------------------------------------------------------------
@pytest.mark.parametrize("case", GRID, ids=IDS)
def test_raw_sums_equal_reference_both_kernels(ext, case):
    x, wt, _, _ = _data(case, 1)
    a = _args(case)
    want, prep, ones, zeros = _raw_sums_case(ext, x, wt, a)
    kernels = [POPCOUNT] + ([BMMA] if _bmma_ok(case) else [])
    for k in kernels:
        y = _fwd(ext, x.to(DEV), prep, ones, zeros, a, kernel=k)
        np.testing.assert_array_equal(y.double().cpu().numpy(), want, err_msg=f"kernel {k}")


@pytest.mark.parametrize("case", GRID, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("activation", [0, 1])
def test_epilogue_and_packed_output(ext, case, dtype, activation):
    x, wt, scale, shift = _data(case, 2, dtype)
    a = _args(case)
    packed = binary_ref.pack_weights(wt.numpy())
    want = binary_ref.reference(x.double().numpy(), packed, scale.numpy(), shift.numpy(),
                                kernel_shape=[a["kh"], a["kw"]], strides=a["strides"], pads=a["pads"],
                                dilations=a["dil"], group=a["group"], binarize_input=1, activation=activation)
    prep = ext.binary_prepare_weights(torch.from_numpy(packed).to(DEV), a["c"], a["group"])
    code = 0 if dtype == torch.float32 else 1
    s, t = scale.to(DEV), shift.to(DEV)
    kernels = [POPCOUNT] + ([BMMA] if _bmma_ok(case) else [])
    outs = {}
    for k in kernels:
        y = _fwd(ext, x.to(DEV), prep, s, t, a, act=activation, dtype=code, kernel=k)
        assert y.dtype == dtype and tuple(y.shape) == want.shape
        tol = binary_ref.CONTRACT.tol("float32" if dtype == torch.float32 else "float16")
        assert np.abs(y.double().cpu().numpy() - want).max() <= tol * max(np.abs(want).max(), 1e-12)
        yp = _fwd(ext, x.to(DEV), prep, s, t, a, act=activation, out_packed=True, dtype=code, kernel=k)
        bits, pad = _bits(yp, a["m"])
        # the sign the next binarizing layer takes of the unpacked output (as stored, in dtype)
        np.testing.assert_array_equal(bits, (y.float().cpu().numpy().transpose(0, 2, 3, 1) >= 0).astype(np.uint8))
        assert not pad.any()
        outs[k] = y
    if len(outs) == 2:  # both kernels compute the same exact sum and the same epilogue
        assert torch.equal(outs[POPCOUNT], outs[BMMA])


# every tile shape of the BMMA kernel (forced one by one, as the benchmark sweep runs them)
TILE_CASES = [GRID[i] for i in (2, 6, 8, 9, 10, 12)]


@pytest.mark.parametrize("case", TILE_CASES, ids=[IDS[GRID.index(c)] for c in TILE_CASES])
def test_every_bmma_tile_shape_is_exact(ext, case):
    if not _bmma_ok(case):
        pytest.skip(f"BMMA needs sm_80+ (this GPU: sm_{_sm()})")
    x, wt, scale, shift = _data(case, 5, torch.float16)
    a = _args(case)
    want, prep, ones, zeros = _raw_sums_case(ext, x, wt, a)
    s, t = scale.to(DEV), shift.to(DEV)
    xd = x.to(DEV)
    # a packed input at a 4-byte (not 16-byte) aligned address: the P_a pre-pass's word-by-word path
    xp = ext.binary_pack_activations(xd)
    buf = torch.zeros(xp.numel() + 1, dtype=torch.int32, device=DEV)
    xp_odd = buf[1:].view(xp.shape)
    xp_odd.copy_(xp)
    assert xp_odd.data_ptr() % 16 != 0
    # garbage in its pad bits (the contract: ignored), which the fused tiles' in-loop P_a must mask off
    c = a["c"]
    pad = [(~((1 << max(0, min(32, c - 32 * k))) - 1)) & 0xFFFFFFFF for k in range(xp.shape[-1])]
    pad_bits = torch.tensor(np.array(pad, dtype=np.uint32).view(np.int32), device=DEV) & 0x5A5A5A5A
    xp_odd |= pad_bits
    assert bool((pad_bits != 0).any()) == (c % 128 != 0)
    tiles = ext.binary_bmma_tiles()
    assert len(tiles) >= 2
    try:
        ext.binary_bmma_force_tile(-1)
        y_rule = _fwd(ext, xd, prep, s, t, a, act=1, dtype=1, kernel=BMMA)
        for i, name in enumerate(tiles):
            ext.binary_bmma_force_tile(i)
            y = _fwd(ext, xd, prep, ones, zeros, a, dtype=1, kernel=BMMA)
            np.testing.assert_array_equal(y.double().cpu().numpy(), want.astype(np.float16).astype(np.float64),
                                          err_msg=name)
            y = _fwd(ext, xd, prep, s, t, a, act=1, dtype=1, kernel=BMMA)
            assert torch.equal(y, y_rule), name
            yp = _fwd(ext, xp_odd, prep, s, t, a, act=1, in_packed=True, out_packed=True, dtype=1, kernel=BMMA)
            bits, pad = _bits(yp, a["m"])
            np.testing.assert_array_equal(bits, (y_rule.float().cpu().numpy().transpose(0, 2, 3, 1) >= 0)
                                          .astype(np.uint8), err_msg=name)
            assert not pad.any(), name
    finally:
        ext.binary_bmma_force_tile(-1)
    with pytest.raises(RuntimeError, match="tile"):
        ext.binary_bmma_force_tile(len(tiles))


def test_auto_picks_bmma_for_the_workhorse_layer(ext):
    case = GRID[10]
    n, c, h, w, m, (kh, kw), strides, pads, dil, group = case
    got = ext.binary_kernel_choice(n, c, h, w, m, kh, kw, strides, pads, dil, group, 1)
    assert got == (BMMA if _sm() >= 80 else POPCOUNT)
    assert ext.binary_kernel_choice(n, c, h, w, m, kh, kw, strides, pads, dil, group, 0) == POPCOUNT
    assert ext.binary_kernel_choice(1, 3, 8, 8, 16, 3, 3, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1) == POPCOUNT


def test_bmma_refused_where_it_cannot_run(ext):
    case = GRID[4]  # groups
    x, wt, scale, shift = _data(case, 3)
    a = _args(case)
    prep = ext.binary_prepare_weights(torch.from_numpy(binary_ref.pack_weights(wt.numpy())).to(DEV), a["c"], a["group"])
    with pytest.raises(RuntimeError, match="unsupported"):
        _fwd(ext, x.to(DEV), prep, scale.to(DEV), shift.to(DEV), a, kernel=BMMA)


# ---- packed activations ---------------------------------------------------------------------------
@pytest.mark.parametrize("c", [1, 3, 31, 32, 33, 64, 127, 128, 129, 200, 256, 300])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_pack_unpack_layout(ext, c, dtype):
    g = torch.Generator().manual_seed(c)
    x = torch.randn(2, c, 5, 3, generator=g)
    x[:, ::5] = 0.0
    x = x.to(dtype)
    xp = ext.binary_pack_activations(x.to(DEV))
    assert xp.dtype == torch.int32 and tuple(xp.shape) == (2, 5, 3, 4 * -(-c // 128))
    bits, pad = _bits(xp, c)
    np.testing.assert_array_equal(bits, (x.float().numpy().transpose(0, 2, 3, 1) >= 0).astype(np.uint8))
    assert not pad.any()
    back = ext.binary_unpack_activations(xp, c, 0 if dtype == torch.float32 else 1)
    assert back.dtype == dtype
    assert torch.equal(back.cpu(), torch.where(x >= 0, 1.0, -1.0).to(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("kernel", [AUTO, POPCOUNT, BMMA])
@pytest.mark.parametrize("batch", [1, 16, 64])
def test_packed_chain_equals_unpacked_path(ext, dtype, kernel, batch):
    """conv1 (packed out) -> conv2 (packed in) equals conv1 -> conv2 on unpacked tensors, bit for bit;
    conv2 -> conv3 chained the same way with odd channel counts and a stride."""
    if kernel == BMMA and _sm() < 80:
        pytest.skip("BMMA needs sm_80+")
    g = torch.Generator().manual_seed(batch)
    layers = [(96, 3, 1, 1), (130, 3, 2, 1), (70, 1, 1, 0)]  # (M, k, stride, pad); C0 = 67
    c = 67
    x = torch.randn(batch, c, 11, 9, generator=g).to(dtype).to(DEV)
    code = 0 if dtype == torch.float32 else 1
    preps, eps = [], []
    for m, k, s, p in layers:
        wt = torch.randn(m, c, k, k, generator=g)
        preps.append((ext.binary_prepare_weights(torch.from_numpy(binary_ref.pack_weights(wt.numpy())).to(DEV), c, 1),
                      dict(c=c, m=m, kh=k, kw=k, strides=[s, s], pads=[p] * 4, dil=[1, 1], group=1)))
        eps.append(((torch.rand(m, generator=g) - 0.3).to(DEV), torch.randn(m, generator=g).to(DEV)))
        c = m
    y_unpacked, y_packed = x, x
    for i, ((prep, a), (s, t)) in enumerate(zip(preps, eps)):
        last = i == len(preps) - 1
        act = 1 if last else 0  # a ReLU before a binarizing layer would make every bit 1
        y_unpacked = _fwd(ext, y_unpacked, prep, s, t, a, act=act, dtype=code, kernel=kernel)
        y_packed = _fwd(ext, y_packed, prep, s, t, a, act=act, in_packed=i > 0, out_packed=not last, dtype=code,
                        kernel=kernel)
        if not last:  # the packed intermediate is the packing of the unpacked one
            assert torch.equal(y_packed, ext.binary_pack_activations(y_unpacked))
    assert torch.equal(y_packed, y_unpacked)


# ---- the binding never crashes ---------------------------------------------------------------------
def _good(ext):
    x = torch.randn(2, 40, 5, 5, device=DEV)
    wp = torch.zeros(8, 3, 3, 2, dtype=torch.int32, device=DEV)
    s, t = torch.ones(8, device=DEV), torch.zeros(8, device=DEV)
    return x, wp, s, t


BAD_FORWARD = {
    "x_3d": lambda x, wp, s, t: (x[0], wp, s, t, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0),
    "x_cpu": lambda x, wp, s, t: (x.cpu(), wp, s, t, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0),
    "x_int": lambda x, wp, s, t: (x.int(), wp, s, t, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0),
    "x_double": lambda x, wp, s, t: (x.double(), wp, s, t, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0),
    "x_empty": lambda x, wp, s, t: (x[:0], wp, s, t, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0),
    "w_words": lambda x, wp, s, t: (x, wp[..., :1].contiguous(), s, t, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0),
    "w_words_3": lambda x, wp, s, t: (x, torch.zeros(8, 3, 3, 3, dtype=torch.int32, device=DEV), s, t, [1, 1],
                                      [1, 1, 1, 1], [1, 1], 1, 1, 0),
    "w_float": lambda x, wp, s, t: (x, wp.float(), s, t, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0),
    "w_int64": lambda x, wp, s, t: (x, wp.long(), s, t, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0),
    "w_cpu": lambda x, wp, s, t: (x, wp.cpu(), s, t, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0),
    "w_3d": lambda x, wp, s, t: (x, wp[0], s, t, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0),
    "kernel_too_big": lambda x, wp, s, t: (x, torch.zeros(8, 9, 9, 2, dtype=torch.int32, device=DEV), s, t, [1, 1],
                                           [0, 0, 0, 0], [1, 1], 1, 1, 0),
    "scale_short": lambda x, wp, s, t: (x, wp, s[:5], t, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0),
    "scale_2d": lambda x, wp, s, t: (x, wp, s.view(2, 4), t, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0),
    "scale_int": lambda x, wp, s, t: (x, wp, s.int(), t, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0),
    "shift_cpu": lambda x, wp, s, t: (x, wp, s, t.cpu(), [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0),
    "strides_len": lambda x, wp, s, t: (x, wp, s, t, [1], [1, 1, 1, 1], [1, 1], 1, 1, 0),
    "stride_zero": lambda x, wp, s, t: (x, wp, s, t, [0, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0),
    "stride_huge": lambda x, wp, s, t: (x, wp, s, t, [2 ** 32 + 1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0),
    "pad_negative": lambda x, wp, s, t: (x, wp, s, t, [1, 1], [-1, 1, 1, 1], [1, 1], 1, 1, 0),
    "pad_huge": lambda x, wp, s, t: (x, wp, s, t, [1, 1], [2 ** 40, 1, 1, 1], [1, 1], 1, 1, 0),
    "pads_len": lambda x, wp, s, t: (x, wp, s, t, [1, 1], [1, 1], [1, 1], 1, 1, 0),
    "dilation_zero": lambda x, wp, s, t: (x, wp, s, t, [1, 1], [1, 1, 1, 1], [0, 1], 1, 1, 0),
    "group_zero": lambda x, wp, s, t: (x, wp, s, t, [1, 1], [1, 1, 1, 1], [1, 1], 0, 1, 0),
    "group_negative": lambda x, wp, s, t: (x, wp, s, t, [1, 1], [1, 1, 1, 1], [1, 1], -2, 1, 0),
    "group_not_dividing": lambda x, wp, s, t: (x, wp, s, t, [1, 1], [1, 1, 1, 1], [1, 1], 3, 1, 0),
    "binarize_2": lambda x, wp, s, t: (x, wp, s, t, [1, 1], [1, 1, 1, 1], [1, 1], 1, 2, 0),
    "activation_5": lambda x, wp, s, t: (x, wp, s, t, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 5),
}


@pytest.mark.parametrize("name", sorted(BAD_FORWARD))
def test_binary_forward_bad_arguments_raise(ext, name):
    args = BAD_FORWARD[name](*_good(ext))
    with pytest.raises((RuntimeError, ValueError, TypeError)):
        ext.binary_forward(*args)
    torch.cuda.synchronize()  # nothing was launched that could fault later


def test_bad_packed_word_count_raises(ext):
    x = torch.randn(1, 40, 5, 5, device=DEV)
    bad = torch.zeros(4, 3, 3, 1, dtype=torch.int32, device=DEV)  # 40 channels need 2 words
    with pytest.raises(RuntimeError, match="words per tap"):
        ext.binary_forward(x, bad, torch.ones(4, device=DEV), torch.zeros(4, device=DEV), [1, 1], [1, 1, 1, 1],
                           [1, 1], 1, 1, 0)


def test_noncontiguous_arguments_give_the_contiguous_result(ext):
    x, _, _, _ = _good(ext)
    g = torch.Generator().manual_seed(4)
    w = torch.randn(8, 40, 3, 3, generator=g)
    wp = torch.from_numpy(binary_ref.pack_weights(w.numpy())).to(DEV)
    s, t = torch.rand(8, device=DEV), torch.randn(8, device=DEV)
    want = ext.binary_forward(x, wp, s, t, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0)
    x_nc = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # channels-last view
    wp_nc = wp.permute(3, 0, 1, 2).contiguous().permute(1, 2, 3, 0)
    s_nc = torch.stack([s, s], 1)[:, 0]
    got = ext.binary_forward(x_nc, wp_nc, s_nc, t, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0)
    assert torch.equal(got, want)
    xp = ext.binary_pack_activations(x)
    assert torch.equal(ext.binary_pack_activations(x_nc), xp)


def test_forward_ex_bad_arguments_raise(ext):
    x, wp, s, t = _good(ext)
    prep = ext.binary_prepare_weights(wp, 40, 1)
    a = dict(c=40, m=8, kh=3, kw=3, strides=[1, 1], pads=[1, 1, 1, 1], dil=[1, 1], group=1)
    xp = ext.binary_pack_activations(x)
    bad_calls = {
        "c_mismatch": lambda: _fwd(ext, x, prep, s, t, dict(a, c=41)),
        "prep_other_geometry": lambda: _fwd(ext, x, prep, s, t, dict(a, kh=1, kw=1, pads=[0] * 4)),
        "prep_other_m": lambda: _fwd(ext, x, prep, s[:4], t[:4], dict(a, m=4)),
        "dtype_code_mismatch": lambda: _fwd(ext, x, prep, s, t, a, dtype=1),
        "dtype_code_bad": lambda: _fwd(ext, x, prep, s, t, a, dtype=7),
        "kernel_bad": lambda: _fwd(ext, x, prep, s, t, a, kernel=9),
        "packed_without_binarize": lambda: _fwd(ext, xp, prep, s, t, a, bin_in=0, in_packed=True),
        "packed_float_x": lambda: _fwd(ext, x, prep, s, t, a, in_packed=True),
        "packed_words": lambda: _fwd(ext, xp[..., :2].contiguous(), prep, s, t, a, in_packed=True),
        "packed_cpu": lambda: _fwd(ext, xp.cpu(), prep, s, t, a, in_packed=True),
        "prep_not_prepared": lambda: _fwd(ext, x, wp, s, t, a),
        "x_cpu": lambda: _fwd(ext, x.cpu(), prep, s, t, a),
        "scale_short": lambda: _fwd(ext, x, prep, s[:3], t, a),
        "pads_negative": lambda: _fwd(ext, x, prep, s, t, dict(a, pads=[-1, 0, 0, 0])),
        "prepare_bad_c": lambda: ext.binary_prepare_weights(wp, 100, 1),
        "prepare_bad_group": lambda: ext.binary_prepare_weights(wp, 40, 0),
        "prepare_cpu": lambda: ext.binary_prepare_weights(wp.cpu(), 40, 1),
        "pack_cpu": lambda: ext.binary_pack_activations(x.cpu()),
        "pack_int": lambda: ext.binary_pack_activations(x.int()),
        "pack_3d": lambda: ext.binary_pack_activations(x[0]),
        "unpack_words": lambda: ext.binary_unpack_activations(xp, 129, 0),
        "unpack_c_zero": lambda: ext.binary_unpack_activations(xp, 0, 0),
        "unpack_float": lambda: ext.binary_unpack_activations(xp.float(), 40, 0),
        "unpack_dtype": lambda: ext.binary_unpack_activations(xp, 40, 3),
        "choice_bad_stride": lambda: ext.binary_kernel_choice(1, 4, 5, 5, 4, 3, 3, [0, 1], [1] * 4, [1, 1], 1, 1),
    }
    for name, call in bad_calls.items():
        with pytest.raises((RuntimeError, ValueError, TypeError)):
            call()
            pytest.fail(f"{name}: no error")
    torch.cuda.synchronize()


# ---- TF32 policy ------------------------------------------------------------------------------------
@pytest.mark.parametrize("binarize_input", [1, 0])
def test_training_gradients_match_float64_with_tf32_allowed(binarize_input):
    conv = torch.backends.cudnn.conv
    previous = conv.fp32_precision
    conv.fp32_precision = "tf32"  # PyTorch's default for cuDNN convolutions: the op must not follow it
    try:
        case = (4, 64, 12, 12, 64, (3, 3), [1, 1], [1, 1, 1, 1], [1, 1], 1)
        x, w, scale, shift = _data(case, 5)
        gy = torch.randn(4, 64, 12, 12, generator=torch.Generator().manual_seed(6))

        def run(dev, dtype):
            ts = [t.detach().clone().to(dev, dtype).requires_grad_(True) for t in (x, w, scale, shift)]
            y = binary_conv_train(*ts, [1, 1], [1, 1, 1, 1], [1, 1], 1, binarize_input, 0)
            (y * gy.to(dev, dtype)).sum().backward()
            return [t.grad.double().cpu() for t in ts]

        got = run(DEV, torch.float32)
        want = run("cpu", torch.float64)
        for name, g_, w_ in zip(("x", "w", "scale", "shift"), got, want):
            rel = (g_ - w_).abs().max().item() / max(w_.abs().max().item(), 1e-12)
            assert rel <= 1e-5, (name, rel)
        assert conv.fp32_precision == "tf32"  # the caller's setting is restored
    finally:
        conv.fp32_precision = previous
