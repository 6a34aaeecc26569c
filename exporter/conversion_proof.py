"""What the convert step claims, proven on the model and on the ONNX instead of assumed.

Replacing a layer in its parent (``setattr``) is not enough when the user's code reaches the layer
another way: a second registered name for the same module, a tuple / list / dict attribute holding it
(``self.ops = (self.conv, self.bn)``), which ``named_children`` never shows. ``replace_everywhere``
swaps every reference the model's modules hold, containers included.

Two checks then decide what the report may say:

* ``prove_calls``: one eager run of the converted model with forward hooks: each replacement must run
  as often as the original ran in the calibration run, and no original may run at all (it would be
  reached through a reference cmc could not see: a closure, a global).
* ``prove_onnx``: the exported ONNX must hold ``com.cmc`` nodes inside the scope of every layer the
  report calls converted (at least one per call that the calibration run made).

A layer that fails either is reported as kept, with the reason: the report and the artifact agree.
"""
from __future__ import annotations

import torch
from torch import nn

#: Containers followed inside a module's plain attributes (nested this deep at most).
_MAX_DEPTH = 3


def _swap(value, swaps: dict[int, nn.Module], where: str, found: list, depth: int = 0):
    """``value`` with every module in ``swaps`` (by id) replaced; lists and dicts are changed in place,
    tuples rebuilt. Each replaced reference's place is added to ``found``."""
    if isinstance(value, nn.Module):
        new = swaps.get(id(value))
        if new is not None:
            found.append((where, new))
            return new
        return value
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, list):
        for i, v in enumerate(value):
            value[i] = _swap(v, swaps, f"{where}[{i}]", found, depth + 1)
        return value
    if isinstance(value, dict) and not isinstance(value, nn.Module):
        for k in list(value):
            value[k] = _swap(value[k], swaps, f"{where}[{k!r}]", found, depth + 1)
        return value
    if isinstance(value, tuple):
        items = [_swap(v, swaps, f"{where}[{i}]", found, depth + 1) for i, v in enumerate(value)]
        if all(a is b for a, b in zip(items, value)):
            return value
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value


_MODULE_INTERNALS = frozenset({"_modules", "_parameters", "_buffers", "_non_persistent_buffers_set",
                               "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                               "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
                               "_load_state_dict_post_hooks", "_forward_hooks_with_kwargs",
                               "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs"})


def replace_everywhere(model: nn.Module, swaps: dict[int, nn.Module]) -> list[tuple[str, nn.Module]]:
    """Replace, in every module of ``model``, each reference to a module in ``swaps`` (id -> new module):
    registered children under any name, and plain attributes that are modules or tuples / lists / dicts of
    them. Returns (place, new module) for each reference changed ('block.first', 'block.ops[0]')."""
    found: list[tuple[str, nn.Module]] = []
    mods = list(model.named_modules(remove_duplicate=False))
    seen: set[int] = set()
    for path, m in mods:
        if id(m) in seen:
            continue
        seen.add(id(m))
        prefix = f"{path}." if path else ""
        for name, child in list(m._modules.items()):
            if child is not None and id(child) in swaps:
                m._modules[name] = swaps[id(child)]
                found.append((prefix + name, swaps[id(child)]))
        for key, value in list(vars(m).items()):
            if key in _MODULE_INTERNALS or isinstance(value, (torch.Tensor, str, int, float, bool, type(None))):
                continue
            new = _swap(value, swaps, prefix + key, found)
            if new is not value:
                object.__setattr__(m, key, new)
    return found


def prove_calls(model: nn.Module, example: torch.Tensor, expected: dict[str, tuple[nn.Module, nn.Module, int]]
                ) -> dict[str, str]:
    """One eager run of ``model``: for each converted path -> (original, replacement, calls in the calibration
    run), count how often the replacement and the original ran. Returns path -> why it is not proven."""
    from .idioms import eager_idioms

    ran: dict[int, int] = {}
    hooks = []

    def count(m, args, out):
        ran[id(m)] = ran.get(id(m), 0) + 1

    watched = set()
    for original, replacement, _ in expected.values():
        for m in (original, replacement):
            if id(m) not in watched:
                watched.add(id(m))
                hooks.append(m.register_forward_hook(count))
    try:
        with eager_idioms(), torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    problems = {}
    for path, (original, replacement, calls) in expected.items():
        got, stale = ran.get(id(replacement), 0), ran.get(id(original), 0)
        if stale:
            problems[path] = (f"the model still calls the original layer ({stale} of {calls} call(s)) through a "
                              f"reference cmc could not replace (a closure or a global?); its own ops are exported")
        elif got != calls:
            problems[path] = (f"the converted layer ran {got} time(s) where the original ran {calls}: the model "
                              f"reaches this layer in a way cmc could not follow; its own ops are exported")
    return problems


def _node_module_paths(node) -> set[str]:
    """The module paths a node belongs to: the exporter's name scope, and the name cmc gives com.cmc nodes
    ('<layer path>/<op type>', ``onnx_export.name_cmc_nodes``)."""
    from .onnx_export import module_path

    paths = {node.name.rpartition("/")[0]}
    paths.update(module_path(p.value) for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes")
    return {p for p in paths if p}


def cmc_nodes_per_layer(proto, layers: list[str], domain: str = "com.cmc") -> dict[str, int]:
    """How many ``domain`` nodes of ``proto``'s main graph lie inside each layer's module scope (by the
    exporter's name scopes, or by the node name cmc gives them: '<layer path>/<op type>')."""
    counts = {layer: 0 for layer in layers}
    for node in proto.graph.node:
        if node.domain != domain:
            continue
        paths = _node_module_paths(node)
        for layer in layers:
            if any(p == layer or p.startswith(layer + ".") for p in paths):
                counts[layer] += 1
    return counts


def prove_onnx(proto, converted: list[dict]) -> dict[str, str]:
    """Layers the report calls converted that have fewer com.cmc nodes in ``proto`` than calls: path -> why."""
    claimed = [e for e in converted if e.get("status") == "converted"]
    # The exporter names a module after the attribute it was reached through: a second registered name counts.
    names = {e["layer"]: [e["layer"], *(p for p in e.get("also_replaced_at", []) if "[" not in p)] for e in claimed}
    counts = cmc_nodes_per_layer(proto, sorted({n for ns in names.values() for n in ns}))
    problems = {}
    for e in claimed:
        need = max(1, int(e.get("calls") or 1))
        got = sum(counts[n] for n in names[e["layer"]])
        e["onnx_nodes"] = got
        if got < need:
            problems[e["layer"]] = (f"the exported ONNX holds {got} com.cmc node(s) for this layer where {need} "
                                    f"call(s) were converted; its own ops are exported")
    return problems


def demote(entry: dict, why: str):
    """Report ``entry`` as kept: what it was converted to is recorded, with why that did not take effect."""
    entry["status"] = "kept"
    entry["not_applied"] = entry.get("to")
    entry["to"] = f"kept as the user's own ops: {why}"
