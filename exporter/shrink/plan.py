"""Deciding what to remove, cross-checking it against Torch-Pruning, folding constants, pruning."""
from __future__ import annotations

import warnings

import torch
import torch_pruning as tp
from torch import nn

from cmc.plugins.adder_conv import AdderConv2d
from cmc.plugins.binary_conv.layer import BinaryConv2d

from .analysis import Component, Reader
from .errors import AllChannelsPrunedError, ShrinkError
from .modules import ChannelSelect
from .tp_pruners import customized_pruners


# ----------------------------------------------------------------------------------------------
# per reader: can it do without the channel?
# ----------------------------------------------------------------------------------------------
def verdict(r: Reader, m: nn.Module, accept: bool) -> tuple[str, str | None]:
    """('ignore' | 'fold' | 'approx' | 'keep', reason)."""
    k = r.value
    if r.kind == "select":
        return "keep", f"still gathered by channel_selection {r.module} (removed in a later round if its copy goes)"
    if r.kind in ("conv", "linear"):
        if not bool(m.weight.detach()[:, r.index].any()):
            return "ignore", None
        if r.const and k == 0:
            return "ignore", None
        if r.const and (r.kind == "linear" or not r.padded):
            return "fold", None
        if r.const:
            return ("approx", None) if accept else (
                "keep", f"constant channel read by padded conv {r.module}: folding it into the bias is exact only "
                        "away from the borders (--accept-deviation folds it anyway)")
        return "keep", f"varies and is read by {r.kind} {r.module} through nonzero weights"
    if r.kind == "adder":
        if r.const and (k == 0 or not r.padded):
            return "fold", None
        if r.const:
            return ("approx", None) if accept else (
                "keep", f"nonzero constant channel read by padded AdderConv {r.module}: padded taps add |w|, not "
                        "|c - w| (--accept-deviation folds it anyway)")
        return "keep", f"varies and is read by AdderConv {r.module}: -|x - w| depends on x even where w = 0"
    if r.kind == "binary":
        if r.const and not r.binarize_input and k == 0:
            return "ignore", None
        if r.const and not r.padded:
            return "fold", None
        if r.const:
            return ("approx", None) if accept else (
                "keep", f"constant read by padded BinaryConv {r.module}: binarize(0) = +1 and padded taps add 0, "
                        "so its contribution differs at the borders")
        return "keep", f"varies and is read by BinaryConv {r.module}: binarize(0) = +1, so no weight ignores it"
    return "keep", f"read by {r.kind} {r.module}"


def fold_delta(r: Reader, m: nn.Module) -> tuple[str, torch.Tensor]:
    """(attribute, delta per output channel) that replaces reading constant r.value at r.index."""
    k = float(r.value)
    with torch.no_grad():
        w = m.weight.detach().double()
        if r.kind == "conv":
            return "bias", k * w[:, r.index].sum(dim=(1, 2))
        if r.kind == "linear":
            return "bias", k * w[:, r.index]
        if r.kind == "adder":
            return "shift", m.scale.double() * -(k - w[:, r.index]).abs().sum(dim=(1, 2))
        if r.kind == "binary":
            b = (1.0 if k >= 0 else -1.0) if r.binarize_input else k
            wb = torch.where(w[:, r.index] >= 0, 1.0, -1.0).double()
            return "shift", m.scale.double() * m.alpha().detach().double() * b * wb.sum(dim=(1, 2))
    raise ShrinkError(f"cannot fold into {r.kind} {r.module}")


def apply_fold(m: nn.Module, attr: str, delta: torch.Tensor):
    with torch.no_grad():
        if attr == "bias":
            if m.bias is None:
                m.bias = nn.Parameter(torch.zeros(m.weight.shape[0], dtype=m.weight.dtype, device=m.weight.device))
            m.bias.add_(delta.to(m.bias.dtype))
        else:
            m.shift = (m.shift.double() + delta).to(m.shift.dtype)


# ----------------------------------------------------------------------------------------------
# per component
# ----------------------------------------------------------------------------------------------
def decide(comps: dict[int, Component], modules: dict, accept: bool):
    for c in comps.values():
        c.folds = []
        c.verdicts = []
        reasons = []
        for r in c.readers:
            v, why = verdict(r, modules[r.module], accept)
            c.verdicts.append(v)
            if v in ("fold", "approx"):
                c.folds.append((r, v == "fold"))
            elif v == "keep":
                reasons.append(why or f"read by {r.kind} {r.module} (nonzero weights on a varying channel)")
        c.evidence = c.has_const or any(v == "ignore" for v in c.verdicts)
        if c.blocks:
            c.removable, c.keep_reason = False, c.blocks[0]
        elif reasons:
            c.removable, c.keep_reason = False, reasons[0]
        else:
            c.removable, c.keep_reason = True, None
        if not any(role in ("out",) for _, role, _ in c.members):
            if c.removable:
                c.removable, c.keep_reason = False, "no layer produces it that can drop it"


