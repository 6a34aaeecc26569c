"""Which nodes of a float32 ONNX model may run in float16, and why the others may not (pure ONNX + onnxruntime).

The rules are explained in :mod:`cmc.exporter.trt.fp16_onnx`; :func:`plan` applies them.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import CmcError

F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
FP16_MAX = 65504.0
DEFAULT_FP32_ABOVE = 4096.0
CANCELLATION_RATIO = 64.0  # BatchNorm: max|x| / max|y| above this means it cancels a large mean
LARGE_RATIO = 8.0  # upstream of such a cancellation, tensors above LARGE_RATIO * max|y| stay float32

# Ops computed in float32 whatever their ranges: their float16 forms lose precision inside the op
# (squares, exponentials, variance estimates) where a range check on inputs/outputs cannot see it.
ALWAYS_FP32 = frozenset({
    "LayerNormalization", "InstanceNormalization", "GroupNormalization", "LpNormalization",
    "MeanVarianceNormalization", "ReduceSumSquare", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "LpPool",
    "GlobalLpPool", "CumSum", "Softplus", "Exp", "Pow", "Log", "EyeLike", "RandomNormalLike",
    "RandomUniformLike", "Bernoulli", "Multinomial", "NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss",
    "DFT", "STFT", "Det", "Einsum",
})
# Ops that sum many input elements into one output element (the accumulator is range-checked).
ACCUMULATING = frozenset({"ReduceSum", "ReduceMean", "ReduceL1", "GlobalAveragePool", "AveragePool"})


# ---------------------------------------------------------------- type facts of the float32 model

def default_opset(model: onnx.ModelProto, domain: str = "") -> int:
    for o in model.opset_import:
        if o.domain in (domain, "ai.onnx" if domain == "" else domain):
            return int(o.version)
    return 0


def tensor_types(model: onnx.ModelProto) -> tuple[dict[str, int], dict[str, int]]:
    """({name: elem_type}, {name: rank}) from ONNX type inference (strict: a model that does not type-check
    cannot be converted honestly)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as e:  # noqa: BLE001 - onnx raises InferenceError and others
        raise CmcError(f"FP16 conversion needs the ONNX model to type-check: {str(e).splitlines()[0][:200]}") from None
    types, ranks = {}, {}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if tt.elem_type:
            types[vi.name] = tt.elem_type
        if tt.HasField("shape"):
            ranks[vi.name] = len(tt.shape.dim)
    for init in inferred.graph.initializer:
        types[init.name] = init.data_type
        ranks[init.name] = len(init.dims)
    return types, ranks


def constant_values(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs with their values (float tensors only are needed)."""
    out = {i.name: i for i in graph.initializer}
    values: dict[str, np.ndarray] = {}
    for name, init in out.items():
        if init.data_type in (F32, F16, TensorProto.DOUBLE):
            values[name] = numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.output) == 1:
            for a in node.attribute:
                if a.name == "value" and a.t.data_type in (F32, F16):
                    values[node.output[0]] = numpy_helper.to_array(a.t)
                elif a.name == "value_float":
                    values[node.output[0]] = np.array(a.f, np.float32)
                elif a.name == "value_floats":
                    values[node.output[0]] = np.array(list(a.floats), np.float32)
    return values


def _packed_output(node: onnx.NodeProto) -> bool:
    """Does this node write packed activations (int32 bits that carry the signs of an activation)?"""
    from cmc.plugins.binary_conv.reference import VARIANTS

    variant = VARIANTS.get(node.op_type) if node.domain == "com.cmc" else None
    return variant is not None and variant.output_packed


def activations(model: onnx.ModelProto, types: dict[str, int]) -> set[str]:
    """Float32 tensors that depend on a float graph input through float tensors only — or through packed
    activations: a packed chain (BinaryConvPackedOut -> ... -> BinaryConvPackedIn) carries the activation
    as int32 bits, and the float Y of its last node is as much an activation as an unpacked BinaryConv's."""
    inits = {i.name for i in model.graph.initializer}
    act = {i.name for i in model.graph.input if i.name not in inits and types.get(i.name) == F32}
    packed: set[str] = set()
    for node in model.graph.node:
        if any(i in act or i in packed for i in node.input if i):
            act.update(o for o in node.output if o and types.get(o) == F32)
            if _packed_output(node):
                packed.update(o for o in node.output if o)
    return act


# ---------------------------------------------------------------- which inputs follow the activation type

class _Rule:
    """For one node: the input and output positions that share the activation's type."""

    def __init__(self, linked_inputs: set[int], linked_outputs: set[int]):
        self.inputs, self.outputs = linked_inputs, linked_outputs


def _schema_rule(node: onnx.NodeProto, opset: int, act: set[str]) -> _Rule | None:
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain or "")
    except onnx.defs.SchemaError:
        return None
    allowed = {tc.type_param_str: set(tc.allowed_type_strs) for tc in schema.type_constraints}

    def formal(params, i):
        if i < len(params):
            return params[i]
        if params and params[-1].option == onnx.defs.OpSchema.FormalParameterOption.Variadic:
            return params[-1]
        return None

    linked_vars = set()
    for i, name in enumerate(node.input):
        p = formal(schema.inputs, i)
        if name in act and p is not None and "tensor(float16)" in allowed.get(p.type_str, {p.type_str}):
            linked_vars.add(p.type_str)
    ins = {i for i in range(len(node.input)) if (p := formal(schema.inputs, i)) is not None and p.type_str in linked_vars}
    outs = {i for i in range(len(node.output)) if (p := formal(schema.outputs, i)) is not None and p.type_str in linked_vars}
    return _Rule(ins, outs)


