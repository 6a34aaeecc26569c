"""find_pruned() and shrink(): the public entry points."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cmc.plugins.adder_conv import AdderConv2d
from cmc.plugins.binary_conv.layer import BinaryConv2d
from cmc.plugins.contract import load as load_contract

from .analysis import Analysis
from .errors import ShrinkParityError
from .modules import ChannelSelect
from .normalize import masked_layers, normalize, safe_deepcopy, validate
from .plan import decide, execute_round

#: Relative tolerance (of max |y|) for models of plain PyTorch layers; cmc operators bring their own.
DEFAULT_TOL = 1e-4
MAX_ROUNDS = 5
#: Conv channel counts that were multiples of this stay so (see shrink's round_to). 1: remove exactly
#: what was pruned; alignment is the caller's explicit choice (cmc-export --align-channels).
DEFAULT_ROUND_TO = 1
_LAYERS = (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm, AdderConv2d, BinaryConv2d, ChannelSelect)


@dataclass
class ShrinkResult:
    model: nn.Module
    report: dict


# ----------------------------------------------------------------------------------------------
# detection
# ----------------------------------------------------------------------------------------------
def _effective_weight(m: nn.Module):
    w = m.weight.detach()
    mask = getattr(m, "mask", None)
    if isinstance(mask, torch.Tensor) and isinstance(m, (nn.Conv2d, nn.Linear)):
        w = w * mask.detach()
    return w


def find_pruned(model: nn.Module) -> list[str]:
    """Names of layers with pruned structure (masks, hooks, zero filters/columns, BN gamma = 0,
    channel_selection zeros, zero cmc-op scales). Empty: nothing to shrink. Raises MaskError /
    AllChannelsPrunedError for masks that cannot be read."""
    validate(model)
    found = set(masked_layers(model))
    for name, m in model.named_modules():
        if name in found:
            continue
        if isinstance(m, (nn.Conv2d, nn.Linear, AdderConv2d, BinaryConv2d)):
            w = _effective_weight(m)
            if w.dim() < 2 or w.shape[0] == 0:
                continue
            zero_out = ~(w != 0).flatten(1).any(1)
            groups = getattr(m, "groups", 1)
            zero_in = ~(w != 0).transpose(0, 1).flatten(1).any(1) if groups == 1 else torch.zeros(1, dtype=torch.bool)
            dead_scale = isinstance(getattr(m, "scale", None), torch.Tensor) and bool((m.scale == 0).any())
            if bool(zero_out.any()) or bool(zero_in.any()) or dead_scale:
                found.add(name)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None:
            if bool((m.weight.detach() == 0).any()):
                found.add(name)
    return [n for n, _ in model.named_modules() if n in found]


# ----------------------------------------------------------------------------------------------
# measuring
# ----------------------------------------------------------------------------------------------
def _flat(out):
    return [t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


def measure(model: nn.Module, example_inputs: tuple) -> dict:
    """Parameters, state_dict bytes and multiply-accumulates per sample of conv/linear-like layers."""
    macs = {"total": 0}
    handles = []

    def hook(mod, args, out):
        n = out.shape[0] if out.dim() > 1 else 1
        per = out.numel() // max(n, 1)
        if isinstance(mod, nn.Linear):
            k = mod.in_features
        else:
            kh, kw = mod.kernel_size
            k = (mod.in_channels // mod.groups) * kh * kw
        macs["total"] += per * k
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, AdderConv2d, BinaryConv2d)):
            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(*example_inputs)
    finally:
        for h in handles:
            h.remove()
    params = sum(p.numel() for p in model.parameters())
    nbytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return {"params": int(params), "state_bytes": int(nbytes), "macs": int(macs["total"]),
            "flops": int(2 * macs["total"])}


def _layer_dims(model: nn.Module) -> dict:
    out = {}
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            out[n] = (type(m).__name__, m.in_features, m.out_features)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            out[n] = (type(m).__name__, m.num_features, m.num_features)
        elif isinstance(m, (nn.Conv2d, AdderConv2d, BinaryConv2d, ChannelSelect)):
            out[n] = (type(m).__name__, m.in_channels, m.out_channels)
    return out


def tolerance(model: nn.Module) -> float:
    tol = DEFAULT_TOL
    for m in model.modules():
        if isinstance(m, AdderConv2d):
            tol = max(tol, load_contract("adder_conv").tol())
        elif isinstance(m, BinaryConv2d):
            tol = max(tol, load_contract("binary_conv").tol())
    return tol


# ----------------------------------------------------------------------------------------------
# verification
# ----------------------------------------------------------------------------------------------
def _random_like(example_inputs, g):
    return tuple(torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device) if isinstance(x, torch.Tensor) and
                 x.is_floating_point() else x for x in example_inputs)


def _rel_err(ref, got) -> float:
    worst = 0.0
    a, b = _flat(ref), _flat(got)
    if len(a) != len(b):
        return float("inf")
    for x, y in zip(a, b):
        if x.shape != y.shape:
            return float("inf")
        x, y = x.detach().double(), y.detach().double()
        scale = float(x.abs().max()) if x.numel() else 0.0
        err = float((x - y).abs().max()) if x.numel() else 0.0
        worst = max(worst, err / scale if scale > 0 else err)
    return worst


def _locate(ref: nn.Module, shrunk: nn.Module, x: tuple, index_maps: dict, tol: float) -> str:
    """The first layer (in execution order) whose kept channels differ beyond tol."""
    ref_out, order, got = {}, [], {}
    rmods, smods = dict(ref.named_modules()), dict(shrunk.named_modules())
    common = [n for n in smods if n and n in rmods]
    hs = []

    def keep_ref(m, a, o, n):
        ref_out.setdefault(n, o.detach().clone() if isinstance(o, torch.Tensor) else o)

    def keep_got(m, a, o, n):
        order.append(n)
        got.setdefault(n, o.detach().clone() if isinstance(o, torch.Tensor) else o)
    for n in common:
        hs.append(rmods[n].register_forward_hook(lambda m, a, o, n=n: keep_ref(m, a, o, n)))
        hs.append(smods[n].register_forward_hook(lambda m, a, o, n=n: keep_got(m, a, o, n)))
    try:
        with torch.no_grad():
            ref(*x)
            shrunk(*x)
    finally:
        for h in hs:
            h.remove()
    for n in order:
        r, s = ref_out.get(n), got.get(n)
        if not isinstance(r, torch.Tensor) or not isinstance(s, torch.Tensor) or r.dim() < 2:
            continue
        idx = index_maps.get(n)
        if idx is not None and r.shape[1] != s.shape[1] and len(idx) == s.shape[1]:
            r = r[:, idx]
        if r.shape != s.shape:
            continue
        scale = float(r.abs().max()) or 1.0
        if float((r.double() - s.double()).abs().max()) / scale > tol:
            return n
    return "model output"


def verify(ref: nn.Module, shrunk: nn.Module, example_inputs: tuple, tol: float, seed: int, index_maps: dict,
           raise_on_fail: bool = True, n_random: int = 3) -> dict:
    g = torch.Generator().manual_seed(seed + 1000)
    batches = [tuple(example_inputs)] + [_random_like(example_inputs, g) for _ in range(n_random)]
    worst, worst_x = 0.0, None
    with torch.no_grad():
        for x in batches:
            try:
                y = shrunk(*x)
            except Exception as ex:  # noqa: BLE001 - user code that hard-codes a channel count, etc.
                msg = str(ex).strip().splitlines()[0] if str(ex).strip() else type(ex).__name__
                raise ShrinkParityError(f"the shrunk model no longer runs ({type(ex).__name__}: {msg}); "
                                        "pass --no-shrink, or report the layer") from ex
            e = _rel_err(ref(*x), y)
            if not e <= worst:
                worst, worst_x = e, x
    passed = worst <= tol
    out = {"inputs": len(batches), "max_rel_err": worst, "tol": tol, "passed": bool(passed),
           "measure": "max|y_shrunk - y_masked| / max|y_masked| over the example and seeded random inputs"}
    if not passed and raise_on_fail:
        layer = _locate(ref, shrunk, worst_x, index_maps, tol)
        raise ShrinkParityError(f"shrunk model differs from the masked model by {worst:.3g} of max|y| "
                                f"(tolerance {tol:g}); first differing layer: {layer}")
    return out


# ----------------------------------------------------------------------------------------------
# shrink
# ----------------------------------------------------------------------------------------------
def _label(c, index_maps) -> tuple[str, list]:
    prods = sorted({(m, i) for m, role, i in c.members if role == "out"})
    if not prods:
        return "?", []
    mod = prods[0][0]
    return mod, [_orig(index_maps, mod, "out", i) for m, i in prods if m == mod]


def _kept(comps, index_maps) -> list:
    """(producer, channels, reason, constant values, notes) of channels that look pruned but stay."""
    out = []
    for c in comps:
        if c.removable or not (c.evidence or c.notes):
            continue
        src, chans = _label(c, index_maps)
        values = sorted({round(r.value, 6) for r in c.readers if r.const})
        out.append((src, chans, c.keep_reason, values, list(c.notes)))
    return out


def _orig(index_maps, mod, role, i):
    lst = index_maps.get((mod, role))
    return int(lst[i]) if lst is not None and i < len(lst) else int(i)


def shrink(model: nn.Module, example_inputs: tuple, *, accept_deviation: bool = False, seed: int = 0,
           round_to: int = DEFAULT_ROUND_TO) -> ShrinkResult:
    """Physically remove pruned channels. Returns a new model (the original is not touched) and a
    JSON-serialisable report. Raises ShrinkError subclasses for unreadable masks and
    ShrinkParityError when the result does not match the masked model.

    ``accept_deviation``: fold constant channels into padded layers too (exact only away from the
    borders); the report states the measured deviation. ``round_to``: keep a few removable channels
    so that conv channel counts that were multiples of it stay so (8: vectorised kernels and tensor
    cores); the default 1 removes every removable channel."""
    if not isinstance(example_inputs, tuple):
        example_inputs = (example_inputs,)
    pruned_layers = find_pruned(model)
    ref = safe_deepcopy(model).eval()
    work, notes = normalize(model, example_inputs)
    work.eval()
    tol = tolerance(work)
    dims_before = _layer_dims(work)
    size_before = measure(work, example_inputs)

    # (module, role) -> list of original indices of the current channels
    index_maps: dict = {}
    for n, (_, cin, cout) in dims_before.items():
        index_maps[(n, "in")] = list(range(cin))
        for role in ("out", "bn", "dw"):
            index_maps[(n, role)] = list(range(cout))

    folded, approximated, mismatches, kept_comps = [], [], [], []
    rounds = 0
    for rnd in range(MAX_ROUNDS + 1):
        an = Analysis(work, example_inputs, seed=seed + rnd)
        comps = an.components()
        decide(comps, dict(work.named_modules()), accept_deviation)
        if rnd == MAX_ROUNDS or not any(c.removable for c in comps.values()):
            kept_comps += _kept(comps.values(), index_maps)
            break
        res = execute_round(work, example_inputs, comps, round_to)
        mismatches += res["mismatch"]
        # what stays is described now, with this round's indices; a channel_selection that gathered a
        # channel whose copy just went frees that channel for another round
        again = [c for c in comps.values() if not c.removable and c.keep_reason
                 and c.keep_reason.startswith("still gathered by channel_selection")]
        kept_comps += _kept([c for c in comps.values() if c not in again], index_maps)
        if not res["pruned"]:
            kept_comps += _kept(again, index_maps)
            break
        rounds += 1
        for r, exact, attr, delta, c in res.get("folds", []):
            src, chans = _label(c, index_maps)
            entry = {"into": r.module, "input_channel": _orig(index_maps, r.module, "in", r.index),
                     "from": src, "from_channels": chans, "value": float(r.value), "exact": bool(exact),
                     "how": f"{attr} += contribution of the constant channel"}
            (folded if exact else approximated).append(entry)
        removed: dict = {}
        for g in res["pruned"]:
            for c in g:
                for mod, role, i in c.members:
                    removed.setdefault((mod, role), set()).add(i)
        for key, idx in removed.items():
            lst = index_maps.get(key)
            if lst is not None:
                index_maps[key] = [o for j, o in enumerate(lst) if j not in idx]
        if not again:
            break

    # a ChannelSelect that now gathers every channel in order is an identity
    for n, m in list(work.named_modules()):
        if isinstance(m, ChannelSelect) and m.index.tolist() == list(range(m.in_channels)):
            parent, _, leaf = n.rpartition(".")
            setattr(work.get_submodule(parent) if parent else work, leaf, nn.Identity())

    out_maps = {}
    for (n, role), lst in index_maps.items():
        if role in ("out", "bn", "dw") and lst is not None and n in dims_before and len(lst) != dims_before[n][2]:
            out_maps[n] = lst
    check = verify(ref, work, example_inputs, tol, seed, out_maps, raise_on_fail=not approximated)
    if approximated:
        check["accepted_deviation"] = True
        check["note"] = ("constants were folded into padded layers (--accept-deviation): exact away from the "
                         "borders; the measured deviation is max_rel_err")

    dims_after = _layer_dims(work)
    size_after = measure(work, example_inputs)
    layers = []
    for n, (t, cin, cout) in dims_before.items():
        a = dims_after.get(n)
        entry = {"name": n, "type": t, "in_before": cin, "out_before": cout,
                 "in_after": a[1] if a else None, "out_after": a[2] if a else None}
        if a is None:
            entry["note"] = "replaced by Identity (selects every channel)"
        for role in ("out", "bn", "dw"):
            lst = index_maps.get((n, role))
            if lst is not None and len(lst) != cout:
                entry["removed_out"] = sorted(set(range(cout)) - set(lst))
                break
        layers.append(entry)

    kept = {}
    for src, chans, reason, values, notes_ in kept_comps:
        e = kept.setdefault((src, reason), {"layer": src, "channels": [], "reason": reason})
        e["channels"] += chans
        if values:
            e.setdefault("constant_values", []).extend(values)
        if notes_:
            e.setdefault("notes", [])
            e["notes"] += [n for n in notes_ if n not in e["notes"]]
    kept_list = list(kept.values())

    report = {
        "pruned_layers": pruned_layers,
        "normalized": notes,
        "accept_deviation": bool(accept_deviation),
        "round_to": int(round_to),
        "rounds": rounds,
        "layers": layers,
        "params": {"before": size_before["params"], "after": size_after["params"]},
        "state_bytes": {"before": size_before["state_bytes"], "after": size_after["state_bytes"]},
        "macs": {"before": size_before["macs"], "after": size_after["macs"]},
        "flops": {"before": size_before["flops"], "after": size_after["flops"],
                  "ratio": (size_before["flops"] / size_after["flops"]) if size_after["flops"] else None,
                  "counted": "2 x multiply-accumulates of conv/linear/AdderConv/BinaryConv per sample"},
        "folded": _group_folds(folded),
        "approximated": _group_folds(approximated),
        "kept": kept_list,
        "torch_pruning_mismatches": mismatches,
        "verification": check,
    }
    return ShrinkResult(model=work, report=report)


def _group_folds(entries):
    out = {}
    for e in entries:
        k = (e["into"], e["from"], e["exact"])
        g = out.setdefault(k, {"into": e["into"], "from": e["from"], "exact": e["exact"], "input_channels": [],
                               "values": [], "how": e["how"]})
        g["input_channels"].append(e["input_channel"])
        g["values"].append(round(e["value"], 7))
    for g in out.values():
        if len(set(g["values"])) == 1:
            g["values"] = g["values"][:1]      # one constant for all (e.g. the features of one flattened channel)
    return list(out.values())
