"""cmc plugin nodes inside kept model-local functions (issue 21 item 3): TensorRT inlines such a function and
imports the BinaryConv inside it through the plugin registry, under the node's plugin_namespace. Without the
attribute it looks the creator up under namespace "" and fails, so prepare_onnx_for_trt marks those nodes as it
marks main-graph nodes; attributes bound to the caller's (ref_attr_name) are left for TensorRT to bind."""
from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper

from cmc.exporter.errors import CmcError
from cmc.exporter.trt.onnx_prep import prepare_onnx_for_trt
from cmc.plugins.binary_conv import onnx_body as binary_body

from .onnx_models import PLUGIN_ATTRS


def _block_model(extra_node_attrs=None) -> onnx.ModelProto:
    """Main graph: one com.other::Block call; Block's body: a BinaryConv whose pads come from the call."""
    ref = onnx.AttributeProto(name="pads", ref_attr_name="block_pads", type=onnx.AttributeProto.INTS)
    inner = helper.make_node("BinaryConv", ["X", "W", "S", "T"], ["Y"], domain="com.cmc", name="inner",
                             kernel_shape=[3, 3], **(extra_node_attrs or {}))
    inner.attribute.append(ref)
    import numpy as np

    from cmc.plugins.binary_conv.reference import pack_weights

    consts = [helper.make_node("Constant", [], [n], value=onnx.numpy_helper.from_array(v, n)) for n, v in (
        ("W", pack_weights(np.ones((4, 4, 3, 3)))), ("S", np.ones(4, np.float32)), ("T", np.zeros(4, np.float32)))]
    block = helper.make_function("com.other", "Block", ["X"], ["Y"], consts + [inner],
                                 opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.cmc", 1)],
                                 attributes=["block_pads"])
    call = helper.make_node("Block", ["x"], ["y"], domain="com.other", block_pads=[1, 1, 1, 1])
    graph = helper.make_graph([call], "g", [helper.make_tensor_value_info("x", TP.FLOAT, [1, 4, 6, 6])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, [1, 4, 6, 6])])
    return helper.make_model(graph, ir_version=10, functions=[block, binary_body.build(extra_attributes=PLUGIN_ATTRS)],
                             opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.cmc", 1),
                                            helper.make_opsetid("com.other", 1)])


def _inner(prepared):
    (block,) = [f for f in prepared.functions if f.name == "Block"]
    (node,) = [n for n in block.node if n.op_type == "BinaryConv"]
    return {a.name: a for a in node.attribute}


def test_plugin_node_inside_a_kept_function_gets_plugin_attributes():
    """Before the fix the node was skipped (it has a ref_attr_name attribute): no plugin_namespace reached TensorRT."""
    prepared, report = prepare_onnx_for_trt(_block_model())
    attrs = _inner(prepared)
    assert attrs["plugin_namespace"].s == b"cmc" and attrs["plugin_version"].s == b"1"
    assert attrs["pads"].ref_attr_name == "block_pads" and not attrs["pads"].ints  # bound by TensorRT at the call
    assert [int(v) for v in attrs["strides"].ints] == [1, 1] and attrs["binarize_input"].i == 1  # defaults filled
    assert report["kept_functions"] == ["com.other::Block"] and report["stripped_functions"] == ["com.cmc::BinaryConv"]
    assert report["plugin_nodes"] == {"BinaryConv": 1} and report["nodes_with_attributes_bound_at_call"] == 1


def test_plugin_node_inside_a_kept_function_is_checked_against_the_contract():
    with pytest.raises(CmcError, match=r"inner .*function com.other::Block.*group=0 is below 1") as e:
        prepare_onnx_for_trt(_block_model({"group": 0}))
    assert "\n" not in str(e.value)
    with pytest.raises(CmcError, match="plugin_namespace='other'.*cmc's BinaryConv plugin is plugin_namespace='cmc'"):
        prepare_onnx_for_trt(_block_model({"plugin_namespace": "other"}))


def test_plugin_namespace_bound_at_call_time_is_refused():
    model = _block_model()
    block = model.functions[0]
    inner = next(n for n in block.node if n.op_type == "BinaryConv")
    inner.attribute.append(onnx.AttributeProto(name="plugin_namespace", ref_attr_name="ns", type=onnx.AttributeProto.STRING))
    block.attribute.append("ns")
    with pytest.raises(CmcError, match="plugin_namespace refers to the calling function's attribute 'ns'"):
        prepare_onnx_for_trt(model, check=False)
