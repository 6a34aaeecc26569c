"""Convert step: replace research-code layers with cmc layers that compute the same thing.

Walks the user's module tree; every module a plugin's recogniser claims is swapped in its parent
for the cmc equivalent (the original object is left untouched: we work on a deep copy). Returns the
list of what was converted, which goes into the report.
"""
from __future__ import annotations

import copy

import torch

from torch import nn

from cmc.plugins.registry import OPERATORS

from .attribution import explain_failure
from .errors import CmcError
from .idioms import eager_idioms


def observe_zero_inputs(model: nn.Module, example: torch.Tensor) -> set[str]:
    """Names of the modules that received an input element exactly 0 in one run on ``example``.

    A recogniser needs this where the research code's semantics hinge on exact zeros
    (torch.sign(0) = 0 in the BNN code, which a +-1 operator cannot represent)."""
    seen: set[str] = set()
    hooks = []
    for name, mod in model.named_modules():
        def pre(m, args, name=name):
            if args and isinstance(args[0], torch.Tensor) and bool((args[0] == 0).any()):
                seen.add(name)
        hooks.append(mod.register_forward_pre_hook(pre))
    try:
        with eager_idioms(), torch.no_grad():
            model(example)
    except Exception as e:
        raise explain_failure(e, during="the calibration run", model=model, example=example) from e
    finally:
        for h in hooks:
            h.remove()
    return seen


def convert_research_layers(model: nn.Module, example: torch.Tensor | None = None) -> tuple[nn.Module, list[dict]]:
    """``example``: an input for a calibration run whose facts (inputs exactly 0) recognisers use."""
    zero_inputs = observe_zero_inputs(model, example) if example is not None else set()
    model = copy.deepcopy(model)
    converted: list[dict] = []

    def visit(parent: nn.Module, prefix: str):
        for name, child in list(parent.named_children()):
            path = f"{prefix}{name}"
            replacement = None
            for entry in OPERATORS:
                try:
                    hit = entry["recognise"](child, {"input_has_zeros": path in zero_inputs})
                except ValueError as e:
                    raise CmcError(f"layer {path!r} ({type(child).__name__}): {e}") from e
                if hit is not None:
                    replacement, desc = hit
                    converted.append({"layer": path, "class": type(child).__name__, "to": desc})
                    break
            if replacement is not None:
                replacement.train(child.training)
                setattr(parent, name, replacement)
            else:
                visit(child, path + ".")

    visit(model, "")
    return model, converted


def pack_for_deployment(model: nn.Module) -> nn.Module:
    """Swap training-form layers for their deployment form (e.g. BinaryConv2d -> bit-packed)."""
    from cmc.plugins.binary_conv import BinaryConv2d

    def visit(parent: nn.Module):
        for name, child in list(parent.named_children()):
            if isinstance(child, BinaryConv2d):
                setattr(parent, name, child.to_packed().eval())
            else:
                visit(child)

    visit(model)
    return model
