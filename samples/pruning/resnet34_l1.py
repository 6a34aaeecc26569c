"""ImageNet ResNet-34 with L1-norm filter pruning, written the way the rethinking-network-pruning code
writes it (imagenet/l1-norm-pruning/resnet.py): ``resnet34(pretrained=False, **kwargs)`` forwards
``cfg`` — the width of every BasicBlock's first conv, 16 numbers — to ``ResNet``; the prune script
wraps the models in ``nn.DataParallel`` and saves ``{'cfg': cfg, 'state_dict': ...}`` with
``module.`` prefixes.

One deliberate difference: the pooling before the classifier is adaptive (as in torchvision), so the
tests can run the real channel structure at 64x64 instead of 224x224 on a small CPU.
"""
import math

import torch
import torch.nn as nn


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, cfg, stride=1, downsample=None):
        super(BasicBlock, self).__init__()
        self.conv1 = conv3x3(inplanes, cfg, stride)      # cfg: this block's (prunable) inner width
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
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, block, layers, cfg=None, num_classes=1000):
        self.inplanes = 64
        super(ResNet, self).__init__()
        if cfg is None:
            cfg = [w for w, n in zip((64, 128, 256, 512), layers) for _ in range(n)]
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        start = 0
        stages = []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            stages.append(self._make_layer(block, planes, n, cfg[start:start + n], stride=1 if i == 0 else 2))
            start += n
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2. / fan))
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
        layers = [block(self.inplanes, planes, cfg[0], stride, downsample)]
        self.inplanes = planes * block.expansion
        for i in range(1, blocks):
            layers.append(block(self.inplanes, planes, cfg[i]))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        return self.fc(x)


def resnet34(pretrained=False, **kwargs):
    """ResNet-34; ``cfg`` (via kwargs) sets the 16 inner block widths. No weights are downloaded here."""
    if pretrained:
        raise ValueError("this sample has no pretrained weights")
    return ResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


def resnet34_l1_pruned(seed=0, version="A"):
    """ResNet-34 with trained-looking BatchNorms, the first conv of the blocks the repository's version
    A prunes (30 % in stages 1-3) zeroed by L1 norm together with their bn1 channels, seeded."""
    from .common import randomize_bn
    from .repo_prune import l1_block_masks, apply_l1_masks

    torch.manual_seed(seed)
    model = resnet34()
    randomize_bn(model, torch.Generator().manual_seed(seed))
    apply_l1_masks(model, l1_block_masks(model, RESNET34_PRUNE[version]))
    return model.eval()


#: per block (layer1.0 ... layer4.2): the fraction of conv1 filters pruned, as the repository's prune.py
#: versions A and B choose them (the first block of every stage, the last blocks of stages 2 and 3 and
#: all of stage 4 are left alone); it keeps int(filters * (1 - fraction)) of them.
RESNET34_PRUNE = {
    "A": [0, .3, .3] + [0, .3, .3, 0] + [0, .3, .3, .3, .3, 0] + [0, 0, 0],
    "B": [0, .5, .5] + [0, .6, .6, 0] + [0, .4, .4, .4, .4, 0] + [0, 0, 0],
}

resnet34_l1_pruned.input_shape = (1, 3, 64, 64)
