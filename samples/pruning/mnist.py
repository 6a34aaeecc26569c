"""MNIST MLP and ConvNet with MaskedLinear / MaskedConv2d, as in the weight/filter-pruning research code.

The masks are buffers registered at construction (all ones) so a state_dict round trip restores the
pruned model; forward multiplies the weight by the mask. Pruning here is per output neuron/filter
by L1 norm of the weights (seeded init), to cfg [50, 100, 10] and [8, 16, 32].
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class MaskedLinear(nn.Linear):
    def __init__(self, in_features, out_features, bias=True):
        super(MaskedLinear, self).__init__(in_features, out_features, bias)
        self.register_buffer("mask", torch.ones(out_features, in_features))

    def set_mask(self, mask):
        self.mask.copy_(mask)
        self.weight.data = self.weight.data * self.mask

    def get_mask(self):
        return self.mask.detach()

    def forward(self, x):
        return F.linear(x, self.weight * self.get_mask(), self.bias)


class MaskedConv2d(nn.Conv2d):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True):
        super(MaskedConv2d, self).__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        self.register_buffer("mask", torch.ones_like(self.weight))

    def set_mask(self, mask):
        self.mask.copy_(mask)
        self.weight.data = self.weight.data * self.mask

    def get_mask(self):
        return self.mask.detach()

    def forward(self, x):
        return F.conv2d(x, self.weight * self.get_mask(), self.bias, self.stride, self.padding, self.dilation, self.groups)


class MLP(nn.Module):
    def __init__(self):
        super(MLP, self).__init__()
        self.linear1 = MaskedLinear(28 * 28, 200)
        self.relu1 = nn.ReLU(inplace=True)
        self.linear2 = MaskedLinear(200, 200)
        self.relu2 = nn.ReLU(inplace=True)
        self.linear3 = MaskedLinear(200, 10)

    def forward(self, x):
        out = x.view(x.size(0), -1)
        out = self.relu1(self.linear1(out))
        out = self.relu2(self.linear2(out))
        return self.linear3(out)

    def set_masks(self, masks):
        self.linear1.set_mask(masks[0])
        self.linear2.set_mask(masks[1])
        self.linear3.set_mask(masks[2])


class ConvNet(nn.Module):
    def __init__(self):
        super(ConvNet, self).__init__()
        self.conv1 = MaskedConv2d(1, 32, kernel_size=3, padding=1, stride=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.maxpool1 = nn.MaxPool2d(2)
        self.conv2 = MaskedConv2d(32, 64, kernel_size=3, padding=1, stride=1)
        self.relu2 = nn.ReLU(inplace=True)
        self.maxpool2 = nn.MaxPool2d(2)
        self.conv3 = MaskedConv2d(64, 64, kernel_size=3, padding=1, stride=1)
        self.relu3 = nn.ReLU(inplace=True)
        self.linear1 = nn.Linear(7 * 7 * 64, 10)

    def forward(self, x):
        out = self.maxpool1(self.relu1(self.conv1(x)))
        out = self.maxpool2(self.relu2(self.conv2(out)))
        out = self.relu3(self.conv3(out))
        out = out.view(out.size(0), -1)
        return self.linear1(out)

    def set_masks(self, masks):
        self.conv1.set_mask(masks[0])
        self.conv2.set_mask(masks[1])
        self.conv3.set_mask(masks[2])


def neuron_masks(layers, cfg):
    """Keep the cfg[i] output neurons/filters of largest L1 norm in each layer (the research code's rule)."""
    masks = []
    for layer, keep in zip(layers, cfg):
        w = layer.weight.detach()
        norms = w.abs().flatten(1).sum(1)
        idx = torch.argsort(norms, descending=True)[:keep]
        m = torch.zeros_like(w)
        m[idx] = 1.0
        masks.append(m)
    return masks


def mlp_pruned(seed=0, cfg=(50, 100, 10)):
    """MLP 784-200-200-10, neurons pruned to cfg by masks (biases of pruned neurons stay, as in the
    research code: those neurons output the constant relu(b), which cmc folds into the next layer)."""
    torch.manual_seed(seed)
    model = MLP()
    model.set_masks(neuron_masks([model.linear1, model.linear2, model.linear3], cfg))
    return model.eval()


def convnet_pruned(seed=0, cfg=(8, 16, 32), zero_bias=True):
    """ConvNet [32, 64, 64] with filters pruned to cfg by masks. ``zero_bias`` also zeroes the pruned
    filters' biases (a dead filter); False leaves them (a constant channel relu(b))."""
    torch.manual_seed(seed)
    model = ConvNet()
    layers = [model.conv1, model.conv2, model.conv3]
    masks = neuron_masks(layers, cfg)
    model.set_masks(masks)
    if zero_bias:
        with torch.no_grad():
            for layer, m in zip(layers, masks):
                layer.bias.mul_(m.flatten(1).amax(1))
    return model.eval()


mlp_pruned.input_shape = (1, 1, 28, 28)
convnet_pruned.input_shape = (1, 1, 28, 28)
