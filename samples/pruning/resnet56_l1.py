"""ResNet-56 for CIFAR with L1-norm filter pruning (Li et al., "Pruning Filters for Efficient ConvNets").

Only the first conv of each residual block is pruned (the second conv's outputs are tied to the
shortcut). In the masked form kept here the pruned filters and their BatchNorm channels are zeroed
(conv weights, gamma and beta), which is what removing them computes. ``zero_bn=False`` zeroes only
the filters: the BatchNorm then outputs a constant beta - gamma * mean / std that cmc must not drop
through the following padded 3x3 conv.
"""
import math

import torch
import torch.nn as nn

from .common import randomize_bn


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, cfg, planes, stride=1, downsample=None):
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
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        out = self.relu(out)
        return out


class ResNet(nn.Module):
    def __init__(self, depth, dataset='cifar10', cfg=None):
        super(ResNet, self).__init__()
        assert (depth - 2) % 6 == 0, 'depth should be 6n+2'
        n = (depth - 2) // 6
        block = BasicBlock
        if cfg is None:
            cfg = [[16] * n, [32] * n, [64] * n]
            cfg = [item for sub_list in cfg for item in sub_list]
        self.cfg = cfg
        self.inplanes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 16, n, cfg=cfg[0:n])
        self.layer2 = self._make_layer(block, 32, n, cfg=cfg[n:2 * n], stride=2)
        self.layer3 = self._make_layer(block, 64, n, cfg=cfg[2 * n:3 * n], stride=2)
        self.avgpool = nn.AvgPool2d(8)
        num_classes = 100 if dataset == 'cifar100' else 10
        self.fc = nn.Linear(64 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n_ = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2. / n_))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def _make_layer(self, block, planes, blocks, cfg, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, cfg[0], planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for i in range(1, blocks):
            layers.append(block(self.inplanes, cfg[i], planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        x = self.fc(x)
        return x


def l1_prune_first_convs(model, ratios=(0.5, 0.5, 0.5), zero_bn=True):
    """Zero the filters of smallest L1 norm in each block's conv1 (ratio per stage)."""
    stages = [model.layer1, model.layer2, model.layer3]
    for stage, ratio in zip(stages, ratios):
        for block in stage:
            w = block.conv1.weight.detach()
            n_prune = int(w.shape[0] * ratio)
            if n_prune == 0:
                continue
            l1 = w.abs().flatten(1).sum(1)
            idx = torch.argsort(l1)[:n_prune]
            with torch.no_grad():
                block.conv1.weight[idx] = 0
                if zero_bn:
                    block.bn1.weight[idx] = 0
                    block.bn1.bias[idx] = 0
    return model


def resnet56_l1(seed=0, depth=56, ratios=(0.5, 0.5, 0.5), zero_bn=True):
    """ResNet-56 (CIFAR-10), half the filters of every block's first conv pruned by L1 norm, seeded."""
    torch.manual_seed(seed)
    model = ResNet(depth)
    randomize_bn(model, torch.Generator().manual_seed(seed))
    l1_prune_first_convs(model, ratios, zero_bn)
    return model.eval()


resnet56_l1.input_shape = (1, 3, 32, 32)
