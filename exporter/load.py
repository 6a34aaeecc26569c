"""Load step: turn MODEL (+ --arch) into an nn.Module or a torch.export program, safely.

Accepted inputs
* a state_dict file (``torch.save(model.state_dict())``; DataParallel ``module.`` prefixes and
  ``{'state_dict': ...}`` / ``{'model': ...}`` wrappers are undone) together with ``--arch
  module:callable`` that builds the user's model;
* a torch.export program (``.pt2``);
* a pickled ``nn.Module`` only with ``allow_pickle=True``: unpickling runs arbitrary code.

State dicts are read with ``torch.load(weights_only=True)``, which executes no code.
"""
from __future__ import annotations

import importlib
import math
import os
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .errors import CmcError

import cmc.plugins.registry  # noqa: F401  (registers the cmc:: ops a .pt2 program may contain)

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")


@dataclass
class Loaded:
    module: nn.Module | None = None
    exported: torch.export.ExportedProgram | None = None
    notes: list[str] = field(default_factory=list)
    source: str = ""


def resolve_arch(spec: str):
    """'pkg.mod:fn' -> the callable, importable from PYTHONPATH or the current directory."""
    if ":" not in spec:
        raise CmcError(f"--arch {spec!r} must look like 'module:callable' (e.g. samples.addernet_resnet20:resnet20)")
    mod_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        raise CmcError(f"--arch: cannot import module {mod_name!r} ({e}); is it on PYTHONPATH?") from e
    except Exception as e:  # the user's module failed while importing
        raise CmcError(f"--arch: importing {mod_name!r} failed: {type(e).__name__}: {e}") from e
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CmcError(f"--arch: module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise CmcError(f"--arch: {spec!r} is not callable")
    return obj


def build_arch(spec: str) -> nn.Module:
    fn = resolve_arch(spec)
    try:
        model = fn()
    except Exception as e:
        raise CmcError(f"--arch: calling {spec} failed: {type(e).__name__}: {e}") from e
    if not isinstance(model, nn.Module):
        raise CmcError(f"--arch: {spec} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def unwrap_state_dict(obj, notes: list[str]) -> dict[str, torch.Tensor]:
    """Undo the usual checkpoint wrappers and the DataParallel 'module.' prefix."""
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    seen = 0
    while isinstance(obj, dict) and not _looks_like_state_dict(obj) and seen < 3:
        key = next((k for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], (dict, nn.Module))), None)
        if key is None:
            break
        notes.append(f"checkpoint: took the {key!r} entry of the saved dict")
        obj = obj[key]
        if isinstance(obj, nn.Module):
            return obj.state_dict()
        seen += 1
    if not isinstance(obj, dict) or not _looks_like_state_dict(obj):
        raise CmcError("checkpoint holds no state_dict (expected a dict of tensors, optionally under 'state_dict')")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if sd and all(k.startswith("module.") for k in sd):
        notes.append("checkpoint: stripped the nn.DataParallel 'module.' prefix")
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _looks_like_state_dict(d: dict) -> bool:
    return bool(d) and all(isinstance(k, str) for k in d) and any(isinstance(v, torch.Tensor) for v in d.values())


def _check_finite(named_tensors, what: str):
    for name, t in named_tensors:
        if t.is_floating_point() and not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).sum())
            raise CmcError(f"{what} {name!r} has {bad} NaN/Inf value(s); refusing to export a broken model")


