"""cmc.exporter.idioms: the scoped shims for research-code idioms in forward."""
import inspect

import pytest
import torch

from cmc.exporter.idioms import CallSite, is_legacy_function, legacy_autograd_functions

from . import xnor_models


def _line_of(fn, text):
    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, l in enumerate(lines) if text in l)


def test_pytorch_refuses_legacy_functions_outside_the_context():
    model = xnor_models.tiny_xnor()
    with pytest.raises(RuntimeError, match="non-static forward"):
        model(torch.randn(2, 3, 8, 8))


def test_legacy_function_runs_its_forward_and_records_the_call_site():
    model = xnor_models.tiny_xnor()
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with legacy_autograd_functions() as sites:
        y = model(x)
        y_again = model(x)
    with torch.no_grad():
        ref = xnor_models.reference_forward(model, x)
    assert torch.equal(y, ref) and torch.equal(y_again, ref)
    xg = x.clone().requires_grad_()
    with legacy_autograd_functions():
        signs, mean = xnor_models.BinActive()(xg)
    assert torch.equal(signs, x.sign()) and not signs.requires_grad and not mean.requires_grad  # inference only
    # Two BinConv2d layers call BinActive from the same line: one distinct call site.
    line = _line_of(xnor_models.BinConv2d.forward, "BinActive()(x)")
    assert sites == [CallSite(xnor_models.__file__, line, "BinActive", "x, mean = BinActive()(x)")]
    file, lineno, *_ = sites[0]
    assert (file, lineno) == (xnor_models.__file__, line)


def test_contexts_nest_and_restore_pytorch_behaviour_even_on_error():
    model = xnor_models.tiny_xnor()
    x = torch.randn(1, 3, 8, 8)
    original = torch.autograd.Function.__dict__["__call__"]
    with pytest.raises(KeyError):
        with legacy_autograd_functions() as outer:
            with legacy_autograd_functions() as inner:
                model(x)
            assert len(inner) == 1
            model(x)
            raise KeyError("boom")
    assert len(outer) == 1
    assert torch.autograd.Function.__dict__["__call__"] is original
    with pytest.raises(RuntimeError, match="non-static forward"):
        model(x)


def test_new_style_functions_are_untouched():
    class Sign(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.sign()

        @staticmethod
        def backward(ctx, g):
            return g

    assert not is_legacy_function(Sign()) and is_legacy_function(xnor_models.BinActive())
    assert not is_legacy_function(torch.nn.ReLU())
    x = torch.randn(4, requires_grad=True)
    with legacy_autograd_functions() as sites:
        y = Sign.apply(x)
        with pytest.raises(RuntimeError, match="non-static forward"):  # PyTorch's own error for an instance call
            Sign()(x)
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(4)) and sites == []


# ---------------------------------------------------------------- .cuda() / .to('cuda')

def test_cuda_moves_stay_on_the_cpu_and_are_recorded():
    from cmc.exporter.idioms import cpu_device_calls

    t = torch.randn(3)
    with cpu_device_calls() as sites:
        assert t.cuda() is t
        assert t.to("cuda") is t and t.to(torch.device("cuda", 1), non_blocking=True) is t
        half = t.to("cuda", torch.float16)
        assert half.dtype == torch.float16 and half.device.type == "cpu" and torch.equal(half, t.half())
        copied = t.to("cuda", copy=True)
        assert copied is not t and torch.equal(copied, t)
        assert t.to(torch.float64).dtype == torch.float64  # no device: PyTorch's own .to
        assert t.to("cpu") is t
    # one record per distinct call site (the two calls on one line are one)
    assert [s.function for s in sites] == ["Tensor.cuda", "Tensor.to", "Tensor.to", "Tensor.to"]
    assert all(s.file == __file__ for s in sites)
    assert "cuda" not in torch.Tensor.__dict__ and "to" not in torch.Tensor.__dict__


# ---------------------------------------------------------------- .data

def test_data_keeps_pytorch_semantics_outside_torch_export():
    from cmc.exporter.idioms import capture_idioms

    conv = torch.nn.Conv2d(2, 2, 1)
    with capture_idioms():
        d = conv.weight.data
        assert type(d) is torch.Tensor and not d.requires_grad and d.data_ptr() == conv.weight.data_ptr()
        conv.weight.data = conv.weight.data * 0  # outside a trace (e.g. a pruning tool's set_mask): allowed
    assert float(conv.weight.abs().sum()) == 0.0
    assert "data" not in torch.Tensor.__dict__


def test_data_reads_trace_as_detach_under_torch_export():
    from cmc.exporter.idioms import capture_idioms

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 2, 1)

        def forward(self, x):
            y = self.conv(x)
            return torch.cat([y.data, self.conv.weight.data.view(1, 2, 2, 1).expand(y.shape[0], 2, 2, 1)], 1)

    m = M().eval()
    x = torch.randn(2, 2, 2, 1)
    with capture_idioms():
        ep = torch.export.export(m, (x,), strict=False)
    assert "data" not in torch.Tensor.__dict__
    x2 = torch.randn(2, 2, 2, 1)
    assert torch.equal(ep.module()(x2), m(x2))


# ---------------------------------------------------------------- state changed in forward

class _Counter(torch.nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = how
        self.conv = torch.nn.Conv2d(2, 2, 1)
        self.register_buffer("calls", torch.zeros(()))
        self.bn = torch.nn.BatchNorm2d(2)

    def forward(self, x):
        if self.how == "buffer in place":
            self.calls += 1
        elif self.how == "rebind parameter":
            self.conv.weight = torch.nn.Parameter(self.conv.weight * 0.5)
        elif self.how == "setitem":
            self.conv.weight[0] = 0
        elif self.how == "relu inplace":
            torch.nn.functional.relu(self.conv.weight, inplace=True)
        return self.bn(self.conv(x))


@pytest.mark.parametrize("how, words", [
    ("buffer in place", "changes buffer 'calls' in place"),
    ("rebind parameter", "changes its parameter 'conv.weight'"),
    ("setitem", "changes parameter 'conv.weight' in place in forward (`__setitem__`)"),
    ("relu inplace", "changes parameter 'conv.weight' in place in forward (`relu`)"),
])
def test_state_changes_in_forward_are_refused(how, words):
    from cmc.exporter.idioms import IdiomError, refuse_state_changes

    m = _Counter(how).eval()
    before = m.conv.weight.detach().clone()
    with pytest.raises(IdiomError, match=words.replace("(", r"\(").replace(")", r"\)")):
        with refuse_state_changes(m), torch.no_grad():
            m(torch.randn(1, 2, 3, 3))
    if how != "rebind parameter":  # refused before it happened
        assert torch.equal(m.conv.weight, before) and float(m.calls) == 0
    assert "data" not in torch.Tensor.__dict__ and not torch._C._is_torch_function_mode_enabled()


def test_batchnorm_in_training_mode_is_not_a_state_change_by_the_user():
    from cmc.exporter.idioms import refuse_state_changes

    m = _Counter("nothing").train()
    with refuse_state_changes(m), torch.no_grad():
        m(torch.randn(4, 2, 3, 3))
    assert int(m.bn.num_batches_tracked) == 1
