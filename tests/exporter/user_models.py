"""Small user-written models for the exporter tests (the way research code users write layers)."""
import torch
import torch.nn as nn

from samples.addernet_resnet20 import adder2d
from samples.bnn_nin import Conv2d_Q


class TinyAdderNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.add1 = adder2d(8, 12, kernel_size=3, stride=2, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(12)
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.add1(x)))
        return self.fc(x.mean(dim=(2, 3)))


def tiny_adder():
    from samples.make_checkpoints import calibrate

    torch.manual_seed(0)
    return calibrate(TinyAdderNet(), shape=(3, 8, 8))


class TinyBNN(nn.Module):
    def __init__(self, A=2, W=2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.q1 = Conv2d_Q(16, 40, 3, padding=1, A=A, W=W)
        self.bn2 = nn.BatchNorm2d(40)
        self.q2 = Conv2d_Q(40, 8, 1, groups=2, A=A, W=W, bias=False)

    def forward(self, x):
        x = self.bn1(self.conv1(x))
        x = self.bn2(self.q1(x))
        return self.q2(x).flatten(1)


def tiny_bnn():
    torch.manual_seed(0)
    return TinyBNN().eval()


def tiny_bnn_relu_input():
    torch.manual_seed(0)
    return TinyBNN(A=32, W=2).eval()


def tiny_ternary():
    torch.manual_seed(0)
    return TinyBNN(A=2, W=3).eval()


class BrokenAdder(nn.Module):
    """Looks like an adder layer (class name, 'adder' weight) but has no stride/padding."""

    def __init__(self):
        super().__init__()
        self.adder = nn.Parameter(torch.randn(4, 3, 3, 3))

    def forward(self, x):
        return x


class HasBrokenAdder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = BrokenAdder()

    def forward(self, x):
        return self.layer(x)


def broken_adder():
    return HasBrokenAdder()


class ReturnsDict(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return {"y": self.conv(x)}


def returns_dict():
    return ReturnsDict()


def not_a_module():
    return 42


def raises():
    raise RuntimeError("the user's constructor failed")


class FixedBatch(nn.Module):
    """Reshapes with a hard-coded batch size: the batch dimension cannot be dynamic."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x).reshape(2, -1)


def fixed_batch():
    return FixedBatch()


class OddSplitConcat(nn.Module):
    """Odd channel counts, a split whose halves are rejoined in reverse order, a concat with a binary
    branch, and two outputs: the general case, written with the research layers."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 13, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(13)
        self.add_a = adder2d(6, 7, kernel_size=3, stride=1, padding=1, bias=True)
        self.bn_a = nn.BatchNorm2d(7)
        self.bin_b = Conv2d_Q(7, 9, 3, padding=1, A=2, W=2)
        self.bn_b = nn.BatchNorm2d(9)
        self.add_c = adder2d(16, 5, kernel_size=1, stride=2, padding=0)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        x = torch.relu(self.bn0(self.stem(x)))
        a, b = torch.split(x, [6, 7], dim=1)
        a = torch.relu(self.bn_a(self.add_a(a.contiguous())))  # the research unfold needs contiguous input
        b = self.bn_b(self.bin_b(b))
        y = torch.cat([b, a], dim=1)
        z = self.add_c(y.contiguous())
        return self.head(z.mean(dim=(2, 3))), z


def odd_split_concat():
    from samples.make_checkpoints import calibrate

    torch.manual_seed(0)
    return calibrate(OddSplitConcat(), shape=(3, 12, 12))
