"""Small user models written the way research repositories write forward (each builder works as --arch).

BinaryNet.pytorch, micronet, the L1-pruning repository and the BNN notes do these things in forward;
the classes are written here from their descriptions, small enough for fast tests.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd import Variable


def _seeded(cls, *args):
    torch.manual_seed(0)
    model = cls(*args)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # trained-looking BatchNorm statistics
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.2)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
    return model.eval()


class _Stem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def head(self, x):
        return self.fc(x.mean(dim=(2, 3)))


# ---------------------------------------------------------------- captured exactly

class VariableWrapped(_Stem):
    """Old-PyTorch style: Variable(...) around intermediate results, .data reads of activations."""

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        skip = Variable(x.data)
        x = self.conv2(x) + skip
        return self.head(Variable(x))


class ActivationClampViaData(_Stem):
    """An in-place change of an activation through .data (not of a parameter): aliases see it."""

    def forward(self, x):
        y = self.bn1(self.conv1(x))
        r = y
        y.data.clamp_(-0.5, 0.5)
        return self.head(self.conv2(y) + r)


class CudaZeros(_Stem):
    """Unconditional .cuda() / .to('cuda') on fresh tensors, as code written for one GPU does."""

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        pad = torch.zeros(x.size(0), 4, x.size(2), x.size(3)).cuda()
        ones = torch.ones(1, 12, 1, 1).to('cuda', non_blocking=True)
        x = torch.cat([x, pad], 1) * ones
        return self.head(x[:, :8])


# ---------------------------------------------------------------- blockers

class ClampInModelForward(_Stem):
    """In-place clamp of a parameter in Model.forward (outside any recognised layer)."""

    def forward(self, x):
        self.conv2.weight.data.clamp_(-0.1, 0.1)
        x = F.relu(self.bn1(self.conv1(x)))
        return self.head(self.conv2(x))


class MeanCenterInForward(_Stem):
    """micronet-style mean-centering of the weights in place, every call."""

    def forward(self, x):
        w = self.conv2.weight
        w.data.sub_(w.data.mean())
        x = F.relu(self.bn1(self.conv1(x)))
        return self.head(self.conv2(x))


class BinarizeConv2d(nn.Conv2d):
    """BinaryNet.pytorch style: binarizes its input via .data and keeps the real weights in weight.org."""

    def forward(self, input):
        if input.size(1) != 3:
            input.data = torch.sign(input.data)
        if not hasattr(self.weight, 'org'):
            self.weight.org = self.weight.data.clone()
        self.weight.data = torch.sign(self.weight.org)
        return nn.functional.conv2d(input, self.weight, None, self.stride, self.padding, self.dilation, self.groups)


class BinaryNetStyle(_Stem):
    def __init__(self):
        super().__init__()
        self.bconv = BinarizeConv2d(8, 8, 3, padding=1, bias=False)

    def forward(self, x):
        x = F.hardtanh(self.bn1(self.conv1(x)))
        return self.head(self.bconv(x))


class WeightOrgInModelForward(_Stem):
    """The weight.org bookkeeping written directly in Model.forward."""

    def forward(self, x):
        if not hasattr(self.conv2.weight, 'org'):
            self.conv2.weight.org = self.conv2.weight.data.clone()
        self.conv2.weight.data = torch.sign(self.conv2.weight.org)
        x = F.relu(self.bn1(self.conv1(x)))
        return self.head(self.conv2(x))


class DataDependentBranch(_Stem):
    """BinaryNet's ResNet block: a Python branch on tensor values."""

    def forward(self, x):
        residual = F.relu(self.bn1(self.conv1(x)))
        out = self.conv2(residual)
        if residual.data.max() > 1:
            out = out + residual
        return self.head(out)


class NumpyInForward(_Stem):
    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        keep = torch.from_numpy((x.detach().numpy().mean(axis=(0, 2, 3)) > 0).astype('float32'))
        return self.head(self.conv2(x) * keep.view(1, -1, 1, 1))


class CudaFactory(_Stem):
    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        return self.head(self.conv2(x) + torch.zeros(1, device='cuda'))


class BuggyForward(_Stem):
    """A plain bug in the user's code (not an input-shape problem)."""

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        scale = {'a': 1.0}['b']
        return self.head(self.conv2(x) * scale)


def variable_wrapped():
    return _seeded(VariableWrapped)


def activation_clamp_via_data():
    return _seeded(ActivationClampViaData)


def cuda_zeros():
    return _seeded(CudaZeros)


def clamp_in_model_forward():
    return _seeded(ClampInModelForward)


def mean_center_in_forward():
    return _seeded(MeanCenterInForward)


def binarynet_style():
    return _seeded(BinaryNetStyle)


def weight_org_in_model_forward():
    return _seeded(WeightOrgInModelForward)


def data_dependent_branch():
    return _seeded(DataDependentBranch)


def numpy_in_forward():
    return _seeded(NumpyInForward)


def cuda_factory():
    return _seeded(CudaFactory)


def buggy_forward():
    return _seeded(BuggyForward)
