"""The pruning repositories' own steps, re-done for the samples (written from their semantics):

* Network Slimming (vggprune / resprune / denseprune): one global |γ| threshold over every
  BatchNorm2d, channels with |γ| > threshold kept; the "thresholded" model has γ = β = 0 elsewhere,
  and the pruned model is rebuilt from ``cfg`` (kept counts) with the kept weights copied in.
* L1-norm filter pruning (res56prune / imagenet prune.py): in chosen residual blocks keep the
  ``int(n · (1 − p))`` conv1 filters of largest L1 norm; the pruned model is rebuilt with ``cfg``.

Tests compare cmc's shrink with :func:`count_params` of these rebuilt models, and use the rebuilt
models and their ``{'cfg', 'state_dict'}`` checkpoints as the prune scripts' output.
"""
import torch
import torch.nn as nn

from .preresnet_cs import channel_selection


def count_params(model: nn.Module) -> int:
    """Parameters of the network's layers. ``channel_selection.indexes`` is an nn.Parameter in the
    research code but a 0/1 mask, not a weight: it is not counted (cmc turns it into an index buffer)."""
    skip = {id(p) for m in model.modules() if isinstance(m, channel_selection) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


# ----------------------------------------------------------------------------------------------
# Network Slimming
# ----------------------------------------------------------------------------------------------
def sparsity_trained(model: nn.Module, share=0.5, seed=0, scale=1e-3):
    """Make BatchNorm γ look trained with the sparsity penalty: ``share`` of them (random, seeded)
    shrink by ``scale`` — small, never zero."""
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                hit = torch.rand(m.num_features, generator=g) < share
                sign = torch.where(torch.rand(m.num_features, generator=g) < 0.5, -1.0, 1.0)
                m.weight.copy_(torch.where(hit, m.weight * scale * sign, m.weight))
    return model


def slim_masks(model: nn.Module, percent) -> list:
    """[(bn name, kept mask)] for every BatchNorm2d in module order, by the scripts' global threshold."""
    bns = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    allg = torch.cat([m.weight.detach().abs().clone() for _, m in bns])
    thre = torch.sort(allg)[0][int(allg.numel() * percent / 100)]
    return [(n, m.weight.detach().abs().gt(thre)) for n, m in bns]


def apply_bn_masks(model: nn.Module, masks):
    mods = dict(model.named_modules())
    with torch.no_grad():
        for name, keep in masks:
            mods[name].weight.mul_(keep.float())
            mods[name].bias.mul_(keep.float())
    return model


def _copy_bn(dst, src, idx=None):
    idx = torch.arange(src.num_features) if idx is None else idx
    dst.weight.data = src.weight.data[idx].clone()
    dst.bias.data = src.bias.data[idx].clone()
    dst.running_mean = src.running_mean[idx].clone()
    dst.running_var = src.running_var[idx].clone()


def _idx(mask):
    return torch.nonzero(mask).flatten()


def prune_vgg(masked, masks, builder):
    """vggprune: cfg = kept counts with the 'M's; conv/BN/Linear weights sliced."""
    keep = dict(masks)
    cfg, names = [], []
    for n, m in masked.feature.named_children():
        if isinstance(m, nn.MaxPool2d):
            cfg.append('M')
        elif isinstance(m, nn.BatchNorm2d):
            cfg.append(int(keep[f"feature.{n}"].sum()))
            names.append(f"feature.{n}")
    new = builder(cfg=cfg).eval()
    old_mods, new_mods = dict(masked.named_modules()), dict(new.named_modules())
    prev = torch.arange(3)
    convs = [n for n, m in masked.feature.named_children() if isinstance(m, nn.Conv2d)]
    for conv, bn in zip(convs, names):
        out = _idx(keep[bn])
        new_mods[f"feature.{conv}"].weight.data = old_mods[f"feature.{conv}"].weight.data[out][:, prev].clone()
        _copy_bn(new_mods[bn], old_mods[bn], out)
        prev = out
    new.classifier.weight.data = masked.classifier.weight.data[:, prev].clone()
    new.classifier.bias.data = masked.classifier.bias.data.clone()
    return cfg, new


def _select(new_sel, mask):
    new_sel.indexes.data.zero_()
    new_sel.indexes.data[_idx(mask)] = 1.0


def prune_preresnet(masked, masks, builder):
    """resprune: a BatchNorm followed by channel_selection stays whole and its mask goes to the
    selection; the others are narrowed; a block's last conv keeps its outputs (the residual)."""
    keep = dict(masks)
    cfg = [int(k.sum()) for _, k in masks]
    new = builder(cfg=cfg).eval()
    old, nw = dict(masked.named_modules()), dict(new.named_modules())
    new.conv1.weight.data = masked.conv1.weight.data.clone()
    for stage in ("layer1", "layer2", "layer3"):
        for b, _ in enumerate(getattr(masked, stage)):
            p = f"{stage}.{b}"
            k1, k2, k3 = (_idx(keep[f"{p}.bn{i}"]) for i in (1, 2, 3))
            _copy_bn(nw[f"{p}.bn1"], old[f"{p}.bn1"])
            _select(nw[f"{p}.select"], keep[f"{p}.bn1"])
            nw[f"{p}.conv1"].weight.data = old[f"{p}.conv1"].weight.data[k2][:, k1].clone()
            _copy_bn(nw[f"{p}.bn2"], old[f"{p}.bn2"], k2)
            nw[f"{p}.conv2"].weight.data = old[f"{p}.conv2"].weight.data[k3][:, k2].clone()
            _copy_bn(nw[f"{p}.bn3"], old[f"{p}.bn3"], k3)
            nw[f"{p}.conv3"].weight.data = old[f"{p}.conv3"].weight.data[:, k3].clone()
            if old[p].downsample is not None:
                nw[f"{p}.downsample.0"].weight.data = old[f"{p}.downsample.0"].weight.data.clone()
    _copy_bn(new.bn, masked.bn)
    _select(new.select, keep["bn"])
    new.fc.weight.data = masked.fc.weight.data[:, _idx(keep["bn"])].clone()
    new.fc.bias.data = masked.fc.bias.data.clone()
    return cfg, new


def prune_densenet(masked, masks, builder):
    """denseprune: no BatchNorm is narrowed (each is followed by a channel_selection); each conv
    after a selection reads only the selected channels; outputs are never pruned."""
    keep = dict(masks)
    cfg = [int(k.sum()) for _, k in masks]
    new = builder(cfg=cfg).eval()
    old, nw = dict(masked.named_modules()), dict(new.named_modules())
    new.conv1.weight.data = masked.conv1.weight.data.clone()
    for name, m in masked.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            _copy_bn(nw[name], m)
            parent = name.rpartition(".")[0]
            sel = f"{parent}.select" if parent else "select"
            _select(nw[sel], keep[name])
            if parent:
                nw[f"{parent}.conv1"].weight.data = old[f"{parent}.conv1"].weight.data[:, _idx(keep[name])].clone()
    new.fc.weight.data = masked.fc.weight.data[:, _idx(keep["bn"])].clone()
    new.fc.bias.data = masked.fc.bias.data.clone()
    return cfg, new


# ----------------------------------------------------------------------------------------------
# L1-norm filter pruning of residual blocks' first convs
# ----------------------------------------------------------------------------------------------
def _blocks(model):
    return [(f"{s}.{i}", b) for s in ("layer1", "layer2", "layer3", "layer4") if hasattr(model, s)
            for i, b in enumerate(getattr(model, s))]


def l1_block_masks(model, fractions) -> dict:
    """{block name: kept conv1 filters}: the int(n·(1−p)) of largest L1 norm (all where p = 0)."""
    out = {}
    for (name, blk), p in zip(_blocks(model), fractions):
        w = blk.conv1.weight.detach()
        n = w.shape[0]
        keep = torch.zeros(n, dtype=torch.bool)
        order = torch.argsort(w.abs().sum((1, 2, 3)), descending=True)
        keep[order[: int(n * (1 - p))]] = True
        out[name] = keep
    return out


def apply_l1_masks(model, masks):
    """The exact masked form: pruned filters and their bn1 channels zeroed (γ = β = 0)."""
    with torch.no_grad():
        for name, blk in _blocks(model):
            drop = ~masks[name]
            blk.conv1.weight[drop] = 0
            blk.bn1.weight[drop] = 0
            blk.bn1.bias[drop] = 0
    return model


def prune_resnet_blocks(masked, masks, builder):
    """res56prune / imagenet prune.py: cfg = kept conv1 widths; conv1, bn1 and conv2's inputs sliced,
    everything else copied."""
    cfg = [int(masks[n].sum()) for n, _ in _blocks(masked)]
    new = builder(cfg=cfg).eval()
    sd = masked.state_dict()
    out = {}
    for k, v in new.state_dict().items():
        src = sd[k]
        block = next((n for n, _ in _blocks(masked) if k.startswith(n + ".")), None)
        if block is not None and src.shape != v.shape:
            idx = _idx(masks[block])
            leaf = k[len(block) + 1:]
            src = src[:, idx] if leaf.startswith("conv2.") else src[idx]
        out[k] = src.clone()
    new.load_state_dict(out)
    return cfg, new
