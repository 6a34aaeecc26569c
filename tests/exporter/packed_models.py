"""Models for the packed-chain tests (1-bit activations between binary layers).

* ``decisions``: cmc's own BinaryConv2d layers wired so that every rule of the packed-chain pass shows
  once: a fan-out to two binarizing layers (packed), a MaxPool, a residual Add, a grouped layer, a
  float-input (``binarize_input=False``) layer, a graph output and a float head stop chains.
* ``res_relu_bnn``: research-style BNN (the NIN sample's Conv2d_Q / Tnn_Bin_Conv2d) with a residual add,
  a ReLU-fed binary layer (exact zeros: Sign + BinaryConv(binarize_input=0)), odd channel counts and a
  chain through 130 channels (two 128-bit blocks per pixel).
"""
import torch
from torch import nn

from cmc.plugins.binary_conv import BinaryConv2d
from samples.bnn_nin import Tnn_Bin_Conv2d


def _randomize_bn(model: nn.Module, seed: int = 0):
    """Trained-looking BatchNorms: means and scales far from the identity (what folding must survive)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 3)
                m.running_var.copy_(torch.rand(n, generator=g) * 4 + 0.5)
                m.weight.copy_(torch.randn(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g))
    return model


class Decisions(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.a = nn.Sequential(BinaryConv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.b = nn.Sequential(BinaryConv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16))   # a -> b and a -> c
        self.c = nn.Sequential(BinaryConv2d(16, 16, 1), nn.BatchNorm2d(16))
        self.pool = nn.MaxPool2d(2)                                                     # b -> pool
        self.d = nn.Sequential(BinaryConv2d(16, 16, 3, padding=1, groups=2), nn.BatchNorm2d(16))  # grouped
        self.e = nn.Sequential(BinaryConv2d(16, 16, 1), nn.BatchNorm2d(16))
        self.f = nn.Sequential(BinaryConv2d(16, 16, 3, padding=1, binarize_input=False), nn.BatchNorm2d(16))
        self.g = nn.Sequential(BinaryConv2d(16, 24, 1), nn.BatchNorm2d(24))               # g is also an output
        self.h = nn.Sequential(BinaryConv2d(24, 24, 3, padding=1), nn.BatchNorm2d(24))
        self.i = nn.Sequential(BinaryConv2d(24, 10, 1), nn.BatchNorm2d(10))               # h -> i: packed
        self.head = nn.Conv2d(10, 10, 1)                                                 # float layer

    def forward(self, x):
        a = self.a(self.stem(x))
        b, c = self.b(a), self.c(a)
        r = b + c                              # residual add: b and c stop
        d = self.d(self.pool(r))               # d is grouped: stays float in and out
        e = self.e(d)
        f = self.f(e)                          # e -> f reads floats (binarize_input=False): e stops
        g = self.g(f)
        out = self.head(self.i(self.h(g)))
        return out.mean(dim=(2, 3)), g


def decisions():
    torch.manual_seed(0)
    return _randomize_bn(Decisions()).eval()


class ResReluBNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64))
        self.b1 = Tnn_Bin_Conv2d(64, 64, kernel_size=3, stride=1, padding=1)
        self.b2 = Tnn_Bin_Conv2d(64, 64, kernel_size=3, stride=1, padding=1)
        self.b3 = Tnn_Bin_Conv2d(64, 96, kernel_size=1, stride=1, padding=0)
        self.b4 = Tnn_Bin_Conv2d(96, 96, kernel_size=3, stride=1, padding=1, last_relu=1)
        self.b5 = Tnn_Bin_Conv2d(96, 130, kernel_size=3, stride=2, padding=1)   # ReLU-fed: sees exact zeros
        self.b6 = Tnn_Bin_Conv2d(130, 130, kernel_size=1, stride=1, padding=0)
        self.b7 = Tnn_Bin_Conv2d(130, 10, kernel_size=3, stride=1, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        s = self.stem(x)
        y1 = self.b1(s)
        y = y1 + self.b2(y1)                   # residual: b1 feeds b2 and the add, b2 the add
        y = self.b4(self.b3(y))                # b3 -> b4 packed; b4 ends in a ReLU
        y = self.b7(self.b6(self.b5(y)))       # b5 (float input) -> b6 -> b7 packed
        return self.pool(y).flatten(1)


def res_relu_bnn():
    torch.manual_seed(1)
    return _randomize_bn(ResReluBNN(), seed=1).eval()
