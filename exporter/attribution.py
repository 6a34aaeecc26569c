"""Turn a failure of the user's model (dry run, calibration, capture) into one line that names its cause.

The line names the user's file and line (the innermost frame of their code, ``user_code``), the
layer that was running, what the idiom is and what to change. ``--input-shape`` is blamed only when
the failure is a shape mismatch. The original exception stays chained (``--debug`` shows it).
"""
from __future__ import annotations

import re
import types

import torch

from .errors import CmcError
from .idioms import IdiomError
from .user_code import SourceLine, user_line_of_exception

# Messages PyTorch gives when a layer gets a tensor of the wrong shape.
_SHAPE = re.compile("|".join([
    r"size mismatch", r"shapes cannot be multiplied", r"to have \d+ channels", r"must match the size of tensor",
    r"Sizes of tensors must match", r"Expected \d+D", r"Expected \d+-dimensional", r"expected \d+D input",
    r"Expected 3D \(unbatched\)", r"Kernel size can't be greater", r"Output size is too small",
    r"is invalid for input of size", r"Expected input batch_size", r"input image .* smaller than kernel",
    r"Padding size should be less than", r"running_mean should contain", r"expected input with shape",
    r"Given input size: .* Calculated output size", r"non-positive stride", r"dimension out of range",
    r"Dimension out of range", r"not broadcastable", r"shape '\[.*\]' is invalid",
]))
_CUDA = re.compile(r"not compiled with CUDA|no NVIDIA driver|CUDA driver|found at least two devices|"
                   r"torch\.cuda\.\w+Tensor not available|CUDA error|cuda:\d", re.IGNORECASE)
_HOST_READ = re.compile(r"\.numpy\(\)|\.tolist\(\)|Cannot access data pointer|doesn't have storage|"
                        r"is not supported for tensor subclasses")
_LEGACY = "Legacy autograd function with non-static forward"
_LIFTED = "fake tensor in the exported program constant"
_BRANCH = re.compile(r"^(if|elif|while|assert)\b|\bif\b.*\belse\b")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:240] if text else type(exc).__name__


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _is_data_dependent(exc: BaseException) -> bool:
    names = {"GuardOnDataDependentSymNode", "DataDependentOutputException", "PendingUnbackedSymbolNotFound"}
    return any(type(e).__name__ in names or "data-dependent" in str(e)[:400] for e in _chain(exc))


def innermost_layer(exc: BaseException, model: torch.nn.Module | None) -> str | None:
    """"layer 'layer1.0.conv1' (Conv2d)": the innermost of the model's modules running when ``exc`` was raised."""
    if model is None:
        return None
    names = {id(m): n for n, m in model.named_modules()}
    found = None
    tb: types.TracebackType | None = exc.__traceback__
    while tb is not None:
        obj = tb.tb_frame.f_locals.get("self")
        if isinstance(obj, torch.nn.Module) and id(obj) in names:
            found = obj
        tb = tb.tb_next
    if found is None:
        return None
    name = names[id(found)]
    return f"layer '{name}' ({type(found).__name__})" if name else f"the model ({type(found).__name__})"


def _shape_text(example) -> str:
    return "x".join(map(str, example.shape)) if isinstance(example, torch.Tensor) else "the example input"


def explain_failure(exc: BaseException, *, during: str, model: torch.nn.Module | None = None,
                    example: torch.Tensor | None = None, capturing: bool = False) -> CmcError:
    """One ``CmcError`` (exit 2) for a failure of the user's model; raise it ``from exc``."""
    for e in _chain(exc):
        if isinstance(e, IdiomError):  # the shims already worded it
            return e
    if isinstance(exc, CmcError):
        return exc
    line: SourceLine | None = user_line_of_exception(exc)
    src = line.quoted() if line else "the model's forward (no line of its own code is on the stack)"
    at = f"at {line.quoted()}" if line else "(no line of the model's own code is on the stack)"
    layer = innermost_layer(exc, model)
    first = _first_line(exc)
    texts = " ".join(str(e)[:600] for e in _chain(exc))

    if _LEGACY in texts:
        return CmcError(f"{src} calls a legacy autograd Function (non-static forward), which PyTorch 2.x refuses: make "
                        f"forward/backward @staticmethods taking ctx and call it as Fn.apply(x)")
    if _is_data_dependent(exc):
        if line is not None and _BRANCH.search(line.source):
            return CmcError(f"{src} branches on tensor values (data-dependent Python control flow), which an exported "
                            f"graph cannot hold: compute both sides and select with torch.where, or use torch.cond")
        return CmcError(f"{src} turns a tensor's value into a Python number (float()/int()/.item()/a size taken from "
                        f"values), which an exported graph cannot hold: keep it a tensor")
    if _HOST_READ.search(texts):
        return CmcError(f"{src} reads tensor values into NumPy/Python (.numpy()/.tolist()), outside the graph that "
                        f"torch.export records: compute it with torch operations")
    if _CUDA.search(texts):
        return CmcError(f"{src} creates or moves a tensor on CUDA ({first}); cmc runs the model on the CPU: create it "
                        f"on the input's device (device=x.device, x.new_zeros(...))")
    if _LIFTED in texts:
        attr = re.search(r"model attribute: ([\w.]+)", texts)
        where = f" (torch.export names it {attr.group(1)})" if attr else ""
        return CmcError(f"forward makes a tensor outside the graph torch.export records{where}, e.g. from NumPy, a "
                        f"Python list or a tensor kept between calls: build it with torch operations on the input")
    if isinstance(exc, (RuntimeError, ValueError, IndexError)) and _SHAPE.search(texts):
        who = f"{layer} {at}" if layer else at
        return CmcError(f"the model does not run on an input of shape {_shape_text(example)}: {who}: {first}; "
                        f"check --input-shape")
    who = f" in {layer}" if layer else ""
    if capturing:
        return CmcError(f"torch.export cannot capture the model {at}{who}: {type(exc).__name__}: {first}")
    return CmcError(f"the model's forward fails during {during} {at}{who}: {type(exc).__name__}: {first} "
                    f"(an error in the model's code, not in its input)")
