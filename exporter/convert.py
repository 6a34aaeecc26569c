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
from .conversion_proof import demote, prove_calls, replace_everywhere
from .dataflow import observe_dataflow
from .errors import CmcError
from .idioms import eager_idioms


def convert_research_layers(model: nn.Module, example: torch.Tensor | None = None,
                            zero_weights_as_plus_one: bool = False, flow: dict | None = None
                            ) -> tuple[nn.Module, list[dict]]:
    """``example``: an input for the calibration runs whose facts (inputs exactly 0, what flows
    between modules) the recognisers use. Without it, only layers recognisable alone are converted.

    Each report entry: ``layer``, ``class``, ``to``; for binary layers also ``binarizes`` (the user's
    value whose sign the emitted binarization takes: a module path = its input 0, 'path:output'),
    ``sign_source`` (the value a sign in front of the layer took) and ``absorbed_by`` where a sign
    module became part of the BinaryConv after it; ``status`` (see ``_status``), ``calls`` (in the
    calibration run), ``also_replaced_at`` (aliases replaced too) and ``zero_weights`` (with
    ``zero_weights_as_plus_one``: the exact-zero weights taken as +1). ``flow``: the facts of a run of
    ``model`` on ``example`` already observed (``dataflow.observe_run``), so it is not run again."""
    try:
        if flow is None:
            flow = observe_dataflow(model, example) if example is not None else {}
    except Exception as e:
        raise explain_failure(e, during="the calibration run", model=model, example=example) from e
    model = copy.deepcopy(model)
    modules = dict(model.named_modules())
    claims: dict[str, tuple[nn.Module, dict]] = {}
    absorbed: dict[str, str] = {}

    def facts_for(path: str) -> dict:
        f = flow.get(path)
        facts = {"input_has_zeros": f is not None and f.input_has_zeros, "flow": f,
                 "zero_weights_as_plus_one": zero_weights_as_plus_one}
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
            if "zero_weights" in extra:
                info["zero_weights"] = extra["zero_weights"]
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
    converted, swaps, expected = [], {}, {}
    for path, (replacement, info) in claims.items():
        original = modules[path]
        replacement.train(original.training)
        calls = flow[path].calls if path in flow else None
        info["status"] = _status(original, replacement)
        if calls is not None:
            info["calls"] = calls
        if replacement is not original:
            swaps[id(original)] = replacement
            if calls:
                expected[path] = (original, replacement, calls)
        converted.append(info)
    # Every reference the model holds, not only the registered name: a layer called through a tuple,
    # a list, a dict or a second attribute must run as the replacement too.
    by_replacement = {id(claims[info["layer"]][0]): info for info in converted if info["status"] != "kept"}
    for place, new in replace_everywhere(model, swaps):
        info = by_replacement.get(id(new))
        if info is not None and place != info["layer"]:
            info.setdefault("also_replaced_at", []).append(place)
    if example is not None and expected:
        try:
            problems = prove_calls(model, example, expected)
        except Exception as e:
            raise explain_failure(e, during="a run of the converted model", model=model, example=example) from e
        for info in converted:
            if info["layer"] in problems:
                demote(info, problems[info["layer"]])
    return model, converted


def _status(original: nn.Module, replacement: nn.Module) -> str:
    """'converted' (a com.cmc op runs it), 'absorbed' (Identity: a BinaryConv binarizes its input), 'rebuilt'
    (standard ops computing the same: a Sign, a float conv with the effective weights) or 'kept'."""
    from cmc.plugins.adder_conv import AdderConv2d
    from cmc.plugins.binary_conv import BinaryConv2d, PackedBinaryConv2d

    if replacement is original:
        return "kept"
    if isinstance(replacement, nn.Identity):
        return "absorbed"
    if any(isinstance(m, (AdderConv2d, BinaryConv2d, PackedBinaryConv2d)) for m in replacement.modules()):
        return "converted"
    return "rebuilt"


def summarise(converted: list[dict]) -> str:
    """'3 to com.cmc ops (AdderConv 2, BinaryConv 1), 1 rebuilt as standard ops, 1 kept as the user's own ops'."""
    by = {}
    for e in converted:
        by.setdefault(e.get("status", "converted"), []).append(e)
    parts = []
    if by.get("converted"):
        ops = {}
        for e in by["converted"]:
            op = "AdderConv" if e["to"].startswith("AdderConv") else "BinaryConv"
            ops[op] = ops.get(op, 0) + 1
        parts.append(f"{len(by['converted'])} to com.cmc ops ({', '.join(f'{k} {v}' for k, v in ops.items())})")
    if by.get("rebuilt"):
        parts.append(f"{len(by['rebuilt'])} rebuilt as standard ops")
    if by.get("absorbed"):
        parts.append(f"{len(by['absorbed'])} sign module(s) absorbed")
    if by.get("kept"):
        parts.append(f"{len(by['kept'])} kept as the user's own ops")
    return ", ".join(parts) or "no research layer found"


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
