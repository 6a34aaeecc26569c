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
