"""AdderConv2d: an nn.Conv2d-shaped layer whose multiply is -|x - w| (AdderNet)."""
from __future__ import annotations

import torch

from .._conv_args import ConvShapedLayer
from .op import DEFAULT_ETA, adder_conv


class AdderConv2d(ConvShapedLayer):
    """y = -sum |x - w| (+ bias). ``padding`` may be an int, a pair, or ONNX-order 4 pads.

    ``eta`` is AdderNet's adaptive-gradient coefficient (0 disables the rescaling).
    ``scale``/``shift``/``activation`` hold a fused epilogue after BatchNorm folding (buffers, so
    they travel with the state_dict); a fresh layer has scale = 1, shift = 0.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=False, eta: float = DEFAULT_ETA):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        self.eta = float(eta)

    def forward(self, x):
        shift = self.shift if self.bias is None else self.shift + self.scale * self.bias
        return adder_conv(x, self.weight, self.scale, shift, *self.geometry(), self.activation, self.eta)

    def extra_repr(self):
        s = super().extra_repr()
        if self.activation or not torch.all(self.scale == 1) or not torch.all(self.shift == 0):
            s += ", epilogue=fused" + ("+relu" if self.activation else "")
        return s
