"""BinaryConv as PyTorch operators.

* ``cmc::binary_conv`` mirrors the ONNX node exactly (int32 bit-packed weights, fused epilogue):
  it is what an exported program contains and what becomes ``com.cmc::BinaryConv``.
* ``cmc::binary_conv_train`` takes the latent float weights and carries BNN training semantics:
  saturating straight-through estimator for activations (no gradient where |x| > 1), identity STE
  for weights. Scale (alpha) and shift take ordinary gradients, so alpha = mean|W| computed outside
  with autograd passes its gradient back to W as in the research code.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from .._epilogue import apply_epilogue, epilogue_backward
from .reference import CONTRACT, FLOAT16_TINY, WORD_BITS, words_per_tap


def binarize(v: torch.Tensor) -> torch.Tensor:
    """+1 where v >= 0 else -1 (binarize(0) = +1; torch.sign would give 0)."""
    return torch.where(v >= 0, torch.ones_like(v), -torch.ones_like(v))


_BIT_VALUES = [1 << b for b in range(WORD_BITS)]


def pack_weights(w: torch.Tensor) -> torch.Tensor:
    """float [M, Cg, kh, kw] -> int32 [M, kh, kw, ceil(Cg/32)] (contract layout, LSB first)."""
    m, cg, kh, kw = w.shape
    nw = words_per_tap(cg)
    bits = torch.zeros(m, kh, kw, nw * WORD_BITS, dtype=torch.int64, device=w.device)
    bits[..., :cg] = (w.detach().permute(0, 2, 3, 1) >= 0).to(torch.int64)
    values = torch.tensor(_BIT_VALUES, dtype=torch.int64, device=w.device)
    words = (bits.view(m, kh, kw, nw, WORD_BITS) * values).sum(-1)
    # Reinterpret the unsigned 32-bit words as int32 (two's complement).
    return torch.where(words >= 2 ** 31, words - 2 ** 32, words).to(torch.int32)


def unpack_weights(packed: torch.Tensor, c_per_group: int, dtype=torch.float32) -> torch.Tensor:
    """int32 [M, kh, kw, nw] -> +-1 [M, Cg, kh, kw]."""
    m, kh, kw, nw = packed.shape
    masks = torch.tensor(np.array(_BIT_VALUES, dtype=np.uint32).view(np.int32), dtype=torch.int32, device=packed.device)
    bits = (packed.unsqueeze(-1) & masks) != 0  # [M, kh, kw, nw, 32]
    bits = bits.reshape(m, kh, kw, nw * WORD_BITS)[..., :c_per_group]
    pm1 = torch.where(bits, 1.0, -1.0).to(dtype)
    return pm1.permute(0, 3, 1, 2).contiguous()


@contextmanager
def full_fp32_convs(*tensors):
    """cuDNN convolutions of float32 CUDA tensors in full FP32 (TF32 off) inside the block.

    PyTorch lets cuDNN run FP32 convolutions in TF32 by default (10-bit mantissa), which puts the
    gradients 2-4e-4 off, past the contract's 1e-4. The op's own convolutions (the reference
    forward on CUDA and the whole backward) therefore switch TF32 off for their duration and
    restore the caller's setting after (contract.json, "precision"). The flag is process-global,
    so a convolution another thread runs meanwhile is affected too. No-op for CPU tensors."""
    if not any(t is not None and t.is_cuda and t.dtype == torch.float32 for t in tensors):
        yield
        return
    conv = torch.backends.cudnn.conv
    previous = conv.fp32_precision
    conv.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision = previous


def _conv(xb, wb, strides, pads, dilations, group):
    xp = F.pad(xb, (pads[1], pads[3], pads[0], pads[2]))  # zeros after binarization: padded taps add 0
    with full_fp32_convs(xp, wb):
        return F.conv2d(xp, wb, None, tuple(strides), 0, tuple(dilations), group)


def _out_shape(x, m, kh, kw, strides, pads, dilations):
    from ..contract import conv_output_size
    ho = conv_output_size(x.shape[2], kh, strides[0], pads[0], pads[2], dilations[0])
    wo = conv_output_size(x.shape[3], kw, strides[1], pads[1], pads[3], dilations[1])
    return (x.shape[0], m, ho, wo)


@torch.library.custom_op("cmc::binary_conv", mutates_args=())
def binary_conv(x: torch.Tensor, w_packed: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
                strides: list[int], pads: list[int], dilations: list[int], group: int,
                binarize_input: int, activation: int) -> torch.Tensor:
    if x.shape[1] % group:
        raise ValueError(f"BinaryConv: {x.shape[1]} input channels not divisible by group={group}")
    # float16 X: the sum and the epilogue in float32 (contract "precision"; half sums are inexact above 2048),
    # then one rounding by the contract's float16 rule
    compute = torch.float32 if x.dtype == torch.float16 else x.dtype
    xc = x.to(compute)
    wb = unpack_weights(w_packed, x.shape[1] // group, compute)
    xb = binarize(xc) if binarize_input else xc
    y = apply_epilogue(_conv(xb, wb, strides, pads, dilations, group), scale, shift, activation)
    return round_output(y, x.dtype)


def round_output(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A float32 result in ``dtype``; float16 by the contract's "float16_rounding": a nonzero value that
    would round to zero becomes +-2^-24, so binarize and sign of the result are those of y."""
    if dtype != torch.float16 or y.dtype == dtype:
        return y.to(dtype)
    h = y.to(torch.float16)
    tiny = torch.where(y < 0, -FLOAT16_TINY, FLOAT16_TINY).to(torch.float16)
    return torch.where((y != 0) & (h == 0), tiny, h)


