"""The contract files are the single source of truth: everything else must agree with them."""
import numpy as np
import onnx
import pytest

from cmc.plugins.contract import load
from cmc.plugins.registry import OPERATORS


@pytest.mark.parametrize("folder", ["adder_conv", "binary_conv"])
def test_contract_is_complete(folder):
    c = load(folder)
    assert c.domain == "com.cmc" and c.version == 1
    assert c.plugin["name"] == c.op_type and c.plugin["version"] == "1"
    assert [i["name"] for i in c.inputs][2:] == ["scale", "shift"]
    assert {"kernel_shape", "strides", "pads", "dilations", "group", "activation"} <= set(c.attribute_names)
    assert 0 < c.tol("float32") <= c.tol("float16")


def test_normalize_fills_defaults_and_rejects_bad_values():
    c = load("adder_conv")
    a = c.normalize({"kernel_shape": [3, 3]})
    assert a == {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1],
                 "group": 1, "activation": 0}
    for bad in ({}, {"kernel_shape": [3]}, {"kernel_shape": [3, 3], "strides": [0, 1]},
                {"kernel_shape": [3, 3], "pads": [1, 1]}, {"kernel_shape": [3, 3], "activation": 2},
                {"kernel_shape": [3, 3], "nonsense": 1}):
        with pytest.raises(ValueError):
            c.normalize(bad)


@pytest.mark.parametrize("entry", OPERATORS, ids=lambda e: e["contract"].op_type)
def test_function_body_declares_exactly_the_contract_attributes(entry):
    fn = entry["body"](extra_attributes=("plugin_version", "plugin_namespace"))
    declared = set(fn.attribute) | {a.name for a in fn.attribute_proto}
    assert declared == set(entry["contract"].attribute_names) | {"plugin_version", "plugin_namespace"}
    assert (fn.domain, fn.name) == (entry["contract"].domain, entry["contract"].op_type)
    assert list(fn.input)[2:] == ["scale", "shift"]


def _per_output_channel(x, w, attrs, tap):
    """reference_conv's accumulation written one output channel at a time (the order it must keep)."""
    from cmc.plugins.contract import conv_output_size

    n, _, h, wd = x.shape
    m, cg, kh, kw = w.shape
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = attrs["strides"], attrs["dilations"], attrs["pads"]
    ho, wo = conv_output_size(h, kh, sh, pt, pb, dh), conv_output_size(wd, kw, sw, pl, pr, dw)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    acc = np.zeros((n, m, ho, wo))
    for oc in range(m):
        grp = oc // (m // attrs["group"])
        for ci in range(cg):
            for p in range(kh):
                for q in range(kw):
                    patch = xp[:, grp * cg + ci, p * dh: p * dh + sh * (ho - 1) + 1: sh,
                               q * dw: q * dw + sw * (wo - 1) + 1: sw]
                    acc[:, oc] += tap(patch, w[oc, ci, p, q])
    return acc


@pytest.mark.parametrize("group, strides, pads, dilations", [
    (1, [1, 1], [1, 1, 1, 1], [1, 1]), (2, [2, 1], [0, 1, 2, 1], [1, 2]), (4, [1, 2], [1, 0, 0, 1], [2, 1])])
def test_reference_conv_adds_each_outputs_taps_in_the_per_channel_order(group, strides, pads, dilations):
    """All output channels of a group at once, bit for bit the per-output-channel loop (trained magnitudes)."""
    from cmc.plugins.contract import reference_conv

    rng = np.random.default_rng(group)
    x = np.maximum(rng.standard_normal((2, 8, 9, 7)) * 30, 0)  # post-ReLU: exact zeros
    w = rng.standard_normal((12, 8 // group, 3, 3)) * 60
    attrs = dict(kernel_shape=[3, 3], strides=strides, pads=pads, dilations=dilations, group=group, activation=0)
    tap = lambda patch, wv: -np.abs(patch - wv)  # noqa: E731
    got = reference_conv(x, w, np.ones(12), np.zeros(12), attrs, tap)
    assert np.array_equal(got, _per_output_channel(x, w, attrs, tap))
