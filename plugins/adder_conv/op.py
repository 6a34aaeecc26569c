"""``cmc::adder_conv``: the AdderConv contract as a PyTorch operator.

A torch.library custom op (so it survives torch.export / torch.compile as one node) with a fake
kernel, a CPU kernel, and AdderNet's training gradients:

* weight grad  sum (X - W) * g         (full precision, not the sign the true derivative has),
  then scaled by ``eta * sqrt(numel W) / ||gradW||_2`` (AdderNet's adaptive learning rate, eta=0.2);
* input grad   sum HardTanh(W - X) * g.

The CPU kernel never builds the N x M x (C kh kw) x L difference tensor of the research code: the
forward is an L1 distance (``torch.cdist(p=1)``) between im2col patches and filters, the weight
grad is a matmul identity, the input grad loops over filters, and everything runs in batch chunks
whose im2col stays under a fixed memory budget.

Precision rule (the contract's): W, scale and shift are float32 whatever X is. float32, float16 and
bfloat16 X are computed in float32 — |x - w|, the sum, the epilogue, and in training every gradient
(the pre-epilogue sum the scale gradient needs is recomputed in float32, never rounded to X's type) —
and only Y (and gradX) are rounded to X's type: FP16 means FP16 activations. On this CPU path two sums
go further, to float64, rounded once: each output's taps (forward) and dW's identity (see _adder_sum and
adder_grads for the measured reasons). float64 X (with float32 or
float64 W) is computed in float64 throughout, forward and backward, on CPU and CUDA alike (the CUDA
kernels take float32/float16 only, so float64 CUDA tensors run the implementation here, exactly).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..contract import conv_output_size, load
from .._epilogue import apply_epilogue, epilogue_backward

CONTRACT = load("adder_conv")
DEFAULT_ETA = 0.2
# Upper bound for the im2col of one batch chunk (forward and backward work chunk by chunk).
_CHUNK_BYTES = 4 * 1024 * 1024


def _out_hw(x_shape, w_shape, strides, pads, dilations):
    ho = conv_output_size(x_shape[2], w_shape[2], strides[0], pads[0], pads[2], dilations[0])
    wo = conv_output_size(x_shape[3], w_shape[3], strides[1], pads[1], pads[3], dilations[1])
    return ho, wo


def _unfold(x, w_shape, strides, pads, dilations):
    """im2col of the zero-padded input: [N, C*kh*kw, L] (padded taps read 0)."""
    xp = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
    cols = F.unfold(xp, (w_shape[2], w_shape[3]), dilation=tuple(dilations), stride=tuple(strides))
    return xp.shape, cols


def _batch_chunks(x, w_shape, strides, pads, dilations):
    """Slices of the batch whose im2col fits the chunk budget: memory stays bounded at any batch."""
    ho, wo = _out_hw(x.shape, w_shape, strides, pads, dilations)
    per_sample = max(1, x.shape[1] * w_shape[2] * w_shape[3] * ho * wo * x.element_size())
    step = max(1, _CHUNK_BYTES // per_sample)
    return [slice(i, min(x.shape[0], i + step)) for i in range(0, x.shape[0], step)]


def _adder_sum(x, w, strides, pads, dilations, group):
    """A = -sum |Xpad - W| over each filter's taps, shape [N, M, Ho, Wo], in X's dtype.

    The distances are accumulated in float64 and rounded once: torch.cdist(p=1) sums the taps one after
    another, and with trained magnitudes (sums in the tens of thousands) that sequential float32 sum put
    ResNet-20's logits 4x further from float64 than torch.sum's cascade does. On the CPU cdist is no
    faster in float32 than in float64 (0.13 s vs 0.12 s for an [8, 1024, 576] x [64, 576] chunk, 2-core
    AMD EPYC), so the exact-as-float32-allows sum costs nothing but the chunk's float64 copy."""
    n, m = x.shape[0], w.shape[0]
    wacc = w.to(torch.float64)
    ho, wo = _out_hw(x.shape, w.shape, strides, pads, dilations)
    mg = m // group
    out = x.new_empty((n, m, ho * wo))
    for b in _batch_chunks(x, w.shape, strides, pads, dilations):
        _, cols = _unfold(x[b], w.shape, strides, pads, dilations)
        k = cols.shape[1] // group
        nb = cols.shape[0]
        for g in range(group):
            patches = cols[:, g * k:(g + 1) * k, :].transpose(1, 2).to(torch.float64)  # [B, L, K]
            filters = wacc[g * mg:(g + 1) * mg].reshape(1, mg, k).expand(nb, mg, k)
            out[b, g * mg:(g + 1) * mg] = torch.cdist(patches, filters, p=1.0).transpose(1, 2)
    return out.neg_().reshape(n, m, ho, wo)


