"""cmc.exporter.shrink: exact removal of pruned channels, or refusal with the reason (fast, CPU)."""
from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from cmc.exporter.errors import CmcError, ParityError
from cmc.exporter.shrink import (AllChannelsPrunedError, MaskError, find_pruned, shrink)
from cmc.plugins.adder_conv import AdderConv2d
from cmc.plugins.binary_conv.layer import BinaryConv2d
from cmc.plugins.contract import load as load_contract

torch.manual_seed(0)
X = torch.randn(2, 3, 8, 8)


def rel_err(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / a.abs().max())


def kill(conv, idx, bias=True):
    """Zero whole output filters (and their bias)."""
    with torch.no_grad():
        conv.weight[idx] = 0
        if bias and conv.bias is not None:
            conv.bias[idx] = 0


def slim(bn, idx):
    with torch.no_grad():
        bn.weight[idx] = 0
        bn.bias[idx] = 0


def stats(bn, g=None):
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    return bn


def check_exact(model, x=X, **kw):
    kw.setdefault("round_to", 1)
    res = shrink(model, (x,), **kw)
    with torch.no_grad():
        err = rel_err(model(x), res.model(x))
    assert err <= res.report["verification"]["tol"], err
    json.dumps(res.report)  # JSON-serialisable
    return res


def kept_reasons(res):
    return " | ".join(e["reason"] for e in res.report["kept"])


def tp_error(model, layer, idxs, x=X):
    """Torch-Pruning on its own (on a copy): the relative error it causes, or the exception text."""
    import torch_pruning as tp
    from cmc.exporter.shrink.normalize import safe_deepcopy
    m2 = safe_deepcopy(model)
    with torch.no_grad():
        ref = model(x)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dg = tp.DependencyGraph().build_dependency(m2, example_inputs=x)
            dg.get_pruning_group(getattr(m2, layer), tp.prune_conv_out_channels, idxs).prune()
        with torch.no_grad():
            return rel_err(ref, m2(x))
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"


# ------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------
class Residual(nn.Module):
    """conv-bn-relu, a residual block, concatenation, depthwise + pointwise, flatten -> Linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn0 = stats(nn.BatchNorm2d(8))
        self.c1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = stats(nn.BatchNorm2d(8))
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = stats(nn.BatchNorm2d(8))
        self.side = nn.Conv2d(8, 6, 1)
        self.dw = nn.Conv2d(14, 14, 3, padding=1, groups=14)
        self.pw = nn.Conv2d(14, 8, 1)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        x = F.relu(self.bn0(self.stem(x)))
        y = F.relu(self.bn1(self.c1(x)))
        x = F.relu(self.bn2(self.c2(y)) + x)
        x = torch.cat([x, F.relu(self.side(x))], 1)
        x = F.relu(self.pw(F.relu(self.dw(x))))
        return self.fc(F.max_pool2d(x, 2).flatten(1))


def test_residual_concat_depthwise_flatten_linear():
    m = Residual().eval()
    slim(m.bn1, [2, 5])                       # inside the block: removable
    slim(m.bn0, [1]); slim(m.bn2, [1])        # residual stream: dead on both branches -> removable
    slim(m.bn2, [3])                          # dead on one branch only -> the shortcut carries it: kept
    kill(m.side, [0, 4])                      # concatenated branch, zero filter + bias -> dead
    kill(m.pw, [6])                           # before flatten -> Linear
    assert set(find_pruned(m)) >= {"bn0", "bn1", "bn2", "side", "pw"}
    res = check_exact(m)
    s = res.model
    assert (s.c1.out_channels, s.bn1.num_features, s.c2.in_channels) == (6, 6, 6)
    assert s.stem.out_channels == 7 and s.c2.out_channels == 7          # channel 1 of the stream gone
    assert s.side.out_channels == 4 and s.dw.in_channels == 11 and s.dw.groups == 11
    assert s.pw.out_channels == 7 and s.fc.in_features == 7 * 16
    assert "c2" in [e["layer"] for e in res.report["kept"]] or "stem" in [e["layer"] for e in res.report["kept"]]
    r = res.report
    assert r["params"]["after"] < r["params"]["before"] and r["flops"]["after"] < r["flops"]["before"]
    by = {e["name"]: e for e in r["layers"]}
    assert by["c1"]["out_before"] == 8 and by["c1"]["out_after"] == 6 and by["c1"]["removed_out"] == [2, 5]
    assert m.c1.out_channels == 8 and m.c1.weight.shape[0] == 8      # the original is untouched


def test_onnx_of_shrunk_model_matches_and_is_smaller(tmp_path):
    """Residual + concatenation + depthwise + split/rejoin + channel_selection, through onnxruntime."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from samples.pruning.preresnet_cs import channel_selection

    class Mixed(Residual):
        def __init__(self):
            super().__init__()
            self.sel_bn = stats(nn.BatchNorm2d(8))
            self.select = channel_selection(8)
            self.sc = nn.Conv2d(8, 8, 1)

        def forward(self, x):
            x = F.relu(self.bn0(self.stem(x)))
            y = F.relu(self.bn1(self.c1(x)))
            x = F.relu(self.bn2(self.c2(y)) + x)
            a, b = F.relu(self.sc(F.relu(self.select(self.sel_bn(x))))).chunk(2, 1)
            x = torch.cat([b, a], 1) + x
            x = torch.cat([x, F.relu(self.side(x))], 1)
            x = F.relu(self.pw(F.relu(self.dw(x))))
            return self.fc(F.max_pool2d(x, 2).flatten(1))

    m = Mixed().eval()
    slim(m.bn1, [2, 5]); slim(m.sel_bn, [0, 3]); kill(m.side, [0, 4]); kill(m.pw, [6]); kill(m.sc, [1])
    res = check_exact(m)
    assert res.model.sc.in_channels == 6 and res.model.sc.out_channels == 8   # split: sc's outputs kept
    assert "chunk" in kept_reasons(res)

    def export(model, name):
        path = tmp_path / name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (X,), dynamo=True, verbose=False).save(str(path))
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        y = sess.run(None, {sess.get_inputs()[0].name: X.numpy()})[0]
        n = sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)
        return y, n

    with torch.no_grad():
        ref = m(X).numpy()
    y, n_small = export(res.model, "shrunk.onnx")
    base = copy.deepcopy(m)
    base.select = nn.Identity()          # the research channel_selection (NumPy) is not exportable as is
    _, n_full = export(base, "masked.onnx")
    assert np.abs(y - ref).max() / np.abs(ref).max() <= 1e-4
    assert n_small < n_full


