"""Preparing a cmc ONNX model for TensorRT's ONNX parser (pure ONNX: runs and is tested without TensorRT).

The exporter writes every com.cmc node twice over: as a node (with all contract attributes plus
``plugin_version``/``plugin_namespace``) and as a model-local function body in standard ops, so that
onnxruntime runs the model without any extra library. TensorRT's parser, when a node has both a
local function and a registered plugin, picks one of them depending on its version:

* TensorRT <= 10.6: the local function first (the plugin is never used);
* 10.7 .. 10.14: the plugin first;
* 10.15+ and 11.x: the local function, unless the node carries ``plugin_namespace`` or the parser
  flag kENABLE_PLUGIN_OVERRIDE is set.

:func:`prepare_onnx_for_trt` removes that ambiguity for every version: it strips the local function
bodies of the ops cmc has plugins for (so the parser can only take the plugin) and makes sure each
such node carries the contract's ``plugin_version`` and ``plugin_namespace`` and every contract
attribute explicitly (the parser hands the plugin only attributes that are present on the node).
com.cmc ops without a plugin keep their function body and run as standard layers.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx
from onnx import helper

from cmc.plugins.registry import OPERATORS

from ..errors import CmcError

DOMAIN = "com.cmc"
PLUGIN_ATTRS = ("plugin_version", "plugin_namespace")
# Above this the prepared model is saved with external data (protobuf's 2 GiB limit).
_EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def plugin_contracts() -> dict[tuple[str, str], object]:
    """{(domain, op_type): contract} for every com.cmc op that has a TensorRT plugin entry."""
    out = {}
    for entry in OPERATORS:
        c = entry["contract"]
        if getattr(c, "plugin", None):
            out[(c.domain, c.op_type)] = c
    return out


def _attr_value(a: onnx.AttributeProto):
    if a.type == onnx.AttributeProto.INT:
        return int(a.i)
    if a.type == onnx.AttributeProto.INTS:
        return [int(v) for v in a.ints]
    if a.type == onnx.AttributeProto.STRING:
        return a.s.decode("utf-8", errors="replace")
    return None


def _where(node: onnx.NodeProto, graph_name: str) -> str:
    return f"node {node.name or '<unnamed>'} ({node.domain}::{node.op_type}) in {graph_name}"


def _prepare_node(node: onnx.NodeProto, contract, graph_name: str, stats: dict):
    where = _where(node, graph_name)
    attrs = {a.name: a for a in node.attribute}
    # Inside a kept function's body an attribute may refer to the caller's (ref_attr_name): TensorRT binds it
    # when it inlines the function, so its value cannot be checked here; every other attribute is checked and
    # completed as on a main-graph node, and plugin_version / plugin_namespace are added all the same (without
    # them the parser looks the creator up under namespace "" and fails).
    refs = {a.name for a in node.attribute if a.ref_attr_name}
    if refs:
        stats["bound_at_call"] += 1
    values = {}
    for spec in contract.attributes:
        a = attrs.get(spec.name)
        if a is None or spec.name in refs:
            continue
        want = onnx.AttributeProto.INTS if spec.type == "ints" else onnx.AttributeProto.INT
        if a.type != want:
            raise CmcError(f"{where}: attribute {spec.name} has ONNX type "
                           f"{onnx.AttributeProto.AttributeType.Name(a.type)}, the contract says {spec.type}")
        values[spec.name] = _attr_value(a)
    try:
        if refs:  # check the literal attributes alone; a required one that is bound at call time is present
            full = {k: v for k, v in contract.normalize(
                {**values, **{s.name: s.default if s.default is not None else _placeholder(s)
                              for s in contract.attributes if s.name in refs}}).items() if k not in refs}
        else:
            full = contract.normalize(values)
    except ValueError as e:
        raise CmcError(f"{where}: {e}") from None
    for spec in contract.attributes:
        if spec.name not in attrs:
            node.attribute.append(helper.make_attribute(spec.name, full[spec.name]))
            stats["defaults_filled"] += 1
    expected = {"plugin_version": str(contract.plugin["version"]), "plugin_namespace": str(contract.plugin["namespace"])}
    for name, value in expected.items():
        a = attrs.get(name)
        if a is None:
            node.attribute.append(helper.make_attribute(name, value))
            stats["plugin_attrs_added"] += 1
        elif a.ref_attr_name:
            raise CmcError(f"{where}: {name} refers to the calling function's attribute {a.ref_attr_name!r}; "
                           f"cmc's {contract.plugin['name']} plugin needs {name}={value!r} written on the node")
        elif a.type != onnx.AttributeProto.STRING or a.s.decode("utf-8", errors="replace") != value:
            raise CmcError(f"{where}: {name}={_attr_value(a)!r}, but cmc's {contract.plugin['name']} plugin is "
                           f"{name}={value!r}; fix the exporter or drop the attribute")
    known = {s.name for s in contract.attributes} | set(PLUGIN_ATTRS)
    extra = sorted(set(attrs) - known)
    if extra:
        stats["notes"].append(f"{where}: attribute(s) {extra} are not in the contract; TensorRT ignores them")
    stats["plugin_nodes"][contract.op_type] = stats["plugin_nodes"].get(contract.op_type, 0) + 1


def _placeholder(spec):
    """A value inside the contract's bounds for a required attribute that is bound at call time."""
    low = spec.min if spec.min is not None else 0
    return [low] * (spec.length or 1) if spec.type == "ints" else low


