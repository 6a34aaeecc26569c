"""What a layer's forward really does, observed instead of guessed from names.

``run_probe`` calls the layer's own forward once, on a deep copy (research forwards change their
parameters in place: ``w.data.sub_(mean)``, BinaryNet's ``weight.org`` swap, ``input.data = ...``),
under a ``TorchFunctionMode`` that records the one ``conv2d`` / ``linear`` call it makes: the weight
it really convolves with (the effective weight its quantizer produced), the input it really
convolves (binarized or not, and how), bias and geometry, and what the call returned. The layer's
``.cuda()`` / ``.to('cuda')`` calls leave tensors on the probe's device: the probe runs on the CPU.

``probe_input`` makes the inputs: normal values of both signs and several magnitudes, plus exact
zeros and negative zeros, so a sign(0) convention shows.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

CONV_FUNCS = (F.conv2d,)
LINEAR_FUNCS = (F.linear,)


@dataclass
class LinearCall:
    """One conv2d / linear call as the forward made it (tensors cloned at the call)."""
    kind: str                      # "conv2d" or "linear"
    input: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    output: torch.Tensor | None = None


@dataclass
class Observation:
    probe: torch.Tensor            # the input as it was before the call (the forward may change it)
    calls: list[LinearCall]
    output: object                 # what the layer returned


_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_DEFAULTS = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}


def _bind(names, args, kwargs, defaults):
    bound = dict(defaults)
    bound.update(zip(names, args))
    bound.update(kwargs)
    return bound


def _is_cuda_device(v) -> bool:
    if isinstance(v, torch.device):
        return v.type == "cuda"
    return isinstance(v, str) and v.split(":")[0] == "cuda"


def _clone(t):
    return t.detach().clone() if isinstance(t, torch.Tensor) else t


class _Recorder(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls: list[LinearCall] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.to:
            rest = [a for a in args[1:] if not _is_cuda_device(a)]
            kw = {k: v for k, v in kwargs.items() if not (k == "device" and _is_cuda_device(v))}
            if len(rest) != len(args) - 1 or len(kw) != len(kwargs):
                return args[0].to(*rest, **kw) if rest or kw else args[0]
        out = func(*args, **kwargs)
        if func in CONV_FUNCS:
            b = _bind(_CONV_ARGS, args, kwargs, _CONV_DEFAULTS)
            self.calls.append(LinearCall("conv2d", _clone(b["input"]), _clone(b["weight"]), _clone(b["bias"]),
                                         b["stride"], b["padding"], b["dilation"], b["groups"], _clone(out)))
        elif func in LINEAR_FUNCS:
            b = _bind(_CONV_ARGS[:3], args, kwargs, {"bias": None})
            self.calls.append(LinearCall("linear", _clone(b["input"]), _clone(b["weight"]), _clone(b["bias"]),
                                         output=_clone(out)))
        return out


def probe_input(shape, seed: int) -> torch.Tensor:
    """Values of both signs and magnitudes from 1e-7 to ~50, with exact zeros and negative zeros."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    u = torch.rand(*shape, generator=g)
    x = torch.where(u < 0.12, torch.zeros_like(x), x)
    x = torch.where((u >= 0.12) & (u < 0.15), torch.full_like(x, -0.0), x)
    x = torch.where((u >= 0.15) & (u < 0.2), x * 1e-7, x)
    x = torch.where((u >= 0.2) & (u < 0.25), x * 25.0, x)
    return x


def run_probe(module: nn.Module, x: torch.Tensor) -> Observation:
    """One call of ``module``'s forward (already a copy: the call may change it) on ``x``."""
    before = x.clone()
    rec = _Recorder()
    with torch.no_grad(), rec:
        out = module(x)
    return Observation(before, rec.calls, _clone(out))


def probe_twice(module: nn.Module, shape, seed: int = 0) -> tuple[Observation, Observation]:
    """Two consecutive calls on one deep copy of ``module`` (the second sees what the first changed),
    with different probe inputs: the effective weight must not depend on either."""
    m = copy.deepcopy(module)
    return run_probe(m, probe_input(shape, seed)), run_probe(m, probe_input(shape, seed + 1))
