"""Turning nn.Conv2d-style arguments (int, pair, or 4 explicit pads) into the contract's lists."""
from __future__ import annotations

import math

import torch
from torch import nn


def pair(v, name: str) -> list[int]:
    if isinstance(v, int):
        return [v, v]
    v = [int(i) for i in v]
    if len(v) == 1:
        return v * 2
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v}")
    return v


def onnx_pads(padding) -> list[int]:
    """int / (ph, pw) / ONNX-order (top, left, bottom, right) -> [top, left, bottom, right]."""
    if isinstance(padding, str):
        raise ValueError(f"string padding {padding!r} is not supported; give explicit pads")
    if isinstance(padding, int):
        return [padding] * 4
    p = [int(i) for i in padding]
    if len(p) == 1:
        return p * 4
    if len(p) == 2:
        return [p[0], p[1], p[0], p[1]]
    if len(p) == 4:
        return p
    raise ValueError(f"padding must be an int, a pair or 4 ONNX-order pads, got {p}")


class ConvShapedLayer(nn.Module):
    """What AdderConv2d and BinaryConv2d share with nn.Conv2d: geometry, a [M, C/groups, kh, kw]
    weight, an optional bias, and the fused epilogue (buffers ``scale``/``shift`` and ``activation``;
    identity on a fresh layer) that BatchNorm folding fills in."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=False):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"channels {in_channels}->{out_channels} not divisible by groups={groups}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = tuple(pair(kernel_size, "kernel_size"))
        self.stride = tuple(pair(stride, "stride"))
        self.pads = tuple(onnx_pads(padding))
        self.dilation = tuple(pair(dilation, "dilation"))
        self.groups = groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.register_buffer("scale", torch.ones(out_channels))
        self.register_buffer("shift", torch.zeros(out_channels))
        self.activation = 0

    def geometry(self) -> tuple[list[int], list[int], list[int], int]:
        return list(self.stride), list(self.pads), list(self.dilation), self.groups

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"pads={self.pads}, dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}")
