"""Research-code idioms in ``forward`` that PyTorch 2.x refuses or ``torch.export`` cannot capture.

Scoped shims: each is a context manager that patches one PyTorch entry point while cmc runs the
user's model and restores it on exit, also when the body raises (they nest; thread safety is not a
goal). Only calls made from the user's code are affected (``cmc.exporter.user_code``): PyTorch's own
calls keep PyTorch's behaviour. Nothing here changes what the model computes for inference; where
an idiom cannot be captured faithfully, ``IdiomError`` names the user's line and what to change.

* ``legacy_autograd_functions()``: an instance of a legacy ``torch.autograd.Function`` (a non-static
  ``forward``, called as ``BinActive()(x)`` in XNOR-Net-PyTorch) runs its ``forward`` directly, for
  inference. PyTorch 2.x refuses to call them at all.
* ``cpu_device_calls()``: ``t.cuda()`` / ``t.to('cuda')`` leave the tensor where it is. cmc runs the
  model on the CPU, where the research code's ``zero_pads.cuda()`` would otherwise fail or split the
  model across devices.
* ``data_reads_as_detach()``: while ``torch.export`` traces, ``t.data`` reads are ``t.detach()``
  (the same values; ``.data`` makes a tensor the tracer cannot see, which torch.export reports as "a
  fake tensor in the exported program constant's list"), and ``t.data = v`` writes raise.
* ``refuse_state_changes(model)``: an eager run in which forward may not change a parameter or
  buffer in place (``w.data.clamp_(-1, 1)``, ``w.data.sub_(m)``): a captured graph cannot hold state
  that changes from call to call.

``eager_idioms()`` combines the first two for cmc's eager runs of the user's model (dry run,
calibration, parity reference); ``capture_idioms()`` adds the third for ``torch.export``.
"""
from __future__ import annotations

import inspect
import math
import sys
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Iterator, NamedTuple

import torch
from torch.overrides import TorchFunctionMode

from .errors import CmcError
from .user_code import SourceLine, display_path, is_library_frame, user_line_of_caller


class IdiomError(CmcError):
    """An idiom in the user's forward that cannot be exported faithfully; the message names the line."""


class CallSite(NamedTuple):
    """Where the user's code called something: file, line, what it called, the source line."""
    file: str
    line: int
    function: str
    source: str


def _call_site(what: str, skip: int = 1) -> CallSite | None:
    line = user_line_of_caller(skip + 1)
    return None if line is None else CallSite(line.file, line.line, what, line.source)


def _where(site: CallSite | None) -> str:
    if site is None:
        return "the model's forward"
    return SourceLine(site.file, site.line, site.source).quoted()


class _Patch:
    """``owner.name`` replaced while at least one context uses it; the original restored after the last."""

    def __init__(self, owner: type, name: str):
        self.owner, self.name, self.depth = owner, name, 0
        self.had_own = self.saved = None

    def original(self):
        """What PyTorch resolves ``name`` to without the patch (looked up along the MRO)."""
        if self.had_own:
            return self.saved
        for klass in self.owner.__mro__[1:]:
            if self.name in klass.__dict__:
                return klass.__dict__[self.name]
        raise AttributeError(self.name)

    @contextmanager
    def applied(self, replacement):
        if self.depth == 0:
            self.had_own = self.name in self.owner.__dict__
            self.saved = self.owner.__dict__.get(self.name)
            setattr(self.owner, self.name, replacement)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if self.depth == 0:
                if self.had_own:
                    setattr(self.owner, self.name, self.saved)
                else:
                    delattr(self.owner, self.name)
                self.had_own = self.saved = None


# ------------------------------------------------------------------ legacy autograd Functions

def is_legacy_function(obj) -> bool:
    """An instance of a ``torch.autograd.Function`` subclass whose ``forward`` is not a staticmethod."""
    cls = type(obj)
    if not issubclass(cls, torch.autograd.Function):
        return False
    forward = inspect.getattr_static(cls, "forward", None)
    return forward is not None and not isinstance(forward, (staticmethod, classmethod))


_FUNCTION_CALL = _Patch(torch.autograd.Function, "__call__")
# One list per active legacy_autograd_functions() context (they nest); each records every call site.
_legacy_records: list[list[CallSite]] = []


