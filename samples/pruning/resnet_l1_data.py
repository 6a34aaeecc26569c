"""CIFAR ResNet (6n+2 layers) as the L1-norm filter-pruning research code writes it: option-A shortcuts.

The down-sampling shortcut is parameter-free: average-pool by 2, then append zero channels built as a
fresh legacy ``torch.Tensor(...)``, moved to CUDA only when the input is a CUDA tensor, concatenated
with ``x.data`` and wrapped in ``Variable`` — research-code idioms ``torch.export`` cannot capture as
they are (``.data`` leaves the traced graph); cmc captures them (see ``cmc.exporter.idioms``).

``cfg`` holds the width of every block's first conv (the only conv L1 pruning shrinks, the second
one is tied to the shortcut); ``None`` is the unpruned network. ``resnet_l1_data`` builds one with
seeded, trained-looking BatchNorm statistics, in eval mode, for tests and ``--arch``.
"""
import math
from functools import partial

import torch
import torch.nn as nn
from torch.autograd import Variable

from .common import randomize_bn


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, cfg, stride=1, downsample=None):
        super(BasicBlock, self).__init__()
        self.conv1 = conv3x3(inplanes, cfg, stride)
        self.bn1 = nn.BatchNorm2d(cfg)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(cfg, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        out = self.relu(out)
        return out


def zero_pad_shortcut(x, planes):
    """Halve the resolution, then pad the channels up to ``planes`` with zeros (no parameters)."""
    x = nn.AvgPool2d(2, 2)(x)
    pad = torch.Tensor(x.size(0), planes - x.size(1), x.size(2), x.size(3)).zero_()
    if isinstance(x.data, torch.cuda.FloatTensor):
        pad = pad.cuda()
    return Variable(torch.cat([x.data, pad], dim=1))


class ResNet(nn.Module):
    def __init__(self, depth, dataset='cifar10', cfg=None):
        super(ResNet, self).__init__()
        assert (depth - 2) % 6 == 0, 'depth should be 6n+2'
        n = (depth - 2) // 6
        if cfg is None:
            cfg = [16] * n + [32] * n + [64] * n
        assert len(cfg) == 3 * n, f'cfg needs one width per block ({3 * n}), got {len(cfg)}'
        self.cfg = cfg
        self.inplanes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(16, n, cfg[0:n])
        self.layer2 = self._make_layer(32, n, cfg[n:2 * n], stride=2)
        self.layer3 = self._make_layer(64, n, cfg[2 * n:3 * n], stride=2)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(64, 100 if dataset == 'cifar100' else 10)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2. / fan))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def _make_layer(self, planes, blocks, cfg, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = partial(zero_pad_shortcut, planes=planes)
        layers = [BasicBlock(self.inplanes, planes, cfg[0], stride, downsample)]
        self.inplanes = planes
        for i in range(1, blocks):
            layers.append(BasicBlock(self.inplanes, planes, cfg[i]))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        return self.fc(x)


def resnet(depth=56, dataset='cifar10', cfg=None):
    """The network as the research code builds it (its own initialisation, train mode)."""
    return ResNet(depth=depth, dataset=dataset, cfg=cfg)


def resnet_l1_data(depth=56, dataset='cifar10', cfg=None, seed=0):
    """Seeded, with trained-looking BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = ResNet(depth=depth, dataset=dataset, cfg=cfg)
    randomize_bn(model, torch.Generator().manual_seed(seed))
    return model.eval()


resnet_l1_data.input_shape = (1, 3, 32, 32)
