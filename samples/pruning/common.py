"""Helpers shared by the samples: seeded 'trained-looking' BatchNorm statistics."""
import torch
import torch.nn as nn


def randomize_bn(model: nn.Module, g: torch.Generator, gamma_scale=None):
    """Give every BatchNorm non-trivial gamma/beta/running stats (as after training), seeded."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for i, bn in enumerate(bns):
        c = bn.num_features
        s = 1.0 if gamma_scale is None else gamma_scale(i, len(bns))
        with torch.no_grad():
            bn.weight.copy_(torch.rand(c, generator=g) * s + 0.05 * s)
            bn.bias.copy_(torch.randn(c, generator=g) * 0.1)
            bn.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            bn.running_var.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
    return bns


def slim_bns(bns, ratio: float, min_keep: float = 0.1):
    """Network Slimming: one global threshold on |gamma|; pruned channels get gamma = beta = 0.

    Returns the kept-channel counts. At least ``min_keep`` of every layer survives (as the research
    code's cfg would otherwise hold a zero-width layer)."""
    allg = torch.cat([bn.weight.detach().abs() for bn in bns])
    k = int(allg.numel() * ratio)
    thre = torch.sort(allg).values[k] if k < allg.numel() else allg.max() + 1
    cfg = []
    for bn in bns:
        w = bn.weight.detach().abs()
        mask = w.gt(thre)
        need = max(1, int(round(min_keep * w.numel())))
        if int(mask.sum()) < need:
            mask = torch.zeros_like(mask)
            mask[torch.argsort(w, descending=True)[:need]] = True
        with torch.no_grad():
            bn.weight.mul_(mask.float())
            bn.bias.mul_(mask.float())
        cfg.append(int(mask.sum()))
    return cfg
