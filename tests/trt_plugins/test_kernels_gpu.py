"""GPU tests of the trt_plugins CUDA kernels through the cmc ops' 'cuda' kernels (plugins/_cuda).

Every kernel against the contract's NumPy reference (float64) on a grid: odd and non-multiple-of-32
channels, stride 2, dilation, asymmetric pads, groups (incl. depthwise), batch 1 ... 64, rectangular
kernels, FP32 and FP16, with and without the ReLU epilogue; gradients of the CUDA backward against
the CPU op. Marked ``gpu`` and skipped with the reason where there is no CUDA GPU.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from cmc.plugins.adder_conv import reference as adder_ref
from cmc.plugins.adder_conv.op import adder_conv
from cmc.plugins.binary_conv import reference as binary_ref
from cmc.plugins.binary_conv.op import binary_conv, binary_conv_train, pack_weights

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="no CUDA GPU (torch.cuda.is_available() is False"
                              + (", CPU-only PyTorch build)" if torch.version.cuda is None else ")")),
]

DEV = "cuda"

# (N, C, H, W, M, (kh, kw), strides, pads [t, l, b, r], dilations, group)
GRID = [
    (1, 3, 8, 8, 16, (3, 3), [1, 1], [1, 1, 1, 1], [1, 1], 1),      # first layer: 3 channels
    (2, 16, 9, 7, 16, (3, 3), [2, 2], [1, 1, 1, 1], [1, 1], 1),     # stride 2
    (4, 33, 7, 9, 17, (3, 3), [1, 1], [0, 1, 2, 1], [1, 1], 1),     # odd channels, asymmetric pads
    (3, 24, 10, 10, 40, (3, 3), [1, 1], [2, 2, 2, 2], [2, 2], 1),   # dilation 2
    (2, 12, 6, 6, 18, (3, 3), [1, 1], [1, 1, 1, 1], [1, 1], 3),     # groups
    (2, 8, 5, 5, 8, (3, 3), [1, 1], [1, 1, 1, 1], [1, 1], 8),       # depthwise
    (64, 16, 8, 8, 32, (1, 1), [1, 1], [0, 0, 0, 0], [1, 1], 1),    # batch 64, 1x1
    (5, 70, 6, 5, 65, (3, 2), [2, 1], [1, 0, 0, 1], [1, 2], 1),     # rectangular everything, M > 64
    (2, 96, 5, 5, 33, (5, 5), [1, 1], [4, 4, 4, 4], [1, 1], 1),     # pads beyond the kernel's reach
    (1, 65, 4, 4, 130, (3, 3), [2, 2], [1, 1, 1, 1], [1, 1], 1),    # 65 channels (3 words), M = 130
]
IDS = [f"n{c[0]}c{c[1]}m{c[4]}k{c[5][0]}x{c[5][1]}s{c[6][0]}d{c[8][0]}g{c[9]}" for c in GRID]


@pytest.fixture(scope="module", autouse=True)
def ext():
    loader = pytest.importorskip(
        "cmc.plugins._cuda", reason="cmc.plugins._cuda is not installed (pyproject.toml must list it)").loader
    mod = loader.load()
    if mod is None:
        reason = loader.unavailable_reason()
        if reason.startswith("building the CUDA extension failed"):
            pytest.fail(f"a CUDA GPU is present but the cmc extension did not build: {reason}")
        pytest.skip(f"cmc CUDA extension unavailable: {reason}")
    return mod


def _attrs(case, **extra):
    n, c, h, w, m, (kh, kw), strides, pads, dil, group = case
    return dict(kernel_shape=[kh, kw], strides=strides, pads=pads, dilations=dil, group=group, **extra)


def _tensors(case, seed, dtype):
    n, c, h, w, m, (kh, kw), strides, pads, dil, group = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g).to(dtype)
    wt = torch.randn(m, c // group, kh, kw, generator=g).to(dtype)
    scale = (torch.rand(m, generator=g) + 0.5)
    shift = torch.randn(m, generator=g)
    return x, wt, scale, shift


def _rel(got, want):
    got = np.asarray(got, np.float64)
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))


def _no_fallback():
    """Context: fail if the op fell back to its reference implementation on CUDA."""
    cm = warnings.catch_warnings(record=True)

    class _Ctx:
        def __enter__(self):
            self.rec = cm.__enter__()
            warnings.simplefilter("always")
            return self

        def __exit__(self, *exc):
            cm.__exit__(*exc)
            msgs = [str(r.message) for r in self.rec if "reference implementation" in str(r.message)]
            assert not msgs, msgs
    return _Ctx()


# ---- AdderConv forward ------------------------------------------------------------------------
@pytest.mark.parametrize("case", GRID, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("activation", [0, 1])
def test_adder_forward_vs_reference(case, dtype, activation):
    x, w, scale, shift = _tensors(case, 1, dtype)
    attrs = _attrs(case, activation=activation)
    want = adder_ref.reference(x.double().numpy(), w.double().numpy(), scale.numpy(), shift.numpy(), **attrs)
    with _no_fallback():
        y = adder_conv(x.to(DEV), w.to(DEV), scale.to(DEV), shift.to(DEV), attrs["strides"], attrs["pads"],
                       attrs["dilations"], attrs["group"], activation, 0.2)
    assert y.dtype == dtype and tuple(y.shape) == want.shape
    tol = adder_ref.CONTRACT.tol("float32" if dtype == torch.float32 else "float16")
    assert _rel(y.float().cpu(), want) <= tol


def test_adder_forward_fp16_resnet_layer_vs_cpu_float64():
    """A ResNet-sized FP16 layer (K = 2304 taps) still meets the contract tolerance."""
    case = (8, 256, 14, 14, 256, (3, 3), [1, 1], [1, 1, 1, 1], [1, 1], 1)
    x, w, scale, shift = _tensors(case, 2, torch.float16)
    want = adder_conv(x.double(), w.double(), scale.double(), shift.double(), [1, 1], [1, 1, 1, 1], [1, 1], 1, 0,
                      0.2).numpy()
    y = adder_conv(x.to(DEV), w.to(DEV), scale.to(DEV), shift.to(DEV), [1, 1], [1, 1, 1, 1], [1, 1], 1, 0, 0.2)
    assert _rel(y.float().cpu(), want) <= adder_ref.CONTRACT.tol("float16")


# ---- AdderConv backward -----------------------------------------------------------------------
@pytest.mark.parametrize("case", GRID, ids=IDS)
@pytest.mark.parametrize("eta", [0.0, 0.2])
def test_adder_gradients_vs_cpu_op(case, eta):
    x, w, scale, shift = _tensors(case, 3, torch.float32)
    attrs = _attrs(case)
    gy = torch.randn(adder_ref.reference(x[:1].numpy(), w.numpy(), scale.numpy(), shift.numpy(), **attrs).shape[1:],
                     generator=torch.Generator().manual_seed(4))

    def run(dev):
        xs, ws, ss, hs = (t.detach().clone().to(dev).requires_grad_(True) for t in (x, w, scale, shift))
        y = adder_conv(xs, ws, ss, hs, attrs["strides"], attrs["pads"], attrs["dilations"], attrs["group"], 0, eta)
        (y * gy.to(dev)).sum().backward()
        return [t.grad.double().cpu() for t in (xs, ws, ss, hs)]

    with _no_fallback():
        got = run(DEV)
    want = run("cpu")
    for name, g_, w_ in zip(("x", "w", "scale", "shift"), got, want):
        assert _rel(g_.numpy(), w_.numpy()) <= 1e-4, name


def test_adder_backward_fp16_input():
    case = GRID[2]
    x, w, scale, shift = _tensors(case, 5, torch.float32)
    attrs = _attrs(case)
    xs = x.half().to(DEV).requires_grad_(True)
    ws = w.to(DEV).requires_grad_(True)
    y = adder_conv(xs, ws, scale.to(DEV), shift.to(DEV), attrs["strides"], attrs["pads"], attrs["dilations"],
                   attrs["group"], 0, 0.2)
    y.float().sum().backward()
    assert xs.grad.dtype == torch.float16 and ws.grad.dtype == torch.float32
    xc = x.half().float().requires_grad_(True)
    wc = w.clone().requires_grad_(True)
    adder_conv(xc, wc, scale, shift, attrs["strides"], attrs["pads"], attrs["dilations"], attrs["group"], 0,
               0.2).sum().backward()
    assert _rel(ws.grad.cpu().numpy(), wc.grad.double().numpy()) <= 1e-2
    assert _rel(xs.grad.float().cpu().numpy(), xc.grad.double().numpy()) <= 1e-2


# ---- BinaryConv -------------------------------------------------------------------------------
@pytest.mark.parametrize("case", GRID, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("binarize_input", [1, 0])
@pytest.mark.parametrize("activation", [0, 1])
def test_binary_forward_vs_reference(case, dtype, binarize_input, activation):
    x, w, scale, shift = _tensors(case, 6, dtype)
    x[0, 0, :2, :2] = 0.0  # binarize(0) = +1
    w.view(-1)[:3] = 0.0
    attrs = _attrs(case, binarize_input=binarize_input, activation=activation)
    packed = binary_ref.pack_weights(w.float().numpy())
    want = binary_ref.reference(x.double().numpy(), packed, scale.numpy(), shift.numpy(), **attrs)
    with _no_fallback():
        y = binary_conv(x.to(DEV), torch.from_numpy(packed).to(DEV), scale.to(DEV), shift.to(DEV),
                        attrs["strides"], attrs["pads"], attrs["dilations"], attrs["group"], binarize_input,
                        activation)
    assert y.dtype == dtype and tuple(y.shape) == want.shape
    tol = binary_ref.CONTRACT.tol("float32" if dtype == torch.float32 else "float16")
    assert _rel(y.float().cpu(), want) <= tol


def test_binary_forward_is_exact_integer_sum():
    """With binarize_input and scale 1 / shift 0 the output is the exact +-1 sum."""
    case = GRID[7]
    x, w, _, _ = _tensors(case, 7, torch.float32)
    m = w.shape[0]
    attrs = _attrs(case, binarize_input=1, activation=0)
    packed = binary_ref.pack_weights(w.numpy())
    want = binary_ref.reference(x.numpy(), packed, np.ones(m), np.zeros(m), **attrs)
    y = binary_conv(x.to(DEV), torch.from_numpy(packed).to(DEV), torch.ones(m, device=DEV), torch.zeros(m, device=DEV),
                    attrs["strides"], attrs["pads"], attrs["dilations"], attrs["group"], 1, 0)
    assert np.array_equal(y.cpu().numpy().astype(np.float64), want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("cg", [1, 3, 31, 32, 33, 64, 65, 100])
def test_weight_packing_on_device(ext, dtype, cg):
    w = torch.randn(7, cg, 3, 2, generator=torch.Generator().manual_seed(cg)).to(dtype)
    w.view(-1)[::5] = 0.0
    got = ext.binary_pack_weights(w.to(DEV)).cpu()
    assert torch.equal(got, pack_weights(w.float()))


@pytest.mark.parametrize("case", GRID, ids=IDS)
@pytest.mark.parametrize("binarize_input", [1, 0])
def test_binary_train_vs_cpu_op(case, binarize_input):
    """cmc::binary_conv_train: the CUDA forward (device packing + kernel) and the backward against CPU."""
    x, w, scale, shift = _tensors(case, 8, torch.float32)
    attrs = _attrs(case)
    gy_shape = None

    def run(dev):
        nonlocal gy_shape
        xs, ws, ss, hs = (t.detach().clone().to(dev).requires_grad_(True) for t in (x, w, scale, shift))
        y = binary_conv_train(xs, ws, ss, hs, attrs["strides"], attrs["pads"], attrs["dilations"], attrs["group"],
                              binarize_input, 0)
        gy = torch.linspace(-1, 1, y.numel()).reshape(y.shape).to(dev)
        (y * gy).sum().backward()
        return [y.detach().double().cpu()] + [t.grad.double().cpu() for t in (xs, ws, ss, hs)]

    with _no_fallback():
        got = run(DEV)
    want = run("cpu")
    for name, g_, w_ in zip(("y", "x", "w", "scale", "shift"), got, want):
        assert _rel(g_.numpy(), w_.numpy()) <= 1e-4, name


# ---- the C++ API's own checks surface as errors -------------------------------------------------
def test_bad_packed_word_count_raises(ext):
    x = torch.randn(1, 40, 5, 5, device=DEV)
    bad = torch.zeros(4, 3, 3, 1, dtype=torch.int32, device=DEV)  # 40 channels need 2 words
    with pytest.raises(RuntimeError, match="words per tap"):
        ext.binary_forward(x, bad, torch.ones(4, device=DEV), torch.zeros(4, device=DEV), [1, 1], [1, 1, 1, 1],
                           [1, 1], 1, 1, 0)


def test_noncontiguous_and_offset_inputs():
    x = torch.randn(2, 8, 9, 9, device=DEV)[:, :, 1:, 1:]  # non-contiguous view
    w = torch.randn(6, 8, 3, 3, device=DEV)
    s, t = torch.ones(6, device=DEV), torch.zeros(6, device=DEV)
    y = adder_conv(x, w, s, t, [1, 1], [1, 1, 1, 1], [1, 1], 1, 0, 0.2)
    want = adder_conv(x.cpu(), w.cpu(), s.cpu(), t.cpu(), [1, 1], [1, 1, 1, 1], [1, 1], 1, 0, 0.2)
    assert _rel(y.cpu().numpy(), want.double().numpy()) <= 2e-3