def compute_dtype(x_dtype: torch.dtype) -> torch.dtype:
    """What an X of this dtype is computed in: float64 for float64, float32 for everything else."""
    return torch.float64 if x_dtype == torch.float64 else torch.float32


def _check(x, w, scale, shift, strides, pads, dilations, group, activation):
    attrs = CONTRACT.normalize(dict(kernel_shape=list(w.shape[2:]), strides=strides, pads=pads,
                                    dilations=dilations, group=group, activation=activation))
    if not x.dtype.is_floating_point:
        raise ValueError(f"AdderConv: X must be a float tensor, got {x.dtype}")
    if not (w.dtype == torch.float32 or (w.dtype == torch.float64 and x.dtype == torch.float64)):
        raise ValueError(f"AdderConv: W must be float32 (float64 only with float64 X), got {w.dtype} with X {x.dtype}; "
                         "the weights stay float32 at any activation precision (trained AdderNet weights reach "
                         "|w| ~ 60, where float16 is off by up to 0.016 per tap)")
    if x.dim() != 4 or w.dim() != 4:
        raise ValueError(f"AdderConv needs 4-D X and W, got {tuple(x.shape)} and {tuple(w.shape)}")
    if x.shape[1] != w.shape[1] * group or w.shape[0] % group:
        raise ValueError(f"AdderConv: X has {x.shape[1]} channels but W is {tuple(w.shape)} with group={group}")
    if scale.shape != (w.shape[0],) or shift.shape != (w.shape[0],):
        raise ValueError("AdderConv: scale and shift must have one value per output channel")
    return attrs


@torch.library.custom_op("cmc::adder_conv", mutates_args=())
def adder_conv(x: torch.Tensor, w: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
               strides: list[int], pads: list[int], dilations: list[int], group: int,
               activation: int, eta: float) -> torch.Tensor:
    _check(x, w, scale, shift, strides, pads, dilations, group, activation)
    cd = compute_dtype(x.dtype)  # half X: float32 arithmetic, Y rounded once at the end
    acc = _adder_sum(x.to(cd), w.to(cd), strides, pads, dilations, group)
    return apply_epilogue(acc, scale, shift, activation).to(x.dtype)


@adder_conv.register_fake
def _(x, w, scale, shift, strides, pads, dilations, group, activation, eta):
    ho, wo = _out_hw(x.shape, w.shape, strides, pads, dilations)
    return x.new_empty((x.shape[0], w.shape[0], ho, wo))


def _setup_context(ctx, inputs, output):
    x, w, scale, shift, strides, pads, dilations, group, activation, eta = inputs
    ctx.save_for_backward(x, w, scale, shift, output)
    ctx.conf = (strides, pads, dilations, group, activation, eta)


def adder_grads(x, w, grad_acc, strides, pads, dilations, group, eta, need_x=True, need_w=True):
    """AdderNet's gradients, one batch chunk at a time (im2col computed once per chunk):
    dX = fold( sum_m HardTanh(W - Xcols) * gradA )   (padded taps dropped)
    dW = sum_{n,l} (Xcols - W) * gradA = gradA @ Xcols^T - W * sum gradA, then the adaptive scale.

    dW's identity is evaluated and accumulated in float64 and rounded once: with trained magnitudes
    (|w| ~ 60) its two terms are large and nearly cancel, so in float32 it loses the digits the direct
    sum (X - W) * gradA keeps. The float64 matmul is the cheap part of the backward (the input gradient's
    filter loop dominates), and no N x M x CK x L tensor is built."""
    n, m = x.shape[0], w.shape[0]
    mg = m // group
    gx = torch.zeros_like(x) if need_x else None
    gw = torch.zeros(m, w[0].numel(), dtype=torch.float64, device=x.device) if need_w else None
    g_all = grad_acc.reshape(n, m, -1)
    for b in _batch_chunks(x, w.shape, strides, pads, dilations):
        xp_shape, cols = _unfold(x[b], w.shape, strides, pads, dilations)
        k = cols.shape[1] // group
        gcols = torch.zeros_like(cols) if need_x else None
        for g in range(group):
            wg = w[g * mg:(g + 1) * mg].reshape(mg, k)
            gg = g_all[b, g * mg:(g + 1) * mg, :]  # [B, Mg, L]
            xc = cols[:, g * k:(g + 1) * k, :]    # [B, K, L]
            if need_w:  # in float64: see the docstring
                gg64 = gg.to(torch.float64)
                gw[g * mg:(g + 1) * mg] += (torch.bmm(gg64, xc.transpose(1, 2).to(torch.float64)).sum(0)
                                            - wg.to(torch.float64) * gg64.sum(dim=(0, 2))[:, None])
            if need_x:
                acc = gcols[:, g * k:(g + 1) * k, :]
                for j in range(mg):  # one filter at a time: temporaries stay [B, K, L]
                    t = torch.sub(wg[j].view(1, k, 1), xc).clamp_(-1.0, 1.0)
                    acc.addcmul_(t, gg[:, j:j + 1, :])
        if need_x:
            gxp = F.fold(gcols, xp_shape[2:], (w.shape[2], w.shape[3]), dilation=tuple(dilations), stride=tuple(strides))
            gx[b] = gxp[:, :, pads[0]:pads[0] + x.shape[2], pads[1]:pads[1] + x.shape[3]]
    if need_w:
        gw = gw.reshape(w.shape)
        if eta > 0:
            gw = gw * (eta * math.sqrt(w.numel()) / gw.norm(p=2).clamp(min=1e-12))
        gw = gw.to(x.dtype)
    return gx, gw


