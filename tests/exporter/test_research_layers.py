"""Recognising the research code's layers and reproducing what they compute."""
import pytest
import torch

from cmc.exporter.convert import convert_research_layers, pack_for_deployment
from cmc.exporter.errors import CmcError
from cmc.plugins.adder_conv import AdderConv2d
from cmc.plugins.binary_conv import BinaryConv2d
from samples.addernet_resnet20 import adder2d

from . import user_models


def _same(a, b, tol):
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12)) <= tol


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("stride,padding,k", [(1, 1, 3), (2, 1, 3), (2, 0, 1), (1, 2, 5)])
def test_adder2d_converts_exactly(bias, stride, padding, k):
    torch.manual_seed(0)
    layer = adder2d(5, 7, kernel_size=k, stride=stride, padding=padding, bias=bias)
    converted, info = convert_research_layers(torch.nn.Sequential(layer))
    assert isinstance(converted[0], AdderConv2d) and len(info) == 1
    x = torch.randn(2, 5, 9, 9)
    assert _same(converted(x), layer(x), 1e-5)


def test_bnn_layers_convert_exactly_and_pack():
    m = user_models.tiny_bnn()
    converted, info = convert_research_layers(m)
    assert [type(converted.q1), type(converted.q2)] == [BinaryConv2d, BinaryConv2d]
    assert info[0]["to"].startswith("BinaryConv (binarize_input=1)") and "+-alpha per output channel" in info[0]["to"]
    x = torch.randn(3, 3, 8, 8)
    assert _same(converted(x), m(x), 1e-5)
    assert _same(pack_for_deployment(converted)(x), m(x), 1e-5)


def test_relu_input_variant_keeps_float_activations():
    m = user_models.tiny_bnn_relu_input()
    converted, info = convert_research_layers(m)
    assert isinstance(converted.q1, torch.nn.Sequential) and converted.q1[1].binarize_input is False
    x = torch.randn(2, 3, 8, 8)
    assert _same(converted(x), m(x), 1e-5)


def test_exact_zero_weights_stay_float_and_exact():
    m = user_models.tiny_bnn()
    with torch.no_grad():
        m.q1.weight[0, :3] = 0.0  # torch.sign(0) = 0: not representable as +-1
    converted, info = convert_research_layers(m)
    assert not isinstance(converted.q1, BinaryConv2d) and "exact zeros" in info[0]["to"]
    x = torch.randn(2, 3, 8, 8)
    assert _same(converted(x), m(x), 1e-5)


def test_float_weights_with_binarized_input_stay_float_and_exact():
    """Conv2d_Q with W=3: its weight quantizer passes the float weights through; only the input is binarized."""
    m = user_models.tiny_ternary()
    converted, info = convert_research_layers(m)
    assert not any(isinstance(x, BinaryConv2d) for x in converted.modules())
    assert info[0]["to"].startswith("float conv2d") and "not binary" in info[0]["to"]
    x = torch.randn(2, 3, 8, 8)
    assert _same(converted(x), m(x), 1e-5)


def test_lookalike_that_does_not_fit_is_refused():
    with pytest.raises(CmcError, match="stride"):
        convert_research_layers(user_models.broken_adder())


def test_original_model_is_untouched():
    m = user_models.tiny_adder()
    convert_research_layers(m)
    assert isinstance(m.add1, adder2d)


@pytest.mark.parametrize("padding,k,d", [("same", 4, 1), ("same", 3, 2), ("valid", 3, 1), ((2, 1), 3, 1)])
def test_bnn_string_and_pair_padding(padding, k, d):
    from samples.bnn_nin import Conv2d_Q

    torch.manual_seed(0)
    m = torch.nn.Sequential(Conv2d_Q(8, 6, k, padding=padding, dilation=d)).eval()
    converted, _ = convert_research_layers(m)
    assert isinstance(converted[0], BinaryConv2d)
    x = torch.randn(2, 8, 9, 9)
    assert _same(pack_for_deployment(converted)(x), m(x), 1e-5)


