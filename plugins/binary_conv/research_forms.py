"""The small modules a recognised research layer is rebuilt from (besides BinaryConv2d itself).

Each exports to standard ONNX ops and computes exactly what the research code computed.
"""
from __future__ import annotations

import torch
from torch import nn


class TorchSign(nn.Module):
    """torch.sign activations (sign(0) = 0), for inputs that can be exactly 0."""

    def forward(self, x):
        return torch.sign(x)


class Binarize(nn.Module):
    """+1 where x >= 0, else -1 (the contract's binarize: sign(0) = +1)."""

    def forward(self, x):
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class LinearAsConv1x1(nn.Module):
    """A linear layer [N, F] -> [N, M] computed by a 1x1 conv on [N, F, 1, 1] (a BinaryConv2d)."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        return self.conv(x[:, :, None, None]).flatten(1)


class AffineOfSign(nn.Module):
    """delta + gamma * s, s = binarize(x) (sign(0) = +1) or torch.sign(x): a shifted / scaled sign, e.g. DoReFa's
    {0, 1} activations (sign(x) + 1) / 2."""

    def __init__(self, convention: str, delta: float, gamma: float):
        super().__init__()
        self.sign = Binarize() if convention == "binarize" else TorchSign()
        self.delta, self.gamma = float(delta), float(gamma)

    def forward(self, x):
        return self.sign(x) * self.gamma + self.delta


class Centre(nn.Module):
    """x - mean(x) over ``dims`` (per sample, or per sample and channel): the value a BinaryConv binarizes where the
    research code standardises its activations before their sign."""

    def __init__(self, dims):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x):
        return x - x.mean(self.dims, keepdim=True)
