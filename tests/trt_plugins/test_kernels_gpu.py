"""GPU tests of the trt_plugins CUDA kernels through the cmc ops' 'cuda' kernels (plugins/_cuda).

Every kernel against the contract's NumPy reference (float64) on a grid: odd and non-multiple-of-32
channels, stride 2, dilation, asymmetric pads, groups (incl. depthwise), batch 1 ... 64, rectangular
kernels, FP32 and FP16, with and without the ReLU epilogue; gradients of the CUDA backward against
the CPU op. Marked ``gpu`` and skipped with the reason where there is no CUDA GPU.

AdderConv cases use trained-AdderNet numerics (tests/plugins/adder_data.py: |w| up to 60, post-ReLU
inputs, a BatchNorm-like epilogue fitted to the layer's own output) and FP16 means FP16 activations with
float32 weights: on that data the pre-issue-10 FP16 kernel (half weights, half partial sums) misses the
FP16 tolerance, and the exact FP16-vs-FP32 identity below cannot hold for it.
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

from ..plugins import adder_data

from .cuda_ext import load_extension

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
    return load_extension()


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
def _adder_case(case, seed, x_dtype=torch.float32, activation=0):
    """x (x_dtype), w (float32), scale, shift, attrs with trained-AdderNet numerics."""
    n, c, h, w, m, (kh, kw), strides, pads, dil, group = case
    return adder_data.layer_case(n, c, h, w, m, kh, kw, strides, pads, dil, group, activation, seed=seed,
                                 x_dtype=x_dtype)


def _adder_cuda(x, w, scale, shift, a):
    return adder_conv(x.to(DEV), w.to(DEV), scale.to(DEV), shift.to(DEV), a["strides"], a["pads"], a["dilations"],
                      a["group"], a["activation"], 0.2)


@pytest.mark.parametrize("case", GRID, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("activation", [0, 1])
def test_adder_forward_vs_reference(case, dtype, activation):
    x, w, scale, shift, attrs = _adder_case(case, 1, dtype, activation)
    want = adder_ref.reference(x.double().numpy(), w.double().numpy(), scale.numpy(), shift.numpy(), **attrs)
    with _no_fallback():
        y = _adder_cuda(x, w, scale, shift, attrs)
    assert y.dtype == dtype and tuple(y.shape) == want.shape
    tol = adder_ref.CONTRACT.tol("float32" if dtype == torch.float32 else "float16")
    assert _rel(y.float().cpu(), want) <= tol


@pytest.mark.parametrize("case", GRID, ids=IDS)
def test_adder_fp16_io_is_the_fp32_kernel_rounded_once(case):
    """The FP16 rule exactly: half X widened, float32 W and arithmetic, Y rounded once. Same tiles and the
    same float32 operations in the same order as the FP32 kernel on the widened input, so bit for bit."""
    x16, w, scale, shift, attrs = _adder_case(case, 11, torch.float16, activation=1)
    with _no_fallback():
        y16 = _adder_cuda(x16, w, scale, shift, attrs)
        y32 = _adder_cuda(x16.float(), w, scale, shift, attrs)
    assert y16.dtype == torch.float16
    assert torch.equal(y16, y32.half())


def test_adder_forward_fp16_resnet_layer_vs_cpu_float64():
    """A ResNet-sized FP16-activation layer (K = 2304 taps, |w| up to 60) meets the FP16 tolerance."""
    case = (8, 256, 14, 14, 256, (3, 3), [1, 1], [1, 1, 1, 1], [1, 1], 1)
    x16, w, scale, shift, a = _adder_case(case, 2, torch.float16)
    want = adder_conv(x16.double(), w.double(), scale.double(), shift.double(), a["strides"], a["pads"],
                      a["dilations"], a["group"], 0, 0.2).numpy()
    y = _adder_cuda(x16, w, scale, shift, a)
    assert _rel(y.float().cpu(), want) <= adder_ref.CONTRACT.tol("float16")
    y32 = _adder_cuda(x16.float(), w, scale, shift, a)
    assert _rel(y32.cpu(), want) <= adder_ref.CONTRACT.tol("float32")


def test_adder_rejects_half_weights():
    x16, w, scale, shift, a = _adder_case(GRID[2], 3, torch.float16)
    with pytest.raises(ValueError, match="W must be float32"):
        _adder_cuda(x16, w.half(), scale, shift, a)


# ---- AdderConv backward -----------------------------------------------------------------------
def _grads(x, w, scale, shift, attrs, gy, eta, dev):
    xs, ws, ss, hs = (t.detach().clone().to(dev).requires_grad_(True) for t in (x, w, scale, shift))
    y = adder_conv(xs, ws, ss, hs, attrs["strides"], attrs["pads"], attrs["dilations"], attrs["group"],
                   attrs["activation"], eta)
    (y.to(gy.dtype) * gy.to(dev)).sum().backward()
    return [y.detach().cpu()] + [t.grad.cpu() for t in (xs, ws, ss, hs)]


def _gy(x, w, scale, shift, attrs, seed, dtype=torch.float32):
    shape = adder_conv(x[:1].double(), w.double(), scale, shift, attrs["strides"], attrs["pads"], attrs["dilations"],
                       attrs["group"], 0, 0.0).shape
    return torch.randn((x.shape[0],) + tuple(shape[1:]), generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("case", GRID, ids=IDS)
@pytest.mark.parametrize("eta", [0.0, 0.2])
def test_adder_gradients_vs_cpu_op(case, eta):
    x, w, scale, shift, attrs = _adder_case(case, 3, activation=1)
    gy = _gy(x, w, scale, shift, attrs, 4)
    with _no_fallback():
        got = _grads(x, w, scale, shift, attrs, gy, eta, DEV)
    want = _grads(x, w, scale, shift, attrs, gy, eta, "cpu")
    for name, g_, w_ in zip(("y", "x", "w", "scale", "shift"), got, want):
        assert _rel(g_.double().numpy(), w_.double().numpy()) <= 1e-4, name


def test_adder_backward_fp16_input_is_float32_arithmetic():
    """Half X: every gradient is the float32 computation on the widened input (the scale gradient's
    recomputed raw sum included: float32 from the kernel, never rounded to half)."""
    x16, w, scale, shift, attrs = _adder_case(GRID[2], 5, torch.float16, activation=1)
    gy = _gy(x16, w, scale, shift, attrs, 6).half().float()  # the gradient reaching a half output is half
    with _no_fallback():
        got = _grads(x16, w, scale, shift, attrs, gy, 0.2, DEV)
        want = _grads(x16.float(), w, scale, shift, attrs, gy, 0.2, DEV)
    assert got[1].dtype == torch.float16 and all(g.dtype == torch.float32 for g in got[2:])
    assert torch.equal(got[1], want[1].half())                       # gradX
    assert _rel(got[2].numpy(), want[2].double().numpy()) <= 1e-5     # gradW (atomics: order varies)
    assert torch.equal(got[3], want[3]) and torch.equal(got[4], want[4])  # scale, shift


# ---- float64 on CUDA: exact --------------------------------------------------------------------
@pytest.mark.parametrize("case", GRID[:5], ids=IDS[:5])
@pytest.mark.parametrize("eta", [0.0, 0.2])
def test_adder_float64_on_cuda_matches_cpu_float64(case, eta):
    """float64 CUDA tensors never reach the float32 kernels: forward and backward are float64 (the op's
    own code on the GPU) and agree with the CPU op to 1e-10."""
    x, w, scale, shift, attrs = _adder_case(case, 7, activation=1)
    x, w, scale, shift = x.double(), w.double(), scale.double(), shift.double()
    gy = _gy(x, w, scale, shift, attrs, 8, torch.float64)
    got = _grads(x, w, scale, shift, attrs, gy, eta, DEV)
    want = _grads(x, w, scale, shift, attrs, gy, eta, "cpu")
    for name, g_, w_ in zip(("y", "x", "w", "scale", "shift"), got, want):
        assert g_.dtype == torch.float64, name
        assert _rel(g_.numpy(), w_.numpy()) <= 1e-10, name


def test_adder_float64_gradients_match_the_research_code_on_cuda():
    """The symptom of issue 10: float64 training on CUDA vs the research code's unfold in float64."""
    from samples.addernet_resnet20 import adder2d_function

    x, w, scale, shift, attrs = _adder_case((2, 8, 9, 9, 6, (3, 3), [1, 1], [1, 1, 1, 1], [1, 1], 1), 9)
    x = x.double().to(DEV).requires_grad_(True)
    wd = w.double().to(DEV).requires_grad_(True)
    ones, zeros = torch.ones(6, dtype=torch.float64, device=DEV), torch.zeros(6, dtype=torch.float64, device=DEV)
    y = adder_conv(x, wd, ones, zeros, [1, 1], [1, 1, 1, 1], [1, 1], 1, 0, 0.2)
    gy = torch.randn(y.shape, dtype=torch.float64, device=DEV, generator=torch.Generator(DEV).manual_seed(1))
    gx, gw = torch.autograd.grad((y * gy).sum(), (x, wd))
    xr = x.detach().clone().requires_grad_(True)
    wr = wd.detach().clone().requires_grad_(True)
    yr = adder2d_function(xr, wr, 1, 1)
    gxr, gwr = torch.autograd.grad((yr * gy).sum(), (xr, wr))
    assert _rel(y.detach().cpu().numpy(), yr.detach().cpu().numpy()) <= 1e-12
    assert _rel(gx.cpu().numpy(), gxr.cpu().numpy()) <= 1e-10
    assert _rel(gw.cpu().numpy(), gwr.cpu().numpy()) <= 1e-10


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
