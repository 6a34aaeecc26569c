"""BNN ResNet-18 for ImageNet shapes, in the style of the BNN research code (XNOR-Net-like, A=2, W=2).

Binary 3x3 convolutions (``Conv2d_Q`` of samples/bnn_nin.py: torch.sign activations with a
saturating STE, alpha * sign(W) weights) in every basic block; the stem (7x7/2 conv, BatchNorm, ReLU,
max-pool), the downsampling shortcuts (1x1/2 conv + BatchNorm) and the classifier stay float, as BNN
papers keep them. Each block: BN(conv1(x)) -> BN(conv2(.)) + shortcut(x); the next block's binary
convolution takes the sign of the sum, so no ReLU sits between blocks.
"""
import torch.nn as nn

from samples.bnn_nin import Conv2d_Q


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, A=2, W=2):
        super().__init__()
        self.conv1 = Conv2d_Q(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False, A=A, W=W)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = Conv2d_Q(planes, planes, kernel_size=3, stride=1, padding=1, bias=False, A=A, W=W)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn1(self.conv1(x))
        out = self.bn2(self.conv2(out))
        return out + identity


class ResNet(nn.Module):
    def __init__(self, layers=(2, 2, 2, 2), num_classes=1000, A=2, W=2):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0], 1, A, W)
        self.layer2 = self._make_layer(128, layers[1], 2, A, W)
        self.layer3 = self._make_layer(256, layers[2], 2, A, W)
        self.layer4 = self._make_layer(512, layers[3], 2, A, W)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)

    def _make_layer(self, planes, blocks, stride, A, W):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample, A, W)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes, A=A, W=W) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet18(num_classes=1000):
    return ResNet((2, 2, 2, 2), num_classes)
