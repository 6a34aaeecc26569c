"""A calibration run that observes what flows between the user's modules.

Recognisers decide from behaviour, and some facts only exist between modules: whether a layer's
input is already binarized (+-1, or 0 where torch.sign met an exact 0) by a sign module or a sign
in a parent's forward (XNOR-Net's ``BinActive()(x)``), which module produced that input, whether
anything else reads it, and which torch value a sign function took. One eager run on the example
input, with module hooks and a ``TorchFunctionMode`` that sees every torch call, records them.

Identity: a module's input *is* (the same Python object as) the output of the module that produced
it; calls that return their argument itself (Dropout and Identity in eval) pass it through unchanged.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from .idioms import eager_idioms

#: |v| this close to 0 or to 1 counts as an exact sign value (a straight-through estimator written as
#: sign(x) - f(x) + f(x) lands within a few ulp of +-1, not on it).
SIGN_ATOL = 1e-6
_SIGN_FUNCS = (torch.sign, torch.Tensor.sign)
_LINEAR_FUNCS = (F.conv2d, F.linear)


def is_sign_valued(t) -> bool:
    """Every element within SIGN_ATOL of -1, 0 or +1 (a float tensor with at least one element)."""
    if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.numel() == 0:
        return False
    a = t.detach().abs()
    return bool(((a <= SIGN_ATOL) | ((a - 1).abs() <= SIGN_ATOL)).all())


@dataclass
class ModuleFacts:
    """What one module saw in the calibration run (over all of its calls)."""
    path: str
    calls: int = 0
    input_shape: tuple[int, ...] | None = None   # input 0 of the first call
    output_shape: tuple[int, ...] | None = None  # its output, where that is one tensor
    input_has_zeros: bool = False                # an input element exactly 0 in some call
    input_sign_valued: bool = True               # every call's input 0 was +-1 / 0 (see is_sign_valued)
    input_both_signs: bool = False               # ... with some -1 and some +1 (not a {0, 1} mask or image)
    output_sign_valued: bool = True
    linear_calls: int = 0                        # conv2d / linear calls its own forward made (all calls)
    fed_by: str | None = None                    # the module whose output object was its input (first call)
    input_exclusive: bool = False                # ... and nothing but this module read that object
    sign_source: str | None = None               # its input was torch.sign(<this value>): 'path:output' / 'path'

    @property
    def binarized_input(self) -> bool:
        """Its input was binarized before it: +-1 values of both signs (0 where torch.sign met 0)."""
        return self.calls > 0 and self.input_sign_valued and self.input_both_signs

    @property
    def conv_like(self) -> bool:
        """Its forward made exactly one conv2d / linear call per call."""
        return self.calls > 0 and self.linear_calls == self.calls


class _Flow(TorchFunctionMode):
    """Every torch call: which tracked tensors it read, and from inside which modules."""

    def __init__(self, state: "_State"):
        super().__init__()
        self.s = state

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        s = self.s
        if s.paused:
            return out
        if func in _LINEAR_FUNCS and s.stack:
            s.facts[s.stack[-1]].linear_calls += 1
        out_ids = {id(t) for t in tree_leaves(out) if isinstance(t, torch.Tensor)}
        # Metadata queries (.shape, .dim()) return no tensor: not a use of the value. A call that
        # returns its argument itself is a pass-through (Dropout in eval) unless it changed it in place.
        in_place = _looks_in_place(func)
        if out_ids or in_place:
            for t in tree_leaves((args, kwargs)):
                if isinstance(t, torch.Tensor) and id(t) in s.tracked and (in_place or id(t) not in out_ids):
                    s.uses.setdefault(id(t), []).append(tuple(s.stack))
        if func in _SIGN_FUNCS and isinstance(out, torch.Tensor) and args and isinstance(args[0], torch.Tensor):
            s.track(out)
            s.sign_of[id(out)] = id(args[0])
            s.track(args[0])
        return out


def _looks_in_place(func) -> bool:
    name = getattr(func, "__name__", "")
    return (name.endswith("_") and not name.endswith("__")) or name.startswith("__i") or name in ("__setitem__", "__set__")


@dataclass
class _State:
    facts: dict[str, ModuleFacts]
    stack: list[str] = field(default_factory=list)
    paused: bool = False
    tracked: dict[int, torch.Tensor] = field(default_factory=dict)  # keeps tracked tensors alive: ids stay unique
    producer: dict[int, str] = field(default_factory=dict)          # tensor id -> module whose output it was
    uses: dict[int, list[tuple[str, ...]]] = field(default_factory=dict)
    sign_of: dict[int, int] = field(default_factory=dict)           # torch.sign result id -> argument id
    first_input: dict[str, int] = field(default_factory=dict)

    def track(self, t: torch.Tensor):
        self.tracked.setdefault(id(t), t)


def observe_dataflow(model: nn.Module, example: torch.Tensor) -> dict[str, ModuleFacts]:
    """Per module path (named_modules), what it saw in one eager run of ``model`` on ``example``."""
    return observe_run(model, example)[0]


def observe_run(model: nn.Module, example: torch.Tensor, inner: TorchFunctionMode | None = None):
    """``observe_dataflow``, returning ``(facts, the model's output)``. ``inner``: a mode entered inside the
    observation (it sees each call first, from the user's own frame), so one eager run of a large model serves
    both (pipeline: the dry run, settling in-place updates and the dataflow facts)."""
    s = _State({name: ModuleFacts(name) for name, _ in model.named_modules()})
    hooks = []
    for name, mod in model.named_modules():
        def pre(m, args, name=name):
            s.paused = True
            try:
                f = s.facts[name]
                f.calls += 1
                x = args[0] if args else None
                if isinstance(x, torch.Tensor):
                    if f.input_shape is None:
                        f.input_shape = tuple(x.shape)
                        s.first_input[name] = id(x)
                        s.track(x)
                    f.input_has_zeros |= bool((x == 0).any())
                    f.input_sign_valued &= is_sign_valued(x)
                    if f.input_sign_valued and not f.input_both_signs:
                        f.input_both_signs = bool((x < -0.5).any() and (x > 0.5).any())
                else:
                    f.input_sign_valued = False
            finally:
                s.paused = False
            s.stack.append(name)

        def post(m, args, out, name=name):
            if s.stack and s.stack[-1] == name:
                s.stack.pop()
            s.paused = True
            try:
                f = s.facts[name]
                if isinstance(out, torch.Tensor):
                    f.output_shape = f.output_shape or tuple(out.shape)
                    f.output_sign_valued &= is_sign_valued(out)
                    if id(out) not in s.producer:
                        s.producer[id(out)] = name
                        s.track(out)
                else:
                    f.output_sign_valued = False
            finally:
                s.paused = False

        hooks.append(mod.register_forward_pre_hook(pre))
        hooks.append(mod.register_forward_hook(post, always_call=True))
    try:
        with eager_idioms(), torch.no_grad(), _Flow(s), (inner if inner is not None else nullcontext()):
            out = model(example)
    finally:
        for h in hooks:
            h.remove()
    returned = {id(t) for t in tree_leaves(out) if isinstance(t, torch.Tensor)}
    for name, f in s.facts.items():
        tid = s.first_input.get(name)
        if tid is None:
            continue
        src = s.producer.get(tid)
        f.fed_by = src if src != name else None
        if src is not None and tid not in returned:
            f.input_exclusive = all(name in stack for stack in s.uses.get(tid, []))
        arg = s.sign_of.get(tid)
        if arg is not None:
            f.sign_source = _value_key(s, arg)
    return s.facts, out


def _value_key(s: _State, tid: int) -> str | None:
    """How to find tensor ``tid`` in the user's model: 'path:output' (a module returned it) or
    'path' (a module took it as input 0)."""
    if tid in s.producer:
        return f"{s.producer[tid]}:output"
    for name, first in s.first_input.items():
        if first == tid:
            return name
    return None