def _call_legacy(self, *args, **kwargs):
    if not is_legacy_function(self):  # a new-style Function called on an instance: PyTorch's own error
        return _FUNCTION_CALL.original()(self, *args, **kwargs)
    site = _call_site(type(self).__qualname__)
    for record in _legacy_records:
        if site is not None and site not in record:
            record.append(site)
    # Inference only: the legacy backward is never wired up. Under torch.export the forward's ops are
    # traced as they are (a no_grad region would become a higher-order op in the program).
    if torch.compiler.is_exporting():
        return self.forward(*args, **kwargs)
    with torch.no_grad():
        return self.forward(*args, **kwargs)


@contextmanager
def legacy_autograd_functions() -> Iterator[list[CallSite]]:
    """Inside, calling a legacy autograd Function instance runs ``instance.forward(*args)`` (no autograd).

    Yields a list that collects each distinct call site (``CallSite``: file, line, Function class,
    source line) in the order first called. Nestable; PyTorch's refusal is restored on exit."""
    record: list[CallSite] = []
    with _FUNCTION_CALL.applied(_call_legacy):
        _legacy_records.append(record)
        try:
            with warnings.catch_warnings():  # PyTorch's "should not be instantiated": that is how legacy code calls them
                warnings.filterwarnings("ignore", message=".*should not be instantiated", category=DeprecationWarning)
                yield record
        finally:
            del _legacy_records[next(i for i, r in enumerate(_legacy_records) if r is record)]


# ------------------------------------------------------------------ .cuda() / .to('cuda')

_TENSOR_CUDA = _Patch(torch.Tensor, "cuda")
_TENSOR_TO = _Patch(torch.Tensor, "to")
_device_records: list[list[CallSite]] = []


def _record_device_call(what: str):
    site = _call_site(what, skip=2)
    for record in _device_records:
        if site is not None and site not in record:
            record.append(site)


def _stays(patch: _Patch, what: str):
    """``x.cuda()`` from the user's code returns ``x`` (PyTorch's own calls keep PyTorch's behaviour)."""
    def cuda(self, *args, **kwargs):
        if is_library_frame(sys._getframe(1)):
            return patch.original()(self, *args, **kwargs)
        _record_device_call(what)
        return self
    return cuda


_cuda_stays = _stays(_TENSOR_CUDA, "Tensor.cuda")


def _to_without_cuda(self, *args, **kwargs):
    original = _TENSOR_TO.original()
    if is_library_frame(sys._getframe(1)):
        return original(self, *args, **kwargs)
    copy = kwargs.pop("copy", False)
    try:
        device, dtype, non_blocking, memory_format = torch._C._nn._parse_to(*args, **kwargs)
    except Exception:  # let PyTorch word the error about its own arguments
        return original(self, *args, copy=copy, **kwargs) if copy else original(self, *args, **kwargs)
    if device is None or device.type != "cuda":
        return original(self, *args, copy=copy, **kwargs) if copy else original(self, *args, **kwargs)
    _record_device_call("Tensor.to")
    extra = {k: v for k, v in (("copy", copy), ("non_blocking", non_blocking), ("memory_format", memory_format)) if v}
    if dtype is None and not extra.get("copy") and memory_format is None:
        return self
    return original(self, dtype if dtype is not None else self.dtype, **extra)


_MODULE_CUDA = _Patch(torch.nn.Module, "cuda")
_MODULE_TO = _Patch(torch.nn.Module, "to")


_module_cuda_stays = _stays(_MODULE_CUDA, "Module.cuda")


def _module_to_without_cuda(self, *args, **kwargs):
    original = _MODULE_TO.original()
    if is_library_frame(sys._getframe(1)):
        return original(self, *args, **kwargs)
    try:
        device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
    except Exception:
        return original(self, *args, **kwargs)
    if device is None or device.type != "cuda":
        return original(self, *args, **kwargs)
    _record_device_call("Module.to")
    return original(self, dtype) if dtype is not None else self


@contextmanager
def cpu_device_calls() -> Iterator[list[CallSite]]:
    """Inside, ``t.cuda()`` and ``t.to(<cuda device>)`` from the user's code keep ``t`` where it is (tensors
    and modules: a constructor may call ``self.cuda()``).

    Yields the list of call sites that did so (``CallSite.function``: 'Tensor.cuda', 'Tensor.to', 'Module.cuda',
    'Module.to')."""
    record: list[CallSite] = []
    with _TENSOR_CUDA.applied(_cuda_stays), _TENSOR_TO.applied(_to_without_cuda), \
            _MODULE_CUDA.applied(_module_cuda_stays), _MODULE_TO.applied(_module_to_without_cuda):
        _device_records.append(record)
        try:
            yield record
        finally:
            del _device_records[next(i for i, r in enumerate(_device_records) if r is record)]


# ------------------------------------------------------------------ .data