# ------------------------------------------------------------------------------------------------
# Torch-Pruning pitfalls: each test fails if cmc passed the pitfall on
# ------------------------------------------------------------------------------------------------
class Split(nn.Module):
    def __init__(self, mode):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 4, 1)
        self.mode = mode

    def forward(self, x):
        p, q = F.relu(self.a(x)).chunk(2, 1)
        y = torch.cat([q, p], 1) if self.mode == "reversed" else torch.cat([p + q, p * q], 1)
        return self.b(y)


def test_pitfall_split_rejoined_in_reversed_order():
    m = Split("reversed").eval()
    kill(m.a, [1, 2])
    err = tp_error(m, "a", [1, 2])
    assert isinstance(err, str) or err > 1e-3, "Torch-Pruning alone should get this wrong"
    res = check_exact(m)
    assert res.model.a.out_channels == 8 and "chunk" in kept_reasons(res)


def test_pitfall_uneven_split_halves():
    m = Split("halves").eval()
    kill(m.a, [1])                             # channel 1 dead, its partner 5 in the other half alive
    err = tp_error(m, "a", [1])
    assert isinstance(err, str) or err > 1e-3, "Torch-Pruning alone should get this wrong"
    res = check_exact(m)
    assert res.model.a.out_channels == 8 and "chunk" in kept_reasons(res)


def test_pitfall_uneven_group_positions():
    class Grouped(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1)
            self.g = nn.Conv2d(8, 8, 3, padding=1, groups=2)
            self.b = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            return self.b(F.relu(self.g(F.relu(self.a(x)))))

    m = Grouped().eval()
    kill(m.a, [1])                              # one group loses a channel, the other does not
    err = tp_error(m, "a", [1])
    assert isinstance(err, str) or err > 1e-3, "Torch-Pruning alone should get this wrong"
    res = check_exact(m)
    assert res.model.g.in_channels == 8 and "grouped convolution g" in kept_reasons(res)


