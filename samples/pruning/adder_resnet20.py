"""A pruned AdderNet ResNet-20 for CIFAR using cmc's AdderConv2d.

An adder filter of zeros is not dead: it outputs -sum |x|. Channels are pruned the way the BN-based
methods do it: the BatchNorm after the block's first AdderConv gets gamma = beta = 0, so the second
AdderConv reads an all-zero input channel, which contributes exactly the constant -sum |w| (padded
taps included); cmc folds that into the AdderConv's shift and removes the channel.
"""
import torch
import torch.nn as nn

from cmc.plugins.adder_conv import AdderConv2d

from .common import randomize_bn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super(BasicBlock, self).__init__()
        self.conv1 = AdderConv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = AdderConv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=10):
        super(ResNet, self).__init__()
        self.inplanes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 16, layers[0])
        self.layer2 = self._make_layer(block, 32, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 64, layers[2], stride=2)
        self.avgpool = nn.AvgPool2d(8, stride=1)
        self.fc = nn.Conv2d(64 * block.expansion, num_classes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                AdderConv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.avgpool(x)
        x = self.bn2(self.fc(x))
        return x.view(x.size(0), -1)


def _adder_bn_stats(model, x):
    """Running stats that match what each AdderConv outputs (AdderNet activations are large and
    negative; a BN with default stats would saturate everything): one cumulative pass in train mode."""
    model.train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        model(x)
    model.eval()


def adder_resnet20_pruned(seed=0, ratio=0.5):
    """AdderNet ResNet-20: half the channels of every block's first AdderConv pruned via bn1 gamma = beta = 0."""
    torch.manual_seed(seed)
    model = ResNet(BasicBlock, [3, 3, 3])
    g = torch.Generator().manual_seed(seed)
    randomize_bn(model, g)
    _adder_bn_stats(model, torch.randn(16, 3, 32, 32, generator=g))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    for stage in (model.layer1, model.layer2, model.layer3):
        for block in stage:
            c = block.bn1.num_features
            idx = torch.argsort(block.bn1.weight.detach().abs())[: int(c * ratio)]
            with torch.no_grad():
                block.bn1.weight[idx] = 0
                block.bn1.bias[idx] = 0
                block.conv1.weight[idx] = 0
    return model.eval()


adder_resnet20_pruned.input_shape = (1, 3, 32, 32)