_TENSOR_DATA = _Patch(torch.Tensor, "data")
_refuse_all_data_writes = [0]  # > 0 inside refuse_state_changes(): refused in eager runs too


def _data_write_error(t: torch.Tensor, site: CallSite | None) -> IdiomError:
    if isinstance(t, torch.nn.Parameter):
        what = ("replaces a parameter's values in forward (`.data = ...`), state that changes between calls, "
                "which a captured graph cannot hold: compute the value and use it without storing it "
                "(`w = binarize(self.weight)`), and keep weight updates in the training loop")
    else:
        what = ("assigns to `.data` in forward, which torch.export cannot record: rebind the name instead "
                "(`x = f(x)` for `x.data = f(x.data)`)")
    return IdiomError(f"{_where(site)} {what}")


def _data_get(self):
    if torch.compiler.is_exporting() and not is_library_frame(sys._getframe(1)):
        return self.detach()
    return _TENSOR_DATA.original().__get__(self)


def _data_set(self, value):
    if (_refuse_all_data_writes[0] or torch.compiler.is_exporting()) and not is_library_frame(sys._getframe(1)):
        raise _data_write_error(self, _call_site(".data ="))
    _TENSOR_DATA.original().__set__(self, value)


@contextmanager
def data_reads_as_detach():
    """While torch.export traces: ``t.data`` from the user's code is ``t.detach()``; ``t.data = v`` raises."""
    with _TENSOR_DATA.applied(property(_data_get, _data_set, doc=torch._C.TensorBase.data.__doc__)):
        yield


# ------------------------------------------------------------------ parameters and buffers changed in forward

_NOT_MUTATING = frozenset({"requires_grad_", "retain_grad", "share_memory_", "register_hook"})
_IN_PLACE_DUNDERS = frozenset({"__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__",
                               "__imod__", "__ipow__", "__iand__", "__ior__", "__ixor__", "__ilshift__", "__irshift__",
                               "__imatmul__"})


def _mutated(func, args, kwargs):
    """The tensor ``func(*args, **kwargs)`` writes into, if any (in-place method or op, out=, inplace=True)."""
    name = getattr(func, "__name__", "")
    out = kwargs.get("out")
    if isinstance(out, torch.Tensor):
        return out
    if not args or not isinstance(args[0], torch.Tensor):
        return None
    if name in _NOT_MUTATING:
        return None
    if (name.endswith("_") and not name.startswith("__")) or name in _IN_PLACE_DUNDERS or kwargs.get("inplace") is True:
        return args[0]
    return None


def _storage(t: torch.Tensor) -> int | None:
    try:
        ptr = t.untyped_storage().data_ptr()
    except Exception:  # tensors without storage (sparse, subclasses)
        return None
    return ptr or None


_DISPATCH_MODULES = frozenset({"torch.overrides", "torch._tensor"})


def _caller_of(func):
    """The frame that called ``func`` (past PyTorch's torch-function dispatch and ``func``'s own frame)."""
    frame = sys._getframe(2)
    code = getattr(inspect.unwrap(func), "__code__", None)
    while frame.f_back is not None and (frame.f_globals.get("__name__") in _DISPATCH_MODULES or frame.f_code is code):
        frame = frame.f_back
    return frame


class _StateWatch(TorchFunctionMode):
    def __init__(self, storages: dict[int, str]):
        super().__init__()
        self.storages = storages

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = _mutated(func, args, kwargs)
        if target is not None and _SETTLED_SITES and _is_settled(_caller_of(func)):
            return target  # at its fixed point (settle_state): changes nothing
        if target is not None and not is_library_frame(_caller_of(func)):  # not BatchNorm's own statistics
            name = self.storages.get(_storage(target))
            if name is not None:
                op = getattr(func, "__name__", str(func))
                again = (", and every call changes it again (no fixed point)"
                         if _site_of(_caller_of(func)) in _UNSETTLED_SITES else "")
                raise IdiomError(
                    f"{_where(_call_site(op))} changes {name} in place in forward (`{op}`){again}: the exported graph "
                    f"cannot hold state that changes from call to call; move it to the training loop (e.g. clamp "
                    f"the weights after optimizer.step()) or compute a new tensor (`w = w.clamp(-1, 1)`)")
        return func(*args, **kwargs)