@pytest.mark.parametrize("reader", ["groupnorm", "layernorm", "softmax"])
def test_pitfall_channels_read_by_normalisation(reader):
    class Norm(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1)
            self.gn = nn.GroupNorm(2, 8)
            self.ln = nn.LayerNorm([8, 8, 8])
            self.b = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            y = self.a(x)
            y = {"groupnorm": self.gn, "layernorm": self.ln, "softmax": lambda t: t.softmax(1)}[reader](y)
            return self.b(y)

    m = Norm().eval()
    kill(m.a, [1, 2])
    if reader != "layernorm":  # Torch-Pruning would prune these (LayerNorm over [C,H,W] it refuses itself)
        err = tp_error(m, "a", [1, 2])
        assert isinstance(err, str) or err > 1e-3, "Torch-Pruning alone should get this wrong"
    res = check_exact(m)
    assert res.model.a.out_channels == 8
    assert {"groupnorm": "GroupNorm", "layernorm": "LayerNorm", "softmax": "softmax"}[reader] in kept_reasons(res)


def test_pitfall_custom_autograd_function_is_not_elementwise():
    class Reverse(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.flip(1)

        @staticmethod
        def backward(ctx, g):
            return g.flip(1)

    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1)
            self.b = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            return self.b(Reverse.apply(F.relu(self.a(x))))

    m = Custom().eval()
    kill(m.a, [1, 2])
    err = tp_error(m, "a", [1, 2])
    assert isinstance(err, str) or err > 1e-3, "Torch-Pruning alone should get this wrong"
    res = check_exact(m)
    assert res.model.a.out_channels == 8 and "flip" in kept_reasons(res)


def test_pitfall_live_prune_hooks():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1, bias=False)
            self.bn = stats(nn.BatchNorm2d(8))
            self.b = nn.Conv2d(8, 4, 3, padding=1)

        def forward(self, x):
            return self.b(F.relu(self.bn(self.a(x))))

    m = Net().eval()
    prune.ln_structured(m.a, "weight", amount=0.5, n=1, dim=0)
    dead = [i for i in range(8) if not bool(m.a.weight[i].any())]
    slim(m.bn, dead)
    assert "a" in find_pruned(m)
    err = tp_error(m, "a", dead)
    assert isinstance(err, str) or err > 1e-3, "Torch-Pruning alone should fail on live prune hooks"
    res = check_exact(m)
    assert res.model.a.out_channels == 4 and res.model.b.in_channels == 4
    assert not res.model.a._forward_pre_hooks and not hasattr(res.model.a, "weight_orig")
    assert hasattr(m.a, "weight_orig") and m.a._forward_pre_hooks          # the user's model keeps them


def test_torch_pruning_disagreement_is_kept_not_passed_on(monkeypatch):
    """If Torch-Pruning's group differs from the traced graph, cmc keeps the channels."""
    from cmc.exporter.shrink import plan

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1)
            self.b = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            return self.b(F.relu(self.a(x)))

    m = Plain().eval()
    kill(m.a, [1, 2])
    assert shrink(m, (X,), round_to=1).model.a.out_channels == 6
    real = plan.tp_members
    monkeypatch.setattr(plan, "tp_members", lambda *a: real(*a) | {("b", "in", 7)})
    res = check_exact(m)
    assert res.model.a.out_channels == 8
    assert "Torch-Pruning's coupling disagrees" in kept_reasons(res)


def test_squeeze_excitation_with_a_size_written_in_user_code_is_kept():
    class SE(nn.Module):
        def __init__(self, hard_coded):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1)
            self.f1 = nn.Linear(8, 4)
            self.f2 = nn.Linear(4, 8)
            self.b = nn.Conv2d(8, 4, 1)
            self.hard_coded = hard_coded

        def forward(self, x):
            y = F.relu(self.a(x))
            w = torch.sigmoid(self.f2(F.relu(self.f1(y.mean((2, 3))))))
            w = w.view(x.size(0), 8, 1, 1) if self.hard_coded else w[:, :, None, None]
            return self.b(y * w)

    m = SE(True).eval()
    kill(m.a, [1, 2])
    res = check_exact(m)
    assert res.model.a.out_channels == 8 and "fixed channel count" in kept_reasons(res)
    m = SE(False).eval()
    kill(m.a, [1, 2])
    with torch.no_grad():
        m.f2.bias[[1, 2]] = 0
    res = check_exact(m)                    # channel-wise gating broadcast over positions: removed
    assert res.model.a.out_channels == 6 and res.model.f2.out_features == 6


