"""Research-style models for issue 17 (round 3), written the way unseen codebases write them.

Each one is a situation that used to end badly: layers called through an alias (a tuple / list / dict
attribute, or a second attribute holding the same module), asymmetric two-valued binarization, a
``.cuda()`` in a constructor, an in-place clamp in forward that reaches a fixed point (XNOR-Net's NIN)
or one that does not, and sign-binarized weights holding exact zeros.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samples.addernet_resnet20 import adder2d


def _calibrated(model: nn.Module, shape=(3, 16, 16)) -> nn.Module:
    """BatchNorm statistics from a few training-mode passes (a trained checkpoint has real ones), then eval."""
    g = torch.Generator().manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, *shape, generator=g))
    return model.eval()


class StemNet(nn.Module):
    """A float stem, the layer under test (16 -> 16 channels), BatchNorm, optionally a residual, a classifier."""

    def __init__(self, layer: nn.Module, residual: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = layer
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)
        self.residual = residual

    def forward(self, x):
        out = F.hardtanh(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(out))
        out = F.hardtanh(y + out if self.residual else y)
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


# ------------------------------------------------------------ layers called through an alias

class AliasBlock(nn.Module):
    """A block that keeps its layers in a tuple, a list and a dict as well as registering them, and
    calls them through those (as some NAS / search-space codebases do)."""

    def __init__(self, planes, how):
        super().__init__()
        self.conv1 = adder2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = adder2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.how = how
        if how == "tuple":
            self.ops = (self.conv1, self.bn1)          # a plain attribute: not registered
        elif how == "list":
            self.__dict__["ops"] = [self.conv1, self.bn1]
        elif how == "dict":
            self.__dict__["ops"] = {"conv": self.conv1, "bn": self.bn1}
        elif how == "second_attribute":
            self.first = self.conv1                    # registered a second time under another name
        elif how == "closure":
            conv = self.conv1                          # out of cmc's reach: only a run can show it
            self.__dict__["call"] = lambda x: conv(x)

    def forward(self, x):
        if self.how in ("tuple", "list"):
            out = self.ops[1](self.ops[0](x))
        elif self.how == "dict":
            out = self.ops["bn"](self.ops["conv"](x))
        elif self.how == "second_attribute":
            out = self.bn1(self.first(x))
        elif self.how == "closure":
            out = self.bn1(self.call(x))
        else:
            out = self.bn1(self.conv1(x))
        out = F.relu(out)
        return F.relu(self.bn2(self.conv2(out)) + x)


class AliasNet(nn.Module):
    def __init__(self, how="tuple"):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.block = AliasBlock(8, how)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        out = self.block(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def alias_arch(how="tuple"):
    torch.manual_seed(21)
    return AliasNet(how)


# ------------------------------------------------------------ asymmetric two-valued binarization

class AsymmetricBinConv2d(nn.Conv2d):
    """Weights {beta_m - alpha_m, beta_m + alpha_m} per output channel, activations {0, 1} = (sign(x) + 1) / 2
    (DoReFa-style 1-bit activations): two values each, but not +-alpha."""

    def forward(self, x):
        w = self.weight
        beta = w.mean(dim=(1, 2, 3), keepdim=True)
        alpha = (w - beta).abs().mean(dim=(1, 2, 3), keepdim=True)
        wq = beta + alpha * torch.where(w - beta >= 0, 1.0, -1.0)
        xq = (torch.where(x >= 0, 1.0, -1.0) + 1) / 2
        return F.conv2d(xq, wq, self.bias, self.stride, self.padding, self.dilation, self.groups)


def asymmetric_arch():
    torch.manual_seed(22)
    return StemNet(AsymmetricBinConv2d(16, 16, 3, padding=1, bias=False), residual=False)


# ------------------------------------------------------------ .cuda() in a constructor (IR-Net)

class CtorCudaConv2d(nn.Conv2d):
    """IR-Net's IRConv2d keeps its STE constants on the GPU from the constructor on."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.k = torch.tensor([10]).float().cuda()
        self.t = torch.tensor([0.1]).float().cuda()

    def forward(self, x):
        w = self.weight
        bw = w - w.view(w.size(0), -1).mean(-1).view(w.size(0), 1, 1, 1)
        bw = bw / bw.view(bw.size(0), -1).std(-1).view(bw.size(0), 1, 1, 1)
        ba = torch.sign(x)
        return F.conv2d(ba, torch.sign(bw), self.bias, self.stride, self.padding, self.dilation, self.groups)