def _fingerprint(kind: str, t: torch.Tensor):
    """Parameters: shape, storage and values (their sum). Buffers: shape and storage only, because PyTorch's
    own layers update theirs in training mode (BatchNorm statistics) and torch.export records that."""
    if kind == "buffer":
        return (tuple(t.shape), t.dtype, _storage(t))
    total = 0.0 if t.is_complex() else float(t.detach().double().sum())
    return (tuple(t.shape), t.dtype, _storage(t), "nan" if math.isnan(total) else total)


def _storage_names(state) -> dict[int, str]:
    """Storage pointer -> "parameter 'name'" / "buffer 'name'" (the first name sharing it)."""
    storages = {}
    for kind, name, t in state:
        ptr = _storage(t)
        if ptr is not None and t.numel():
            storages.setdefault(ptr, f"{kind} '{name}'")
    return storages


def _state(model: torch.nn.Module) -> list[tuple[str, str, torch.Tensor]]:
    return [*(("parameter", n, t) for n, t in model.named_parameters(remove_duplicate=False)),
            *(("buffer", n, t) for n, t in model.named_buffers(remove_duplicate=False) if t is not None)]


# In-place updates in forward that reach a fixed point (XNOR-Net's ``m.weight.data.clamp_(min=0.01)``):
# after ``settle_state`` has shown that a further call changes nothing, these call sites' updates are
# dropped from the checked and the captured runs (they would not change a value). Keys: (file, line).
_SETTLED_SITES: set[tuple[str, int]] = set()
_UNSETTLED_SITES: set[tuple[str, int]] = set()   # seen changing the state on every call


def _restore(model: torch.nn.Module, snapshot: dict):
    with torch.no_grad():
        for kind, name, t in _state(model):
            saved = snapshot.get((kind, name))
            if saved is not None and saved.shape == t.shape:
                t.copy_(saved)


@dataclass
class SettledUpdate:
    """An in-place update of the model's state in forward that settled: where, and what it changes."""
    site: CallSite
    targets: list[str]     # ["parameter 'bn1.weight'", ...]

    def note(self) -> str:
        what = self.targets[0] + (f" (and {len(self.targets) - 1} more)" if len(self.targets) > 1 else "")
        return (f"{display_path(self.site.file)}:{self.site.line} (`{self.site.source}`) updates {what} in "
                f"place in forward: after one call it is at a fixed point (a second call with another input left "
                f"every parameter and buffer bit-identical); exported that state, the update dropped from the graph")


def _site_of(frame) -> tuple[str, int]:
    return frame.f_code.co_filename, frame.f_lineno


class _StateRecorder(TorchFunctionMode):
    """Records (call site, target) of in-place updates of the watched storages from the user's code; runs them."""

    def __init__(self, storages: dict[int, str]):
        super().__init__()
        self.storages, self.updates = storages, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = _mutated(func, args, kwargs)
        if target is not None:
            frame = _caller_of(func)
            name = self.storages.get(_storage(target))
            if name is not None and not is_library_frame(frame):
                file, line = _site_of(frame)
                site = CallSite(file, line, getattr(func, "__name__", str(func)), _source_text(file, line))
                update = next((u for u in self.updates if u.site == site), None)
                if update is None:
                    self.updates.append(SettledUpdate(site, [name]))
                elif name not in update.targets:
                    update.targets.append(name)
        return func(*args, **kwargs)


def _source_text(file: str, line: int) -> str:
    import linecache

    return linecache.getline(file, line).strip()


def _snapshot(model: torch.nn.Module) -> dict[tuple[str, str], torch.Tensor]:
    return {(kind, name): t.detach().clone() for kind, name, t in _state(model)}


def _bit_identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if (a.is_floating_point() or a.is_complex()) and a.numel():  # bits: NaN == NaN, -0.0 != 0.0
        return torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))
    return torch.equal(a, b)


def settle_state(model: torch.nn.Module, inputs: list[torch.Tensor], first_call=None) -> list[SettledUpdate]:
    """Calls the user's ``model`` on ``inputs`` (eager, no grad), recording in-place updates of its parameters and
    buffers made by the user's code. None: returns []. Otherwise every call after the first must leave the whole
    state bit-identical (a fixed point, e.g. a clamp): the updates are returned and their call sites registered
    as settled until the enclosing ``settled_scope()`` ends; the model keeps the settled state. Updates that keep
    changing the state: the model's state is restored, [] returned, and the capture check's refusal of them
    (if they survive conversion) says there is no fixed point.

    ``first_call(model, x, recorder)``: runs the first call itself, with ``recorder`` the innermost torch
    function mode (it must see each call from the user's frame); the pipeline's dry run and dataflow
    observation share that call."""
    state = _state(model)
    storages = _storage_names(state)
    initial = _snapshot(model)
    rec = _StateRecorder(storages)
    if first_call is not None:
        first_call(model, inputs[0], rec)
    else:
        with eager_idioms(), torch.no_grad(), rec:
            model(inputs[0])
    if not rec.updates:
        return []
    for x in inputs[1:]:
        before = _snapshot(model)
        with eager_idioms(), torch.no_grad(), rec:
            model(x)
        after = _snapshot(model)
        if any(k not in after or not _bit_identical(before[k], after[k]) for k in before):
            # Not settled: put the state back as it was and leave the verdict to the capture check, which
            # refuses such an update only if it is still there after conversion (a recognised layer's own
            # forward, micronet's in-place centring, never reaches capture).
            _restore(model, initial)
            _UNSETTLED_SITES.update((u.site.file, u.site.line) for u in rec.updates)
            return []
    _SETTLED_SITES.update((u.site.file, u.site.line) for u in rec.updates)
    return rec.updates


