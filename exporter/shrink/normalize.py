"""Reading pruned structure in the forms users have it, and turning it into plain layers.

Forms read here (the others -- zero filters, BatchNorm gamma = beta = 0, zero adder/binary
scales -- are plain parameter values that the channel analysis reads directly):

* ``torch.nn.utils.prune``: ``weight_orig`` / ``weight_mask`` and a live forward pre-hook.
  The mask is applied and made permanent (``prune.remove``); the hook is gone afterwards.
* The pruning research code's ``MaskedConv2d`` / ``MaskedLinear``: an ``nn.Conv2d`` / ``nn.Linear``
  subclass with a ``mask`` tensor whose forward multiplies the weight by it. It becomes a plain
  ``nn.Conv2d`` / ``nn.Linear`` holding ``weight * mask``.
* Network Slimming's ``channel_selection``: a module with a 1-D ``indexes`` parameter whose forward
  gathers the channels where it is nonzero. It becomes :class:`ChannelSelect` (an index_select); a
  model exported without shrinking gets the same for each of its channel_selections
  (:func:`constant_channel_selections`), or ``nn.Identity`` where one selects every channel.

Every replacement is checked on the activations the original layer saw: a layer whose forward does
not compute what its mask says is refused (MaskError) instead of being guessed at.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import prune

from .errors import AllChannelsPrunedError, MaskError
from .modules import ChannelSelect


# ----------------------------------------------------------------------------------------------
# recognising the forms
# ----------------------------------------------------------------------------------------------
def prune_hooks(module: nn.Module):
    """[(hook_id, hook)] of live torch.nn.utils.prune hooks on this module."""
    return [(k, h) for k, h in module._forward_pre_hooks.items() if isinstance(h, prune.BasePruningMethod)]


def _hook_names(hook) -> list[str]:
    if isinstance(hook, prune.PruningContainer):
        return sorted({h._tensor_name for h in hook._pruning_methods})
    return [hook._tensor_name]


def is_masked_layer(m: nn.Module) -> bool:
    """The research code's MaskedConv2d / MaskedLinear: a Conv2d/Linear subclass carrying ``mask``."""
    return (isinstance(m, (nn.Conv2d, nn.Linear)) and type(m) not in (nn.Conv2d, nn.Linear)
            and isinstance(getattr(m, "mask", None), torch.Tensor))


def is_channel_selection(m: nn.Module) -> bool:
    """Network Slimming's channel_selection: a 1-D ``indexes`` tensor, no weight of its own."""
    idx = getattr(m, "indexes", None)
    return (isinstance(idx, torch.Tensor) and idx.dim() == 1 and not isinstance(m, ChannelSelect)
            and not isinstance(getattr(m, "weight", None), torch.Tensor))


def _check_binary(name: str, what: str, mask: torch.Tensor):
    bad = ~((mask == 0) | (mask == 1))
    if bool(bad.any()):
        vals = sorted({float(v) for v in mask[bad].flatten()[:3]})
        raise MaskError(f"layer {name}: {what} holds values other than 0 and 1 (e.g. {vals}); a mask must be 0/1")


def _check_shape(name: str, what: str, mask: torch.Tensor, weight_shape):
    ok = mask.dim() == len(weight_shape)
    if ok:
        try:
            ok = tuple(torch.broadcast_shapes(tuple(mask.shape), tuple(weight_shape))) == tuple(weight_shape)
        except RuntimeError:
            ok = False
    if not ok:
        raise MaskError(f"layer {name}: {what} has shape {tuple(mask.shape)} but the weight is {tuple(weight_shape)}")


def _check_not_all_pruned(name: str, what: str, eff_mask: torch.Tensor, n_out: int):
    if not bool(eff_mask.any()):
        raise AllChannelsPrunedError(f"layer {name}: {what} prunes all {n_out} output channels; nothing would be left")