@binary_conv.register_fake
def _(x, w_packed, scale, shift, strides, pads, dilations, group, binarize_input, activation):
    return x.new_empty(_out_shape(x, w_packed.shape[0], w_packed.shape[1], w_packed.shape[2], strides, pads, dilations))


def to_onnx(x, w_packed, scale, shift, strides, pads, dilations, group, binarize_input, activation):
    """Decomposition used at export: one com.cmc::BinaryConv node."""
    kh, kw = int(w_packed.shape[1]), int(w_packed.shape[2])
    return torch.onnx.ops.symbolic(
        f"{CONTRACT.domain}::{CONTRACT.op_type}",
        (x, w_packed, scale, shift),
        attrs=dict(kernel_shape=[kh, kw], strides=list(strides), pads=list(pads), dilations=list(dilations),
                   group=int(group), binarize_input=int(binarize_input), activation=int(activation)),
        dtype=x.dtype,
        shape=_out_shape(x, w_packed.shape[0], kh, kw, strides, pads, dilations),
        version=CONTRACT.version,
    )


@torch.library.custom_op("cmc::binary_conv_train", mutates_args=())
def binary_conv_train(x: torch.Tensor, w: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
                      strides: list[int], pads: list[int], dilations: list[int], group: int,
                      binarize_input: int, activation: int) -> torch.Tensor:
    xb = binarize(x) if binarize_input else x
    return apply_epilogue(_conv(xb, binarize(w).to(x.dtype), strides, pads, dilations, group), scale, shift, activation)


@binary_conv_train.register_fake
def _(x, w, scale, shift, strides, pads, dilations, group, binarize_input, activation):
    return x.new_empty(_out_shape(x, w.shape[0], w.shape[2], w.shape[3], strides, pads, dilations))


def _setup(ctx, inputs, output):
    x, w, scale, shift, strides, pads, dilations, group, binarize_input, activation = inputs
    ctx.save_for_backward(x, w, scale, output)
    ctx.conf = (strides, pads, dilations, group, binarize_input, activation)


def _backward(ctx, grad_y):
    x, w, scale, y = ctx.saved_tensors
    strides, pads, dilations, group, binarize_input, activation = ctx.conf
    need_x, need_w, need_scale, need_shift = ctx.needs_input_grad[:4]
    xb = binarize(x) if binarize_input else x
    wb = binarize(w).to(x.dtype)
    acc = _conv(xb, wb, strides, pads, dilations, group) if need_scale else None
    g, grad_scale, grad_shift = epilogue_backward(grad_y, y, acc, scale, activation, need_scale, need_shift)
    xp = F.pad(xb, (pads[1], pads[3], pads[0], pads[2]))
    gx = gw = None
    with full_fp32_convs(xp, wb, g):  # the backward's convolutions never run in TF32 (see there)
        if need_x:
            gxp = torch.nn.grad.conv2d_input(xp.shape, wb, g, tuple(strides), 0, tuple(dilations), group)
            gx = gxp[:, :, pads[0]:pads[0] + x.shape[2], pads[1]:pads[1] + x.shape[3]]
            if binarize_input:
                gx = gx * (x.abs() <= 1).to(gx.dtype)  # saturating STE
        if need_w:
            gw = torch.nn.grad.conv2d_weight(xp, wb.shape, g, tuple(strides), 0, tuple(dilations), group).to(w.dtype)
    return gx, gw, grad_scale, grad_shift, None, None, None, None, None, None


binary_conv_train.register_autograd(_backward, setup_context=_setup)

# [cmc CUDA hook] 'cuda' kernels of cmc::binary_conv / cmc::binary_conv_train forwards from
# plugins/_cuda (built lazily on first CUDA call; the implementations above run wherever it is
# unavailable). CPU tensors are not affected.
try:
    from .._cuda import register as _cuda_kernels
except ImportError:  # cmc.plugins._cuda not installed
    _cuda_kernels = None
else:
    _cuda_kernels.register_binary_conv(binary_conv)
    _cuda_kernels.register_binary_conv_train(binary_conv_train)
