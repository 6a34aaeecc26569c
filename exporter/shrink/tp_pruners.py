"""Torch-Pruning pruners for the cmc operators and the ChannelSelect gather.

Registered with ``DependencyGraph.build_dependency(customized_pruners=...)``. ``prune_out_channels``
and ``prune_in_channels`` differ, so Torch-Pruning does not couple a layer's inputs with its outputs.
Constant contributions of removed input channels are folded by the planner *before* pruning; the
pruners only cut tensors, except BinaryConv's alpha (mean |W| over the kept weights), which the
input pruner compensates in ``scale`` so that the layer's output does not change.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch_pruning as tp
from torch import nn

from cmc.plugins.adder_conv import AdderConv2d
from cmc.plugins.binary_conv.layer import BinaryConv2d

from .modules import ChannelSelect


def _keep(n: int, idxs: Sequence[int]) -> torch.Tensor:
    drop = set(int(i) for i in idxs)
    return torch.tensor([i for i in range(n) if i not in drop], dtype=torch.long)


def _cut_param(p: nn.Parameter | None, keep: torch.Tensor, dim: int):
    if p is None:
        return None
    return nn.Parameter(torch.index_select(p.data, dim, keep.to(p.device)).clone(), requires_grad=p.requires_grad)


class _CmcConvPruner(tp.pruner.function.BasePruningFunc):
    TARGET_MODULES = (AdderConv2d, BinaryConv2d)

    def prune_out_channels(self, layer, idxs):
        if layer.groups != 1:
            raise ValueError(f"{type(layer).__name__} with groups={layer.groups}: cmc prunes only groups=1")
        keep = _keep(layer.out_channels, idxs)
        layer.weight = _cut_param(layer.weight, keep, 0)
        if layer.bias is not None:
            layer.bias = _cut_param(layer.bias, keep, 0)
        layer.scale = layer.scale[keep.to(layer.scale.device)].clone()
        layer.shift = layer.shift[keep.to(layer.shift.device)].clone()
        layer.out_channels = int(keep.numel())
        return layer

    def prune_in_channels(self, layer, idxs):
        if layer.groups != 1:
            raise ValueError(f"{type(layer).__name__} with groups={layer.groups}: cmc prunes only groups=1")
        keep = _keep(layer.in_channels, idxs)
        layer.weight = _cut_param(layer.weight, keep, 1)
        layer.in_channels = int(keep.numel())
        return layer

    def get_out_channels(self, layer):
        return layer.out_channels

    def get_in_channels(self, layer):
        return layer.in_channels


class AdderConvPruner(_CmcConvPruner):
    TARGET_MODULES = (AdderConv2d,)


class BinaryConvPruner(_CmcConvPruner):
    TARGET_MODULES = (BinaryConv2d,)

    def prune_in_channels(self, layer, idxs):
        with torch.no_grad():
            alpha_old = layer.alpha().detach().clone()
        super().prune_in_channels(layer, idxs)
        if layer.use_alpha:
            with torch.no_grad():
                alpha_new = layer.alpha().detach()
                if bool(((alpha_new == 0) & (alpha_old != 0)).any()):
                    raise ValueError("BinaryConv: removing these input channels leaves a filter with alpha = 0")
                ratio = torch.where(alpha_new == 0, torch.ones_like(alpha_new), alpha_old / alpha_new.where(alpha_new != 0, torch.ones_like(alpha_new)))
                layer.scale = (layer.scale * ratio.to(layer.scale.dtype)).clone()
        return layer


class ChannelSelectPruner(tp.pruner.function.BasePruningFunc):
    """Out channels: drop gathered positions. In channels: drop unselected source channels and renumber."""
    TARGET_MODULES = (ChannelSelect,)

    def prune_out_channels(self, layer, idxs):
        keep = _keep(layer.out_channels, idxs)
        layer.index = layer.index[keep.to(layer.index.device)].clone()
        return layer

    def prune_in_channels(self, layer, idxs):
        drop = torch.tensor(sorted(set(int(i) for i in idxs)), dtype=torch.long)
        if bool(torch.isin(layer.index, drop.to(layer.index.device)).any()):
            raise ValueError("ChannelSelect: cannot remove an input channel that is still gathered")
        shift = torch.searchsorted(drop.to(layer.index.device), layer.index)
        layer.index = (layer.index - shift).clone()
        layer.in_channels -= int(drop.numel())
        return layer

    def get_out_channels(self, layer):
        return layer.out_channels

    def get_in_channels(self, layer):
        return layer.in_channels


def customized_pruners() -> dict:
    return {AdderConv2d: AdderConvPruner(), BinaryConv2d: BinaryConvPruner(), ChannelSelect: ChannelSelectPruner()}