def validate(model: nn.Module) -> None:
    """Raise MaskError / AllChannelsPrunedError for masks that cannot be read. Touches nothing."""
    for name, m in model.named_modules():
        name = name or "<model>"
        hook_masks = {}
        for _, hook in prune_hooks(m):
            for t in _hook_names(hook):
                orig = getattr(m, t + "_orig", None)
                mask = getattr(m, t + "_mask", None)
                if not isinstance(orig, torch.Tensor) or not isinstance(mask, torch.Tensor):
                    raise MaskError(f"layer {name}: a torch.nn.utils.prune hook on {t!r} but no {t}_orig/{t}_mask")
                if tuple(mask.shape) != tuple(orig.shape):
                    raise MaskError(f"layer {name}: {t}_mask has shape {tuple(mask.shape)} but {t}_orig is "
                                    f"{tuple(orig.shape)}")
                _check_binary(name, f"{t}_mask", mask)
                hook_masks[t] = mask
        if is_masked_layer(m):
            w = getattr(m, "weight_orig", None)
            w = m.weight if w is None else w
            _check_shape(name, "mask", m.mask, w.shape)
            _check_binary(name, "mask", m.mask)
            if "weight" in hook_masks:
                a = hook_masks["weight"] != 0
                b = (m.mask != 0).expand_as(a)
                if not torch.equal(a, b):
                    raise MaskError(f"layer {name}: contradictory masks: its own mask and the torch.nn.utils.prune "
                                    f"weight_mask disagree on {int((a != b).sum())} of {a.numel()} weights")
            eff = (m.mask != 0).expand(w.shape)
            if "weight" in hook_masks:
                eff = eff & (hook_masks["weight"] != 0)
            _check_not_all_pruned(name, "its mask", eff, w.shape[0])
        elif "weight" in hook_masks and isinstance(m, (nn.Conv2d, nn.Linear)):
            _check_not_all_pruned(name, "its torch.nn.utils.prune weight_mask", hook_masks["weight"] != 0,
                                  hook_masks["weight"].shape[0])
        if is_channel_selection(m) and not bool((m.indexes != 0).any()):
            raise AllChannelsPrunedError(f"layer {name}: channel_selection selects none of its "
                                         f"{m.indexes.numel()} channels")


def masked_layers(model: nn.Module) -> list[str]:
    """Names of layers carrying a live prune hook, a research-code mask, or a channel_selection."""
    out = []
    for name, m in model.named_modules():
        if prune_hooks(m) or is_masked_layer(m) or (is_channel_selection(m) and bool((m.indexes == 0).any())):
            out.append(name)
    return out


# ----------------------------------------------------------------------------------------------
# replacing them
# ----------------------------------------------------------------------------------------------
def _plain_copy(m: nn.Module, weight: torch.Tensor) -> nn.Module:
    if isinstance(m, nn.Conv2d):
        new = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                        m.groups, m.bias is not None, m.padding_mode, device=weight.device, dtype=weight.dtype)
    else:
        new = nn.Linear(m.in_features, m.out_features, m.bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if m.bias is not None:
            new.bias.copy_(m.bias)
    new.train(m.training)
    return new


def _set_module(root: nn.Module, name: str, new: nn.Module) -> nn.Module:
    if not name:
        return new
    parent_name, _, leaf = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, new)
    return root


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def safe_deepcopy(model: nn.Module) -> nn.Module:
    """copy.deepcopy that also works with live torch.nn.utils.prune hooks (whose computed ``weight``
    is a non-leaf tensor that deepcopy refuses): the computed tensors are set aside for the copy and
    recomputed on it. The original ends exactly as it was."""
    stash = []
    for m in model.modules():
        for _, hook in prune_hooks(m):
            for t in _hook_names(hook):
                if t in m.__dict__:
                    stash.append((m, t, m.__dict__.pop(t)))
    try:
        new = copy.deepcopy(model)
    finally:
        for m, t, v in stash:
            m.__dict__[t] = v
    for m in new.modules():
        for _, hook in prune_hooks(m):
            for t in _hook_names(hook):
                setattr(m, t, hook.apply_mask(m))
    return new


