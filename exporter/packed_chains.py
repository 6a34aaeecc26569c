"""Packed chains: 1-bit activations between binary layers (BinaryConv's packed variants).

A BinaryConv whose output is read only by BinaryConvs that binarize it (group 1, ``binarize_input=1``)
does not need to write floats: the next layers only look at the signs. :func:`pack_chains` (on the
ONNX IR, after the BatchNorm/ReLU fold, so the sign is taken of the folded epilogue's output) turns
such a producer into ``BinaryConvPackedOut`` / ``BinaryConvPackedInOut`` and its consumers into
``BinaryConvPackedIn`` / ``BinaryConvPackedInOut``; the tensor between them becomes int32
[N, H, W, 4*ceil(C/128)] (binary_conv/contract.json "packed_activations"). A graph output, a
residual Add, a pooling, a float layer, a grouped layer, a layer that reads the value unbinarized
(``binarize_input=0``) or any other consumer keeps the value float: the chain stops there.

:func:`unpack_chains` undoes it on an ONNX model: the same graph with every packed variant back as
``BinaryConv``. The parity check runs PyTorch against that unpacked form (where a sign flip at a
binarization point can still be seen and attributed) and requires the packed model to produce
exactly the same outputs, bit for bit, in onnxruntime (:func:`compare_with_unpacked`).
"""
from __future__ import annotations

import copy

import numpy as np
import onnx
import onnx_ir as ir

from cmc.plugins.binary_conv.reference import VARIANTS, packed_words_per_pixel

from .onnx_export import attach_function_bodies, set_cmc_opset

DOMAIN = "com.cmc"
BASE_OP = "BinaryConv"


def _variant_op(input_packed: bool, output_packed: bool) -> str:
    for op, c in VARIANTS.items():
        if (c.input_packed, c.output_packed) == (input_packed, output_packed):
            return op
    raise KeyError((input_packed, output_packed))


def _int_attr(node: ir.Node, name: str, default: int) -> int:
    a = node.attributes.get(name)
    return default if a is None else a.as_int()


def _is_binary(node: ir.Node) -> bool:
    return node.domain == DOMAIN and node.op_type == BASE_OP


def _label(node: ir.Node) -> str:
    return node.name or f"{node.domain + '::' if node.domain else ''}{node.op_type}"


def _why_not_packed(node: ir.Node) -> str | None:
    """None when the BinaryConv's output may be packed; else the reason it stays float."""
    if _int_attr(node, "group", 1) != 1:
        return f"group {_int_attr(node, 'group', 1)} (packed activations need group 1)"
    out = node.outputs[0]
    if out.is_graph_output():
        return "its output is a graph output"
    if out.dtype not in (None, ir.DataType.FLOAT):
        return f"its output is {out.dtype}, not float32"
    w = node.inputs[1]
    if w is None or w.shape is None or not isinstance(w.shape[0], int):
        return "its weights' output-channel count is not static"
    uses = list(out.uses())
    if not uses:
        return "its output is not used"
    for use in uses:
        consumer, index = (use[0], use[1]) if isinstance(use, tuple) else (use.node, use.idx)
        if not _is_binary(consumer):
            return f"read by {consumer.op_type} {_label(consumer)!r}"
        if index != 0:
            return f"read as input {index} of {_label(consumer)!r}"
        if _int_attr(consumer, "group", 1) != 1:
            return f"read by the grouped {_label(consumer)!r} (group {_int_attr(consumer, 'group', 1)})"
        if _int_attr(consumer, "binarize_input", 1) != 1:
            return f"read unbinarized by {_label(consumer)!r} (binarize_input=0)"
    return None


