"""The fused epilogue every com.cmc conv-like op ends with: Y = act(scale[m] * A + shift[m]).

It is how a layer bias, BinaryConv's alpha and a following BatchNorm (+ReLU) ride inside one node;
the BatchNorm fold itself is done on the ONNX graph (cmc.exporter.onnx_export.fold_into_epilogues).
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