def ctor_cuda_arch():
    torch.manual_seed(23)
    return StemNet(CtorCudaConv2d(16, 16, 3, padding=1, bias=False), residual=True)


# ------------------------------------------------------------ in-place updates in forward (XNOR-Net NIN)

class ClampedBNNet(nn.Module):
    """XNOR-Net-PyTorch's NIN clamps its BatchNorm weights in forward (``m.weight.data.clamp_(min=0.01)``):
    after one call the weights sit at the fixed point and a second call changes nothing."""

    def __init__(self, keeps_changing=False):
        super().__init__()
        self.keeps_changing = keeps_changing
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16, eps=1e-4)
        self.conv2 = nn.Conv2d(16, 10, 1)

    def forward(self, x):
        for m in self.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and hasattr(m.weight, "data"):
                if self.keeps_changing:
                    m.weight.data.mul_(1.01)               # never settles: stays refused
                else:
                    m.weight.data.clamp_(min=0.01)
        x = F.relu(self.bn1(self.conv1(x)))
        return F.adaptive_avg_pool2d(self.conv2(x), 1).flatten(1)


def clamped_bn_arch(keeps_changing=False):
    torch.manual_seed(24)
    model = ClampedBNNet(keeps_changing)
    with torch.no_grad():  # a trained NIN: some BatchNorm weights below the clamp
        model.bn1.weight.copy_(torch.linspace(-0.5, 1.5, 16))
    return model


# ------------------------------------------------------------ sign-binarized weights with exact zeros

class SignConv2d(nn.Conv2d):
    """BinaryNet-style: torch.sign of the latent weights and of the input (sign(0) = 0 for both)."""

    def forward(self, x):
        return F.conv2d(torch.sign(x), torch.sign(self.weight), self.bias, self.stride, self.padding,
                        self.dilation, self.groups)


class ZeroWeightNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = SignConv2d(16, 24, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(24)
        self.conv3 = SignConv2d(24, 24, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(24)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        out = F.hardtanh(self.bn1(self.conv1(x)))
        out = F.hardtanh(self.bn2(self.conv2(out)))
        out = F.hardtanh(self.bn3(self.conv3(out)))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def zero_weight_arch():
    torch.manual_seed(25)
    model = ZeroWeightNet()
    with torch.no_grad():  # a trained checkpoint: a few latent weights exactly 0
        model.conv2.weight[3, 5, 1, 1] = 0.0
        model.conv2.weight[7, 0, 0, 2] = 0.0
        model.conv3.weight[0, 0, 0, 0] = 0.0
    return model


# ------------------------------------------------------------ standardised activations (RBNN-style)

class StandardisedBinConv2d(nn.Conv2d):
    """Activations standardised per sample before their sign, weights standardised then signed, a learnt
    per-channel scale after the call (as RBNN writes it; its weight rotation is parameter-only too)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha = nn.Parameter(self.weight.detach().abs().mean((1, 2, 3)).view(-1, 1, 1))

    def forward(self, a0):
        w = self.weight
        w2 = (w - w.mean([1, 2, 3], keepdim=True)) / w.std([1, 2, 3], keepdim=True)
        a1 = a0 - a0.mean([1, 2, 3], keepdim=True)
        a2 = a1 / a1.std([1, 2, 3], keepdim=True)
        out = F.conv2d(torch.sign(a2), torch.sign(w2), self.bias, self.stride, self.padding, self.dilation,
                       self.groups)
        return out * self.alpha


def standardised_arch():
    torch.manual_seed(27)
    return StemNet(StandardisedBinConv2d(16, 16, 3, padding=1, bias=False), residual=True)


# ------------------------------------------------------------ an adder layer in another layout

class Adder2DOther(nn.Module):
    """An AdderNet layer written with a 'weight' Parameter instead of adder2d's 'adder'."""

    def __init__(self, cin, cout):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3))

    def forward(self, x):
        cols = F.unfold(x, 3, padding=1)
        out = -(cols.unsqueeze(1) - self.weight.view(1, self.weight.shape[0], -1, 1)).abs().sum(2)
        return out.view(x.shape[0], -1, x.shape[2], x.shape[3])


class OtherAdderNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.adder = Adder2DOther(3, 4)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.adder(x))


def build(name: str, **kwargs) -> nn.Module:
    return _calibrated(globals()[f"{name}_arch"](**kwargs))
