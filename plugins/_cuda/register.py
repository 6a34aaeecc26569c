"""'cuda' kernels of the cmc ops, backed by the trt_plugins CUDA kernels (see loader.py).

The op modules call ``register_adder_conv`` / ``register_binary_conv`` / ``register_binary_conv_train``
once at import; that only registers Python wrappers (cheap). The extension is built on the first
call with a CUDA tensor. When it cannot be had (``loader.unavailable_reason()``), or for a dtype the
kernels do not take (anything but float32/float16; AdderConv: float32 W), the wrapper runs the op's own
implementation, so results never depend on whether the extension exists; a warning says so once per
reason. float64 in particular never reaches the kernels: it is computed in float64 by the op itself.
"""
from __future__ import annotations

import warnings

import torch

from . import loader

_KERNEL_DTYPES = (torch.float32, torch.float16)
_warned: set[str] = set()


def _warn_once(what: str, reason: str) -> None:
    key = f"{what}: {reason}"
    if key not in _warned:
        _warned.add(key)
        warnings.warn(f"cmc: {what} runs the reference implementation on CUDA ({reason})", RuntimeWarning,
                      stacklevel=3)


def _ext_or_warn(what: str):
    ext = loader.load()
    if ext is None:
        _warn_once(what, loader.unavailable_reason() or "extension unavailable")
    return ext


def _ints(v) -> list[int]:
    return [int(i) for i in v]


# ---- AdderConv -----------------------------------------------------------------------------------
def register_adder_conv(op) -> None:
    """Register the CUDA forward of ``cmc::adder_conv`` (op: the CustomOpDef)."""
    init = op._init_fn  # the op's own (reference) implementation

    @op.register_kernel("cuda")
    def _adder_conv_cuda(x, w, scale, shift, strides, pads, dilations, group, activation, eta):
        if not _adder_kernel_dtypes(x, w) or x.numel() == 0:  # float64 (exact), bfloat16, bad W: the op itself
            return init(x, w, scale, shift, strides, pads, dilations, group, activation, eta)
        ext = _ext_or_warn("cmc::adder_conv")
        if ext is None:
            return init(x, w, scale, shift, strides, pads, dilations, group, activation, eta)
        from ..adder_conv.op import _check  # the op's own argument checks (same errors as on CPU)

        _check(x, w, scale, shift, strides, pads, dilations, group, activation)
        return ext.adder_forward(x, w, scale, shift, _ints(strides), _ints(pads), _ints(dilations), int(group),
                                 int(activation))


def _adder_kernel_dtypes(x, w) -> bool:
    """The kernels' precision rule: float32 or float16 X, float32 W, float32 arithmetic."""
    return x.dtype in _KERNEL_DTYPES and w.dtype == torch.float32


def adder_backward(x, w, grad_acc, strides, pads, dilations, group, eta, need_x, need_w):
    """(gradX, gradW) of AdderConv's raw sum from the CUDA backward kernels (float32 arithmetic; gradW
    already carries the adaptive eta scale), in x's / w's dtypes; None when the extension is
    unavailable or the dtypes are not the kernels' (float64 stays float64 in the op's own code)."""
    if not (need_x or need_w) or x.numel() == 0 or not _adder_kernel_dtypes(x, w):
        return None
    ext = _ext_or_warn("cmc::adder_conv backward")
    if ext is None:
        return None
    gx, gw = ext.adder_backward(x, w, grad_acc, _ints(strides), _ints(pads), _ints(dilations), int(group),
                                float(eta), bool(need_x), bool(need_w))
    return (gx.to(x.dtype) if need_x else None, gw.to(w.dtype) if need_w else None)


# ---- BinaryConv ----------------------------------------------------------------------------------
def _check_binary(x, m, group, what):
    if x.dim() != 4:
        raise ValueError(f"{what}: X must be 4-D, got {tuple(x.shape)}")
    if x.shape[1] % group or m % group:
        raise ValueError(f"{what}: {x.shape[1]} input / {m} output channels not divisible by group={group}")


def register_binary_conv(op) -> None:
    """Register the CUDA forward of ``cmc::binary_conv`` (bit-packed int32 weights)."""
    init = op._init_fn

    @op.register_kernel("cuda")
    def _binary_conv_cuda(x, w_packed, scale, shift, strides, pads, dilations, group, binarize_input, activation):
        args = (x, w_packed, scale, shift, strides, pads, dilations, group, binarize_input, activation)
        if x.dtype not in _KERNEL_DTYPES or x.numel() == 0:
            return init(*args)
        ext = _ext_or_warn("cmc::binary_conv")
        if ext is None:
            return init(*args)
        _check_binary(x, w_packed.shape[0], group, "BinaryConv")
        return ext.binary_forward(x, w_packed.to(torch.int32), scale, shift, _ints(strides), _ints(pads),
                                  _ints(dilations), int(group), int(binarize_input), int(activation))


def register_binary_conv_train(op) -> None:
    """Register the CUDA forward of ``cmc::binary_conv_train`` (latent float weights, packed on the
    fly on the device). Its backward stays the op's own (cuDNN convolutions on CUDA)."""
    init = op._init_fn

    @op.register_kernel("cuda")
    def _binary_conv_train_cuda(x, w, scale, shift, strides, pads, dilations, group, binarize_input, activation):
        args = (x, w, scale, shift, strides, pads, dilations, group, binarize_input, activation)
        if x.dtype not in _KERNEL_DTYPES or w.dtype not in _KERNEL_DTYPES or x.numel() == 0:
            return init(*args)
        ext = _ext_or_warn("cmc::binary_conv_train")
        if ext is None:
            return init(*args)
        _check_binary(x, w.shape[0], group, "BinaryConv")
        if x.shape[1] // group != w.shape[1]:
            raise ValueError(f"BinaryConv: X has {x.shape[1]} channels but W is {tuple(w.shape)} with group={group}")
        w_packed = ext.binary_pack_weights(w.detach())
        return ext.binary_forward(x, w_packed, scale, shift, _ints(strides), _ints(pads), _ints(dilations),
                                  int(group), int(binarize_input), int(activation))