def load_model(path: str | os.PathLike, arch: str | None = None, allow_pickle: bool = False) -> Loaded:
    p = Path(path)
    if not p.exists():
        raise CmcError(f"model file {str(p)!r} does not exist")
    if p.is_dir():
        raise CmcError(f"model path {str(p)!r} is a directory, not a file")
    if p.stat().st_size == 0:
        raise CmcError(f"model file {str(p)!r} is empty")
    out = Loaded(source=str(p))
    if p.suffix == ".pt2":
        if arch:
            out.notes.append("--arch ignored: a .pt2 program carries its own graph")
        try:
            out.exported = torch.export.load(str(p))
        except Exception as e:
            raise CmcError(f"{p.name}: not a readable torch.export program ({type(e).__name__}: {_first_line(e)})") from e
        _check_finite(list(out.exported.state_dict.items()), "tensor")
        return out

    obj = _read_checkpoint(p, allow_pickle)
    if isinstance(obj, nn.Module):
        if arch:
            model = build_arch(arch)
            _load_into(model, obj.state_dict(), out.notes)
        else:
            model = obj
            out.notes.append("loaded a pickled nn.Module (--allow-pickle)")
    else:
        if not arch:
            raise CmcError(f"{p.name} is a state_dict; pass --arch module:callable that builds the model")
        model = build_arch(arch)
        _load_into(model, unwrap_state_dict(obj, out.notes), out.notes)
    _check_finite(list(model.named_parameters()) + list(model.named_buffers()), "tensor")
    out.module = model.eval()
    return out


def _first_line(e: Exception) -> str:
    s = str(e).strip().splitlines()
    return s[0][:200] if s else type(e).__name__


def _read_checkpoint(p: Path, allow_pickle: bool):
    # Zip (torch.save) and legacy files alike go through the safe loader first.
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" not in str(e) and "Unsupported global" not in str(e):
            raise CmcError(f"{p.name}: not a readable PyTorch checkpoint ({_first_line(e)})") from e
        if not allow_pickle:
            raise CmcError(f"{p.name} contains pickled Python objects (e.g. a whole nn.Module); loading it would run "
                           "code from the file — pass --allow-pickle if you trust it, or save model.state_dict() instead") from e
    except Exception as e:  # garbage bytes make the unpickler fail in any number of ways
        raise CmcError(f"{p.name}: not a readable PyTorch checkpoint ({type(e).__name__}: {_first_line(e)})") from e
    try:
        return torch.load(str(p), map_location="cpu", weights_only=False)
    except Exception as e:
        raise CmcError(f"{p.name}: unpickling failed ({type(e).__name__}: {_first_line(e)})") from e


# Keys checkpoints carry that are not model state: thop's profiling buffers, and BatchNorm's
# num_batches_tracked which checkpoints from before PyTorch 0.4.1 lack.
_PROFILER_SUFFIXES = ("total_ops", "total_params")


def _load_into(model: nn.Module, sd: dict, notes: list[str]):
    own = model.state_dict()
    extra = [k for k in sd if k not in own and k.rsplit(".", 1)[-1] in _PROFILER_SUFFIXES]
    if extra:
        notes.append(f"checkpoint: ignored {len(extra)} profiler buffer(s) (thop total_ops/total_params)")
        sd = {k: v for k, v in sd.items() if k not in extra}
    absent_nbt = [k for k in own if k.endswith("num_batches_tracked") and k not in sd]
    if absent_nbt:
        notes.append(f"checkpoint: {len(absent_nbt)} BatchNorm num_batches_tracked missing (old checkpoint); kept the model's")
        sd = dict(sd, **{k: own[k] for k in absent_nbt})
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})")
        raise CmcError("checkpoint does not fit --arch: " + ", ".join(parts) + " keys")
    for k, v in sd.items():
        if tuple(own[k].shape) != tuple(v.shape):
            raise CmcError(f"checkpoint does not fit --arch: {k!r} is {tuple(v.shape)} in the file but "
                           f"{tuple(own[k].shape)} in the model")
    model.load_state_dict(sd, strict=True)


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise CmcError(f"--input-shape {text!r} must look like 1x3x32x32") from None
    if not dims or any(d <= 0 for d in dims) or math.prod(dims) > 2 ** 31:
        raise CmcError(f"--input-shape {text!r}: every dimension must be a positive integer")
    return dims
