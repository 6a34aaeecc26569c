"""Network Slimming's pruning step (Liu et al. 2017), for models trained with the sparsity penalty.

Sparsity training (an L1 penalty on BatchNorm γ) leaves the unimportant channels with small γ, not
zero ones, so such a checkpoint has no pruned structure yet. The rethinking-network-pruning scripts
(vggprune.py, resprune.py, denseprune.py) prune it the same way, which :func:`slim` reproduces:

* every ``nn.BatchNorm2d`` of the model, in module order, contributes its |γ| to one list;
* the threshold is the element at index ``int(total · percent / 100)`` of that list sorted ascending;
* a channel is kept when |γ| > threshold (strictly: the channel at the threshold goes too), and a
  pruned channel gets γ = β = 0 — its BatchNorm then outputs exactly 0 whatever its input.

The scripts then build the narrower model from the per-layer kept counts (``cfg``); cmc's shrink
removes the zeroed channels instead, which gives the same widths. Slimming changes what the model
computes (that is the method's approximation); the pipeline measures and reports by how much.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import CmcError

#: |γ| below this fraction of the largest |γ| counts as "driven towards 0" for the hint.
SMALL_GAMMA = 1e-2
#: ... and at least this share of channels must be that small to call the model sparsity-trained.
SMALL_SHARE = 0.05


def _bns(model: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and m.weight is not None]


def slim(model: nn.Module, percent: float) -> dict:
    """Zero γ and β of the ``percent`` % of BatchNorm2d channels with the smallest |γ|, in place.

    Returns a JSON-serialisable report: threshold, channel counts, per-layer kept counts."""
    if not 0 < percent < 100:
        raise CmcError(f"--slim {percent:g}: the percentage of channels to prune must be between 0 and 100 "
                       "(the repositories' --percent 0.5 is --slim 50)")
    bns = _bns(model)
    if not bns:
        raise CmcError("--slim: the model has no BatchNorm2d layer, so there is no γ to threshold")
    gammas = torch.cat([m.weight.detach().abs().flatten().double() for _, m in bns])
    total = gammas.numel()
    index = int(total * (percent / 100.0))
    if index >= total:
        raise CmcError(f"--slim {percent:g} would prune all {total} channels")
    thre = torch.sort(gammas).values[index]
    layers, pruned = [], 0
    with torch.no_grad():
        for name, m in bns:
            keep = m.weight.detach().abs().double() > thre
            n_keep = int(keep.sum())
            if n_keep == 0:
                raise CmcError(f"--slim {percent:g} leaves no channel in BatchNorm {name!r} (all "
                               f"{keep.numel()} |γ| <= threshold {float(thre):.4g}); use a smaller percentage")
            m.weight.mul_(keep.to(m.weight.dtype))
            m.bias.mul_(keep.to(m.bias.dtype))
            pruned += keep.numel() - n_keep
            layers.append({"name": name, "channels": keep.numel(), "kept": n_keep})
    return {"percent": float(percent), "threshold": float(thre), "batchnorms": len(bns), "channels": int(total),
            "pruned_channels": int(pruned), "layers": layers,
            "rule": "global |gamma| threshold at sorted index int(total * percent / 100); kept where |gamma| > "
                    "threshold; pruned channels get gamma = beta = 0 (Network Slimming's vggprune/resprune/denseprune)"}


def sparsity_hint(model: nn.Module) -> str | None:
    """A sentence for 'no pruned structure found' when BatchNorm γ look sparsity-trained, else None."""
    bns = _bns(model)
    if not bns:
        return None
    gammas = torch.cat([m.weight.detach().abs().flatten() for _, m in bns])
    top = float(gammas.max()) if gammas.numel() else 0.0
    if top <= 0:
        return None
    small = int((gammas < SMALL_GAMMA * top).sum())
    if small < SMALL_SHARE * gammas.numel():
        return None
    return (f"{small} of {gammas.numel()} BatchNorm channels have |γ| < {SMALL_GAMMA:g}·max|γ| but none is 0 — "
            "a Network Slimming sparsity-trained model? prune it with --slim PERCENT (the PERCENT % smallest |γ| "
            "go, as the repository's prune scripts' --percent PERCENT/100 does)")
