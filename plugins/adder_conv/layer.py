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

    ``model.half()`` / ``.bfloat16()`` / ``.to(torch.float16)`` leave this layer's weight, bias, scale and
    shift in float32 (the contract's FP16 rule: half activations in and out, float32 weights and
    arithmetic); the layer then takes and returns half tensors. Device moves and ``.double()`` apply as
    usual.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=False, eta: float = DEFAULT_ETA):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        self.eta = float(eta)

    def _apply(self, fn, recurse=True):
        def keep_float32(t):
            out = fn(t)
            if t.is_floating_point() and out.dtype in (torch.float16, torch.bfloat16):
                # t itself (not out rounded back): no precision is lost on the way.
                return t.detach().to(device=out.device, dtype=torch.float32)
            return out
        return super()._apply(keep_float32, recurse)

    def forward(self, x):
        shift = self.shift if self.bias is None else self.shift + self.scale * self.bias
        return adder_conv(x, self.weight, self.scale, shift, *self.geometry(), self.activation, self.eta)

    def extra_repr(self):
        s = super().extra_repr()
        if self.activation or not torch.all(self.scale == 1) or not torch.all(self.shift == 0):
            s += ", epilogue=fused" + ("+relu" if self.activation else "")
        return s