# ------------------------------------------------------------------------------------------------
# constant channels
# ------------------------------------------------------------------------------------------------
class ConstNet(nn.Module):
    def __init__(self, pad2=1, k2=3):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = stats(nn.BatchNorm2d(8))
        self.b = nn.Conv2d(8, 6, k2, padding=pad2)
        self.fc = nn.Linear(6 * (8 + 2 * pad2 - k2 + 1) ** 2, 3)

    def forward(self, x):
        return self.fc(F.relu(self.b(F.relu(self.bn(self.a(x))))).flatten(1))


def test_constant_channel_kept_before_padded_conv_and_accept_deviation():
    m = ConstNet().eval()
    kill(m.a, [0, 3])
    with torch.no_grad():
        m.bn.bias[[0, 3]] = torch.tensor([0.7, 0.4])     # zero filter, beta != 0: constant relu(beta - ...)
        m.bn.running_mean[[0, 3]] = 0
    res = check_exact(m)
    assert res.model.a.out_channels == 8 and "padded conv b" in kept_reasons(res)
    kept = [e for e in res.report["kept"] if e["layer"] == "a"][0]
    assert kept["channels"] == [0, 3] and kept["constant_values"]
    dev = shrink(m, (X,), accept_deviation=True, round_to=1)
    assert dev.model.a.out_channels == 6
    v = dev.report["verification"]
    assert v["accepted_deviation"] and v["max_rel_err"] > 0 and dev.report["approximated"]


@pytest.mark.parametrize("k2,pad2", [(1, 0), (3, 0)])
def test_constant_channel_folded_exactly_into_unpadded_conv_and_linear(k2, pad2):
    m = ConstNet(pad2=pad2, k2=k2).eval()
    kill(m.a, [0, 3])
    with torch.no_grad():
        m.bn.bias[[0, 3]] = torch.tensor([0.7, 0.4])
        m.bn.running_mean[[0, 3]] = 0
        m.b.weight[1] = 0                            # b[1] outputs its bias: constant -> folded into fc
        m.b.bias[1] = 0.5                            # positive, so the ReLU keeps it constant (not dead)
    res = check_exact(m)
    assert res.model.a.out_channels == 6 and res.model.b.out_channels == 5
    folded = {(f["into"], f["from"]) for f in res.report["folded"]}
    assert ("b", "a") in folded and ("fc", "b") in folded


# ------------------------------------------------------------------------------------------------
# cmc operators: what is dead follows each op's math
# ------------------------------------------------------------------------------------------------
class AdderNet(nn.Module):
    def __init__(self, pad=1):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = stats(nn.BatchNorm2d(8))
        self.add = AdderConv2d(8, 6, 3, padding=pad)
        self.bn2 = nn.BatchNorm2d(6)
        self.b = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        return self.b(F.relu(self.bn2(self.add(F.relu(self.bn(self.a(x)))))))


def _adder_stats(m):
    m.train()
    with torch.no_grad():
        m.bn2.momentum = None
        m(torch.randn(8, 3, 8, 8))
    return m.eval()


def test_adder_zero_input_channel_is_folded_exactly_even_when_padded():
    m = _adder_stats(AdderNet())
    slim(m.bn, [1, 6])                       # adder reads an all-zero channel: contributes -sum|w|
    res = check_exact(m)
    assert res.report["verification"]["tol"] == load_contract("adder_conv").tol()
    assert res.model.add.in_channels == 6 and res.model.a.out_channels == 6
    assert any(f["into"] == "add" for f in res.report["folded"])


def test_adder_zero_filter_is_not_dead():
    m = _adder_stats(AdderNet())
    with torch.no_grad():
        m.add.weight[[2]] = 0                # outputs -sum|x|, not 0
    assert "add" in find_pruned(m)
    res = check_exact(m)
    assert res.model.add.out_channels == 6
    notes = [n for e in res.report["kept"] for n in e.get("notes", [])]
    assert any("-sum|x|" in n for n in notes)