def pack_chains(model: ir.Model) -> dict:
    """Rewrite the packable BinaryConv edges of ``model`` in place; returns the report:
    {"chains": [[layer, ...], ...], "packed_tensors": n, "kept_float": [{"node", "reason"}, ...]}."""
    graph = model.graph
    binaries = [n for n in graph if _is_binary(n)]
    packed_out, kept = [], []
    for node in binaries:
        why = _why_not_packed(node)
        if why is None:
            packed_out.append(node)
        else:
            kept.append({"node": node.name, "reason": why})
    out_set = {id(n) for n in packed_out}
    in_channels: dict[int, int] = {}  # id(consumer) -> C of its packed input
    for node in packed_out:
        m = int(node.inputs[1].shape[0])
        for use in node.outputs[0].uses():
            consumer = use[0] if isinstance(use, tuple) else use.node
            in_channels[id(consumer)] = m
        v = node.outputs[0]
        old = v.shape
        dims = [old[0], old[2], old[3]] if old is not None and len(old) == 4 else [None, None, None]
        v.type = ir.TensorType(ir.DataType.INT32)
        v.shape = ir.Shape([*dims, packed_words_per_pixel(m)])
    for node in binaries:
        in_p, out_p = id(node) in in_channels, id(node) in out_set
        if not (in_p or out_p):
            continue
        node.op_type = _variant_op(in_p, out_p)
        if in_p:
            node.attributes["in_channels"] = ir.AttrInt64("in_channels", in_channels[id(node)])
    return {"chains": _chains(graph, out_set), "packed_tensors": len(packed_out), "kept_float": kept}


def _chains(graph: ir.Graph, out_set: set[int]) -> list[list[str]]:
    """Connected groups of packed edges, each listed in graph order."""
    order = {id(n): i for i, n in enumerate(graph)}
    parent: dict[int, int] = {}

    def find(a):
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    nodes = {}
    for node in graph:
        if id(node) not in out_set:
            continue
        nodes[id(node)] = node
        for use in node.outputs[0].uses():
            consumer = use[0] if isinstance(use, tuple) else use.node
            nodes[id(consumer)] = consumer
            parent[find(id(consumer))] = find(id(node))
    groups: dict[int, list] = {}
    for key, node in nodes.items():
        groups.setdefault(find(key), []).append(node)
    chains = [sorted(g, key=lambda n: order[id(n)]) for g in groups.values()]
    chains.sort(key=lambda c: order[id(c[0])])
    return [[n.name for n in c] for c in chains]


# ---------------------------------------------------------------- the unpacked form, for verification

def has_packed(model: onnx.ModelProto) -> bool:
    return any(n.domain == DOMAIN and n.op_type in VARIANTS for n in model.graph.node)


def unpack_chains(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with every packed BinaryConv variant back as ``BinaryConv`` (the graph the
    export had before :func:`pack_chains`): float tensors between the layers, com.cmc version 1 bodies."""
    m = copy.deepcopy(model)
    packed_values = set()
    for node in m.graph.node:
        if node.domain != DOMAIN or node.op_type not in VARIANTS:
            continue
        if VARIANTS[node.op_type].output_packed:
            packed_values.add(node.output[0])
        node.op_type = BASE_OP
        keep = [a for a in node.attribute if a.name != "in_channels"]
        del node.attribute[:]
        node.attribute.extend(keep)
    # The tensors between the layers are float again: let shape inference type them.
    keep_vi = [vi for vi in m.graph.value_info if vi.name not in packed_values]
    del m.graph.value_info[:]
    m.graph.value_info.extend(keep_vi)
    used = {(n.domain, n.op_type) for n in m.graph.node}
    keep_fn = [f for f in m.functions if (f.domain, f.name) in used or f.domain != DOMAIN]
    del m.functions[:]
    m.functions.extend(keep_fn)
    attach_function_bodies(m)
    set_cmc_opset(m)
    return m


def compare_with_unpacked(packed: onnx.ModelProto, unpacked: onnx.ModelProto, feeds: list[dict]) -> dict:
    """Run both in onnxruntime (CPU) on every feed; the packed model must reproduce the unpacked one's
    outputs exactly (same bits; NaN where NaN)."""
    import onnxruntime as ort

    sessions = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
                for m in (packed, unpacked)]
    names = [o.name for o in unpacked.graph.output]
    cases, identical = [], True
    for feed in feeds:
        got, ref = (s.run(names, feed) for s in sessions)
        outs = {}
        for name, g, r in zip(names, got, ref):
            same = g.shape == r.shape and g.dtype == r.dtype and np.array_equal(g, r, equal_nan=g.dtype.kind == "f")
            differing = int(np.sum(~((g == r) | (np.isnan(g) & np.isnan(r))))) if g.shape == r.shape and g.dtype.kind == "f" \
                else int(np.sum(g != r)) if g.shape == r.shape else -1
            outs[name] = {"identical": bool(same), "differing_values": differing}
            identical &= bool(same)
        batch = int(next(iter(feed.values())).shape[0])
        cases.append({"batch": batch, "outputs": outs})
    return {"identical": identical, "cases": cases}
