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
