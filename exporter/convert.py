"""Convert step: replace research-code layers with cmc layers that compute the same thing.

Walks the user's module tree; every module a plugin's recogniser claims is swapped in its parent
for the cmc equivalent (the original object is left untouched: we work on a deep copy). Returns the
list of what was converted, which goes into the report.
"""
from __future__ import annotations

import copy

from torch import nn

from cmc.plugins.registry import OPERATORS

from .errors import CmcError


def convert_research_layers(model: nn.Module) -> tuple[nn.Module, list[dict]]:
    model = copy.deepcopy(model)
    converted: list[dict] = []

    def visit(parent: nn.Module, prefix: str):
        for name, child in list(parent.named_children()):
            path = f"{prefix}{name}"
            replacement = None
            for entry in OPERATORS:
                try:
                    hit = entry["recognise"](child)
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
