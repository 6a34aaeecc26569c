"""Research-style layers that transform their weights in every forward, from parameters alone.

What cmc keeps as the user's own float ops (no com.cmc operator computes them), written the way BNN and
normalisation papers' code writes them: the effective weight is recomputed from the stored parameters on
each call, so a naive export recomputes it on every inference.

* ``StandardizedConv2d``: weight standardisation (zero mean, unit std per output filter), as in
  "Micro-Batch Training with Batch-Channel Normalization and Weight Standardization" codebases.
* ``RotatedSignConv2d``: an RBNN-style layer: the flattened filters are rotated by two learned matrices
  (R1ᵀ · W · R2, MatMul over parameters), then sign-binarized with mean|w| per filter; its input is
  binarized after a learned per-channel shift (ReActNet's RSign), which cmc's BinaryConv does not
  express, so the layer stays float.
* ``DoReFaLinear``: DoReFa-Net k-bit weights (tanh, divide by max|tanh|, round to 2^k − 1 levels).

``weight_transform_net()`` builds a small seeded CIFAR-100-style network holding all three, with
realistic widths: the exporter's own optimiser folds parameter-only ops on tensors up to 8192 elements
only (onnxscript's default limit), so layers of 64 channels and more keep recomputing their weights.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class StandardizedConv2d(nn.Conv2d):
    def forward(self, x):
        w = self.weight
        centred = w - w.mean(dim=(1, 2, 3), keepdim=True)
        spread = centred.flatten(1).std(dim=1).reshape(-1, 1, 1, 1) + 1e-5
        return F.conv2d(x, centred / spread, self.bias, self.stride, self.padding, self.dilation, self.groups)


class RotatedSignConv2d(nn.Conv2d):
    def __init__(self, in_channels, out_channels, kernel_size, rot_rows, **kw):
        super().__init__(in_channels, out_channels, kernel_size, bias=False, **kw)
        fan_in = in_channels * self.kernel_size[0] * self.kernel_size[1]
        assert fan_in % rot_rows == 0, "the rotation factors must split the filter size"
        self.rot_rows, self.rot_cols = rot_rows, fan_in // rot_rows
        # orthogonal initial rotations, as RBNN initialises them
        self.R1 = nn.Parameter(torch.linalg.qr(torch.randn(self.rot_rows, self.rot_rows))[0])
        self.R2 = nn.Parameter(torch.linalg.qr(torch.randn(self.rot_cols, self.rot_cols))[0])
        self.move = nn.Parameter(torch.zeros(1, in_channels, 1, 1))   # RSign's learned threshold

    def forward(self, x):
        w = self.weight.reshape(self.out_channels, self.rot_rows, self.rot_cols)
        rotated = torch.matmul(torch.matmul(self.R1.t(), w), self.R2).reshape_as(self.weight)
        alpha = rotated.abs().mean(dim=(1, 2, 3), keepdim=True)
        wb = torch.sign(rotated) * alpha
        xb = torch.sign(x - self.move)
        return F.conv2d(xb, wb, None, self.stride, self.padding, self.dilation, self.groups)


class DoReFaLinear(nn.Linear):
    def __init__(self, in_features, out_features, bits=2, **kw):
        super().__init__(in_features, out_features, **kw)
        self.levels = 2 ** bits - 1

    def forward(self, x):
        t = torch.tanh(self.weight)
        unit = t / (2 * t.abs().max()) + 0.5
        wq = 2 * (torch.round(unit * self.levels) / self.levels) - 1
        return F.linear(x, wq, self.bias)


class WeightTransformNet(nn.Module):
    def __init__(self, width=64, num_classes=100):
        super().__init__()
        self.conv1 = StandardizedConv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = RotatedSignConv2d(width, width, 3, rot_rows=width, padding=1)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = StandardizedConv2d(width, 2 * width, 3, stride=2, padding=1)
        self.bn3 = nn.BatchNorm2d(2 * width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = DoReFaLinear(2 * width, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.hardtanh(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def weight_transform_net(seed: int = 0, width: int = 64) -> WeightTransformNet:
    """Seeded, with trained-looking BatchNorm statistics and a nonzero RSign shift."""
    from samples.pruning.common import randomize_bn

    torch.manual_seed(seed)
    model = WeightTransformNet(width)
    g = torch.Generator().manual_seed(seed)
    randomize_bn(model, g)
    with torch.no_grad():
        model.conv2.move.copy_(torch.randn(model.conv2.move.shape, generator=g) * 0.1)
    return model.eval()


weight_transform_net.input_shape = (1, 3, 32, 32)
