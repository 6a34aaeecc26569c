"""XNOR-Net-PyTorch style models (the user's own code): a legacy autograd Function ``BinActive``
(non-static forward, instantiated per call) in front of a float conv, as its NIN for CIFAR writes it."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class BinActive(torch.autograd.Function):
    """Binarize the input with sign(); also return the mean |input| over channels (legacy style)."""

    def forward(self, input):
        self.save_for_backward(input)
        mean = torch.mean(input.abs(), 1, keepdim=True)
        input = input.sign()
        return input, mean

    def backward(self, grad_output, grad_output_mean):
        input, = self.saved_tensors
        grad_input = grad_output.clone()
        grad_input[input.ge(1)] = 0
        grad_input[input.le(-1)] = 0
        return grad_input


class BinConv2d(nn.Module):
    def __init__(self, input_channels, output_channels, kernel_size=-1, stride=-1, padding=-1, dropout=0):
        super(BinConv2d, self).__init__()
        self.bn = nn.BatchNorm2d(input_channels, eps=1e-4, momentum=0.1, affine=True)
        self.bn.weight.data = self.bn.weight.data.zero_().add(1.0)
        self.dropout_ratio = dropout
        if dropout != 0:
            self.dropout = nn.Dropout(dropout)
        self.conv = nn.Conv2d(input_channels, output_channels, kernel_size=kernel_size, stride=stride, padding=padding)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.bn(x)
        x, mean = BinActive()(x)
        if self.dropout_ratio != 0:
            x = self.dropout(x)
        x = self.conv(x)
        x = self.relu(x)
        return x


class TinyXnorNet(nn.Module):
    def __init__(self):
        super(TinyXnorNet, self).__init__()
        self.xnor = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1),
            nn.BatchNorm2d(16, eps=1e-4, momentum=0.1, affine=False),
            nn.ReLU(inplace=True),
            BinConv2d(16, 24, kernel_size=3, stride=1, padding=1),
            nn.MaxPool2d(kernel_size=2, stride=2),
            BinConv2d(24, 10, kernel_size=1, stride=1, padding=0),
            nn.AvgPool2d(kernel_size=4, stride=1, padding=0),
        )

    def forward(self, x):
        x = self.xnor(x)
        return x.view(x.size(0), 10, -1).mean(2)


def tiny_xnor():
    torch.manual_seed(0)
    model = TinyXnorNet()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # trained-looking statistics
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            c = bn.num_features
            bn.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
            bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            if bn.affine:
                bn.weight.copy_(torch.rand(c, generator=g) + 0.5)
                bn.bias.copy_(torch.randn(c, generator=g) * 0.1)
    return model.eval()


def reference_forward(model: TinyXnorNet, x):
    """The same network written without the legacy Function (for checking what it computes)."""
    for m in model.xnor:
        if isinstance(m, BinConv2d):
            x = F.relu(m.conv(torch.sign(m.bn(x))))
        else:
            x = m(x)
    return x.view(x.size(0), 10, -1).mean(2)
