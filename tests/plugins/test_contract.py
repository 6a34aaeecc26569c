"""The contract files are the single source of truth: everything else must agree with them."""
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