def test_adder_nonzero_constant_into_padded_adder_is_kept():
    m = _adder_stats(AdderNet())
    kill(m.a, [1])
    with torch.no_grad():
        m.bn.bias[1] = 0.5
        m.bn.running_mean[1] = 0
    res = check_exact(m)
    assert res.model.add.in_channels == 8 and "padded AdderConv add" in kept_reasons(res)
    unp = _adder_stats(AdderNet(pad=0))
    kill(unp.a, [1])
    with torch.no_grad():
        unp.bn.bias[1] = 0.5
        unp.bn.running_mean[1] = 0
    res = check_exact(unp)
    assert res.model.add.in_channels == 7


class BinNet(nn.Module):
    def __init__(self, binarize_input):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = stats(nn.BatchNorm2d(8))
        self.bin = BinaryConv2d(8, 6, 3, padding=1, binarize_input=binarize_input)
        self.b = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        return self.b(self.bin(F.relu(self.bn(self.a(x)))))


def test_binary_zero_input_channel_is_not_dead_when_binarized():
    m = BinNet(True).eval()
    slim(m.bn, [1, 6])                       # binarize(0) = +1: the channel still contributes
    res = check_exact(m)
    assert res.model.bin.in_channels == 8 and "BinaryConv bin" in kept_reasons(res)


def test_binary_zero_input_channel_without_binarize_is_removed_with_alpha_kept():
    m = BinNet(False).eval()
    slim(m.bn, [1, 6])
    res = check_exact(m)
    assert res.model.bin.in_channels == 6 and res.model.a.out_channels == 6


def test_binary_zero_filter_is_a_constant_channel():
    m = BinNet(True).eval()
    with torch.no_grad():
        m.bin.weight[[0, 4]] = 0             # alpha = mean|W| = 0: output = shift (constant)
        m.bin.shift[[0, 4]] = torch.tensor([0.3, -0.2])
    res = check_exact(m)
    assert res.model.bin.out_channels == 4 and res.model.b.in_channels == 4
    assert any(f["into"] == "b" and f["from"] == "bin" for f in res.report["folded"])


# ------------------------------------------------------------------------------------------------
# the research forms and the samples
# ------------------------------------------------------------------------------------------------
def test_mnist_mlp_masked_linear_to_50_100_10():
    from samples.pruning import mnist
    m = mnist.mlp_pruned()
    x = torch.randn(3, 1, 28, 28)
    res = check_exact(m, x)
    s = res.model
    assert type(s.linear1) is nn.Linear
    assert (s.linear1.out_features, s.linear2.out_features, s.linear3.out_features) == (50, 100, 10)
    assert res.report["folded"], "pruned neurons keep their bias: relu(b) is folded into the next layer"


@pytest.mark.parametrize("zero_bias", [True, False])
def test_mnist_convnet_masked_conv_to_8_16_32(zero_bias):
    from samples.pruning import mnist
    m = mnist.convnet_pruned(zero_bias=zero_bias)
    x = torch.randn(2, 1, 28, 28)
    res = check_exact(m, x)
    s = res.model
    if zero_bias:
        assert (s.conv1.out_channels, s.conv2.out_channels, s.conv3.out_channels) == (8, 16, 32)
        assert s.linear1.in_features == 32 * 49
    else:  # relu(bias) constants before padded convs are kept; conv3's are folded into linear1
        assert s.conv3.out_channels == 32 and s.conv1.out_channels > 8
        assert "padded conv conv2" in kept_reasons(res)


def test_round_to_keeps_conv_channel_counts_aligned():
    m = Residual().eval()
    slim(m.bn1, [2, 5])
    kill(m.side, [0, 4])
    res = shrink(m, (X,), round_to=8)                       # 8 - 2 would break the alignment: kept
    assert res.model.c1.out_channels == 8 and "--align-channels 8" in kept_reasons(res)
    res = shrink(m, (X,), round_to=2)
    assert res.model.c1.out_channels == 6 and res.report["round_to"] == 2
    res = shrink(m, (X,), round_to=4)                       # 14 (not a multiple of 4) is not aligned
    assert res.model.side.out_channels == 4 and res.model.c1.out_channels == 8


def test_channel_selection_with_zeroed_indexes():
    from samples.pruning.preresnet_cs import channel_selection

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1, bias=False)
            self.bn = stats(nn.BatchNorm2d(8))
            self.select = channel_selection(8)
            self.b = nn.Conv2d(5, 4, 1)

        def forward(self, x):
            return self.b(F.relu(self.select(self.bn(self.a(x)))))

    m = Net().eval()
    with torch.no_grad():
        m.select.indexes[[0, 3, 7]] = 0
    slim(m.bn, [0, 3, 7])
    res = check_exact(m)
    assert res.model.a.out_channels == 5 and isinstance(res.model.select, nn.Identity)


