"""Fold parameter-only sub-graphs of an exported ONNX model into constants.

Research layers that stay the user's own ops often recompute their weights in forward from the stored
parameters (weight standardisation, rotation, sign binarization with mean|W|, DoReFa quantization). The
exporter writes that computation into the graph, so every inference repeats it for weights that never
change. The dynamo exporter's own optimiser folds such ops only on tensors of up to 8192 elements
(onnxscript's default limit): real layers keep them (a 64-channel 3x3 conv has 36 864 weights).

Here every node of the standard ONNX domain whose inputs all derive from initializers (or Constant
nodes) is evaluated once and its results that the rest of the graph reads become initializers.

Exactness: the sub-graph is evaluated by onnxruntime's CPU kernels, node by node (graph optimisations
off), in the graph's own types: the constants are the values onnxruntime computed for them on every
inference before, so the folded model gives the same outputs bit for bit there (tested). The ONNX
reference evaluator (NumPy) is not used: its float32 reductions and MatMul sum in another order and
differ from the runtime in the last bits.

Left alone: com.cmc nodes (and their function bodies, attached later), other custom domains, ops with
sub-graphs, random ops, values that are graph outputs, and non-tensor values.
"""
from __future__ import annotations

from collections import Counter

import onnx
import onnx_ir as ir

from .errors import CmcError

STANDARD_DOMAINS = ("", "ai.onnx")
#: ops whose result is not a function of their inputs (a fresh draw per run)
RANDOM_OPS = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli", "Multinomial"}
#: ops holding sub-graphs: they may read outer values that are not their inputs
SUBGRAPH_OPS = {"If", "Loop", "Scan"}
#: element types onnxruntime hands back as NumPy arrays of the same type
_NUMPY_TYPES = {ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16, ir.DataType.INT8, ir.DataType.INT16,
                ir.DataType.INT32, ir.DataType.INT64, ir.DataType.UINT8, ir.DataType.UINT16, ir.DataType.UINT32,
                ir.DataType.UINT64, ir.DataType.BOOL}


def _foldable_kind(node: ir.Node) -> bool:
    if node.domain not in STANDARD_DOMAINS or node.op_type in RANDOM_OPS | SUBGRAPH_OPS:
        return False
    if node.op_type == "Constant" or not any(v is not None for v in node.inputs):
        return False  # a Constant is already a constant; other input-less ops are random or empty
    for out in node.outputs:
        if out.is_graph_output():
            return False
        if out.type is not None and not (isinstance(out.type, ir.TensorType) and out.dtype in _NUMPY_TYPES):
            return False
    return True


def _constant_sources(graph: ir.Graph) -> set[int]:
    """ids of the values known before any input is seen: initializers that are not graph inputs,
    and Constant node outputs."""
    inputs = {id(v) for v in graph.inputs}
    known = {id(v) for v in graph.initializers.values() if id(v) not in inputs}
    for node in graph:
        if node.op_type == "Constant" and node.domain in STANDARD_DOMAINS:
            known.update(id(o) for o in node.outputs)
    return known


def parameter_only_nodes(graph: ir.Graph) -> list[ir.Node]:
    """The foldable nodes (graph order) whose every input derives from initializers / Constants only."""
    known = _constant_sources(graph)
    found = []
    for node in graph:  # topologically sorted, as the exporter writes it
        if _foldable_kind(node) and all(v is None or id(v) in known for v in node.inputs):
            found.append(node)
            known.update(id(o) for o in node.outputs)
    return found


def _evaluation_model(model: ir.Model, nodes: list[ir.Node], wanted: list[ir.Value]) -> onnx.ModelProto:
    """A model holding just ``nodes`` and what they read, with ``wanted`` as its outputs."""
    graph = model.graph
    produced = {id(o) for n in nodes for o in n.outputs}
    read = {id(v): v for n in nodes for v in n.inputs if v is not None and id(v) not in produced}
    initializers = [v for v in read.values() if v.const_value is not None]
    constants = [v.producer() for v in read.values() if v.const_value is None]
    proto = onnx.helper.make_model(
        onnx.helper.make_graph(
            [ir.serde.serialize_node(n) for n in constants + nodes], "parameter_only", [],
            [onnx.helper.make_empty_tensor_value_info(v.name) for v in wanted],
            [ir.serde.serialize_tensor(v.const_value) for v in initializers]),
        opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in graph.opset_imports.items()],
        ir_version=model.ir_version)
    for v, init in zip(initializers, proto.graph.initializer):
        init.name = v.name   # serialize_tensor names the tensor after itself; the graph reads the value's name
    return proto


def _evaluate(proto: onnx.ModelProto) -> list:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # each node by its own kernel, as written: no fusion changes what is computed
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {})


def fold_parameter_subgraphs(model: ir.Model) -> dict:
    """Replace every parameter-only sub-graph of ``model`` (in place) by the constants it computes.

    Returns {"nodes": nodes removed, "constants": initializers added, "ops": {op_type: count}}, and
    ``not_folded`` (the reason) where onnxruntime cannot evaluate them: the graph is then left as it is."""
    graph = model.graph
    nodes = parameter_only_nodes(graph)
    if not nodes:
        return {"nodes": 0, "constants": 0, "ops": {}}
    folding = {id(n) for n in nodes}
    # the values the rest of the graph reads: these become initializers
    wanted = []
    for n in nodes:
        for out in n.outputs:
            if any(use.node is not None and id(use.node) not in folding for use in out.uses()):
                wanted.append(out)
    for i, v in enumerate(wanted):
        if not v.name:
            v.name = f"cmc_folded_{i}"
    try:
        arrays = _evaluate(_evaluation_model(model, nodes, wanted))
        types = [ir.DataType.from_numpy(a.dtype) for a in arrays]
    except Exception as e:  # the graph is still correct as it is: keep it, and say why
        return {"nodes": 0, "constants": 0, "ops": {},
                "not_folded": f"{len(nodes)} parameter-only node(s) kept: onnxruntime could not evaluate them "
                              f"({type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''})"}
    for value, array, dtype in zip(wanted, arrays, types):
        if value.dtype is not None and value.dtype != dtype:
            raise CmcError(f"folding parameter-only value {value.name}: onnxruntime returned {dtype.name}, "
                           f"the graph says {value.dtype.name}")
    for value, array, dtype in zip(wanted, arrays, types):
        name = value.name
        value.name = None   # the name passes to the initializer that replaces it
        const = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(dtype),
                         const_value=ir.tensor(array, name=name))
        graph.register_initializer(const)
        value.replace_all_uses_with(const)
    graph.remove(nodes, safe=True)
    for name, v in list(graph.initializers.items()):
        if not list(v.uses()) and not v.is_graph_output():
            del graph.initializers[name]
    return {"nodes": len(nodes), "constants": len(wanted), "ops": dict(Counter(n.op_type for n in nodes))}