def _raw_sum(x, w, strides, pads, dilations, group):
    """A = -sum |Xpad - W| in compute_dtype(X) (never rounded to half), through the op itself with an
    identity epilogue (exact: 1 * A + 0), so CUDA tensors use the forward kernel and tracing sees the op."""
    cd = compute_dtype(x.dtype)
    m = w.shape[0]
    ones = torch.ones(m, dtype=cd, device=x.device)
    zeros = torch.zeros(m, dtype=cd, device=x.device)
    return adder_conv(x.to(cd), w.to(cd) if cd == torch.float64 else w, ones, zeros, strides, pads, dilations, group,
                      0, 0.0)


def _backward(ctx, grad_y):
    # Precision rule of the backward: everything in compute_dtype(X) — float32 for float32/float16 X
    # (the CUDA kernels, or the code below), float64 for float64 X (the code below, on CPU or CUDA);
    # only gradX is rounded back to X's dtype, gradW to W's.
    x, w, scale, shift, y = ctx.saved_tensors
    strides, pads, dilations, group, activation, eta = ctx.conf
    need_x, need_w, need_scale, need_shift = ctx.needs_input_grad[:4]
    cd = compute_dtype(x.dtype)
    # The scale gradient needs the pre-epilogue sum: recomputed (not stored for every training step).
    acc = _raw_sum(x, w, strides, pads, dilations, group) if need_scale else None
    grad_acc, grad_scale, grad_shift = epilogue_backward(grad_y.to(cd), y, acc, scale, activation, need_scale,
                                                         need_shift)
    gx = gw = None
    if need_x or need_w:
        # [cmc CUDA hook] float32/float16 CUDA tensors: the trt_plugins backward kernels (None -> below).
        cuda = _cuda_kernels.adder_backward(x, w, grad_acc, strides, pads, dilations, group, eta, need_x, need_w) \
            if x.is_cuda and _cuda_kernels is not None else None
        if cuda is not None:
            gx, gw = cuda
        else:
            gx, gw = adder_grads(x.to(cd), w.to(cd), grad_acc, strides, pads, dilations, group, eta, need_x, need_w)
            gx = gx.to(x.dtype) if gx is not None else None
            gw = gw.to(w.dtype) if gw is not None else None
    return gx, gw, grad_scale, grad_shift, None, None, None, None, None, None


adder_conv.register_autograd(_backward, setup_context=_setup_context)

# [cmc CUDA hook] 'cuda' kernel of cmc::adder_conv from plugins/_cuda (built lazily on first CUDA call;
# the implementation above runs wherever it is unavailable). CPU tensors are not affected.
try:
    from .._cuda import register as _cuda_kernels
except ImportError:  # cmc.plugins._cuda not installed
    _cuda_kernels = None
else:
    _cuda_kernels.register_adder_conv(adder_conv)


def to_onnx(x, w, scale, shift, strides, pads, dilations, group, activation, eta):
    """Decomposition used at export: one com.cmc::AdderConv node (eta is training-only)."""
    ho, wo = _out_hw(x.shape, w.shape, strides, pads, dilations)
    return torch.onnx.ops.symbolic(
        f"{CONTRACT.domain}::{CONTRACT.op_type}",
        (x, w, scale, shift),
        attrs=dict(kernel_shape=list(w.shape[2:]), strides=list(strides), pads=list(pads),
                   dilations=list(dilations), group=int(group), activation=int(activation)),
        dtype=x.dtype,
        shape=(x.shape[0], w.shape[0], ho, wo),
        version=CONTRACT.version,
    )
