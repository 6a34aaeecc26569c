"""Run one com.cmc node through onnxruntime using only its model-local function body."""
import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from cmc.exporter.onnx_export import PLUGIN_ATTRS


def run_node(entry, x, weight, scale, shift, attrs):
    c = entry["contract"]
    names = [i["name"] for i in c.inputs]
    inits = [numpy_helper.from_array(np.asarray(weight), names[1]),
             numpy_helper.from_array(np.asarray(scale, np.float32), "scale"),
             numpy_helper.from_array(np.asarray(shift, np.float32), "shift")]
    node = helper.make_node(c.op_type, names, ["Y"], domain=c.domain, **attrs,
                            plugin_version="1", plugin_namespace="cmc")
    elem = helper.np_dtype_to_tensor_dtype(x.dtype)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", elem, ["N", x.shape[1], x.shape[2], x.shape[3]])],
                              [helper.make_tensor_value_info("Y", elem, ["N", "M", "H2", "W2"])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(c.domain, c.version)],
                              functions=[entry["body"](extra_attributes=PLUGIN_ATTRS)], ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"X": x})[0]
