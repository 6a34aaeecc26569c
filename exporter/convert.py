"""Convert step: replace research-code layers with cmc layers that compute the same thing.

Walks the user's module tree; every module a plugin's recogniser claims is swapped in its parent
for the cmc equivalent (the original object is left untouched: we work on a deep copy). Returns the
list of what was converted, which goes into the report.

Recogniser contract (``OPERATORS[i]["recognise"](module, facts)``): None (not ours), or
``(replacement, description)`` or ``(replacement, description, extra)``; ValueError when the module
looks like one but does not fit (a refusal naming the layer). ``facts``: ``input_has_zeros``,
``flow`` (``dataflow.ModuleFacts`` of this module in the calibration run) and ``feeder`` ((path,
module, facts) of the module whose output object was its input). ``extra`` may name a value for the
sign-flip check (``binarizes``, ``sign_source``) and a sibling module to absorb (``absorbs``: it
becomes Identity). Claims are collected first and applied after the walk, so an absorption does not
depend on the order in which modules were registered.
"""
from __future__ import annotations

import copy

import torch

from torch import nn

from cmc.plugins.registry import OPERATORS

from .attribution import explain_failure
from .dataflow import observe_dataflow
from .errors import CmcError
from .idioms import eager_idioms


def convert_research_layers(model: nn.Module, example: torch.Tensor | None = None) -> tuple[nn.Module, list[dict]]:
    """``example``: an input for the calibration runs whose facts (inputs exactly 0, what flows
    between modules) the recognisers use. Without it, only layers recognisable alone are converted.

    Each report entry: ``layer``, ``class``, ``to``; for binary layers also ``binarizes`` (the user's
    value whose sign the emitted binarization takes: a module path = its input 0, 'path:output'),
    ``sign_source`` (the value a sign in front of the layer took) and ``absorbed_by`` where a sign
    module became part of the BinaryConv after it."""
    try:
        flow = observe_dataflow(model, example) if example is not None else {}
    except Exception as e:
        raise explain_failure(e, during="the calibration run", model=model, example=example) from e
    model = copy.deepcopy(model)
    modules = dict(model.named_modules())
    claims: dict[str, tuple[nn.Module, dict]] = {}
    absorbed: dict[str, str] = {}

    def facts_for(path: str) -> dict:
        f = flow.get(path)
        facts = {"input_has_zeros": f is not None and f.input_has_zeros, "flow": f}
        if f is not None and f.fed_by is not None and f.fed_by in modules:
            facts["feeder"] = (f.fed_by, modules[f.fed_by], flow.get(f.fed_by))
        return facts

    def visit(parent: nn.Module, prefix: str):
        for name, child in list(parent.named_children()):
            path = f"{prefix}{name}"
            hit = None
            for entry in OPERATORS:
                try:
                    hit = entry["recognise"](child, facts_for(path))
                except ValueError as e:
                    raise CmcError(f"layer {path!r} ({type(child).__name__}): {e}") from e
                if hit is not None:
                    break
            if hit is None:
                visit(child, path + ".")
                continue
            replacement, desc, *rest = hit
            extra = dict(rest[0]) if rest else {}
            info = {"layer": path, "class": type(child).__name__, "to": desc}
            for key in ("binarizes", "sign_source"):
                if key in extra:
                    info[key] = path if extra[key] == "self" else extra[key]
            if "absorbs" in extra:
                absorbed[extra["absorbs"]] = path
            claims[path] = (replacement, info)

    with eager_idioms():  # the probes run the user's layers' forwards
        visit(model, "")
    for sign_path, by in absorbed.items():
        if any(sign_path.startswith(p + ".") for p in claims):
            continue  # inside a layer that was rebuilt as a whole: nothing left to absorb
        info = claims[sign_path][1] if sign_path in claims else {"layer": sign_path,
                                                                 "class": type(modules[sign_path]).__name__}
        info = dict(info, to=f"absorbed into {by} (its BinaryConv binarizes this module's input)", absorbed_by=by)
        claims[sign_path] = (nn.Identity(), info)
    converted = []
    for path, (replacement, info) in claims.items():
        parent_path, _, name = path.rpartition(".")
        original = modules[path]
        replacement.train(original.training)
        if replacement is not original:
            setattr(modules[parent_path], name, replacement)
        converted.append(info)
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