def _contract_rule(node: onnx.NodeProto) -> _Rule | None:
    """From the contract: an input follows the activation type when the contract lets it be float16 and it
    is not a constant (X); an output follows it when typed "same as" such an input. BinaryConvPackedOut
    thus takes a float16 X (its Y is int32), and BinaryConvPackedIn has no float16 input (its Y is float32
    by contract: a packed X carries no float type)."""
    from cmc.plugins.registry import OPERATORS

    for entry in OPERATORS:
        c = entry["contract"]
        if (c.domain, c.op_type) != (node.domain, node.op_type):
            continue
        names = [i["name"] for i in c.inputs]
        ins = {k for k, i in enumerate(c.inputs) if "float16" in i.get("dtype", []) and not i.get("constant")}
        outs = set()
        for k, o in enumerate(c.raw.get("outputs", [])):
            dt = str(o.get("dtype", ""))
            if dt.startswith("same as "):
                src = dt[len("same as "):].strip()
                if src in names and names.index(src) in ins:
                    outs.add(k)
        return _Rule(ins, outs)
    return None


def _contract_output_type(node: onnx.NodeProto) -> str | None:
    """The fixed dtype a com.cmc contract gives output 0 (None: it follows an input or the op is unknown)."""
    from cmc.plugins.registry import by_op_type

    entry = by_op_type(node.op_type) if node.domain == "com.cmc" else None
    outputs = entry["contract"].raw.get("outputs", []) if entry else []
    dt = str(outputs[0].get("dtype", "")) if outputs else ""
    return dt if dt and not dt.startswith("same as ") else None


def node_rule(node: onnx.NodeProto, opset: int, act: set[str]) -> _Rule | None:
    if node.domain in ("", "ai.onnx"):
        return _schema_rule(node, opset, act)
    return _contract_rule(node)


# ---------------------------------------------------------------- calibration

