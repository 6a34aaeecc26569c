"""VGG-16 for CIFAR with Network Slimming (Liu et al. 2017), written as in the rethinking-network-pruning code.

Slimming trains with an L1 penalty on BatchNorm gammas; pruning then zeroes the channels whose
|gamma| falls under one global threshold. In the masked form kept here the pruned channels have
gamma = beta = 0: their BatchNorm outputs 0 whatever the conv computes.
"""
import math

import torch
import torch.nn as nn

from .common import randomize_bn, slim_bns

defaultcfg = {
    11: [64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512],
    13: [64, 64, 'M', 128, 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512],
    16: [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512],
    19: [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M', 512, 512, 512, 512],
}


class vgg(nn.Module):
    def __init__(self, dataset='cifar10', depth=19, init_weights=True, cfg=None):
        super(vgg, self).__init__()
        if cfg is None:
            cfg = defaultcfg[depth]
        self.cfg = cfg
        self.feature = self.make_layers(cfg, True)
        num_classes = 100 if dataset == 'cifar100' else 10
        self.classifier = nn.Linear(cfg[-1], num_classes)
        if init_weights:
            self._initialize_weights()

    def make_layers(self, cfg, batch_norm=False):
        layers = []
        in_channels = 3
        for v in cfg:
            if v == 'M':
                layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
            else:
                conv2d = nn.Conv2d(in_channels, v, kernel_size=3, padding=1, bias=False)
                if batch_norm:
                    layers += [conv2d, nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                else:
                    layers += [conv2d, nn.ReLU(inplace=True)]
                in_channels = v
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.feature(x)
        x = nn.AvgPool2d(2)(x)
        x = x.view(x.size(0), -1)
        y = self.classifier(x)
        return y

    def _initialize_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2. / n))
                if m.bias is not None:
                    m.bias.data.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(0.5)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear):
                m.weight.data.normal_(0, 0.01)
                m.bias.data.zero_()


def vgg16_slimmed(seed=0, ratio=0.7, width=1.0):
    """VGG-16 (CIFAR-10), 70% of channels slimmed away (gamma = beta = 0), seeded.

    Deeper layers get smaller gammas, as slimming-trained VGGs do, so they lose more channels.
    ``width`` scales every layer (tests use a narrow copy)."""
    torch.manual_seed(seed)
    cfg = [v if v == 'M' else max(4, int(v * width)) for v in defaultcfg[16]]
    model = vgg(depth=16, cfg=cfg)
    g = torch.Generator().manual_seed(seed)
    bns = randomize_bn(model, g, gamma_scale=lambda i, n: 1.0 - 0.8 * i / max(n - 1, 1))
    slim_bns(bns, ratio)
    return model.eval()


vgg16_slimmed.input_shape = (1, 3, 32, 32)
