"""The calibration run's dataflow facts (cmc.exporter.dataflow)."""
import torch
from torch import nn

from cmc.exporter.dataflow import is_sign_valued, observe_dataflow


class _Sign(nn.Module):
    def forward(self, x):
        return torch.sign(x)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.act = _Sign()
        self.drop = nn.Dropout(0.3)
        self.conv = nn.Conv2d(3, 4, 3)
        self.act2 = _Sign()
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.conv3 = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        y = self.conv(self.drop(self.act(self.bn(x))))   # Dropout in eval passes the object through
        t = self.act2(y)
        u = torch.sign(self.conv2(t))                    # a sign in forward, outside any module
        return self.conv3(u) + t.mean()                  # t is read twice: not exclusive


def test_dataflow_facts():
    f = observe_dataflow(_Net().eval(), torch.randn(2, 3, 8, 8))
    assert f["conv"].input_sign_valued and f["conv"].fed_by == "act" and f["conv"].input_exclusive
    assert f["conv"].sign_source == "bn:output" and f["conv"].conv_like
    assert f["conv2"].fed_by == "act2" and not f["conv2"].input_exclusive
    assert f["conv3"].fed_by is None and f["conv3"].input_sign_valued and f["conv3"].sign_source == "conv2:output"
    assert not f["bn"].input_sign_valued and f["act"].output_sign_valued
    assert f["act"].calls == 1 and f[""].calls == 1


def test_in_place_change_counts_as_a_use():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.act, self.conv = _Sign(), nn.Conv2d(3, 3, 1)

        def forward(self, x):
            t = self.act(x)
            t.mul_(-1)  # the conv does not see what the sign module produced
            return self.conv(t)

    f = observe_dataflow(M().eval(), torch.randn(1, 3, 4, 4))
    assert f["conv"].fed_by == "act" and not f["conv"].input_exclusive


def test_sign_values_within_ulps():
    one = torch.tensor([1.0])
    assert is_sign_valued(torch.tensor([1.0, -1.0, 0.0])) and is_sign_valued((one - 0.3) + 0.3)
    assert not is_sign_valued(torch.tensor([1.0, 0.5])) and not is_sign_valued(torch.tensor([1, -1]))


def test_a_zero_one_mask_is_not_a_binarized_activation():
    """A {0, 1} input (a thresholded image) is sign-valued but not +-1: no layer is taken as fed by a sign."""
    from cmc.exporter.convert import convert_research_layers

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 1)).eval()
    x = (torch.randn(1, 3, 8, 8) > 0).float()
    f = observe_dataflow(m, x)
    assert f["0"].input_sign_valued and not f["0"].binarized_input
    assert convert_research_layers(m, x)[1] == []