def calibrate(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], names: set[str]) -> dict[str, dict]:
    """{tensor: {"max_abs": float, "size": int}} for ``names`` over the feeds (onnxruntime, CPU, float32 model).
    A non-finite value counts as infinitely large."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {o.name for o in probe.graph.output} | {i.name for i in probe.graph.input}
    dtypes = {i.name: (np.float16 if i.type.tensor_type.elem_type == F16 else np.float32) for i in probe.graph.input}
    for n in sorted(names - present):
        probe.graph.output.append(helper.make_tensor_value_info(n, F32, None))
    wanted = [o.name for o in probe.graph.output]
    try:
        sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        raise CmcError(f"FP16 conversion: onnxruntime cannot run the float32 model for calibration: "
                       f"{str(e).splitlines()[0][:200]}") from None
    stats: dict[str, dict] = {}
    for feed in feeds:
        outs = sess.run(wanted, {k: np.asarray(v, dtypes.get(k, np.float32)) for k, v in feed.items()})
        for n, v in zip(wanted, outs):
            if n not in names:
                continue
            v = np.asarray(v)
            m = float(np.abs(v).max()) if v.size else 0.0
            if not np.isfinite(m):
                m = float("inf")
            s = stats.setdefault(n, {"max_abs": 0.0, "size": 0})
            s["max_abs"] = max(s["max_abs"], m)
            s["size"] = max(s["size"], int(v.size))
        for k, v in feed.items():
            if k in names:
                s = stats.setdefault(k, {"max_abs": 0.0, "size": 0})
                s["max_abs"] = max(s["max_abs"], float(np.abs(np.asarray(v, np.float64)).max()) if np.size(v) else 0.0)
                s["size"] = max(s["size"], int(np.size(v)))
    return stats


def _accumulated(node: onnx.NodeProto, stats: dict) -> float:
    """Largest |partial sum| an accumulating op can reach: max|x| times the elements per output."""
    x, y = node.input[0], node.output[0]
    if x not in stats or y not in stats or not stats[y]["size"]:
        return 0.0
    if node.op_type == "AveragePool":
        ks = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), [1])
        count = int(np.prod(ks))
    else:
        count = max(1, stats[x]["size"] // max(1, stats[y]["size"]))
    return stats[x]["max_abs"] * count


# ---------------------------------------------------------------- decisions: where float16 rounding would flip a result

# Ops that compute nothing: their output is (a selection of) their inputs, so a sign or a value passes through.
EXACT_OPS = frozenset({
    "MaxPool", "Relu", "Reshape", "Flatten", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Slice", "Split",
    "Concat", "Gather", "GatherElements", "Pad", "Max", "Min", "Expand", "Tile", "Neg", "SpaceToDepth",
    "DepthToSpace", "Cast",
})
# Ops whose outputs jump when an input crosses a threshold: their inputs need the float32 value.
THRESHOLD_OPS = frozenset({"Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal", "Round", "Floor", "Ceil"})


def _binarized_input(node: onnx.NodeProto) -> int | None:
    """Index of the float input a node only reads the sign of (Sign; BinaryConv or a float-input packed
    variant with binarize_input=1 — the contract's rule, plugins/binary_conv/reference.py)."""
    from cmc.plugins.binary_conv.reference import VARIANTS, reads_sign_of_input

    if node.domain in ("", "ai.onnx") and node.op_type == "Sign":
        return 0
    if node.domain == "com.cmc":
        variant = VARIANTS.get(node.op_type)
        if variant is not None and variant.input_packed:
            return None  # already bits: the float value was decided in its producer
        if reads_sign_of_input(node.op_type, attr_value(node, "binarize_input")):
            return 0
    return None


def decision_paths(graph: onnx.GraphProto, act: set[str]) -> tuple[set[str], dict[int, str]]:
    """(tensors that must keep their float32 value, {node: reason} for nodes that must compute in float32).

    A binarized input (Sign, BinaryConv's X) only needs the right sign: a value computed in float32 and
    narrowed to float16 by BinaryConv's float16 rule keeps it (plain rounding would turn [-2^-25, 0) into
    -0 and (0, 2^-25] into +0; see sign_read_tensors), so the producer must compute in float32 from float32 values; ops that
    compute nothing pass the requirement on. Threshold ops (comparisons, rounding) need values.
    """
    producer = {o: k for k, n in enumerate(graph.node) for o in n.output if o}
    keep_value: set[str] = set()
    need_sign: set[str] = set()
    islands: dict[int, str] = {}
    work: list[tuple[str, str]] = []
    for node in graph.node:
        b = _binarized_input(node)
        if b is not None and b < len(node.input):
            work.append(("sign", node.input[b]))
    for k, node in enumerate(graph.node):
        if node.op_type in THRESHOLD_OPS and node.domain in ("", "ai.onnx") and any(t in act for t in node.input):
            islands[k] = f"{node.op_type} compares float values"
            work.extend(("value", t) for t in node.input)
    while work:
        kind, t = work.pop()
        if t not in act or t in keep_value or (kind == "sign" and t in need_sign):
            continue
        (keep_value if kind == "value" else need_sign).add(t)
        k = producer.get(t)
        if k is None:
            continue  # a graph input: rounding it keeps its sign; a needed value keeps it float32
        node = graph.node[k]
        ins = [i for i in node.input if i in act]
        b = _binarized_input(node)
        if b is not None:  # the output is computed from the input's sign alone, in float32
            if kind == "value" and node.op_type != "Sign":
                islands.setdefault(k, f"its output {t} decides a binarization or threshold downstream")
            work.append(("sign", node.input[b]))
        elif node.op_type in EXACT_OPS and node.domain in ("", "ai.onnx"):
            if kind == "value":
                islands.setdefault(k, f"its output {t} decides a threshold downstream")
            work.extend((kind, i) for i in ins)
        else:
            islands.setdefault(k, f"its output {t} is binarized or thresholded downstream: float16 would flip results")
            work.extend(("value", i) for i in ins)
    return keep_value, islands


def sign_read_tensors(graph: onnx.GraphProto, act: set[str]) -> set[str]:
    """Activations whose sign a binarization reads (Sign, a binarizing BinaryConv's X), directly or through
    ops that compute nothing (MaxPool, Relu, Reshape, ...). Where such a tensor is float32 and its reader
    float16, the conversion narrows it by BinaryConv's float16 rule (contract.json "float16_rounding": a
    nonzero value never becomes zero), so float16 storage never changes the binarization or Sign."""
    producer = {o: k for k, n in enumerate(graph.node) for o in n.output if o}
    work = [node.input[b] for node in graph.node
            if (b := _binarized_input(node)) is not None and b < len(node.input)]
    seen: set[str] = set()
    while work:
        t = work.pop()
        if t not in act or t in seen:
            continue
        seen.add(t)
        k = producer.get(t)
        if k is not None and graph.node[k].op_type in EXACT_OPS and graph.node[k].domain in ("", "ai.onnx"):
            work.extend(i for i in graph.node[k].input if i in act)
    return seen


# ---------------------------------------------------------------- the plan: which nodes run in float16

def _keep_large_values(graph, start, limit, act, stats, producer, keep_value, islands, why):
    """From a cancelled tensor upwards: every tensor larger than ``limit`` (LARGE_RATIO x the result's scale)
    feeds the cancellation with errors relative to its own size, so it is computed and kept in float32. The walk
    stops at tensors on the result's scale (their float16 rounding is not amplified)."""
    work = [start]
    while work:
        t = work.pop()
        if t not in act or t in keep_value or t not in stats or stats[t]["max_abs"] <= limit:
            continue
        keep_value.add(t)
        k = producer.get(t)
        if k is not None:
            islands[k] = f"its output {t} is {why}" if t == start else f"its output {t} (|{stats[t]['max_abs']:.4g}|) " \
                                                                        f"feeds a value {why}"
            work.extend(i for i in graph.node[k].input if i in act)


class Plan:
    """prec {node index: "fp16" | "fp32"} for the nodes touching activations, reasons {node index: why fp32},
    inputs_fp32 / outputs_fp32: graph inputs/outputs that stay float32 (with why, in notes)."""

    def __init__(self):
        self.prec: dict[int, str] = {}
        self.reasons: dict[int, str] = {}
        self.inputs_fp32: set[str] = set()
        self.outputs_fp32: set[str] = set()
        self.sign_read: set[str] = set()
        self.notes: list[str] = []


def _own_reason(node, rule, touched, overflow, stats, consts, fp32_above) -> str | None:
    """Why this node cannot run in float16 by itself (None: it can)."""
    if rule is None:
        return f"no type rule for {node.domain or 'ai.onnx'}::{node.op_type}"
    if node.op_type in ALWAYS_FP32:
        return f"{node.op_type} is computed in float32"
    if not rule.inputs:
        fixed = _contract_output_type(node)
        if fixed is not None:
            return f"{node.op_type} writes {fixed} by contract (its X is not a float tensor); float16 from its consumers on"
        return f"{node.op_type} has no float16 form for this input"
    for t in touched:
        if t in overflow:
            return f"{t} reaches |{stats[t]['max_abs']:.4g}| (> {fp32_above:g})"
    if node.op_type in ACCUMULATING and _accumulated(node, stats) > fp32_above:
        return f"{node.op_type} accumulates up to |{_accumulated(node, stats):.4g}| (> {fp32_above:g})"
    if node.op_type == "BatchNormalization":
        if not (all(i in consts for i in node.input[1:5]) and len([o for o in node.output if o]) == 1):
            return "BatchNormalization with computed parameters or training outputs"
        if max(float(np.abs(a).max(initial=0.0)) for a in batchnorm_fold(node, consts)) > FP16_MAX:
            return "BatchNormalization's folded scale/shift exceed float16's range"
    for i in rule.inputs:
        name = node.input[i] if i < len(node.input) else ""
        if name and name in consts and float(np.abs(consts[name]).max(initial=0.0)) > FP16_MAX:
            return f"constant {name} exceeds float16's range"
    return None


def plan(model, act, consts, stats, fp32_above, opset) -> Plan:
    graph = model.graph
    for node in graph.node:  # subgraphs may read any outer tensor: their types cannot be planned from here
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise CmcError(f"FP16 conversion does not handle control flow ({node.op_type} node "
                           f"{node.name or '<unnamed>'}); build this model in FP32")
    out = Plan()
    producer = {o: k for k, n in enumerate(graph.node) for o in n.output if o}
    overflow = {t for t, s in stats.items() if t in act and s["max_abs"] > fp32_above}
    keep_value, islands = decision_paths(graph, act)
    out.sign_read = sign_read_tensors(graph, act)
    for node in graph.node:  # BatchNorm cancelling a large mean: what computed its input must not be rounded
        if node.op_type == "BatchNormalization" and node.input[0] in stats and node.output[0] in stats:
            x, y = stats[node.input[0]]["max_abs"], stats[node.output[0]]["max_abs"]
            if x > 1.0 and x > CANCELLATION_RATIO * y:
                _keep_large_values(graph, node.input[0], LARGE_RATIO * y, act, stats, producer, keep_value, islands,
                                   f"cancelled by BatchNorm {node.name or ''} (max|x| {x:.4g}, max|y| {y:.4g})")
    for k, node in enumerate(graph.node):
        touched = [t for t in list(node.input) + list(node.output) if t in act]
        if not touched:
            continue
        if node.op_type == "BatchNormalization" and node.input[0] in keep_value:
            islands.setdefault(k, "it cancels a large mean (its input stays float32)")
        reason = _own_reason(node, node_rule(node, opset, act), touched, overflow, stats, consts, fp32_above)
        reason = reason or islands.get(k)
        out.prec[k] = "fp32" if reason else "fp16"
        if reason:
            out.reasons[k] = reason
    for vi in graph.input:
        if vi.name in act and (vi.name in overflow or vi.name in keep_value):
            out.inputs_fp32.add(vi.name)
            out.notes.append(f"input {vi.name} stays float32: " + (
                f"it reaches |{stats[vi.name]['max_abs']:.4g}|" if vi.name in overflow
                else "its value feeds a result float16 would change (see fp32_nodes)"))
    for vi in graph.output:
        if vi.name in overflow:
            out.outputs_fp32.add(vi.name)
            out.notes.append(f"output {vi.name} stays float32: it reaches |{stats[vi.name]['max_abs']:.4g}|")
    return out


def float16_compute_nodes(model: onnx.ModelProto) -> int:
    """How many nodes of ``model`` (Casts aside) read or write a float16 tensor: what makes an engine built
    from it an FP16 engine. 0 means every computation is float32, whatever the graph's I/O types say."""
    try:
        types, _ = tensor_types(model)
    except CmcError:  # a given model that does not type-check: the types it declares
        types = {vi.name: vi.type.tensor_type.elem_type
                 for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)}
        types.update({i.name: i.data_type for i in model.graph.initializer})
    return sum(1 for n in model.graph.node
               if n.op_type != "Cast" and any(types.get(t) == F16 for t in list(n.input) + list(n.output) if t))


def attr_value(node, name):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return None


def set_attr(node, name, value):
    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(name, value))


def batchnorm_fold(node, consts) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) of an inference BatchNormalization, in float64."""
    eps = attr_value(node, "epsilon")
    eps = 1e-5 if eps is None else float(eps)
    g, b, m, v = (np.asarray(consts[t], np.float64) for t in node.input[1:5])
    s = g / np.sqrt(v + eps)
    return s, b - m * s


def graph_node_label(node: onnx.NodeProto) -> str:
    return f"{node.name or '<unnamed>'} ({(node.domain + '::') if node.domain else ''}{node.op_type})"
