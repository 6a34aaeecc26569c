"""Binary layers written the way the public BNN codebases write them (our own code, same idioms).

* micronet, Dec 2020: ``samples.bnn_nin`` (Conv2d_Q whose centring is a no-op: ``w.data.sub(mean)``).
* micronet, Mar 2020: Conv2d_Q whose weight centring takes effect (``torch.sub(w, mean)`` used, or
  ``w.data.sub_`` in place on the parameter).
* micronet today: ``prepare(model, A=2, W=2)`` swaps every conv but the first for ``QuantConv2d``
  (in-place ``w.data.sub_`` / ``clamp_`` in its weight quantizer) and every ReLU after the first conv
  for an ``ActivationQuantizer`` sibling module (sign).
* BinaryNet.pytorch: ``BinarizeConv2d`` / ``BinarizeLinear`` (sign(W), no alpha; ``weight.org``
  bookkeeping; ``input.data = Binarize(input.data)`` unless the input is the image; bias added after
  the call).
* Bi-Real Net / ReActNet: ``HardBinaryConv`` (not an nn.Conv2d: a flat ``weights`` parameter, scale
  mean|W| through detach arithmetic) fed by a ``BinaryActivation`` module (a polynomial STE).
* IR-Net: ``IRConv2d`` (standardised weights, power-of-two scale 2^round(log2 mean|W|)).
* Look-alikes that are not binary: a ternary quantizer.
XNOR-Net (a legacy ``BinActive`` Function before a plain conv) lives in ``xnor_models.py``.
``<name>_arch()`` builds each (the ``--arch`` callable); ``build(name)`` adds calibrated BatchNorm statistics.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd import Function

from samples import bnn_nin
from samples.make_checkpoints import calibrate


def _calibrated(model, shape=(3, 16, 16)):
    model = calibrate(model, shape=shape)
    for m in model.modules():  # BatchNorm1d too (calibrate() handles 2-D norms)
        if isinstance(m, nn.BatchNorm1d):
            m.momentum = 0.1
    return model.eval()


# ------------------------------------------------------------ micronet, Mar 2020 (centring takes effect)

class CentredWeightBin(nn.Module):
    """W=2: alpha * sign(W - mean_c(W)), alpha = mean |W - mean_c(W)| per output channel."""

    def __init__(self, W=2, inplace=False):
        super().__init__()
        self.W, self.inplace = W, inplace

    def forward(self, w):
        if self.W != 2:
            return w
        mean = w.data.mean(1, keepdim=True)
        if self.inplace:  # the parameter itself is centred and clamped, on every call
            w.data.sub_(mean)
            w.data.clamp_(-1.0, 1.0)
            out = w
        else:
            out = torch.sub(w, mean)
            out = torch.clamp(out, -1.0, 1.0)
        alpha = torch.mean(torch.abs(out), (3, 2, 1), keepdim=True)
        return bnn_nin.Binary_w.apply(out) * alpha


class CentredConv2d_Q(nn.Conv2d):
    def __init__(self, *args, A=2, W=2, inplace=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.activation_quantizer = bnn_nin.activation_bin(A=A)
        self.weight_quantizer = CentredWeightBin(W=W, inplace=inplace)

    def forward(self, input):
        return F.conv2d(self.activation_quantizer(input), self.weight_quantizer(self.weight), self.bias,
                        self.stride, self.padding, self.dilation, self.groups)


class SmallNin(nn.Module):
    """NIN-shaped: float first conv, binary convs (odd widths), BatchNorm after each, pooled output."""

    def __init__(self, layer):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 24, 5, padding=2), nn.BatchNorm2d(24),
            layer(24, 40, 1), nn.BatchNorm2d(40),
            layer(40, 37, 3, padding=1), nn.BatchNorm2d(37),
            nn.MaxPool2d(2),
            layer(37, 48, 3, padding=1, groups=1), nn.BatchNorm2d(48), nn.ReLU(inplace=True),
            nn.Conv2d(48, 10, 1), nn.AvgPool2d(8))

    def forward(self, x):
        return self.features(x).flatten(1)


def micronet_mar2020_arch(inplace=False):
    torch.manual_seed(1)
    return SmallNin(lambda *a, **k: CentredConv2d_Q(*a, inplace=inplace, **k))


def micronet_mar2020_inplace_arch():
    return micronet_mar2020_arch(inplace=True)


def micronet_dec2020_arch():
    torch.manual_seed(2)
    return SmallNin(bnn_nin.Conv2d_Q)


# ------------------------------------------------------------ micronet today (prepare(A=2, W=2))

class BinaryActivationFn(Function):
    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return torch.sign(input)

    @staticmethod
    def backward(ctx, grad_output):
        input, = ctx.saved_tensors
        g = grad_output.clone()
        g[input.ge(1) | input.le(-1)] = 0
        return g


class ActivationQuantizer(nn.Module):
    def __init__(self, A=2):
        super().__init__()
        self.A = A
        self.relu = nn.ReLU(inplace=True)

    def forward(self, input):
        return BinaryActivationFn.apply(input) if self.A == 2 else self.relu(input)


class WeightQuantizer(nn.Module):
    def __init__(self, W=2):
        super().__init__()
        self.W = W

    def forward(self, input):
        if self.W != 2:
            return input
        mean = input.data.mean(1, keepdim=True)
        input.data.sub_(mean)       # in place, on the parameter, in every forward
        input.data.clamp_(-1.0, 1.0)
        alpha = torch.mean(torch.abs(input), (3, 2, 1), keepdim=True)
        return bnn_nin.Binary_w.apply(input) * alpha


class QuantConv2d(nn.Conv2d):
    def __init__(self, *args, W=2, quant_inference=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.quant_inference = quant_inference
        self.weight_quantizer = WeightQuantizer(W=W)

    def forward(self, input):
        w = self.weight if self.quant_inference else self.weight_quantizer(self.weight)
        return F.conv2d(input, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def _swap(module, counter, A, W):
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            counter[0] += 1
            if counter[0] > 1:  # the first conv stays float
                q = QuantConv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                                child.padding, child.dilation, child.groups, child.bias is not None, W=W)
                q.weight.data = child.weight.data
                if child.bias is not None:
                    q.bias.data = child.bias.data
                module._modules[name] = q
        elif isinstance(child, nn.ReLU):
            if counter[0] > 0:
                module._modules[name] = ActivationQuantizer(A=A)
        else:
            _swap(child, counter, A, W)


def prepare(model, A=2, W=2):
    _swap(model, [0], A, W)
    return model


class FloatNin(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(3, 24, 5, padding=2), nn.BatchNorm2d(24), nn.ReLU(inplace=True),
            nn.Conv2d(24, 40, 1), nn.BatchNorm2d(40), nn.ReLU(inplace=True),
            nn.Conv2d(40, 33, 3, padding=1), nn.BatchNorm2d(33), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(33, 48, 3, padding=1), nn.BatchNorm2d(48), nn.ReLU(inplace=True),
            nn.Conv2d(48, 10, 1), nn.BatchNorm2d(10), nn.ReLU(inplace=True),
            nn.AvgPool2d(8))

    def forward(self, x):
        return self.model(x).flatten(1)


def micronet_today_arch():
    torch.manual_seed(3)
    return prepare(FloatNin(), A=2, W=2)


# ------------------------------------------------------------ BinaryNet.pytorch

def Binarize(tensor, quant_mode="det"):
    if quant_mode == "det":
        return tensor.sign()
    return tensor.add_(1).div_(2).add_(torch.rand(tensor.size()).add(-0.5)).clamp_(0, 1).round().mul_(2).add_(-1)


class BinarizeLinear(nn.Linear):
    def forward(self, input):
        if input.size(1) != 784:
            input.data = Binarize(input.data)
        if not hasattr(self.weight, "org"):
            self.weight.org = self.weight.data.clone()
        self.weight.data = Binarize(self.weight.org)
        out = F.linear(input, self.weight)
        if self.bias is not None:
            self.bias.org = self.bias.data.clone()
            out += self.bias.view(1, -1).expand_as(out)
        return out


class BinarizeConv2d(nn.Conv2d):
    def forward(self, input):
        if input.size(1) != 3:
            input.data = Binarize(input.data)
        if not hasattr(self.weight, "org"):
            self.weight.org = self.weight.data.clone()
        self.weight.data = Binarize(self.weight.org)
        out = F.conv2d(input, self.weight, None, self.stride, self.padding, self.dilation, self.groups)
        if self.bias is not None:
            self.bias.org = self.bias.data.clone()
            out += self.bias.view(1, -1, 1, 1).expand_as(out)
        return out


class BinaryNetVgg(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            BinarizeConv2d(3, 16, kernel_size=3, padding=1, bias=True), nn.BatchNorm2d(16), nn.Hardtanh(inplace=True),
            BinarizeConv2d(16, 24, kernel_size=3, padding=1, bias=True), nn.MaxPool2d(2, 2), nn.BatchNorm2d(24),
            nn.Hardtanh(inplace=True),
            BinarizeConv2d(24, 35, kernel_size=3, padding=1, bias=True), nn.MaxPool2d(2, 2), nn.BatchNorm2d(35),
            nn.Hardtanh(inplace=True))
        self.classifier = nn.Sequential(
            BinarizeLinear(35 * 4 * 4, 64, bias=True), nn.BatchNorm1d(64), nn.Hardtanh(inplace=True),
            BinarizeLinear(64, num_classes, bias=True), nn.BatchNorm1d(num_classes, affine=False),
            nn.LogSoftmax(dim=1))

    def forward(self, x):
        x = self.features(x)
        x = x.view(-1, 35 * 4 * 4)
        return self.classifier(x)


def binarynet_vgg_arch():
    torch.manual_seed(4)
    return BinaryNetVgg()


class BinaryNetMlp(nn.Module):
    """The MNIST MLP: the first BinarizeLinear sees the float image (784 inputs)."""

    def __init__(self):
        super().__init__()
        self.fc1 = BinarizeLinear(784, 96)
        self.bn1 = nn.BatchNorm1d(96)
        self.htanh1 = nn.Hardtanh()
        self.fc2 = BinarizeLinear(96, 72)
        self.bn2 = nn.BatchNorm1d(72)
        self.htanh2 = nn.Hardtanh()
        self.fc3 = nn.Linear(72, 10)

    def forward(self, x):
        x = x.view(-1, 28 * 28)
        x = self.htanh1(self.bn1(self.fc1(x)))
        x = self.htanh2(self.bn2(self.fc2(x)))
        return self.fc3(x)


def binarynet_mlp_arch():
    torch.manual_seed(5)
    return BinaryNetMlp()


# ------------------------------------------------------------ Bi-Real Net / ReActNet

class BiRealActivation(nn.Module):
    """sign(x) forward, a piecewise-polynomial approximation of it for the gradient."""

    def forward(self, x):
        out_forward = torch.sign(x)
        m1, m2, m3 = (x < -1).float(), (x < 0).float(), (x < 1).float()
        out1 = (-1) * m1 + (x * x + 2 * x) * (1 - m1)
        out2 = out1 * m2 + (-x * x + 2 * x) * (1 - m2)
        out3 = out2 * m3 + 1 * (1 - m3)
        return out_forward.detach() - out3.detach() + out3


class HardBinaryConv(nn.Module):
    """Not an nn.Conv2d: a flat weight [n, 1], scale = mean |W| per output channel."""

    def __init__(self, in_chn, out_chn, kernel_size=3, stride=1, padding=1):
        super().__init__()
        self.stride, self.padding = stride, padding
        self.number_of_weights = in_chn * out_chn * kernel_size * kernel_size
        self.shape = (out_chn, in_chn, kernel_size, kernel_size)
        self.weights = nn.Parameter(torch.rand((self.number_of_weights, 1)) * 0.001 - 0.0005)

    def forward(self, x):
        real_weights = self.weights.view(self.shape)
        scaling_factor = torch.mean(torch.mean(torch.mean(abs(real_weights), dim=3, keepdim=True), dim=2,
                                               keepdim=True), dim=1, keepdim=True).detach()
        binary_weights_no_grad = scaling_factor * torch.sign(real_weights)
        cliped_weights = torch.clamp(real_weights, -1.0, 1.0)
        binary_weights = binary_weights_no_grad.detach() - cliped_weights.detach() + cliped_weights
        return F.conv2d(x, binary_weights, stride=self.stride, padding=self.padding)


class BiRealBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.binary_activation = BiRealActivation()
        self.binary_conv = HardBinaryConv(inplanes, planes, stride=stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.AvgPool2d(kernel_size=2, stride=stride),
                                            nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        residual = x
        out = self.binary_activation(x)
        out = self.binary_conv(out)
        out = self.bn1(out)
        if self.downsample is not None:
            residual = self.downsample(x)
        return out + residual


class BiRealNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layers = nn.Sequential(BiRealBlock(16, 16), BiRealBlock(16, 40, stride=2), BiRealBlock(40, 40))
        self.fc = nn.Linear(40, 10)

    def forward(self, x):
        x = self.layers(self.bn1(self.conv1(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def bireal_arch():
    torch.manual_seed(6)
    return BiRealNet()


# ------------------------------------------------------------ IR-Net (power-of-two scales)

class BinaryQuantize(Function):
    @staticmethod
    def forward(ctx, input, k, t):
        ctx.save_for_backward(input, k, t)
        return torch.sign(input)

    @staticmethod
    def backward(ctx, grad_output):
        input, k, t = ctx.saved_tensors
        return k * t * (1 - torch.pow(torch.tanh(input * t), 2)) * grad_output, None, None


class IRConv2d(nn.Conv2d):
    def __init__(self, *args, on_cuda=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.k = torch.tensor([10]).float()
        self.t = torch.tensor([0.1]).float()
        self.on_cuda = on_cuda  # the repository calls .cuda() unconditionally

    def forward(self, input):
        w = self.weight
        bw = w - w.view(w.size(0), -1).mean(-1).view(w.size(0), 1, 1, 1)
        bw = bw / bw.view(bw.size(0), -1).std(-1).view(bw.size(0), 1, 1, 1)
        two = torch.tensor([2] * bw.size(0))
        if self.on_cuda:
            two = two.cuda()
        sw = torch.pow(two.float(), (torch.log(bw.abs().view(bw.size(0), -1).mean(-1)) / math.log(2)).round().float())
        sw = sw.view(bw.size(0), 1, 1, 1).detach()
        bw = BinaryQuantize().apply(bw, self.k, self.t)
        ba = BinaryQuantize().apply(input, self.k, self.t)
        return F.conv2d(ba, bw * sw, self.bias, self.stride, self.padding, self.dilation, self.groups)


class IRBlock(nn.Module):
    def __init__(self, planes):
        super().__init__()
        self.conv1 = IRConv2d(planes, planes, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = IRConv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)

    def forward(self, x):
        out = F.hardtanh(self.bn1(self.conv1(x)) + x)
        return F.hardtanh(self.bn2(self.conv2(out)) + out)


class IRNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.block = IRBlock(24)
        self.linear = nn.Linear(24, 10)

    def forward(self, x):
        out = self.block(F.hardtanh(self.bn1(self.conv1(x))))
        return self.linear(F.avg_pool2d(out, out.size()[3]).view(out.size(0), -1))


def irnet_arch():
    torch.manual_seed(7)
    return IRNet()


# ------------------------------------------------------------ look-alikes that are not binary

class TernaryConv2d(nn.Conv2d):
    """Ternary weights: alpha * {-1, 0, +1} with threshold 0.7 * mean |W| per output channel; sign inputs."""

    def forward(self, input):
        w = self.weight
        e = torch.mean(torch.abs(w), (3, 2, 1), keepdim=True)
        t = 0.7 * e
        q = torch.sign(torch.add(torch.sign(torch.add(w, t)), torch.sign(torch.add(w, -t))))
        alpha = (w.abs() * q.abs()).sum((3, 2, 1), keepdim=True) / q.abs().sum((3, 2, 1), keepdim=True)
        return F.conv2d(torch.sign(input), q * alpha, self.bias, self.stride, self.padding)


def ternary_nin_arch():
    torch.manual_seed(8)
    return SmallNin(TernaryConv2d)


class ReluFedNin(nn.Module):
    """Conv2d_Q (A=2, torch.sign inside) right after a ReLU: half its inputs are exactly 0, where
    torch.sign gives 0, not +-1."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(24)
        self.relu = nn.ReLU(inplace=True)
        self.q1 = bnn_nin.Conv2d_Q(24, 33, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(33)
        self.q2 = bnn_nin.Conv2d_Q(33, 16, 1)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        return self.q2(self.bn2(self.q1(x))).mean((2, 3))


def relu_fed_arch():
    torch.manual_seed(9)
    return ReluFedNin()


# ------------------------------------------------------------ explicit power-of-two scale, flat weight

class ScaledBinaryConv(nn.Module):
    """Not an nn.Conv2d: a flat weight, sign(W) (no alpha) and a learned per-channel power-of-two
    scale 2^round(s) multiplied onto the conv's output, plus a bias after it."""

    def __init__(self, in_chn, out_chn, kernel_size=3, stride=1, padding=1):
        super().__init__()
        self.shape = (out_chn, in_chn, kernel_size, kernel_size)
        self.stride, self.padding = stride, padding
        self.weight = nn.Parameter(torch.randn(out_chn * in_chn * kernel_size * kernel_size) * 0.05)
        self.log2_scale = nn.Parameter(torch.randn(out_chn) * 2)
        self.bias = nn.Parameter(torch.randn(out_chn) * 0.1)

    def forward(self, x):
        w = torch.sign(self.weight).view(self.shape)
        y = F.conv2d(torch.sign(x), w, None, self.stride, self.padding)
        scale = torch.pow(2.0, torch.round(self.log2_scale)).view(1, -1, 1, 1)
        return y * scale + self.bias.view(1, -1, 1, 1)


class ScaledNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.b1 = ScaledBinaryConv(16, 24)
        self.bn2 = nn.BatchNorm2d(24)
        self.b2 = ScaledBinaryConv(24, 24, stride=2)
        self.bn3 = nn.BatchNorm2d(24)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        x = self.bn1(self.conv1(x))
        x = self.bn3(self.b2(self.bn2(self.b1(x))))
        return self.fc(x.mean((2, 3)))


def scaled_pow2_arch():
    torch.manual_seed(10)
    return ScaledNet()


def input_shape(name: str) -> tuple[int, ...]:
    return (1, 1, 28, 28) if name == "binarynet_mlp" else (1, 3, 16, 16)


def build(name: str) -> nn.Module:
    """``<name>_arch()`` with calibrated BatchNorm statistics, in eval mode (what a checkpoint holds)."""
    return _calibrated(globals()[f"{name}_arch"](), shape=input_shape(name)[1:])


# ------------------------------------------------------------ XNOR-Net with a new-style Function

class BinActiveFn(Function):
    """XNOR-Net's BinActive written as forks for PyTorch >= 1.3 write it (static forward, .apply)."""

    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return input.sign()

    @staticmethod
    def backward(ctx, grad_output):
        input, = ctx.saved_tensors
        g = grad_output.clone()
        g[input.ge(1) | input.le(-1)] = 0
        return g


class XnorBinConv2d(nn.Module):
    def __init__(self, cin, cout, kernel_size, stride=1, padding=0, dropout=0.0):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin, eps=1e-4, momentum=0.1, affine=True)
        self.dropout_ratio = dropout
        if dropout:
            self.dropout = nn.Dropout(dropout)
        self.conv = nn.Conv2d(cin, cout, kernel_size=kernel_size, stride=stride, padding=padding)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.bn(x)
        x = BinActiveFn.apply(x)
        if self.dropout_ratio:
            x = self.dropout(x)
        return self.relu(self.conv(x))


class XnorNin(nn.Module):
    """The first and the last conv stay float (XNOR-Net's BinOp binarizes the convs in between)."""

    def __init__(self):
        super().__init__()
        self.xnor = nn.Sequential(
            nn.Conv2d(3, 24, 5, padding=2), nn.BatchNorm2d(24, eps=1e-4, affine=False), nn.ReLU(inplace=True),
            XnorBinConv2d(24, 40, 3, padding=1, dropout=0.2),
            nn.MaxPool2d(2),
            XnorBinConv2d(40, 33, 1),
            nn.BatchNorm2d(33, eps=1e-4, affine=False),
            nn.Conv2d(33, 10, 1), nn.ReLU(inplace=True), nn.AvgPool2d(8))

    def forward(self, x):
        return self.xnor(x).flatten(1)


def xnor_modern_arch():
    torch.manual_seed(11)
    return XnorNin()
