"""DenseNet (CIFAR, basic blocks) with Network Slimming's channel_selection, written the way the
rethinking-network-pruning code writes it (models/densenet.py): every BatchNorm reads a concatenation
that later layers also read, so it is never narrowed; a ``channel_selection`` after it picks the
channels its convolution reads, and ``cfg`` holds those counts (3n + 3 of them).

``densenet(depth=40, cfg=None)`` builds it; ``densenet_slimmed()`` gives a seeded slimmed model.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import randomize_bn
from .preresnet_cs import channel_selection


class BasicBlock(nn.Module):
    def __init__(self, inplanes, cfg, expansion=1, growthRate=12, dropRate=0):
        super(BasicBlock, self).__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.select = channel_selection(inplanes)
        self.conv1 = nn.Conv2d(cfg, growthRate, kernel_size=3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.dropRate = dropRate

    def forward(self, x):
        out = self.relu(self.select(self.bn1(x)))
        out = self.conv1(out)
        if self.dropRate > 0:
            out = F.dropout(out, p=self.dropRate, training=self.training)
        return torch.cat((x, out), 1)


class Transition(nn.Module):
    def __init__(self, inplanes, outplanes, cfg):
        super(Transition, self).__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.select = channel_selection(inplanes)
        self.conv1 = nn.Conv2d(cfg, outplanes, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.conv1(self.relu(self.select(self.bn1(x))))
        return F.avg_pool2d(out, 2)


class densenet(nn.Module):
    def __init__(self, depth=40, dropRate=0, dataset='cifar10', growthRate=12, compressionRate=1, cfg=None):
        super(densenet, self).__init__()
        assert (depth - 4) % 3 == 0, 'depth should be 3n+4'
        n = (depth - 4) // 3
        self.growthRate = growthRate
        self.dropRate = dropRate
        if cfg is None:   # every selection keeps all channels: the width of the concatenation it reads
            cfg, width = [], growthRate * 2
            for _ in range(3):
                cfg += [width + growthRate * i for i in range(n + 1)]
                width += growthRate * n
            # (compressionRate 1: a transition keeps its width)
        assert len(cfg) == 3 * n + 3, 'cfg should hold 3n+3 entries'
        self.inplanes = growthRate * 2
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, padding=1, bias=False)
        self.dense1 = self._make_denseblock(n, cfg[0:n])
        self.trans1 = self._make_transition(compressionRate, cfg[n])
        self.dense2 = self._make_denseblock(n, cfg[n + 1:2 * n + 1])
        self.trans2 = self._make_transition(compressionRate, cfg[2 * n + 1])
        self.dense3 = self._make_denseblock(n, cfg[2 * n + 2:3 * n + 2])
        self.bn = nn.BatchNorm2d(self.inplanes)
        self.select = channel_selection(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(cfg[-1], 100 if dataset == 'cifar100' else 10)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2. / fan))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(0.5)
                m.bias.data.zero_()

    def _make_denseblock(self, blocks, cfg):
        layers = []
        for i in range(blocks):
            layers.append(BasicBlock(self.inplanes, cfg=cfg[i], growthRate=self.growthRate, dropRate=self.dropRate))
            self.inplanes += self.growthRate
        return nn.Sequential(*layers)

    def _make_transition(self, compressionRate, cfg):
        inplanes = self.inplanes
        outplanes = int(math.floor(self.inplanes // compressionRate))
        self.inplanes = outplanes
        return Transition(inplanes, outplanes, cfg)

    def forward(self, x):
        x = self.conv1(x)
        x = self.trans1(self.dense1(x))
        x = self.trans2(self.dense2(x))
        x = self.dense3(x)
        x = self.relu(self.select(self.bn(x)))
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        return self.fc(x)


def densenet_slimmed(seed=0, depth=40, percent=40):
    """DenseNet (CIFAR-10) with trained-looking BatchNorms, ``percent`` % of BN channels slimmed
    (γ = β = 0 by one global threshold), seeded; every channel_selection still selects everything."""
    from .repo_prune import sparsity_trained, slim_masks, apply_bn_masks

    torch.manual_seed(seed)
    model = densenet(depth=depth)
    randomize_bn(model, torch.Generator().manual_seed(seed))
    sparsity_trained(model, seed=seed)
    apply_bn_masks(model, slim_masks(model, percent))
    return model.eval()


densenet_slimmed.input_shape = (1, 3, 32, 32)
