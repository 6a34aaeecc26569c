"""--arch and --arch-args: build the user's model, with the arguments its checkpoint and the command line give.

Pruned models cannot be built by a zero-argument call: the pruning repositories rebuild them as
``vgg(cfg=checkpoint['cfg'])`` or ``resnet(depth=56, cfg=...)``. cmc calls ``--arch module:callable``
with

* entries of the checkpoint that the callable takes by name (``cfg`` above all; a callable with
  ``**kwargs``, like ``resnet34(pretrained=False, **kwargs)``, gets ``cfg`` only), and
* ``--arch-args``: ``depth=56,dataset=cifar10`` (values are Python literals read with
  ``ast.literal_eval``; a bare word is a string) or a JSON / Python dict ``{"depth": 56}``. The command
  line wins over the checkpoint.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import sys
from contextlib import contextmanager

from torch import nn

from .errors import CmcError

@contextmanager
def user_code_environment(spec: str, device_calls: list | None = None):
    """While cmc imports the user's module and calls its builder: the command line the module sees is
    just its own name (research ``main.py`` files call ``argparse.parse_args()`` at import time and would
    parse cmc's arguments), and ``.cuda()`` / ``.to('cuda')`` from the user's code keep tensors and
    modules on the CPU, as in forward (IR-Net's constructor puts its STE constants on the GPU). Those call
    sites (``idioms.CallSite``) are added to ``device_calls``."""
    from .idioms import cpu_device_calls

    saved = sys.argv
    sys.argv = [spec.partition(":")[0]]
    try:
        with cpu_device_calls() as sites:
            yield
    finally:
        sys.argv = saved
        if device_calls is not None:
            device_calls.extend(site for site in sites if site not in device_calls)

#: Checkpoint entries passed to a callable that takes ``**kwargs`` (it names nothing else we could match).
ARCH_KEYS_FOR_VAR_KWARGS = ("cfg",)


def resolve_arch(spec: str, device_calls: list | None = None):
    """'pkg.mod:fn' -> the callable, importable from PYTHONPATH or the current directory."""
    if ":" not in spec:
        raise CmcError(f"--arch {spec!r} must look like 'module:callable' (e.g. samples.addernet_resnet20:resnet20)")
    mod_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        with user_code_environment(spec, device_calls):
            mod = importlib.import_module(mod_name)
    except SystemExit as e:  # argparse.parse_args() failing, or an explicit exit(), at import time
        raise CmcError(f"--arch: importing {mod_name!r} exited (SystemExit {e.code}) before defining the model: "
                       f"{_exit_site(e)}it ran with an empty command line (cmc hides its own); give the values "
                       "it needs defaults, or move the parsing under `if __name__ == '__main__':`") from e
    except ModuleNotFoundError as e:
        parts = mod_name.split(".")
        if e.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}:
            raise CmcError(f"--arch: cannot import module {mod_name!r} ({e}); is it on PYTHONPATH?") from e
        # the user's module was found, but something it imports is not installed
        raise CmcError(f"--arch: importing {mod_name!r} failed: it needs the module {e.name!r}, which is not "
                       f"installed ({e})") from e
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


# ----------------------------------------------------------------------------------------------
# --arch-args
# ----------------------------------------------------------------------------------------------
def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and quotes: 'cfg=[1,2],depth=5' -> ['cfg=[1,2]', 'depth=5']."""
    parts, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0 and not quote:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _value(name: str, text: str):
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if text.isidentifier():     # dataset=cifar10: a bare word is a string
            return text
        raise CmcError(f"--arch-args: the value of {name!r} ({text!r}) is not a Python literal "
                       "(numbers, strings, True/False/None, lists, tuples, dicts)") from None


def parse_arch_args(text: str | None) -> dict:
    """'depth=56,dataset=cifar10,cfg=[16,"M",32]' or '{"depth": 56}' -> dict."""
    if text is None or not text.strip():
        return {}
    text = text.strip()
    if text.startswith("{"):
        try:
            d = json.loads(text)
        except ValueError:
            try:
                d = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise CmcError(f"--arch-args {text[:60]!r} is neither JSON nor a Python dict literal") from None
        if not isinstance(d, dict) or not all(isinstance(k, str) and k.isidentifier() for k in d):
            raise CmcError("--arch-args: a dict form must map argument names to values")
        return d
    out = {}
    for part in _split_top_level(text):
        name, eq, val = part.partition("=")
        name = name.strip()
        if not eq or not name.isidentifier():
            raise CmcError(f"--arch-args: {part.strip()!r} is not NAME=VALUE (e.g. depth=56,dataset=cifar10)")
        if name in out:
            raise CmcError(f"--arch-args: {name!r} given twice")
        out[name] = _value(name, val)
    return out


# ----------------------------------------------------------------------------------------------
# building
# ----------------------------------------------------------------------------------------------
def signature_of(fn) -> tuple[set[str], bool] | None:
    """(names the callable takes by keyword, whether it takes **kwargs); None if not inspectable."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    names = {p.name for p in sig.parameters.values()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    return names, var_kw


def choose_kwargs(fn, spec: str, from_checkpoint: dict, from_cli: dict) -> tuple[dict, set[str], list[str]]:
    """(keyword arguments for ``fn``, the checkpoint entries used, notes)."""
    sig = signature_of(fn)
    names, var_kw = sig if sig is not None else (set(), True)
    for k in from_cli:
        if sig is not None and k not in names and not var_kw:
            takes = ", ".join(sorted(names)) or "no keyword arguments"
            raise CmcError(f"--arch-args: {spec} takes no argument {k!r} (it takes {takes})")
    kwargs, used, notes = {}, set(), []
    for k, v in from_checkpoint.items():
        if k in names or (var_kw and k in ARCH_KEYS_FOR_VAR_KWARGS):
            if k in from_cli:
                notes.append(f"--arch-args {k}= overrides the checkpoint's {k!r}")
                continue
            kwargs[k] = v
            used.add(k)
    kwargs.update(from_cli)
    return kwargs, used, notes


def _call_text(spec: str, kwargs: dict) -> str:
    args = ", ".join(f"{k}={_short(v)}" for k, v in kwargs.items())
    return f"{spec}({args})"


def _short(v) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def build_arch(spec: str, kwargs: dict | None = None, fn=None, device_calls: list | None = None) -> nn.Module:
    """``fn(**kwargs)`` in ``user_code_environment``; CUDA moves it neutralised are added to ``device_calls``."""
    fn = fn if fn is not None else resolve_arch(spec, device_calls)
    kwargs = kwargs or {}
    try:
        with user_code_environment(spec, device_calls):
            model = fn(**kwargs)
    except SystemExit as e:
        raise CmcError(f"--arch: calling {_call_text(spec, kwargs)} exited (SystemExit {e.code}): {_exit_site(e)}"
                       "it ran with an empty command line (cmc hides its own)") from e
    except Exception as e:
        raise CmcError(f"--arch: calling {_call_text(spec, kwargs)} failed: {type(e).__name__}: "
                       f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}") from e
    if not isinstance(model, nn.Module):
        raise CmcError(f"--arch: {spec} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _exit_site(e: BaseException) -> str:
    """'file:line (`source`): ' of the user's innermost frame in the traceback, or ''."""
    from .user_code import user_line_of_traceback

    line = user_line_of_traceback(e.__traceback__)
    return f"{line.quoted()}: " if line is not None else ""


def describe_call(spec: str, kwargs: dict) -> str:
    return _call_text(spec, kwargs)
