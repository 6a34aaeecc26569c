"""Export step: nn.Module / ExportedProgram -> self-describing ONNX with com.cmc nodes.

torch.export captures the cmc custom ops as single nodes; ``run_decompositions`` rewrites each into
``torch.onnx.ops.symbolic`` (a com.cmc node) and the dynamo exporter writes the graph. Afterwards,
on the ONNX IR:

* sub-graphs computed from parameters alone (a kept layer's weight standardisation, rotation, sign
  binarization) are folded into initializers (``cmc.exporter.param_folding``);
* a BatchNormalization (+ Relu) that alone consumes a com.cmc node's output is folded into the
  node's epilogue inputs (scale, shift, activation) — one kernel instead of three;
* with ``packed_chains``, BinaryConvs whose output only binarizing BinaryConvs read pass it on as
  packed bits (``cmc.exporter.packed_chains``);
* every com.cmc node gets ``plugin_version`` / ``plugin_namespace`` for TensorRT's parser;
* each com.cmc op type gets its model-local function body (attached after export, because the
  exporter's optimiser would inline onnxscript functions).
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_ir as ir
import torch

from cmc.plugins.onnx_function import BODY_OPSET
from cmc.plugins.registry import OPERATORS, by_op_type

from .errors import CmcError
from .param_folding import fold_parameter_subgraphs

DOMAIN = "com.cmc"
PLUGIN_ATTRS = ("plugin_version", "plugin_namespace")
# The dynamic batch dimension's range. Export traces at batch >= 2 so torch.export does not
# specialise the dimension to 1.
MAX_BATCH = 1 << 16


@dataclass
class ExportResult:
    model: onnx.ModelProto
    input_names: list[str]
    output_names: list[str]
    dynamic_batch: bool
    folded: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    packed_chains: dict | None = None  # packed_chains.pack_chains' report; None when not asked for
    #: param_folding.fold_parameter_subgraphs' report: parameter-only nodes folded into constants
    parameter_folding: dict = field(default_factory=dict)

    def custom_node_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.model.graph.node:
            if n.domain == DOMAIN:
                counts[n.op_type] = counts.get(n.op_type, 0) + 1
        return counts


def _decomposition_table():
    table = {}
    for entry in OPERATORS:
        for qualname, fn in entry["decompositions"].items():
            ns, name = qualname.split("::")
            table[getattr(getattr(torch.ops, ns), name).default] = fn
    return table


def _quiet():
    """The exporter logs progress on its own; cmc reports its own steps instead."""
    for name in ("torch.onnx", "torch._export", "torch.export", "onnxscript", "torch.fx.experimental.symbolic_shapes"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")


def _no_partial_graph_dump():
    """torch.export prints the partial graph of a failed trace to stderr; cmc's errors are one line."""
    return contextlib.redirect_stderr(io.StringIO())


def _run_refusing_state_changes(model: torch.nn.Module, example: torch.Tensor):
    """One eager run in which forward may not change the model's parameters/buffers or assign ``.data``:
    torch.export would silently drop such changes (or fail without naming the line)."""
    from .attribution import explain_failure
    from .idioms import eager_idioms, refuse_state_changes

    try:
        with eager_idioms(), refuse_state_changes(model), torch.no_grad():
            model(example)
    except CmcError:
        raise
    except Exception as e:
        raise explain_failure(e, during="a check run", model=model, example=example) from e


