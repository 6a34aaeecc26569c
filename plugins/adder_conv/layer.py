"""AdderConv2d: an nn.Conv2d-shaped layer whose multiply is -|x - w| (AdderNet)."""
from __future__ import annotations

import math

import torch
from torch import nn

from .._conv_args import onnx_pads, pair
from .op import DEFAULT_ETA, adder_conv


class AdderConv2d(nn.Module):
    """y = -sum |x - w| (+ bias). ``padding`` may be an int, a pair, or ONNX-order 4 pads.

    ``eta`` is AdderNet's adaptive-gradient coefficient (0 disables the rescaling).
    ``scale``/``shift``/``activation`` hold a fused epilogue after BatchNorm folding (buffers, so
    they travel with the state_dict); a fresh layer has scale = 1, shift = 0.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=False, eta: float = DEFAULT_ETA):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"channels {in_channels}->{out_channels} not divisible by groups={groups}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = tuple(pair(kernel_size, "kernel_size"))
        self.stride = tuple(pair(stride, "stride"))
        self.pads = tuple(onnx_pads(padding))
        self.dilation = tuple(pair(dilation, "dilation"))
        self.groups = groups
        self.eta = float(eta)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.register_buffer("scale", torch.ones(out_channels))
        self.register_buffer("shift", torch.zeros(out_channels))
        self.activation = 0

    def forward(self, x):
        shift = self.shift if self.bias is None else self.shift + self.scale * self.bias
        return adder_conv(x, self.weight, self.scale, shift, list(self.stride), list(self.pads),
                          list(self.dilation), self.groups, self.activation, self.eta)

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"pads={self.pads}, dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}")
        if self.activation or not torch.all(self.scale == 1) or not torch.all(self.shift == 0):
            s += ", epilogue=fused" + ("+relu" if self.activation else "")
        return s
