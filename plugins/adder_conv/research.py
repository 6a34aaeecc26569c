"""Recognise the AdderNet research code's ``adder2d`` layer and turn it into AdderConv2d.

Recognised by structure, not by import: a module whose class name mentions "adder", with a 4-D
Parameter ``adder`` [M, C, k, k], attributes ``stride`` and ``padding``, and (when its ``bias``
attribute is truthy) a bias Parameter ``b`` [M]. Its forward computes
``-sum |unfold(X, padding) - W|`` (+ b): ungrouped, undilated, zero padded (padded taps add |w|).
"""
from __future__ import annotations

import torch
from torch import nn

from .layer import AdderConv2d


def _int_or_pair(v):
    if isinstance(v, (tuple, list)):
        return tuple(int(i) for i in v)
    return int(v)


def recognise(module: nn.Module, facts: dict | None = None):
    """-> (AdderConv2d, description) when ``module`` is a research adder layer, None when it is not
    one; raises ValueError when it looks like one but does not fit (so nothing is silently wrong)."""
    if "adder" not in type(module).__name__.lower() or isinstance(module, AdderConv2d):
        return None
    w = getattr(module, "adder", None)
    if not isinstance(w, torch.Tensor):
        if next(module.children(), None) is None and any(p.dim() == 4 for p in module.parameters(recurse=False)):
            # A leaf layer named like an adder with a conv-shaped weight, written differently from AdderNet's
            # adder2d: never exported as float without a word.
            return module, ("kept as the user's own ops: its class name says adder and it has a 4-D weight, but not "
                            "AdderNet's adder2d layout (a 4-D Parameter 'adder' [M, C, k, k] with 'stride' and "
                            "'padding' attributes), so cmc cannot prove it is an AdderConv; its forward is exported "
                            "as written (rename the weight 'adder' if it computes -sum |x - w|)")
        return None
    if w.dim() != 4:
        raise ValueError(f"{type(module).__name__}: 'adder' weight must be 4-D [M, C, kh, kw], got {tuple(w.shape)}")
    for attr in ("stride", "padding"):
        if not hasattr(module, attr):
            raise ValueError(f"{type(module).__name__} has an 'adder' weight but no '{attr}' attribute")
    has_bias = bool(getattr(module, "bias", False)) if not isinstance(getattr(module, "bias", None), torch.Tensor) else True
    bias = None
    if has_bias:
        bias = getattr(module, "b", None)
        if bias is None and isinstance(getattr(module, "bias", None), torch.Tensor):
            bias = module.bias
        if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (w.shape[0],):
            raise ValueError(f"{type(module).__name__}: bias is enabled but 'b' is missing or not [{w.shape[0]}]")
    m, c, kh, kw = w.shape
    layer = AdderConv2d(c, m, (kh, kw), stride=_int_or_pair(module.stride), padding=_int_or_pair(module.padding),
                        bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(w)
        if bias is not None:
            layer.bias.copy_(bias)
    desc = f"AdderConv {c}->{m} k={kh}x{kw} stride={layer.stride[0]} pads={list(layer.pads)}" + (" +bias" if bias is not None else "")
    return layer, desc
