"""Read a checkpoint file without running code from it, and take it apart.

Research code saves more than a state_dict. The conventions cmc reads:

* ``torch.save(model.state_dict())``, possibly from ``nn.DataParallel`` (``module.`` prefixes);
* the PyTorch ImageNet-example training checkpoint ``{'epoch', 'arch', 'state_dict', 'best_prec1' (often a
  0-d tensor), 'optimizer'}``, which the pruning repositories extend with ``'cfg'`` (fine-tuning) or
  reduce to ``{'cfg', 'state_dict'}`` (their prune scripts), and others name the weights ``model``,
  ``net``, ``model_state_dict`` or ``module``;
* bookkeeping beside the weights: metrics as tensors, floats or NumPy scalars, optimizer state, the
  training ``args`` (an ``argparse.Namespace``), the channel configuration ``cfg``.

What the unpickler may build (``torch.load(weights_only=True)`` plus :data:`SAFE_GLOBALS`)
------------------------------------------------------------------------------------------
``weights_only`` refuses every class that is not a tensor or a plain container, so a bare
``{'args': Namespace(...)}`` or a NumPy ``best_prec1`` would need ``--allow-pickle`` although neither runs
code. cmc allows exactly these extra globals, and only these:

* ``argparse.Namespace``: the restricted unpickler creates it with ``object.__new__`` (its ``__init__``
  is not called) and fills its ``__dict__`` from a state that the same restricted unpickler built, so
  the fields can only be tensors, containers and other allowed values. Namespace defines no
  ``__setstate__``/``__reduce__`` hooks that could run anything.
* NumPy scalars, dtypes and arrays (``numpy._core.multiarray.scalar``/``_reconstruct``, ``ndarray``,
  ``dtype``, and their NumPy-1 names ``numpy.core.multiarray.*``): C constructors that copy raw bytes
  into a value of a declared dtype; an object-dtype array's items are again built by the restricted
  unpickler. PyTorch documents the same set for ``add_safe_globals``.

Anything else (a pickled ``nn.Module``, an ``AverageMeter``, a custom config class) is code the
file would run: it stays refused without ``--allow-pickle``, and the message names those classes.
"""
from __future__ import annotations

import argparse
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import CmcError

#: Entries that hold the weights, in the order they are preferred when a checkpoint has several.
WEIGHT_KEYS = ("state_dict", "model_state_dict", "model", "net", "module", "network")


def _safe_globals() -> list:
    out: list = [argparse.Namespace, np.dtype, np.ndarray]
    core = getattr(np, "_core", None) or np.core
    for fn in ("scalar", "_reconstruct"):
        obj = getattr(core.multiarray, fn)
        out.append(obj)
        out.append((obj, f"numpy.core.multiarray.{fn}"))      # files written with NumPy 1
        out.append((obj, f"numpy._core.multiarray.{fn}"))     # ... and with NumPy 2
    # NumPy 2 pickles dtypes through their classes (numpy.dtypes.Float64DType, ...)
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType") and n != "ObjectDType"
                and isinstance(getattr(dtypes, n), type)]
    return out


SAFE_GLOBALS = _safe_globals()


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0][:200] if s else type(e).__name__


def read_checkpoint(p: Path, allow_pickle: bool):
    """torch.load without code execution; with ``allow_pickle`` a full unpickle after the safe one failed."""
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" not in str(e) and "Unsupported global" not in str(e):
            raise CmcError(f"{p.name}: not a readable PyTorch checkpoint ({_first_line(e)})") from e
        if not allow_pickle:
            raise CmcError(f"{p.name} contains pickled Python objects{_unsafe_names(p)}; loading it would run code "
                           "from the file — pass --allow-pickle if you trust it, or save model.state_dict() "
                           "instead") from e
    except Exception as e:  # garbage bytes make the unpickler fail in any number of ways
        raise CmcError(f"{p.name}: not a readable PyTorch checkpoint ({type(e).__name__}: {_first_line(e)})") from e
    try:
        return torch.load(str(p), map_location="cpu", weights_only=False)
    except Exception as e:
        raise CmcError(f"{p.name}: unpickling failed ({type(e).__name__}: {_first_line(e)})") from e


def _unsafe_names(p: Path) -> str:
    """' (classes a, b)' for the message: which classes the file wants to build."""
    allowed = {o[1] if isinstance(o, tuple) else f"{o.__module__}.{o.__qualname__}" for o in SAFE_GLOBALS}
    try:
        names = [n for n in torch.serialization.get_unsafe_globals_in_checkpoint(str(p)) if n not in allowed]
    except Exception:  # noqa: BLE001 - only for the message
        return ""
    if not names:
        return ""
    more = f" (+{len(names) - 4} more)" if len(names) > 4 else ""
    return f" (classes {', '.join(names[:4])}{more})"


# ----------------------------------------------------------------------------------------------
# taking a checkpoint apart
# ----------------------------------------------------------------------------------------------
@dataclass
class Checkpoint:
    """What a checkpoint file holds, sorted out."""

    state_dict: dict[str, torch.Tensor] | None = None
    #: a whole pickled model (only with --allow-pickle)
    module: nn.Module | None = None
    #: entries beside the weights whose values are plain data (cfg, depth, ...): candidate --arch arguments
    literals: dict = field(default_factory=dict)
    #: the fields of a saved argparse.Namespace ``args`` (only for hints)
    saved_args: dict = field(default_factory=dict)
    #: entry -> '=value' or ' (description)', for the note on what was ignored
    ignored: dict = field(default_factory=dict)
    weights_from: str | None = None
    notes: list[str] = field(default_factory=list)


