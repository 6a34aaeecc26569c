"""FP16 ONNX for TensorRT's strongly typed networks: :func:`convert_to_fp16` (pure ONNX; onnxruntime runs the result).

TensorRT 11 has no FP16 builder flag: a network's precision is the ONNX model's types. cmc therefore
writes the FP16 model itself, and uses the same model on TensorRT 10.x (built strongly typed there):

* graph inputs/outputs and every float activation are float16;
* com.cmc nodes take X in float16 and keep their other inputs as the contract types them: AdderConv's
  W, scale and shift stay float32 (the op computes in float32), BinaryConv's W_packed int32 and its
  scale/shift float32. Which inputs follow X is read from the contract ("dtype": "same as X");
* standard ops follow their ONNX schema: every input that shares the activation's type variable
  (Conv W and B, Gemm B and C, Clip bounds, Pad's constant, Concat's other inputs, ...) becomes float16
  (constants are converted once, computed tensors get a Cast); inputs typed independently (Resize's
  scales and roi, shapes, indices) keep their types;
* BatchNormalization with constant parameters becomes Mul + Add with its scale and shift folded in
  float64 and rounded to float16 once (TensorRT's parsers differ in how they treat mixed-type
  BatchNormalization; two elementwise ops mean the same thing everywhere);
* a node stays float32 ("fp32 island": Casts around it) when float16 would not be honest:
  - an activation it reads or writes exceeds ``fp32_above`` (default 4096, 16x below float16's
    maximum 65504) on the calibration inputs — AdderNet's raw L1 sums before BatchNorm reach thousands;
  - it is a BatchNormalization that cancels its input (max|x| / max|y| > 64: a large mean subtracted
    from a large activation; the producer of x then also stays float32, so x is never rounded);
  - it is a reduction/average whose accumulated sum (max|x| times the elements reduced) would pass
    ``fp32_above``, or an op whose float16 form is numerically fragile (normalisations, exp-sums, ...);
  - it has no schema cmc knows (another domain), or no float16 form in its schema.
Tensors that carry shapes or constants rather than activations (a Shape -> Cast(float) -> Div chain
feeding Resize, for example) keep their types: only float tensors reachable from a float graph input
through float tensors are activations.

Without calibration inputs only the op-kind rules apply (the report says so).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cmc.plugins.binary_conv.reference import FLOAT16_TINY, VARIANTS

from ..errors import CmcError
from .fp16_plan import (DEFAULT_FP32_ABOVE, F16, F32, activations, attr_value, batchnorm_fold, calibrate,
                        constant_values, default_opset, graph_node_label, node_rule, plan, set_attr, tensor_types)


# ---------------------------------------------------------------- the rewrite

class _Names:
    def __init__(self, graph):
        self.used = {i.name for i in graph.initializer} | {i.name for i in graph.input}
        for n in graph.node:
            self.used.update(n.input)
            self.used.update(n.output)

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name


def convert_to_fp16(model: onnx.ModelProto, calibration_feeds: list[dict[str, np.ndarray]] | None = None, *,
                    fp32_above: float = DEFAULT_FP32_ABOVE) -> tuple[onnx.ModelProto, dict]:
    """Return (float16 copy, report). The input model is not modified.

    calibration_feeds  inputs to run the float32 model on (onnxruntime) to find activations float16
                       cannot hold; None applies only the op-kind and decision-path rules.
    fp32_above         activations (and accumulations) larger than this on the calibration inputs stay float32.
    """
    model = _copy(model)
    graph = model.graph
    used_before = {i for n in graph.node for i in n.input}
    inits = {i.name for i in graph.initializer}
    opset = default_opset(model)
    types, ranks = tensor_types(model)
    act = activations(model, types)
    consts = constant_values(graph)
    stats = calibrate(model, calibration_feeds, act) if calibration_feeds else {}
    the_plan = plan(model, act, consts, stats, fp32_above, opset)
    labels = {k: graph_node_label(graph.node[k]) for k in the_plan.reasons}
    names = _Names(graph)

    # 1. The float16 tensors: activation inputs (unless kept) and the linked outputs of float16 nodes.
    new_type = {vi.name: F16 for vi in graph.input if vi.name in act and vi.name not in the_plan.inputs_fp32}
    for k, node in enumerate(graph.node):
        if the_plan.prec.get(k) != "fp16":
            continue
        for i in node_rule(node, opset, act).outputs:
            if i < len(node.output) and node.output[i] and types.get(node.output[i]) == F32:
                new_type[node.output[i]] = F16
        if node.op_type == "Cast" and node.input[0] in act and attr_value(node, "to") == F32:
            new_type[node.output[0]] = F16

    # 2. Graph outputs written by a float32 node get a final Cast under their own name.
    out_renames, tail = {}, []
    producers = {o for n in graph.node for o in n.output if o}
    for vi in graph.output:
        t = vi.name
        if t in act and t in producers and t not in the_plan.outputs_fp32 and new_type.get(t) != F16:
            out_renames[t] = names.fresh(f"{t}__fp32")
            tail.append(helper.make_node("Cast", [out_renames[t]], [t], to=F16, name=names.fresh(f"{t}__to_fp16")))
    for node in graph.node:
        for field in (node.input, node.output):
            for j, n in enumerate(field):
                if n in out_renames:
                    field[j] = out_renames[n]
    for vi in graph.value_info:
        if vi.name in out_renames:
            vi.name = out_renames[vi.name]
    for t, inner in out_renames.items():
        types[inner] = types[t]
        act.add(inner)
        new_type[t] = F16

    # 3. Rewrite node by node: every input gets the type the node needs (a converted constant or a Cast).
    new_inits: list[onnx.TensorProto] = []
    cache: dict[tuple[str, int], str] = {}
    counts = {"casts": len(tail), "constants": 0, "batchnorms": 0, "sign_keeping": 0}

    def typed(t: str, want: int, before: list) -> str:
        have = new_type.get(t, types.get(t))
        if not t or have == want or have not in (F32, F16) or want not in (F32, F16):
            return t
        if (t, want) not in cache:
            suffix = "fp16" if want == F16 else "fp32"
            if t in consts and t not in act:
                name = names.fresh(f"{t}__{suffix}")
                new_inits.append(numpy_helper.from_array(consts[t].astype(np.float16 if want == F16 else np.float32), name))
                counts["constants"] += 1
            else:
                name = names.fresh(f"{t}__to_{suffix}")
                src = t
                if want == F16 and t in the_plan.sign_read:  # a binarization or Sign reads it: keep its sign
                    src = keep_sign_for_float16(t, names, before, new_inits)
                    counts["sign_keeping"] += 1
                before.append(helper.make_node("Cast", [src], [name], to=want, name=names.fresh(f"cast_{name}")))
                counts["casts"] += 1
            cache[(t, want)] = name
        return cache[(t, want)]

    new_nodes: list[onnx.NodeProto] = []
    for k, node in enumerate(graph.node):
        p = the_plan.prec.get(k)
        before: list[onnx.NodeProto] = []
        if p == "fp16":
            linked = node_rule(node, opset, act).inputs
            for j, t in enumerate(node.input):
                orig = types.get(t)
                node.input[j] = typed(t, F16 if (j in linked and orig in (F32, F16)) else orig, before)
            if node.op_type == "Cast" and attr_value(node, "to") == F32 and node.output[0] in new_type:
                set_attr(node, "to", F16)
            if node.op_type == "BatchNormalization":
                new_nodes.extend(before)
                new_nodes.extend(_batchnorm_as_mul_add(node, consts, ranks, names, new_inits))
                counts["batchnorms"] += 1
                continue
        elif p == "fp32":
            for j, t in enumerate(node.input):
                node.input[j] = typed(t, types.get(t), before)
        new_nodes.extend(before)
        new_nodes.append(node)
    new_nodes.extend(tail)
    del graph.node[:]
    graph.node.extend(new_nodes)

    # 4. Initializers no longer used are dropped; declared types follow the new ones.
    graph.initializer.extend(new_inits)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    kept = [i for i in graph.initializer if i.name in used or i.name not in used_before]
    dropped = len(graph.initializer) - len(kept)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.name in new_type and vi.name not in inits:
            vi.type.tensor_type.elem_type = new_type[vi.name]
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # noqa: BLE001
        raise CmcError(f"internal error: the FP16 conversion produced an invalid model "
                       f"({str(e).splitlines()[0][:200]})") from None

    report = {
        "calibrated": bool(calibration_feeds),
        "fp32_above": fp32_above,
        "fp16_nodes": sum(1 for v in the_plan.prec.values() if v == "fp16"),
        "fp32_nodes": [{"node": labels[k], "reason": r} for k, r in sorted(the_plan.reasons.items())],
        "casts_inserted": counts["casts"],
        "sign_keeping_casts": counts["sign_keeping"],
        "constants_converted": counts["constants"],
        "batchnorms_as_mul_add": counts["batchnorms"],
        "initializers_dropped": dropped,
        "inputs": {vi.name: TensorProto.DataType.Name(vi.type.tensor_type.elem_type) for vi in graph.input
                   if vi.name not in inits},
        "outputs": {vi.name: TensorProto.DataType.Name(vi.type.tensor_type.elem_type) for vi in graph.output},
        "notes": the_plan.notes,
    }
    return model, report


def keep_sign_for_float16(t: str, names, before: list, new_inits: list) -> str:
    """Where(t < 0, Min(t, -2^-24), Where(t > 0, Max(t, 2^-24), t)): what a Cast to float16 then rounds by
    BinaryConv's float16 rule (contract.json "float16_rounding"): a nonzero value never becomes zero.
    Float32 in, float32 out."""
    lo, hi, zero = (names.fresh(f"{t}__{k}") for k in ("neg_tiny", "tiny", "zero"))
    for name, value in ((lo, -FLOAT16_TINY), (hi, FLOAT16_TINY), (zero, 0.0)):
        new_inits.append(numpy_helper.from_array(np.array(value, np.float32), name))
    neg, pos, low, high, up, kept = (names.fresh(f"{t}__{k}") for k in
                                     ("negative", "positive", "below", "above", "up", "sign_kept"))
    before.append(helper.make_node("Less", [t, zero], [neg], name=names.fresh(f"less_{neg}")))
    before.append(helper.make_node("Greater", [t, zero], [pos], name=names.fresh(f"greater_{pos}")))
    before.append(helper.make_node("Min", [t, lo], [low], name=names.fresh(f"min_{low}")))
    before.append(helper.make_node("Max", [t, hi], [high], name=names.fresh(f"max_{high}")))
    before.append(helper.make_node("Where", [pos, high, t], [up], name=names.fresh(f"where_{up}")))
    before.append(helper.make_node("Where", [neg, low, up], [kept], name=names.fresh(f"where_{kept}")))
    return kept


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _batchnorm_as_mul_add(node, consts, ranks, names, new_inits) -> list[onnx.NodeProto]:
    """Y = X * s + t with s = gamma / sqrt(var + eps), t = beta - mean * s folded in float64, stored as float16
    shaped [C, 1, ...] to broadcast over [N, C, ...]."""
    x = node.input[0]
    s, t = batchnorm_fold(node, consts)
    rank = ranks.get(x)
    if rank is None:
        # the original input name may have been replaced by a Cast output; the rank is the BN output's
        rank = ranks.get(node.output[0], 4)
    shape = [-1] + [1] * max(rank - 2, 0)
    base = node.name or node.output[0]
    s_name, t_name = names.fresh(f"{base}__bn_scale_fp16"), names.fresh(f"{base}__bn_shift_fp16")
    new_inits.append(numpy_helper.from_array(s.reshape(shape).astype(np.float16), s_name))
    new_inits.append(numpy_helper.from_array(t.reshape(shape).astype(np.float16), t_name))
    mid = names.fresh(f"{node.output[0]}__bn_scaled")
    return [helper.make_node("Mul", [x, s_name], [mid], name=names.fresh(f"{base}__mul")),
            helper.make_node("Add", [mid, t_name], [node.output[0]], name=names.fresh(f"{base}__add"))]


def float16_rounding_model(model16: onnx.ModelProto) -> onnx.ModelProto:
    """A float32 model that rounds every float16 tensor of ``model16`` to float16 explicitly (Cast pairs), and
    computes every op in float32 — for checking float16 numerics with onnxruntime on CPU.

    onnxruntime's CPU provider runs many float16 ops by casting to float32 and drops the roundings between
    such ops (a float16 Sub -> Abs chain is computed without rounding the Sub's output), so running the
    float16 model itself there is optimistic. TensorRT stores each float16 tensor in float16; this model
    does too (rounded values between ops), while each op computes in float32 as TensorRT's float16 kernels
    accumulate (a kernel that accumulates in float16 would differ further).
    """
    types, _ = tensor_types(model16)
    out = _copy(model16)
    graph = out.graph
    names = _Names(graph)
    for init in graph.initializer:
        if init.data_type == F16:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name))
    rename: dict[str, str] = {}
    nodes: list[onnx.NodeProto] = []

    def round_to(raw: str, name: str) -> list[onnx.NodeProto]:
        half = names.fresh(f"{name}__as_fp16")
        return [helper.make_node("Cast", [raw], [half], to=F16), helper.make_node("Cast", [half], [name], to=F32)]

    for vi in graph.input:
        if vi.type.tensor_type.elem_type == F16:
            vi.type.tensor_type.elem_type = F32
            rounded = names.fresh(f"{vi.name}__rounded")
            rename[vi.name] = rounded
            nodes.extend(round_to(vi.name, rounded))
    binary_ops = {"BinaryConv"} | set(VARIANTS)
    for node in graph.node:
        for j, t in enumerate(node.input):
            node.input[j] = rename.get(t, t)
        if node.op_type == "Cast" and node.domain in ("", "ai.onnx") and attr_value(node, "to") == F16:
            set_attr(node, "to", F32)
        after = []
        for j, o in enumerate(node.output):
            if o and types.get(o) == F16:
                raw = names.fresh(f"{o}__fp32")
                node.output[j] = raw
                if node.domain == "com.cmc" and node.op_type in binary_ops:  # the contract's float16 rounding
                    inits: list = []
                    raw = keep_sign_for_float16(raw, names, after, inits)
                    graph.initializer.extend(inits)
                after.extend(round_to(raw, o))
        nodes.append(node)
        nodes.extend(after)
    del graph.node[:]
    graph.node.extend(nodes)
    for vi in list(graph.output) + list(graph.value_info):
        if vi.type.tensor_type.elem_type == F16:
            vi.type.tensor_type.elem_type = F32
    return out