def _dim_size(m: nn.Module, role: str) -> int:
    if isinstance(m, nn.Linear):
        return m.out_features if role == "out" else m.in_features
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return m.num_features
    if isinstance(m, (nn.Conv2d, AdderConv2d, BinaryConv2d, ChannelSelect)):
        return m.in_channels if role == "in" else m.out_channels
    return -1


def _binary_alpha_guard(comps, modules):
    """A BinaryConv filter whose every kept weight is zero would get alpha = 0: keep those channels."""
    by_layer: dict[str, list] = {}
    for c in comps.values():
        if c.removable:
            for r in c.readers:
                if r.kind == "binary":
                    by_layer.setdefault(r.module, []).append((r.index, c))
    for name, items in by_layer.items():
        m = modules[name]
        if not m.use_alpha:
            continue
        drop = sorted({i for i, _ in items})
        keep = [i for i in range(m.in_channels) if i not in drop]
        w = m.weight.detach()
        old = w.abs().flatten(1).sum(1) != 0
        new = w[:, keep].abs().flatten(1).sum(1) != 0 if keep else torch.zeros_like(old)
        if bool((old & ~new).any()):
            for _, c in items:
                c.removable, c.keep_reason = False, (f"removing it would leave a BinaryConv {name} filter with "
                                                     "alpha = mean|W| = 0")


# ----------------------------------------------------------------------------------------------
# Torch-Pruning: build, cross-check, prune
# ----------------------------------------------------------------------------------------------
def _roles(pruners) -> dict:
    f = tp.pruner.function
    roles = {f.prune_conv_out_channels: "out", f.prune_conv_in_channels: "in",
             f.prune_linear_out_channels: "out", f.prune_linear_in_channels: "in",
             f.prune_batchnorm_out_channels: "bn", f.prune_batchnorm_in_channels: "bn",
             f.prune_depthwise_conv_out_channels: "dw", f.prune_depthwise_conv_in_channels: "dw"}
    for p in pruners.values():
        roles[p.prune_out_channels] = "out"
        roles[p.prune_in_channels] = "in"
    return roles


def _out_fn(m, pruners):
    if type(m) in pruners:
        return pruners[type(m)].prune_out_channels
    if isinstance(m, nn.Conv2d):
        return tp.pruner.function.prune_conv_out_channels
    if isinstance(m, nn.Linear):
        return tp.pruner.function.prune_linear_out_channels
    return None


def build_graph(model: nn.Module, example_inputs: tuple):
    pruners = customized_pruners()
    dg = tp.DependencyGraph()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dg.build_dependency(model, example_inputs=tuple(example_inputs), customized_pruners=pruners)
    return dg, pruners


def tp_members(items, dg, names: dict, roles: dict) -> set:
    """{(layer, role, idx)} that Torch-Pruning would cut for these group items."""
    out = set()
    for dep, idxs in items:
        mod = dep.target.module
        if isinstance(mod, nn.Parameter):
            label, role = dg._param_to_name.get(mod, "<parameter>"), "param"
        elif mod in names:
            label, role = names[mod], roles.get(dep.handler, getattr(dep.handler, "__name__", str(dep.handler)))
        else:
            continue  # functional node (add, cat, split, flatten ...): nothing to cut
        for i in idxs:
            out.add((label, role, int(i)))
    return out


def _align(g: list, modules: dict, round_to: int):
    """Keep some removable channels so that conv-like channel counts stay multiples of ``round_to``
    (onnxruntime's NCHWc kernels and tensor cores want multiples of 8). Keeping a removable channel
    is always exact; only the channels of conv/BatchNorm-like dimensions are aligned, Linear features
    are not."""
    if round_to <= 1:
        return
    conv_like = (nn.Conv2d, nn.modules.batchnorm._BatchNorm, AdderConv2d, BinaryConv2d)
    changed = True
    while changed:
        changed = False
        count: dict = {}
        for c in g:
            if c.removable:
                for mod, role, _ in c.members:
                    count[(mod, role)] = count.get((mod, role), 0) + 1
        for (mod, role), k in sorted(count.items()):
            m = modules[mod]
            if not isinstance(m, conv_like):
                continue
            n = _dim_size(m, role)
            rem = n - k
            if n % round_to or rem <= 0 or rem % round_to == 0:
                continue
            need = (-rem) % round_to
            cands = [c for c in g if c.removable and any((a, b) == (mod, role) for a, b, _ in c.members)]
            cands.sort(key=lambda c: (len(c.folds) > 0, -max(i for _, _, i in c.members)))
            for c in cands[:need]:
                c.removable = False
                c.keep_reason = (f"kept so that {mod} keeps a multiple of {round_to} channels "
                                 f"(--align-channels {round_to}; 1 removes it)")
            changed = True
            break


