"""SPConv2d: a drop-in replacement for a 3x3 nn.Conv2d ("Split to Be Slim", standard ops only).

The input channels split by ``ratio`` into a representative part (3x3 group conv + pointwise conv,
summed) and a redundant part (a cheap 1x1 conv); stride 2 average-pools before the pointwise paths.
Each branch is batch-normalised and the two are fused per channel with a parameter-free softmax
over their global averages. Exports to plain ONNX (Conv, AveragePool, ReduceMean, Softmax, ...).
"""
from __future__ import annotations

import torch
from torch import nn


class SPConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, ratio: float = 0.5, groups: int = 2):
        super().__init__()
        if not 0 < ratio < 1:
            raise ValueError(f"ratio must be in (0, 1), got {ratio}")
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.in_3x3 = int(in_channels * ratio)
        self.in_1x1 = in_channels - self.in_3x3
        if self.in_3x3 < 1 or self.in_1x1 < 1:
            raise ValueError(f"ratio {ratio} leaves an empty branch for {in_channels} input channels")
        if self.in_3x3 % groups or out_channels % groups:
            raise ValueError(f"group conv needs {self.in_3x3} and {out_channels} divisible by groups={groups}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.gwc = nn.Conv2d(self.in_3x3, out_channels, 3, stride=stride, padding=1, groups=groups)
        self.pwc = nn.Conv2d(self.in_3x3, out_channels, 1)
        self.conv1x1 = nn.Conv2d(self.in_1x1, out_channels, 1)
        self.pool = nn.AvgPool2d(2, 2) if stride == 2 else nn.Identity()
        self.bn_3x3 = nn.BatchNorm2d(out_channels)
        self.bn_1x1 = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        x3, x1 = x[:, :self.in_3x3], x[:, self.in_3x3:]
        out3 = self.bn_3x3(self.gwc(x3) + self.pwc(self.pool(x3)))
        out1 = self.bn_1x1(self.conv1x1(self.pool(x1)))
        weights = torch.softmax(torch.stack((out3.mean(dim=(2, 3)), out1.mean(dim=(2, 3))), dim=2), dim=2)
        return out3 * weights[:, :, 0, None, None] + out1 * weights[:, :, 1, None, None]
