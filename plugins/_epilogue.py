"""The fused epilogue every com.cmc conv-like op ends with: Y = act(scale[m] * A + shift[m]).

It is how a layer bias, BinaryConv's alpha and a following BatchNorm (+ReLU) ride inside one node.
"""
from __future__ import annotations

import torch


def apply_epilogue(acc: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, activation: int) -> torch.Tensor:
    y = acc * scale.to(acc.dtype).view(1, -1, 1, 1) + shift.to(acc.dtype).view(1, -1, 1, 1)
    return torch.relu(y) if activation == 1 else y


def epilogue_backward(grad_y, y, acc, scale, activation, need_scale, need_shift):
    """Chain rule through the epilogue: returns (grad wrt A, grad scale, grad shift)."""
    g = grad_y * (y > 0).to(grad_y.dtype) if activation == 1 else grad_y
    grad_shift = g.sum(dim=(0, 2, 3)).to(scale.dtype) if need_shift else None
    grad_scale = (g * acc).sum(dim=(0, 2, 3)).to(scale.dtype) if need_scale else None
    return g * scale.to(g.dtype).view(1, -1, 1, 1), grad_scale, grad_shift


def fold_batchnorm(scale, shift, bn_weight, bn_bias, running_mean, running_var, eps):
    """Compose (scale, shift) with an eval-mode BatchNorm: BN(s*A + t) = s'*A + t'. float64 inside."""
    inv = (bn_weight.double() if bn_weight is not None else 1.0) / torch.sqrt(running_var.double() + eps)
    beta = bn_bias.double() if bn_bias is not None else 0.0
    new_scale = scale.double() * inv
    new_shift = (shift.double() - running_mean.double()) * inv + beta
    return new_scale.float(), new_shift.float()
