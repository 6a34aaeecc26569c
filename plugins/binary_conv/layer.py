"""BinaryConv2d: +-1 weights (alpha-scaled per output channel) and, optionally, +-1 activations."""
from __future__ import annotations

import torch
from torch import nn

from .._conv_args import ConvShapedLayer
from .op import binary_conv, binary_conv_train, pack_weights


class BinaryConv2d(ConvShapedLayer):
    """y = alpha[m] * conv(binarize(x), binarize(w)) (+ bias), alpha = mean |w| over each filter.

    ``binarize_input=False`` keeps a float input (binary weights only). ``use_alpha=False`` drops
    alpha (plain +-1 weights). ``scale``/``shift``/``activation`` hold a fused epilogue.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=False, binarize_input=True, use_alpha=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        self.binarize_input = bool(binarize_input)
        self.use_alpha = bool(use_alpha)

    def alpha(self) -> torch.Tensor:
        if not self.use_alpha:
            return torch.ones(self.out_channels, dtype=self.weight.dtype, device=self.weight.device)
        return self.weight.abs().mean(dim=(1, 2, 3))

    def epilogue(self):
        """(scale, shift) of the contract's epilogue: alpha and bias folded in."""
        scale = self.scale * self.alpha()
        shift = self.shift if self.bias is None else self.shift + self.scale * self.bias
        return scale, shift

    def forward(self, x):
        scale, shift = self.epilogue()
        return binary_conv_train(x, self.weight, scale, shift, *self.geometry(), int(self.binarize_input),
                                 self.activation)

    def to_packed(self) -> "PackedBinaryConv2d":
        return PackedBinaryConv2d(self)

    def extra_repr(self):
        return super().extra_repr() + f", binarize_input={self.binarize_input}, use_alpha={self.use_alpha}"


class PackedBinaryConv2d(nn.Module):
    """The deployment form: bit-packed int32 weights and the folded epilogue, exactly the ONNX node."""

    def __init__(self, layer: BinaryConv2d):
        super().__init__()
        with torch.no_grad():
            scale, shift = layer.epilogue()
            self.register_buffer("w_packed", pack_weights(layer.weight))
            self.register_buffer("scale", scale.detach().float().clone())
            self.register_buffer("shift", shift.detach().float().clone())
        self.in_channels, self.out_channels = layer.in_channels, layer.out_channels
        self.kernel_size, self.stride, self.pads = layer.kernel_size, layer.stride, layer.pads
        self.dilation, self.groups = layer.dilation, layer.groups
        self.binarize_input, self.activation = layer.binarize_input, layer.activation

    def forward(self, x):
        return binary_conv(x, self.w_packed, self.scale, self.shift, list(self.stride), list(self.pads),
                           list(self.dilation), self.groups, int(self.binarize_input), self.activation)