def _walk_graph(graph: onnx.GraphProto, plugins: dict, stats: dict, name: str):
    for node in graph.node:
        key = (node.domain, node.op_type)
        if key in plugins:
            _prepare_node(node, plugins[key], name, stats)
        elif node.domain == DOMAIN:
            stats["without_plugin"].add(node.op_type)
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                _walk_graph(a.g, plugins, stats, f"{name}/{node.name or node.op_type}.{a.name}")
            elif a.type == onnx.AttributeProto.GRAPHS:
                for i, g in enumerate(a.graphs):
                    _walk_graph(g, plugins, stats, f"{name}/{node.name or node.op_type}.{a.name}[{i}]")


def prepare_onnx_for_trt(model: onnx.ModelProto | str | os.PathLike, *, check: bool = True) -> tuple[onnx.ModelProto, dict]:
    """Return (prepared copy, report). The input model is never modified.

    report: {"plugin_nodes": {op_type: count}, "stripped_functions": [...], "kept_functions": [...],
             "without_plugin": [...], "defaults_filled": n, "plugin_attrs_added": n, "notes": [...]}
    Raises CmcError when a com.cmc node contradicts its contract or names another plugin.
    """
    if isinstance(model, (str, os.PathLike)):
        try:
            src = onnx.load(str(model))
        except Exception as e:  # noqa: BLE001 - onnx raises several types for unreadable files
            raise CmcError(f"cannot read ONNX model {model}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    else:
        src = model
    out = onnx.ModelProto()
    out.CopyFrom(src)
    plugins = plugin_contracts()
    stats = {"plugin_nodes": {}, "without_plugin": set(), "defaults_filled": 0, "plugin_attrs_added": 0,
             "bound_at_call": 0, "notes": []}

    _walk_graph(out.graph, plugins, stats, "main graph")

    stripped, kept = [], []
    remaining = []
    for fn in out.functions:
        if (fn.domain, fn.name) in plugins:
            stripped.append(f"{fn.domain}::{fn.name}")
        else:
            remaining.append(fn)
            kept.append(f"{fn.domain}::{fn.name}")
    del out.functions[:]
    out.functions.extend(remaining)
    # Plugin nodes may also sit inside other (kept) functions' bodies.
    for fn in out.functions:
        g = onnx.GraphProto(node=fn.node)
        _walk_graph(g, plugins, stats, f"function {fn.domain}::{fn.name}")
        del fn.node[:]
        fn.node.extend(g.node)

    used_domains = {DOMAIN} if (stats["plugin_nodes"] or stats["without_plugin"]) else set()
    opsets = {o.domain: o for o in out.opset_import}
    for domain in used_domains:
        versions = {c.version for (d, _), c in plugins.items() if d == domain}
        # A missing import gets the version the model's ops need (packed BinaryConv variants: 2).
        version = max([c.version for (d, op), c in plugins.items() if d == domain and op in stats["plugin_nodes"]],
                      default=1)
        if domain not in opsets:
            out.opset_import.append(helper.make_opsetid(domain, version))
        elif opsets[domain].version not in versions and versions:
            raise CmcError(f"the model imports {domain} version {opsets[domain].version}; cmc's plugins implement "
                           f"version {sorted(versions)}")
        else:  # an op newer than the imported version (BinaryConv's packed variants are version 2)
            newer = sorted({c.op_type for c in plugins.values() if c.domain == domain and c.version > opsets[domain].version
                            and c.op_type in stats["plugin_nodes"]})
            if newer:
                raise CmcError(f"the model imports {domain} version {opsets[domain].version}, but {', '.join(newer)} "
                               f"exist only from version {max(plugins[(domain, o)].version for o in newer)}")
    if check:
        try:
            onnx.checker.check_model(out)
        except onnx.checker.ValidationError as e:
            raise CmcError(f"prepared ONNX model fails the ONNX checker: {str(e).splitlines()[0]}") from None

    report = {
        "plugin_nodes": stats["plugin_nodes"],
        "stripped_functions": stripped,
        "kept_functions": kept,
        "without_plugin": sorted(stats["without_plugin"]),
        "defaults_filled": stats["defaults_filled"],
        "plugin_attrs_added": stats["plugin_attrs_added"],
        "nodes_with_attributes_bound_at_call": stats["bound_at_call"],
        "notes": stats["notes"],
    }
    return out, report


def save_onnx_atomic(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` through a temporary file and a rename (external data above ~1.8 GB)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if model.ByteSize() > _EXTERNAL_DATA_THRESHOLD:
            onnx.save_model(model, tmp, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=f"{path.name}.data")
        else:
            onnx.save_model(model, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def prepare_onnx_file(src: str | os.PathLike, dst: str | os.PathLike) -> dict:
    """prepare_onnx_for_trt on a file, written atomically to ``dst``; returns the report."""
    model, report = prepare_onnx_for_trt(src)
    save_onnx_atomic(model, dst)
    return report