def test_relu_before_binary_layer_keeps_torch_sign_semantics():
    """After a ReLU half the inputs are exactly 0: torch.sign gives 0 there, binarize would give +1."""
    from samples.bnn_nin import Conv2d_Q

    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), Conv2d_Q(8, 6, 3, padding=1)).eval()
    x = torch.randn(2, 3, 9, 9)
    converted, info = convert_research_layers(m, x)
    assert isinstance(converted[2], torch.nn.Sequential) and converted[2][1].binarize_input is False
    assert "Sign + BinaryConv" in info[0]["to"]
    assert _same(pack_for_deployment(converted)(x), m(x), 1e-5)
    # Without the calibration facts the plain BinaryConv is chosen, and it is measurably different here.
    blind, _ = convert_research_layers(m)
    assert not _same(blind(x), m(x), 1e-3)


# ---------------------------------------------------------------- recognition by behaviour

class _ShiftedSignConv(torch.nn.Conv2d):
    """Binary weights, but the input is shifted before its sign: not expressible as BinaryConv."""

    def forward(self, x):
        a = self.weight.abs().mean((1, 2, 3), keepdim=True)
        return torch.nn.functional.conv2d(torch.sign(x - 0.5), torch.sign(self.weight) * a, None, 1, 1)


class _ReluAfterConv(torch.nn.Conv2d):
    """Binary weights and inputs, then a ReLU inside the layer: not an affine function of the call."""

    def forward(self, x):
        a = self.weight.abs().mean((1, 2, 3), keepdim=True)
        return torch.relu(torch.nn.functional.conv2d(torch.sign(x), torch.sign(self.weight) * a, None, 1, 1))


@pytest.mark.parametrize("cls, why", [(_ShiftedSignConv, "transform of its input"), (_ReluAfterConv, "not an affine")])
def test_binary_looking_layers_that_do_not_fit_are_kept_and_reported(cls, why):
    torch.manual_seed(0)
    m = torch.nn.Sequential(cls(6, 5, 3, padding=1)).eval()
    converted, info = convert_research_layers(m)
    assert type(converted[0]) is cls and info[0]["to"].startswith("kept as the user's own ops") and why in info[0]["to"]


def test_cuda_calls_in_forward_do_not_stop_the_probe():
    """IR-Net calls .cuda() in forward; the probe runs it on the CPU."""
    from .bnn_codebases import IRConv2d

    torch.manual_seed(0)
    layer = IRConv2d(8, 6, 3, padding=1, bias=False, on_cuda=True).eval()
    converted, info = convert_research_layers(torch.nn.Sequential(layer))
    assert isinstance(converted[0], BinaryConv2d) and converted[0].binarize_input
    with torch.no_grad():  # the same layer without the .cuda() call computes what the BinaryConv computes
        layer.on_cuda = False
        x = torch.randn(2, 8, 7, 7)
        assert _same(pack_for_deployment(converted)(x), layer(x), 1e-5)


def test_probing_leaves_the_users_layer_untouched():
    from .bnn_codebases import micronet_mar2020_inplace_arch

    m = micronet_mar2020_inplace_arch().eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    converted, info = convert_research_layers(m)
    assert len(info) == 3 and all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())


class _BinarizeModule(torch.nn.Module):
    def forward(self, x):
        return torch.where(x >= 0, 1.0, -1.0)


def test_sign_module_conventions():
    """A sign module with sign(0) = +1 is absorbed with no caveat; torch.sign after a ReLU (zeros seen)
    stays a Sign op and the conv takes its +-1 / 0 output as it is."""
    from .bnn_codebases import QuantConv2d

    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), _BinarizeModule(), QuantConv2d(8, 6, 3, padding=1))
    x = torch.randn(2, 3, 9, 9)
    converted, info = convert_research_layers(m.eval(), x)
    assert isinstance(converted[1], torch.nn.Identity) and converted[2].binarize_input
    assert info[1]["binarizes"] == "1" and "note" not in info[1]["to"]
    assert _same(pack_for_deployment(converted)(x), m(x), 1e-5)

    from .bnn_codebases import ActivationQuantizer

    m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), ActivationQuantizer(),
                            QuantConv2d(8, 6, 3, padding=1)).eval()
    converted, info = convert_research_layers(m, x)
    from cmc.plugins.binary_conv.research_forms import TorchSign

    assert isinstance(converted[2], TorchSign) and not converted[3].binarize_input
    assert _same(pack_for_deployment(converted)(x), m(x), 1e-5)