def capture(model: torch.nn.Module, example: torch.Tensor, dynamic_batch: bool = True):
    """torch.export with a dynamic batch dimension; falls back to a static one with a note.

    Research-code idioms are captured through ``cmc.exporter.idioms`` (``.data`` reads, legacy autograd
    Functions, ``.cuda()``); those that cannot be (state changed in forward, data-dependent branches)
    fail with one line naming the user's file and line."""
    from .attribution import explain_failure
    from .idioms import IdiomError, capture_idioms

    _quiet()
    _run_refusing_state_changes(model, example)
    notes = []
    trace_input = example
    if dynamic_batch and example.shape[0] == 1:
        trace_input = example.expand(2, *example.shape[1:]).clone()
    with capture_idioms() as idioms:
        ep, dynamic = None, False
        if dynamic_batch:
            try:
                batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
                with _no_partial_graph_dump():
                    ep = torch.export.export(model, (trace_input,), dynamic_shapes=({0: batch},), strict=False)
                dynamic = True
            except IdiomError:
                raise
            except Exception as e:  # the model fixes its batch size somewhere
                notes.append(f"dynamic batch impossible ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
                             f"exported with static batch {example.shape[0]}")
        if ep is None:
            try:
                with _no_partial_graph_dump():
                    ep = torch.export.export(model, (example,), strict=False)
            except Exception as e:
                raise explain_failure(e, during="capture (torch.export)", model=model, example=example,
                                      capturing=True) from e
    return ep, dynamic, notes + idioms.notes()


def export_onnx(model_or_program, example: torch.Tensor, dynamic_batch: bool = True,
                fold_epilogues: bool = True, packed_chains: bool = False,
                input_names: list[str] | None = None, output_names: list[str] | None = None) -> ExportResult:
    if isinstance(model_or_program, torch.export.ExportedProgram):
        ep, dynamic, notes = model_or_program, _has_dynamic_batch(model_or_program), []
    else:
        ep, dynamic, notes = capture(model_or_program, example, dynamic_batch)
    _quiet()
    try:
        ep = ep.run_decompositions(_decomposition_table())
        program = torch.onnx.export(ep, (example,), dynamo=True, opset_version=BODY_OPSET, verbose=False,
                                    input_names=["input"], report=False)
    except Exception as e:
        raise CmcError(f"ONNX export failed: {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}") from e
    irm = program.model
    # Before the epilogue fold, so that a scale/shift computed from parameters is a constant there.
    param_folding = fold_parameter_subgraphs(irm)
    if param_folding["nodes"]:
        ops = ", ".join(f"{op} {k}" for op, k in sorted(param_folding["ops"].items(), key=lambda e: (-e[1], e[0])))
        notes.append(f"folded {param_folding['nodes']} parameter-only node(s) ({ops}) into "
                     f"{param_folding['constants']} constant(s), evaluated once by onnxruntime's CPU kernels")
    elif param_folding.get("not_folded"):
        notes.append(param_folding["not_folded"])
    name_cmc_nodes(irm)
    folded = fold_into_epilogues(irm) if fold_epilogues else []
    chains = None
    if packed_chains:
        from .packed_chains import pack_chains

        chains = pack_chains(irm)
    mark_plugin_attributes(irm)
    name_graph_io(irm, input_names, output_names)
    proto = ir.to_proto(irm)
    attach_function_bodies(proto)
    set_cmc_opset(proto)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:
        raise CmcError(f"exported ONNX fails the ONNX checker: {str(e).splitlines()[0][:300]}") from e
    return ExportResult(model=proto, input_names=[i.name for i in proto.graph.input],
                        output_names=[o.name for o in proto.graph.output], dynamic_batch=dynamic,
                        folded=folded, notes=notes, packed_chains=chains, parameter_folding=param_folding)


def default_io_names(n_inputs: int, n_outputs: int) -> tuple[list[str], list[str]]:
    """'input' / 'output' (numbered when there are several): what a server's clients will type."""
    def names(base, n):
        return [base] if n == 1 else [f"{base}_{i}" for i in range(n)]
    return names("input", n_inputs), names("output", n_outputs)


def name_graph_io(model: ir.Model, input_names: list[str] | None = None, output_names: list[str] | None = None):
    """Give the graph's inputs and outputs meaningful names (the exporter's own output name is whatever
    the last op was, e.g. 'view'). Renaming an ir.Value renames every use of it."""
    graph = model.graph
    default_in, default_out = default_io_names(len(graph.inputs), len(graph.outputs))
    wanted = {"input": (graph.inputs, input_names or default_in), "output": (graph.outputs, output_names or default_out)}
    for kind, (values, names) in wanted.items():
        if len(names) != len(values):
            raise CmcError(f"--{kind}-names gives {len(names)} name(s) but the model has {len(values)} {kind}(s)")
    taken = {v.name for n in graph for v in n.outputs} | set(graph.initializers)
    final = [n for _, (_, names) in wanted.items() for n in names]
    if len(set(final)) != len(final):
        raise CmcError(f"tensor names must be distinct: {final}")
    for kind, (values, names) in wanted.items():
        for v, new in zip(values, names):
            if v.name == new:
                continue
            if new in taken and new not in {x.name for x in values}:
                # An internal value already has the name: move it out of the way first.
                for node in graph:
                    for out in node.outputs:
                        if out.name == new:
                            out.name = f"{new}_internal"
            v.name = new


