"""AdderConv's ONNX function body computes |X - W| a slice of filters at a time (issue 20): every slicing
gives the contract's result, padded filters never reach the output, and slices equal the unsliced body."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cmc.plugins.adder_conv import onnx_body
from cmc.plugins.adder_conv.reference import CONTRACT, reference
from cmc.plugins.registry import by_op_type

from . import adder_data
from .single_node import run_node

# (N, C, H, W, M, kh, kw, strides, pads, dilations, group, activation)
CASES = [
    (2, 5, 9, 7, 7, 3, 3, [2, 2], [1, 1, 1, 1], [1, 1], 1, 1),
    (3, 6, 10, 9, 10, 3, 2, [2, 1], [1, 0, 2, 1], [1, 2], 2, 0),  # groups: Mg = 5
    (1, 4, 5, 5, 4, 3, 3, [1, 1], [2, 2, 2, 2], [1, 1], 4, 0),    # depthwise: Mg = 1
]


def _run(case, filters_per_slice, monkeypatch):
    """The body built with a budget of about ``filters_per_slice`` filters per group (None: unsliced default;
    the taps are padded to whole blocks of TAP_BLOCK, so a filter counts a little more than C*K*L)."""
    n, c, h, w, m, kh, kw, strides, pads, dilations, group, act = case
    x, wt, scale, shift, a = adder_data.layer_case(n, c, h, w, m, kh, kw, strides, pads, dilations, group, act)
    if filters_per_slice is not None:
        ho = (h + pads[0] + pads[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
        wo = (w + pads[1] + pads[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
        monkeypatch.setattr(onnx_body, "SLICE_ELEMS", filters_per_slice * n * c * kh * kw * ho * wo)
    y = run_node(by_op_type("AdderConv"), x.numpy(), wt.numpy(), scale.numpy(), shift.numpy(), a)
    ref = reference(x.double().numpy(), wt.numpy(), scale.numpy(), shift.numpy(), **a)
    return y, ref


@pytest.mark.parametrize("case", CASES, ids=["plain", "grouped", "depthwise"])
@pytest.mark.parametrize("filters_per_slice", [1, 3])
def test_sliced_body_matches_reference_and_unsliced_body(case, filters_per_slice, monkeypatch):
    y, ref = _run(case, filters_per_slice, monkeypatch)
    assert y.shape == ref.shape
    assert adder_data.rel_err(y, ref) <= CONTRACT.tol("float32")
    monkeypatch.undo()
    whole, _ = _run(case, None, monkeypatch)
    # The same ReduceSum over the same taps per output value, only fewer filters per call.
    np.testing.assert_allclose(y, whole, rtol=0, atol=1e-5 * np.abs(whole).max())


def test_body_is_a_loop_over_filter_slices():
    fn = onnx_body.build()
    assert [n.op_type for n in fn.node].count("Loop") == 1
    # No node outside the Loop subtracts W from the im2col: |X - W| exists only slice by slice.
    assert "Abs" not in [n.op_type for n in fn.node]


def test_imagenet_size_tap_sums_keep_float32_accuracy():
    """4608 taps (a ResNet-50 3x3 layer on 512 channels), trained magnitudes: summed in blocks, the body
    is within 2e-4 of max|y| (1.3e-4 measured); one sequential float32 sum over the taps gave 7.1e-4."""
    x, w, scale, shift, a = adder_data.layer_case(2, 512, 7, 7, 64, 3, 3, [1, 1], [1, 1, 1, 1], [1, 1], 1)
    y = run_node(by_op_type("AdderConv"), x.numpy(), w.numpy(), scale.numpy(), shift.numpy(), a)
    ref = reference(x.double().numpy(), w.numpy(), scale.numpy(), shift.numpy(), **a)
    assert adder_data.rel_err(y, ref) <= 2e-4