def as_literal(v):
    """``v`` as plain Python data (lists, ints, strings ...), or raises ValueError. NumPy scalars and
    integer 0-d tensors inside a cfg become ints: prune scripts write ``cfg.append(mask.sum())``."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, torch.Tensor) and v.dim() <= 1 and not v.is_floating_point() and not v.is_complex():
        return int(v.item()) if v.dim() == 0 else [int(x) for x in v.tolist()]   # cfg = torch.tensor([...])
    if isinstance(v, np.ndarray) and v.dtype.kind in "biu":
        return [as_literal(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        vals = [as_literal(x) for x in v]
        return vals if isinstance(v, list) else tuple(vals)
    if isinstance(v, dict) and all(isinstance(k, str) for k in v):
        return {k: as_literal(x) for k, x in v.items()}
    raise ValueError(type(v).__name__)


def describe(v) -> str:
    """A few words for a bookkeeping value in a note."""
    if isinstance(v, torch.Tensor):
        if v.dim() == 0:
            return f"{v.item():.6g} (0-d tensor)"
        return f"tensor {tuple(v.shape)}"
    if isinstance(v, np.generic):
        return f"{v.item():.6g} (NumPy {v.dtype})"
    if isinstance(v, argparse.Namespace):
        return f"argparse.Namespace with {len(vars(v))} fields"
    if isinstance(v, dict):
        if "state" in v and "param_groups" in v:
            return "optimizer state"
        s = repr(v)
        return s if len(s) <= 60 and not any(isinstance(x, torch.Tensor) for x in v.values()) else f"dict of {len(v)}"
    if isinstance(v, (list, tuple)):
        s = repr(v)
        return s if len(s) <= 60 else f"{type(v).__name__} of {len(v)}"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (int, str, bool)) or v is None:
        s = repr(v)
        return s if len(s) <= 60 else s[:57] + "..."
    return f"{type(v).__name__} object"


def _tensor_dict(d) -> bool:
    return isinstance(d, dict) and bool(d) and all(isinstance(k, str) for k in d) and \
        all(isinstance(v, torch.Tensor) for v in d.values())


def _weights_key(d: dict) -> str | None:
    for k in WEIGHT_KEYS:
        v = d.get(k)
        if isinstance(v, nn.Module) or (isinstance(v, dict) and (_tensor_dict(v) or _weights_key(v) is not None)):
            return k
    return None


def split_checkpoint(obj) -> Checkpoint:
    """Find the weights in what torch.load returned; keep the rest as literals / ignored bookkeeping."""
    ck = Checkpoint()
    if isinstance(obj, nn.Module):
        ck.module = obj
        return ck
    if not isinstance(obj, dict) or not obj:
        what = type(obj).__name__ if not isinstance(obj, dict) else "an empty dict"
        raise CmcError(f"checkpoint holds {what}, not a state_dict (expected a dict of tensors, optionally under "
                       "'state_dict')")
    path = []
    while True:
        key = _weights_key(obj) if not _tensor_dict(obj) else None
        if key is None:
            break
        _collect(ck, {k: v for k, v in obj.items() if k != key}, "/".join(path))
        path.append(key)
        obj = obj[key]
        if isinstance(obj, nn.Module):
            ck.module = obj
            ck.weights_from = "/".join(path)
            return ck
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()) or \
            not all(isinstance(k, str) for k in obj):
        keys = ", ".join(repr(k) for k in list(obj)[:6]) if isinstance(obj, dict) else ""
        raise CmcError("checkpoint holds no state_dict: expected a dict of tensors or one under "
                       f"{' / '.join(repr(k) for k in WEIGHT_KEYS[:4])} (its entries: {keys})")
    # A flat dict: tensors are the state_dict; anything else beside them is bookkeeping.
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    _collect(ck, {k: v for k, v in obj.items() if not isinstance(v, torch.Tensor)}, "/".join(path))
    ck.weights_from = "/".join(path) or None
    ck.state_dict = _strip_dataparallel(sd, ck.notes)
    return ck


def _collect(ck: Checkpoint, extras: dict, where: str):
    for k, v in extras.items():
        name = f"{where}/{k}" if where else str(k)
        if isinstance(v, argparse.Namespace):
            ck.saved_args.update(vars(v))
        literal = True
        try:
            value = as_literal(v)
        except ValueError:
            literal = False
        if literal and not where:  # only top-level entries can be --arch arguments
            ck.literals[str(k)] = value
        scalar = isinstance(v, np.generic) or (isinstance(v, torch.Tensor) and v.dim() == 0)
        desc = describe(v)
        # 'epoch=160', 'best_prec1=0.93 (0-d tensor)' for values; 'optimizer (optimizer state)' for the rest
        ck.ignored[name] = f"={desc}" if (literal or scalar) and not desc.startswith(
            ("list of", "tuple of", "dict of", "optimizer state")) \
            else f" ({desc})"


def _strip_dataparallel(sd: dict, notes: list[str]) -> dict:
    if sd and all(k.startswith("module.") for k in sd):
        notes.append("checkpoint: stripped the nn.DataParallel 'module.' prefix")
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def summary(ck: Checkpoint, used: set[str]) -> str | None:
    """One note: where the weights came from, what went to --arch, and what was ignored."""
    if ck.weights_from is None and not ck.ignored:
        return None
    parts = [f"weights from the {ck.weights_from!r} entry" if ck.weights_from else "weights from the top level"]
    if used:
        parts.append("passed to --arch: " + ", ".join(sorted(used)))
    rest = [f"{k}{v}" for k, v in ck.ignored.items() if k not in used]
    if rest:
        more = f" (+{len(rest) - 8} more)" if len(rest) > 8 else ""
        parts.append("ignored " + ", ".join(rest[:8]) + more)
    return "checkpoint: " + "; ".join(parts)