def _has_dynamic_batch(ep) -> bool:
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in ep.graph_signature.user_inputs:
            val = node.meta.get("val")
            return val is not None and not isinstance(val.shape[0], int)
    return False


def _const(value: ir.Value | None):
    if value is None:
        return None
    t = value.const_value
    return None if t is None else t.numpy()


def _single_consumer(value: ir.Value):
    uses = list(value.uses())
    if len(uses) != 1 or value.is_graph_output():
        return None
    return uses[0][0] if isinstance(uses[0], tuple) else uses[0].node


def _scope(node: ir.Node) -> str:
    return node.metadata_props.get("pkg.torch.onnx.name_scopes", "")


def module_path(scope: str) -> str:
    """"['', 'layer1', 'layer1.0', 'layer1.0.conv1', 'op']" -> 'layer1.0.conv1' (the innermost module)."""
    import ast

    try:
        scopes = ast.literal_eval(scope)
    except (ValueError, SyntaxError):
        return scope
    if isinstance(scopes, str):
        return scopes
    inner = [s for s in scopes[1:-1] if s]
    return inner[-1] if inner else ""


def name_cmc_nodes(model: ir.Model):
    """Name each com.cmc node after the user's layer it came from: 'layer1.0.conv1/AdderConv'."""
    taken = {n.name for n in model.graph}
    for node in model.graph:
        if node.domain != DOMAIN:
            continue
        base = f"{module_path(_scope(node)) or 'model'}/{node.op_type}"
        name, i = base, 1
        while name in taken:
            i += 1
            name = f"{base}_{i}"
        taken.add(name)
        node.name = name


def fold_into_epilogues(model: ir.Model) -> list[dict]:
    """Fold BatchNormalization (+Relu) after com.cmc nodes into their scale/shift/activation.

    Exact in real arithmetic: BN(s*A + t) = (s*g/sqrt(v+eps))*A + ((t-mu)*g/sqrt(v+eps) + b),
    computed in float64 and rounded once to float32.
    """
    graph = model.graph
    folded = []
    for node in list(graph):
        if node.domain != DOMAIN or len(node.inputs) != 4:
            continue
        scale, shift = _const(node.inputs[2]), _const(node.inputs[3])
        if scale is None or shift is None:
            continue
        absorbed = []
        consumer = _single_consumer(node.outputs[0])
        act = node.attributes.get("activation")
        if consumer is not None and consumer.op_type == "BatchNormalization" and consumer.domain == "" \
                and act is not None and act.as_int() == 0 and len(consumer.outputs) == 1:
            params = [_const(v) for v in consumer.inputs[1:5]]
            if all(p is not None for p in params):
                gamma, beta, mean, var = (p.astype(np.float64) for p in params)
                eps_attr = consumer.attributes.get("epsilon")
                eps = eps_attr.as_float() if eps_attr is not None else 1e-5
                inv = gamma / np.sqrt(var + eps)
                scale = scale.astype(np.float64) * inv
                shift = (shift.astype(np.float64) - mean) * inv + beta
                _bypass(graph, node, consumer)
                absorbed.append(("BatchNormalization", _scope(consumer)))
                consumer = _single_consumer(node.outputs[0])
        if consumer is not None and consumer.op_type == "Relu" and consumer.domain == "" \
                and node.attributes["activation"].as_int() == 0:
            _bypass(graph, node, consumer)
            node.attributes["activation"] = ir.AttrInt64("activation", 1)
            absorbed.append(("Relu", _scope(consumer)))
        if not absorbed:
            continue
        for i, arr in ((2, scale), (3, shift)):
            v = ir.Value(name=f"{node.name}_{'scale' if i == 2 else 'shift'}_fused",
                         const_value=ir.tensor(np.asarray(arr, dtype=np.float32)))
            graph.register_initializer(v)
            node.replace_input_with(i, v)
        # The fused node now produces what the last absorbed op produced. Remember which BatchNorm
        # module it absorbed (and whether a ReLU followed) so verification can still compare it.
        node.metadata_props["pkg.torch.onnx.name_scopes"] = absorbed[-1][1]
        if absorbed[0][0] == "BatchNormalization":
            node.metadata_props["cmc.folded_module"] = module_path(absorbed[0][1])
            node.metadata_props["cmc.folded_relu"] = "1" if len(absorbed) > 1 else "0"
        folded.append({"node": node.name, "op": node.op_type, "absorbed": [a[0] for a in absorbed]})
    _drop_unused_initializers(graph)
    return folded


