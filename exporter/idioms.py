"""Research-code idioms in ``forward`` that PyTorch 2.x refuses or ``torch.export`` cannot capture.

Scoped shims: each is a context manager that patches one PyTorch entry point while cmc runs the
user's model and restores it on exit, also when the body raises. Nothing here changes what the
model computes for inference; where an idiom cannot be captured faithfully, cmc raises an error
naming the user's line instead (``cmc.exporter.attribution``).

* ``legacy_autograd_functions()``: instances of legacy ``torch.autograd.Function`` subclasses (a
  non-static ``forward``, called as ``BinActive()(x)`` in XNOR-Net-PyTorch) run their ``forward``
  directly, for inference. PyTorch 2.x refuses to call them at all.
"""
from __future__ import annotations

import inspect
import warnings
from contextlib import contextmanager
from typing import Iterator, NamedTuple

import torch

from .user_code import user_line_of_caller


class CallSite(NamedTuple):
    """Where the user's code called something: file, line, what it called, the source line."""
    file: str
    line: int
    function: str
    source: str


def is_legacy_function(obj) -> bool:
    """An instance of a ``torch.autograd.Function`` subclass whose ``forward`` is not a staticmethod."""
    cls = type(obj)
    if not issubclass(cls, torch.autograd.Function):
        return False
    forward = inspect.getattr_static(cls, "forward", None)
    return forward is not None and not isinstance(forward, (staticmethod, classmethod))


# One list per active legacy_autograd_functions() context (they nest); each records every call site.
_legacy_records: list[list[CallSite]] = []
_original_call = None


def _call_legacy(self, *args, **kwargs):
    if not is_legacy_function(self):
        return _original_call(self, *args, **kwargs)  # a new-style Function called on an instance: PyTorch's error
    line = user_line_of_caller()
    if line is not None:
        site = CallSite(line.file, line.line, type(self).__qualname__, line.source)
        for record in _legacy_records:
            if site not in record:
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
    global _original_call
    record: list[CallSite] = []
    if not _legacy_records:
        _original_call = torch.autograd.Function.__dict__["__call__"]
        torch.autograd.Function.__call__ = _call_legacy
    _legacy_records.append(record)
    try:
        with warnings.catch_warnings():  # PyTorch's "should not be instantiated": that is how legacy code calls them
            warnings.filterwarnings("ignore", message=".*should not be instantiated", category=DeprecationWarning)
            yield record
    finally:
        del _legacy_records[next(i for i, r in enumerate(_legacy_records) if r is record)]
        if not _legacy_records:
            torch.autograd.Function.__call__ = _original_call
            _original_call = None