def normalize(model: nn.Module, example_inputs: tuple) -> tuple[nn.Module, list[dict]]:
    """A deep copy with masks applied and made permanent, research layers replaced by plain ones.

    Returns (model, notes); notes list each replacement. The original model is not touched.
    """
    validate(model)
    model = safe_deepcopy(model)
    model.eval()
    notes: list[dict] = []

    # 1. torch.nn.utils.prune: apply and remove the hooks (what the hook computes, exactly).
    for name, m in list(model.named_modules()):
        for _, hook in prune_hooks(m):
            for t in _hook_names(hook):
                prune.remove(m, t)
                notes.append({"layer": name, "form": "torch.nn.utils.prune", "tensor": t,
                              "action": "mask applied and made permanent; hook removed"})

    # 2. research-code layers: capture what each computes on the example, then replace and compare.
    targets = [n for n, m in model.named_modules() if is_masked_layer(m) or is_channel_selection(m)]
    model, replaced = _replace_checked(model, targets, example_inputs)
    return model, notes + replaced


def constant_channel_selections(model: nn.Module, example_inputs: tuple) -> tuple[nn.Module, list[dict]]:
    """Every ``channel_selection`` left in ``model`` (in place) as the constant index selection it is.

    For a model that is exported without shrinking (nothing pruned, e.g. sparsity-trained and not yet
    slimmed, or --no-shrink): the research forward reads its indexes into NumPy, which torch.export
    cannot capture, but the indexes are parameters, so the selection is the same on every call. One that
    selects every channel in order becomes ``nn.Identity``, any other a :class:`ChannelSelect`; each is
    checked on the activations it saw (MaskError if its forward computes something else)."""
    targets = [n for n, m in model.named_modules() if is_channel_selection(m)]
    for n in targets:
        if not bool((model.get_submodule(n).indexes != 0).any()):
            raise AllChannelsPrunedError(f"layer {n}: channel_selection selects none of its "
                                         f"{model.get_submodule(n).indexes.numel()} channels")
    return _replace_checked(model, targets, example_inputs, identity_when_all=True)


def _replace_checked(model: nn.Module, targets: list[str], example_inputs: tuple,
                     identity_when_all: bool = False) -> tuple[nn.Module, list[dict]]:
    """Replace the research layers at ``targets`` by plain ones, each checked on what it computed in
    one run on the example. Returns (model, notes)."""
    notes: list[dict] = []
    if not targets:
        return model, notes
    seen: dict[str, tuple] = {}
    handles = []
    for n in targets:
        def hook(mod, args, out, n=n):
            if n not in seen and args and isinstance(args[0], torch.Tensor):
                o = _first_tensor(out)
                seen[n] = (args[0].detach().clone(), None if o is None else o.detach().clone())
        handles.append(model.get_submodule(n).register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(*example_inputs)
    finally:
        for h in handles:
            h.remove()

    for n in targets:
        m = model.get_submodule(n)
        if is_masked_layer(m):
            with torch.no_grad():
                w = (m.weight * m.mask).detach()
            new = _plain_copy(m, w)
            form = f"{type(m).__name__} (mask buffer)"
            action = "weight * mask made permanent; plain " + type(new).__name__
        else:
            idx = torch.nonzero(m.indexes.detach() != 0).flatten().cpu()
            form = f"{type(m).__name__} (indexes)"
            if identity_when_all and idx.numel() == m.indexes.numel():
                new, action = nn.Identity(), f"selects all {idx.numel()} channels in order: Identity"
            else:
                new = ChannelSelect(idx, m.indexes.numel()).to(m.indexes.device)
                action = f"gather of {idx.numel()}/{m.indexes.numel()} channels as ChannelSelect"
        if n in seen:
            x, y = seen[n]
            with torch.no_grad():
                y2 = new(x)
            if y is None or y.shape != y2.shape or not torch.allclose(y, y2, rtol=1e-5, atol=1e-6 * max(1.0, float(y.abs().max()))):
                raise MaskError(f"layer {n or '<model>'}: its forward does not compute what its "
                                f"{'mask' if is_masked_layer(m) else 'indexes'} say (checked on the example input)")
        model = _set_module(model, n, new)
        notes.append({"layer": n, "form": form, "action": action})
    return model, notes
