"""Load step: turn MODEL (+ --arch, --arch-args) into an nn.Module or a torch.export program, safely.

Accepted inputs
* a state_dict file or a training/pruning checkpoint (see ``checkpoint.py``: ``{'state_dict': ...,
  'epoch', 'best_prec1', 'optimizer', 'cfg'}`` and the like; DataParallel ``module.`` prefixes are
  undone) together with ``--arch module:callable`` that builds the user's model — called with the
  checkpoint's ``cfg`` and ``--arch-args`` where it takes them (``arch.py``);
* a torch.export program (``.pt2``);
* a pickled ``nn.Module`` only with ``allow_pickle=True``: unpickling runs arbitrary code.

Checkpoints are read with ``torch.load(weights_only=True)`` (plus argparse.Namespace and NumPy values,
see ``checkpoint.SAFE_GLOBALS``), which executes no code from the file.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .user_code import display_path
from .arch import build_arch, choose_kwargs, describe_call, resolve_arch, signature_of
from .checkpoint import Checkpoint, as_literal, read_checkpoint, split_checkpoint, summary
from .errors import CmcError

import cmc.plugins.registry  # noqa: F401  (registers the cmc:: ops a .pt2 program may contain)


@dataclass
class Loaded:
    module: nn.Module | None = None
    exported: torch.export.ExportedProgram | None = None
    notes: list[str] = field(default_factory=list)
    source: str = ""
    #: keyword arguments --arch was called with (from the checkpoint and --arch-args)
    arch_kwargs: dict = field(default_factory=dict)


def unwrap_state_dict(obj, notes: list[str]) -> dict[str, torch.Tensor]:
    """The state_dict inside whatever torch.load returned (checkpoint conventions, DataParallel prefix)."""
    ck = split_checkpoint(obj)
    if ck.module is not None:
        return ck.module.state_dict()
    notes.extend(ck.notes)
    line = summary(ck, set())
    if line:
        notes.append(line)
    return ck.state_dict


def _check_finite(named_tensors, what: str):
    for name, t in named_tensors:
        if t.is_floating_point() and not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).sum())
            raise CmcError(f"{what} {name!r} has {bad} NaN/Inf value(s); refusing to export a broken model")


def load_model(path: str | os.PathLike, arch: str | None = None, allow_pickle: bool = False,
               arch_args: dict | None = None) -> Loaded:
    p = Path(path)
    if not p.exists():
        raise CmcError(f"model file {str(p)!r} does not exist")
    if p.is_dir():
        raise CmcError(f"model path {str(p)!r} is a directory, not a file")
    if p.stat().st_size == 0:
        raise CmcError(f"model file {str(p)!r} is empty")
    out = Loaded(source=str(p))
    if p.suffix == ".pt2":
        if not allow_pickle:
            # torch.export.load unpickles parts of the archive (weights marked use_pickle, opaque
            # constants, sample inputs, older formats) with the full unpickler: code from the file can run.
            raise CmcError(f"{p.name} is a torch.export program: loading it can unpickle objects from the file and "
                           "run their code — pass --allow-pickle if you trust it (e.g. cmc-export shrink's output), "
                           "or export from a state_dict with --arch")
        if arch or arch_args:
            out.notes.append("--arch/--arch-args ignored: a .pt2 program carries its own graph")
        try:
            out.exported = torch.export.load(str(p))
        except Exception as e:
            raise CmcError(f"{p.name}: not a readable torch.export program ({type(e).__name__}: {_first_line(e)})") from e
        _check_finite(list(out.exported.state_dict.items()), "tensor")
        return out

    ck = split_checkpoint(read_checkpoint(p, allow_pickle))
    out.notes.extend(ck.notes)
    if ck.module is not None and not arch:
        if arch_args:
            raise CmcError("--arch-args needs --arch (the file holds a whole pickled model)")
        model = ck.module
        out.notes.append("loaded a pickled nn.Module (--allow-pickle)")
    else:
        if not arch:
            hint = f" (it carries cfg={_short(ck.literals['cfg'])}: a pruned model)" if "cfg" in ck.literals else ""
            raise CmcError(f"{p.name} is a state_dict{hint}; pass --arch module:callable that builds the model")
        device_calls: list = []
        fn = resolve_arch(arch, device_calls)
        kwargs, used, arg_notes = choose_kwargs(fn, arch, ck.literals, dict(arch_args or {}))
        out.notes.extend(arg_notes)
        line = summary(ck, used)
        if line:
            out.notes.append(line)
        if kwargs:
            out.notes.append(f"--arch: built {describe_call(arch, kwargs)}")
        out.arch_kwargs = kwargs
        model = build_arch(arch, kwargs, fn, device_calls)
        out.notes.extend(f"--arch: {s.function}() to CUDA at {display_path(s.file)}:{s.line} while building the model "
                         f"kept it on the CPU" for s in device_calls)
        sd = ck.module.state_dict() if ck.module is not None else ck.state_dict
        _load_into(model, sd, out.notes, hints=_Hints(arch, ck, kwargs, used))
    _check_finite(list(model.named_parameters()) + list(model.named_buffers()), "tensor")
    out.module = model.eval()
    return out


def _first_line(e: Exception) -> str:
    s = str(e).strip().splitlines()
    return s[0][:200] if s else type(e).__name__


def _short(v, n: int = 48) -> str:
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


@dataclass
class _Hints:
    """What the checkpoint and --arch said, for the wording of a mismatch."""

    arch: str = ""
    ck: Checkpoint | None = None
    kwargs: dict = field(default_factory=dict)
    used: set = field(default_factory=set)

    def text(self, narrower: bool) -> str:
        ck = self.ck
        if ck is None:
            return ""
        if "cfg" in ck.literals and "cfg" not in self.used and "cfg" not in self.kwargs:
            return (f"; the checkpoint carries cfg={_short(ck.literals['cfg'])} (a pruned model) but {self.arch} takes "
                    "no 'cfg' argument: point --arch at a callable that does (e.g. the model class), or pass "
                    "--arch-args cfg=[...]")
        if "cfg" in self.used:
            return (f"; the model was built with the checkpoint's cfg={_short(ck.literals['cfg'])}"
                    + self._args_hint())
        if "cfg" in self.kwargs:
            over = (f" instead of the checkpoint's cfg={_short(ck.literals['cfg'])}" if "cfg" in ck.literals
                    and ck.literals["cfg"] != self.kwargs["cfg"] else "")
            return f"; the model was built with --arch-args cfg={_short(self.kwargs['cfg'])}{over}" + self._args_hint()
        hint = self._args_hint()
        if narrower:
            hint += ("; the file's layer is narrower than the model's: a pruned model? build it with its channel "
                     "configuration (e.g. --arch-args cfg=[...], or the checkpoint the prune script saved with 'cfg')")
        return hint

    def _args_hint(self) -> str:
        """Fields of a saved training 'args' that --arch takes and were not given."""
        ck = self.ck
        if ck is None or not ck.saved_args:
            return ""
        try:
            sig = signature_of(resolve_arch(self.arch))
        except CmcError:
            sig = None
        if sig is None:
            return ""
        names, _ = sig
        cand = {k: v for k, v in ck.saved_args.items() if k in names and (k not in self.kwargs or self.kwargs[k] != v)}
        if not cand:
            return ""
        try:
            text = ",".join(f"{k}={_short(as_literal(v), 30)}" for k, v in sorted(cand.items()))
        except ValueError:
            return ""
        return f"; the checkpoint's training args have {text}: pass --arch-args {text} if that is how it was built"


# Keys checkpoints carry that are not model state: thop's profiling buffers, and BatchNorm's
# num_batches_tracked which checkpoints from before PyTorch 0.4.1 lack.
_PROFILER_SUFFIXES = ("total_ops", "total_params")


def _load_into(model: nn.Module, sd: dict, notes: list[str], hints: _Hints | None = None):
    hints = hints or _Hints()
    own = model.state_dict()
    extra = [k for k in sd if k not in own and k.rsplit(".", 1)[-1] in _PROFILER_SUFFIXES]
    if extra:
        notes.append(f"checkpoint: ignored {len(extra)} profiler buffer(s) (thop total_ops/total_params)")
        sd = {k: v for k, v in sd.items() if k not in extra}
    # a metric saved beside the weights in a flat dict ({'conv.weight': ..., 'best_acc': tensor(93.1)})
    metrics = [k for k in sd if k not in own and "." not in k and sd[k].dim() == 0]
    if metrics and len(metrics) < len(sd):
        notes.append("checkpoint: ignored " + ", ".join(f"{k}={sd[k].item():.6g}" for k in metrics[:6])
                     + " (0-d tensors that are no part of the model)")
        sd = {k: v for k, v in sd.items() if k not in metrics}
    sd = _match_module_levels(sd, own, notes)
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
        raise CmcError("checkpoint does not fit --arch: " + ", ".join(parts) + " keys" + hints.text(False))
    for k, v in sd.items():
        if tuple(own[k].shape) != tuple(v.shape):
            narrower = v.dim() == own[k].dim() and all(a <= b for a, b in zip(v.shape, own[k].shape))
            raise CmcError(f"checkpoint does not fit --arch: {k!r} is {tuple(v.shape)} in the file but "
                           f"{tuple(own[k].shape)} in the model" + hints.text(narrower))
    model.load_state_dict(sd, strict=True)


def _without_module_levels(key: str) -> str:
    return ".".join(part for part in key.split(".") if part != "module")


def _match_module_levels(sd: dict, own: dict, notes: list[str]) -> dict:
    """Names that differ only in nn.DataParallel 'module' levels are the same tensor: the whole model
    wrapped (the file's prefix was stripped but the --arch model is itself wrapped, or the reverse) or a
    part of it (`model.features = DataParallel(model.features)`: 'features.module.0.weight'). Renamed to
    the model's names when that matches every key one to one; otherwise left for the mismatch error."""
    if set(sd) == set(own):
        return sd
    by_plain = {}
    for k in own:
        by_plain.setdefault(_without_module_levels(k), []).append(k)
    renamed = {}
    for k, v in sd.items():
        targets = by_plain.get(_without_module_levels(k), [])
        if len(targets) != 1:
            return sd
        renamed[targets[0]] = v
    if len(renamed) != len(sd) or set(renamed) != {k for k in own if k in renamed}:
        return sd
    changed = sum(1 for k in sd if k not in own)
    if changed:
        notes.append(f"checkpoint: matched {changed} name(s) that differ from the model's only in nn.DataParallel "
                     "'module' levels")
    return renamed


def artifact_stem(path) -> str:
    """'pruned.pth.tar' -> 'pruned' (the repositories' checkpoint names), 'model.pth' -> 'model'."""
    stem = Path(path).stem
    if Path(path).suffix == ".tar" and Path(stem).suffix in (".pth", ".pt"):
        stem = Path(stem).stem
    return stem


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise CmcError(f"--input-shape {text!r} must look like 1x3x32x32") from None
    if not dims or any(d <= 0 for d in dims) or math.prod(dims) > 2 ** 31:
        raise CmcError(f"--input-shape {text!r}: every dimension must be a positive integer")
    return dims