def _bypass(graph: ir.Graph, producer: ir.Node, consumer: ir.Node):
    """Make ``producer`` output what ``consumer`` output, then delete ``consumer``."""
    out, new = consumer.outputs[0], producer.outputs[0]
    if out.is_graph_output():
        name = out.name
        out.replace_all_uses_with(new, replace_graph_outputs=True)
        out.name = None
        new.name = name
    else:
        out.replace_all_uses_with(new)
    graph.remove(consumer, safe=True)


def _drop_unused_initializers(graph: ir.Graph):
    for name, v in list(graph.initializers.items()):
        if not list(v.uses()) and not v.is_graph_output():
            del graph.initializers[name]


def mark_plugin_attributes(model: ir.Model):
    """plugin_version / plugin_namespace: how TensorRT's ONNX parser finds cmc's plugin (on com.cmc nodes of
    the main graph and of the model's own functions, which TensorRT inlines)."""
    nodes = list(model.graph) + [node for fn in model.functions.values() for node in fn]
    for node in nodes:
        if node.domain != DOMAIN:
            continue
        entry = by_op_type(node.op_type)
        if entry is None:
            raise CmcError(f"node {node.name}: unknown {DOMAIN} op {node.op_type!r}")
        plugin = entry["contract"].plugin
        node.attributes["plugin_version"] = ir.AttrString("plugin_version", str(plugin["version"]))
        node.attributes["plugin_namespace"] = ir.AttrString("plugin_namespace", str(plugin["namespace"]))


def attach_function_bodies(proto: onnx.ModelProto):
    used = {n.op_type for n in proto.graph.node if n.domain == DOMAIN}
    have = {(f.domain, f.name) for f in proto.functions}
    for op_type in sorted(used):
        if (DOMAIN, op_type) in have:
            continue
        proto.functions.append(by_op_type(op_type)["body"](extra_attributes=PLUGIN_ATTRS))
    versions = {o.domain: o for o in proto.opset_import}
    if used and DOMAIN not in versions:
        proto.opset_import.append(onnx.helper.make_opsetid(DOMAIN, 1))


def set_cmc_opset(proto: onnx.ModelProto):
    """Import com.cmc at the version its newest used op needs (1 without packed variants, see the
    contracts' "version"), so that a consumer that knows only version 1 can tell at once."""
    need = [by_op_type(n.op_type)["contract"].version for n in proto.graph.node
            if n.domain == DOMAIN and by_op_type(n.op_type) is not None]
    imports = [o for o in proto.opset_import if o.domain == DOMAIN]
    if not need:
        return
    if imports:
        imports[0].version = max(need)
    else:
        proto.opset_import.append(onnx.helper.make_opsetid(DOMAIN, max(need)))


def strip_function_bodies(proto: onnx.ModelProto, op_types=None) -> onnx.ModelProto:
    """Remove com.cmc function bodies (e.g. where a TensorRT plugin must be used instead)."""
    keep = [f for f in proto.functions if not (f.domain == DOMAIN and (op_types is None or f.name in op_types))]
    del proto.functions[:]
    proto.functions.extend(keep)
    return proto