@contextmanager
def settled_scope():
    """One export: the call sites ``settle_state`` finds settled inside are dropped (they change nothing at the
    fixed point) until the scope ends; earlier ones do not leak in, these do not leak out."""
    saved, unsettled = set(_SETTLED_SITES), set(_UNSETTLED_SITES)
    _SETTLED_SITES.clear()
    _UNSETTLED_SITES.clear()
    try:
        yield
    finally:
        _SETTLED_SITES.clear()
        _SETTLED_SITES.update(saved)
        _UNSETTLED_SITES.clear()
        _UNSETTLED_SITES.update(unsettled)


def _is_settled(frame) -> bool:
    """``frame``: ``_caller_of(func)``, taken in ``__torch_function__`` itself (it counts frames)."""
    return bool(_SETTLED_SITES) and _site_of(frame) in _SETTLED_SITES


class _DropSettled(TorchFunctionMode):
    """While torch.export traces: an in-place update from a settled call site returns its target unchanged."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = _mutated(func, args, kwargs)
        if target is not None and _SETTLED_SITES and _is_settled(_caller_of(func)):
            return target
        return func(*args, **kwargs)


@contextmanager
def refuse_state_changes(model: torch.nn.Module):
    """Inside, an in-place change of one of ``model``'s parameters or buffers, or any ``.data = ...`` from the
    user's code, raises ``IdiomError`` naming the line, before it happens. On exit, a parameter or buffer
    that changed anyway (rebound, or changed where no Python call shows it) raises too."""
    state = _state(model)
    storages = _storage_names(state)
    before = {(kind, name): _fingerprint(kind, t) for kind, name, t in state}
    _refuse_all_data_writes[0] += 1
    try:
        with data_reads_as_detach(), _StateWatch(storages):
            yield
    finally:
        _refuse_all_data_writes[0] -= 1
    now = {(kind, name): t for kind, name, t in _state(model)}
    for key, fp in before.items():
        if key not in now or _fingerprint(key[0], now[key]) != fp:
            raise IdiomError(f"the model's forward changes its {key[0]} '{key[1]}' (state kept between calls), which "
                             f"an exported graph cannot hold: compute new tensors instead of updating the module's "
                             f"{key[0]}s in forward")


# ------------------------------------------------------------------ combinations cmc uses

@dataclass
class IdiomLog:
    """What the shims did during one run: call sites of legacy Functions and of neutralised device moves."""
    legacy_functions: list[CallSite] = field(default_factory=list)
    device_calls: list[CallSite] = field(default_factory=list)

    def notes(self) -> list[str]:
        out = [f"legacy autograd Function {s.function} called at {display_path(s.file)}:{s.line} ran its forward "
               f"(inference only)" for s in self.legacy_functions]
        out += [f"{s.function}() to CUDA at {display_path(s.file)}:{s.line} kept the tensor on the CPU"
                for s in self.device_calls]
        return out


@contextmanager
def eager_idioms() -> Iterator[IdiomLog]:
    """For cmc's eager runs of the user's model: legacy Functions run, CUDA moves stay on the CPU."""
    with legacy_autograd_functions() as legacy, cpu_device_calls() as devices:
        yield IdiomLog(legacy, devices)


@contextmanager
def capture_idioms() -> Iterator[IdiomLog]:
    """For ``torch.export``: ``eager_idioms`` plus ``.data`` reads traced as ``.detach()``."""
    with ExitStack() as stack:
        log = stack.enter_context(eager_idioms())
        stack.enter_context(data_reads_as_detach())
        if _SETTLED_SITES:
            stack.enter_context(_DropSettled())
        yield log
