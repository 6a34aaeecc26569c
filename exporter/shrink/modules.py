"""Plain modules that the shrink step puts in place of research-code layers."""
from __future__ import annotations

import torch
from torch import nn


class ChannelSelect(nn.Module):
    """y = x[:, index]: what Network Slimming's ``channel_selection`` computes, with the selected
    positions held as a long buffer (exports as one Gather; no NumPy in forward)."""

    def __init__(self, index, in_channels: int):
        super().__init__()
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.long).reshape(-1).clone())
        self.in_channels = int(in_channels)

    @property
    def out_channels(self) -> int:
        return int(self.index.numel())

    def forward(self, x):
        return torch.index_select(x, 1, self.index)

    def extra_repr(self):
        return f"{self.in_channels} -> {self.out_channels}"
