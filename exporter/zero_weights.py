"""--zero-weights-as-plus-one: sign-binarized weights that are exactly 0 taken as +1, as a measured deviation.

``torch.sign(0) = 0``: one latent weight exactly 0 makes a layer three-valued, so cmc exports it as an
exact float convolution. With the opt-in, the recogniser takes those zeros as +alpha (binarize(0) =
+1, what the BinaryConv contract and the kernels compute) and the layer becomes binary. The model the
export must match is then no longer the user's: ``with_zeros_as_plus_one`` makes a copy whose
flagged layers convolve with exactly those weights (the weight argument of their conv2d / linear call
patched at the call, whatever their quantizer computed), ``deviation`` measures how far that moves the
outputs, and the parity check compares the artifact with the copy.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from cmc.plugins.binary_conv.research import zeros_as_plus_alpha


class _PatchZeroWeights(TorchFunctionMode):
    """Inside one layer's forward: conv2d / linear weights with exact zeros get +alpha_m there."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (F.conv2d, F.linear):
            args = list(args)
            if len(args) > 1:
                w = args[1]
                args[1] = _patched(w)
            elif "weight" in kwargs:
                kwargs["weight"] = _patched(kwargs["weight"])
        return func(*args, **kwargs)


def _patched(w):
    if not isinstance(w, torch.Tensor):
        return w
    p = zeros_as_plus_alpha(w.detach())
    return w if p is None else p


def with_zeros_as_plus_one(model: nn.Module, layers: list[str]) -> nn.Module:
    """A deep copy of ``model`` in which each layer in ``layers`` convolves with its zero weights taken as +alpha."""
    out = copy.deepcopy(model)
    mods = dict(out.named_modules())
    for path in layers:
        m = mods[path]
        modes = []

        def enter(mod, args, modes=modes):
            mode = _PatchZeroWeights()
            mode.__enter__()
            modes.append(mode)

        def leave(mod, args, result, modes=modes):
            if modes:
                modes.pop().__exit__(None, None, None)

        m.register_forward_pre_hook(enter)
        m.register_forward_hook(leave, always_call=True)
    return out


def deviation(original: nn.Module, patched: nn.Module, inputs: list[torch.Tensor]) -> float:
    """max over ``inputs`` of max|y_patched - y| / max|y| (the user's eager models, research idioms active)."""
    from .idioms import eager_idioms
    from .shrink.core import _rel_err

    with eager_idioms(), torch.no_grad():
        return max(_rel_err(original(x), patched(x)) for x in inputs)