def execute_round(model: nn.Module, example_inputs: tuple, comps: dict[int, Component], round_to: int = 1) -> dict:
    """Cross-check the removable components with Torch-Pruning and prune them. Returns what happened."""
    modules = dict(model.named_modules())
    names = {m: n for n, m in modules.items()}
    _binary_alpha_guard(comps, modules)

    # dimension groups: components that share a (layer, dimension) are cut by one Torch-Pruning call
    keys: dict[tuple, int] = {}
    parent: dict[int, int] = {}

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a
    for cid, c in comps.items():
        parent[cid] = cid
    for cid, c in comps.items():
        for mod, role, _ in c.members:
            k = (mod, role)
            if k in keys:
                ra, rb = find(keys[k]), find(cid)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
            else:
                keys[k] = cid
    groups: dict[int, list[Component]] = {}
    for cid, c in comps.items():
        groups.setdefault(find(cid), []).append(c)

    for g in groups.values():
        _align(g, modules, round_to)
    todo = [[c for c in g if c.removable] for g in groups.values()]
    todo = [g for g in todo if g]
    result = {"pruned": [], "mismatch": []}
    if not todo:
        return result

    # a layer that would lose everything is a bad input, not something to keep quietly
    for g in todo:
        removed: dict[tuple, set] = {}
        for c in g:
            for mod, role, i in c.members:
                removed.setdefault((mod, role), set()).add(i)
        for (mod, role), idx in removed.items():
            n = _dim_size(modules[mod], role)
            if role != "in" and n > 0 and len(idx) >= n:
                what = {"out": "output", "bn": "", "dw": ""}.get(role, role)
                raise AllChannelsPrunedError(
                    f"layer {mod}: all {n} {what + ' ' if what else ''}channels are pruned (dead or constant); "
                    "nothing would be left")

    try:
        dg, pruners = build_graph(model, example_inputs)
    except Exception as e:  # noqa: BLE001
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        for g in todo:
            for c in g:
                c.removable, c.keep_reason = False, f"Torch-Pruning could not build its dependency graph: {msg}"
        result["mismatch"].append({"reason": f"Torch-Pruning could not build its dependency graph: {msg}"})
        return result
    roles = _roles(pruners)

    accepted = []
    for g in todo:
        expected = set().union(*(c.members for c in g))
        outs: dict[str, list] = {}
        for mod, role, i in expected:
            if role == "out" and _out_fn(modules[mod], pruners) is not None:
                outs.setdefault(mod, []).append(i)
        if not outs:
            for c in g:
                c.removable, c.keep_reason = False, "no prunable producer"
            continue
        # one Torch-Pruning group per producer; merged per (layer, handler) so that a layer shared by
        # several producers (a concatenation into a depthwise conv) is cut once, with all indices
        merged: dict = {}
        for root in sorted(outs):
            group = dg.get_pruning_group(modules[root], _out_fn(modules[root], pruners), sorted(outs[root]))
            for item in group.items:
                key = (id(item.dep.target), item.dep.handler)
                merged.setdefault(key, [item.dep, set()])[1].update(int(i) for i in item.idxs)
        items = [(dep, sorted(idx)) for dep, idx in merged.values()]
        got = tp_members(items, dg, names, roles)
        if got != expected:
            extra, missing = sorted(got - expected), sorted(expected - got)
            why = ("Torch-Pruning's coupling disagrees with the traced graph: it would "
                   + (f"also cut {_fmt(extra)}" if extra else "")
                   + (" and " if extra and missing else "")
                   + (f"not cut {_fmt(missing)}" if missing else ""))
            for c in g:
                c.removable, c.keep_reason = False, why
            result["mismatch"].append({"roots": sorted(outs), "reason": why})
            continue
        accepted.append(([(dep, idx) for dep, idx in items if dep.target.module in names], g))

    # folds first (from the unpruned weights), then cut
    folds = []
    for _, g in accepted:
        for c in g:
            for r, exact in c.folds:
                m = modules[r.module]
                attr, delta = fold_delta(r, m)
                folds.append((r, exact, attr, delta, c))
    for r, exact, attr, delta, c in folds:
        apply_fold(modules[r.module], attr, delta)
    for deps, g in accepted:
        for dep, idx in deps:
            dep(idx)
        result["pruned"].append(g)
    result["folds"] = folds
    return result


def _fmt(items, n=3):
    s = ", ".join(f"{m}.{r}[{i}]" for m, r, i in items[:n])
    return s + (f" (+{len(items) - n} more)" if len(items) > n else "")