def test_samples_state_dict_round_trip():
    from samples.pruning import mnist, preresnet_cs
    for fn, cls in [(mnist.mlp_pruned, mnist.MLP), (mnist.convnet_pruned, mnist.ConvNet),
                    (lambda: preresnet_cs.preresnet_slimmed(depth=11), lambda: preresnet_cs.resnet(depth=11))]:
        m = fn()
        fresh = cls()
        fresh.load_state_dict(m.state_dict())
        fresh.eval()
        x = torch.randn(2, *(fn.input_shape[1:] if hasattr(fn, "input_shape") else (3, 32, 32)))
        with torch.no_grad():
            assert torch.equal(m(x), fresh(x))


# ------------------------------------------------------------------------------------------------
# bad inputs: one clear line, a CmcError
# ------------------------------------------------------------------------------------------------
def _one_line(e):
    assert isinstance(e.value, CmcError) and "\n" not in str(e.value)


def test_error_all_channels_pruned_by_mask():
    from samples.pruning import mnist
    m = mnist.mlp_pruned()
    m.linear2.set_mask(torch.zeros(200, 200))
    with pytest.raises(AllChannelsPrunedError, match="linear2") as e:
        shrink(m, (torch.randn(1, 1, 28, 28),))
    _one_line(e)


def test_error_all_channels_dead_in_a_layer():
    m = ConstNet().eval()
    slim(m.bn, list(range(8)))
    with pytest.raises(AllChannelsPrunedError) as e:
        shrink(m, (X,))
    _one_line(e)


def test_error_mask_of_wrong_shape():
    from samples.pruning import mnist
    m = mnist.convnet_pruned()
    m.conv2.mask = torch.ones(64)
    with pytest.raises(MaskError, match="conv2.*shape") as e:
        find_pruned(m)
    _one_line(e)
    m = ConstNet().eval()
    prune.ln_structured(m.a, "weight", amount=0.25, n=1, dim=0)
    m.a.weight_mask = torch.ones(8, 3)
    with pytest.raises(MaskError, match="weight_mask") as e:
        shrink(m, (X,))
    _one_line(e)


def test_error_contradictory_and_non_binary_masks():
    from samples.pruning import mnist
    m = mnist.convnet_pruned()
    prune.random_structured(m.conv2, "weight", amount=0.5, dim=0)   # disagrees with conv2.mask
    with pytest.raises(MaskError, match="contradictory") as e:
        shrink(m, (torch.randn(1, 1, 28, 28),))
    _one_line(e)
    m = mnist.convnet_pruned()
    m.conv1.mask[0] = 0.5
    with pytest.raises(MaskError, match="0 and 1") as e:
        find_pruned(m)
    _one_line(e)


def test_error_forward_that_ignores_its_mask():
    from samples.pruning import mnist

    class Lazy(mnist.MaskedLinear):
        def forward(self, x):                 # never applies its mask
            return F.linear(x, self.weight, self.bias)

    m = mnist.mlp_pruned()
    lazy = Lazy(784, 200)
    lazy.load_state_dict(m.linear1.state_dict())
    with torch.no_grad():
        lazy.weight.normal_()
    m.linear1 = lazy
    with pytest.raises(MaskError, match="linear1.*forward") as e:
        shrink(m, (torch.randn(1, 1, 28, 28),))
    _one_line(e)


def test_parity_failure_names_the_layer(monkeypatch):
    from cmc.exporter.shrink import plan
    m = ConstNet(pad2=0).eval()
    kill(m.a, [0, 3])
    with torch.no_grad():
        m.bn.bias[[0, 3]] = 0.5
        m.bn.running_mean[[0, 3]] = 0
    real = plan.fold_delta
    monkeypatch.setattr(plan, "fold_delta", lambda r, mod: (lambda a: (a[0], a[1] * 2))(real(r, mod)))
    with pytest.raises(ParityError, match="first differing layer: b") as e:
        shrink(m, (X,), round_to=1)
    _one_line(e)


def test_nothing_to_do():
    m = ConstNet().eval()
    assert find_pruned(m) == []
