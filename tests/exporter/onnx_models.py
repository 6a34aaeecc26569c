"""Small cmc ONNX models (com.cmc nodes with the exporter's function bodies) shared by the TensorRT-path tests."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from cmc.plugins.adder_conv import onnx_body as adder_body
from cmc.plugins.binary_conv import onnx_body as binary_body
from cmc.plugins.binary_conv.reference import pack_weights

PLUGIN_ATTRS = ("plugin_version", "plugin_namespace")


def binary_adder_model() -> onnx.ModelProto:
    """X -> BinaryConv (3x3) -> AdderConv (3x3, pads 1) -> Y, with the exporter's function bodies."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(pack_weights(rng.standard_normal((8, 4, 3, 3))), "W_packed"),
        numpy_helper.from_array((rng.random(8) + 0.5).astype(np.float32), "bscale"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "bshift"),
        numpy_helper.from_array((rng.standard_normal((8, 8, 3, 3)) * 20).astype(np.float32), "W"),
        numpy_helper.from_array(np.full(8, 0.05, np.float32), "ascale"),
        numpy_helper.from_array(np.full(8, 3.0, np.float32), "ashift"),
    ]
    nodes = [
        helper.make_node("BinaryConv", ["X", "W_packed", "bscale", "bshift"], ["B"], domain="com.cmc", name="binary0",
                         kernel_shape=[3, 3], plugin_version="1", plugin_namespace="cmc"),
        helper.make_node("AdderConv", ["B", "W", "ascale", "ashift"], ["Y"], domain="com.cmc", name="adder0",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], plugin_version="1", plugin_namespace="cmc"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TP.FLOAT, ["N", 4, 8, 8])],
                              [helper.make_tensor_value_info("Y", TP.FLOAT, ["N", 8, 6, 6])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.cmc", 1)],
                             ir_version=10, functions=[binary_body.build(extra_attributes=PLUGIN_ATTRS),
                                                       adder_body.build(extra_attributes=PLUGIN_ATTRS)])
