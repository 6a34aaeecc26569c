"""Sign flips decided by float rounding, told apart from real divergence.

A binary layer takes the sign of a float value an earlier layer computed (a BatchNorm, a residual add,
the previous binary layer's epilogue). Two correct implementations of the same network round that value
differently — a folded BatchNorm, another summation order — so an element that lies within rounding
error of 0 may get +1 in PyTorch and -1 in the export. One such flip changes a whole ±1 input of the
next layer and moves the output far beyond any float tolerance, although both computed the network
correctly. Deep binary networks binarize hundreds of thousands of values per sample, so on random
inputs this happens often (one sample in a few dozen for the NIN sample).

``attribute_flips`` makes the comparison exact instead of loose: it records, in the user's PyTorch
model, the value each binarization point of the ONNX model takes the sign of (the input of the user
module the point was converted from), runs onnxruntime with those points exposed, and walks them in
graph order. A sign that differs where both values lie within ``rel`` × max|v| of 0 is a rounding flip:
it is forced to PyTorch's value in the ONNX run (a Where spliced in front of the binarization) and the
walk goes on downstream. A sign that differs anywhere else is real divergence and is reported as such.
The outputs are then compared, at the unchanged contract tolerance, with the rounding flips forced:
every other bit the export computed must agree with PyTorch.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch

from cmc.plugins.binary_conv.reference import VARIANTS, reads_sign_of_input

CMC_DOMAIN = "com.cmc"
#: |v| below rel * max|v| (of that tensor, in PyTorch and in the export) counts as "sign decided by
#: rounding". float32 rounding of a folded epilogue is ~1e-7 of the terms it adds.
DEFAULT_REL = 1e-5
#: Node metadata: the PyTorch value a binarization point takes the sign of ('path' = input 0 of that
#: user module, 'path:output' = its output), written by ``annotate_binarization_points``.
VALUE_KEY = "cmc.binarized_value"
_PASS_THROUGH = ("Identity", "Dropout")


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _scope_path(node: onnx.NodeProto) -> str | None:
    from .onnx_export import module_path

    if node.domain == CMC_DOMAIN and "/" in node.name:  # name_cmc_nodes: '<module path>/<op>'
        return node.name.rsplit("/", 1)[0]
    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            return module_path(p.value)
    return None


@dataclass
class Point:
    value: str            # the ONNX tensor whose sign is taken
    consumer: int         # index of the first binarizing node in graph order
    kind: str             # "binarize" (v >= 0 -> +1, the BinaryConv contract) or "sign" (torch.sign)
    module: str | None = None  # where PyTorch holds that value: 'path' (input 0 of that module) or 'path:output'
    consumers: list[int] = field(default_factory=list)  # every node that binarizes it this way


def _binarizing_variant(node: onnx.NodeProto) -> bool:
    """A packed BinaryConv variant that binarizes its input: packed input (binarized in its producer's
    epilogue) or a float input with binarize_input=1 (BinaryConvPackedOut)."""
    return (node.domain == CMC_DOMAIN and node.op_type in VARIANTS
            and reads_sign_of_input(node.op_type, _attr(node, "binarize_input", None)))


def _binarizing_kind(node: onnx.NodeProto) -> str | None:
    if node.domain in ("", "ai.onnx") and node.op_type == "Sign":
        return "sign"
    if node.domain == CMC_DOMAIN and node.op_type == "BinaryConv" and reads_sign_of_input(
            node.op_type, _attr(node, "binarize_input", None)):
        return "binarize"
    return None


def binarization_points(model: onnx.ModelProto) -> list[Point]:
    """One point per (tensor, kind of sign) the model takes; a tensor binarized by a BinaryConv and
    also fed to a Sign is two points (their signs of 0 differ)."""
    points: dict[tuple[str, str], Point] = {}
    for i, node in enumerate(model.graph.node):
        kind = _binarizing_kind(node)
        if kind is None:
            continue
        p = points.setdefault((node.input[0], kind), Point(node.input[0], i, kind))
        p.consumers.append(i)
    return list(points.values())


def _resolve_module(torch_model: torch.nn.Module, path: str | None) -> str | None:
    """The user module at ``path`` or its nearest ancestor (conversion wraps a layer in a Sequential)."""
    if path is None:
        return None
    names = dict(torch_model.named_modules())
    parts = path.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in names:
            return cand
        parts.pop()
    return None


def _torch_key(torch_model: torch.nn.Module, node: onnx.NodeProto) -> str | None:
    """Where PyTorch holds the value ``node`` takes the sign of: 'path' (input 0 of that user module) or
    'path:output'. The convert step's record (``annotate_binarization_points``) comes first; without
    one, the node's module scope (its module or the nearest ancestor the user's model has)."""
    for p in node.metadata_props:
        if p.key == VALUE_KEY:
            path, _, port = p.value.partition(":")
            names = dict(torch_model.named_modules())
            return p.value if path in names and port in ("", "output") else None
    return _resolve_module(torch_model, _scope_path(node))


def _within(path: str | None, layer: str) -> bool:
    return path is not None and (path == layer or path.startswith(layer + "."))


def annotate_binarization_points(model: onnx.ModelProto, converted: list[dict]) -> int:
    """Record on each binarization point of ``model`` which PyTorch value it takes the sign of, from
    the convert report (``binarizes``, ``sign_source``): a sign module absorbed into a BinaryConv
    binarizes that module's input, not the layer's (already +-1) input; a Sign op a parent's forward
    applies in front of a layer takes the sign of another module's output. Returns how many nodes."""
    nodes = list(model.graph.node)
    producer = {o: n for n in nodes for o in n.output}
    count = 0

    def mark(node, value):
        nonlocal count
        for p in node.metadata_props:
            if p.key == VALUE_KEY:
                p.value = value
                break
        else:
            node.metadata_props.add(key=VALUE_KEY, value=value)
        count += 1

    for entry in converted:
        layer = entry["layer"]
        inside = [n for n in nodes if _within(_scope_path(n), layer)]
        if entry.get("binarizes"):
            for n in inside:
                # A packed-input variant binarizes its input too (in its producer's epilogue); the mark
                # survives packed_chains.unpack_chains, where flips are attributed.
                if _binarizing_kind(n) is not None or _binarizing_variant(n):
                    mark(n, entry["binarizes"])
        if entry.get("sign_source"):
            for n in inside:
                if n.domain != CMC_DOMAIN or n.op_type != "BinaryConv":
                    continue
                src = producer.get(n.input[0])
                while src is not None and src.op_type in _PASS_THROUGH and src.domain in ("", "ai.onnx"):
                    src = producer.get(src.input[0])
                if src is not None and _binarizing_kind(src) == "sign":
                    mark(src, entry["sign_source"])
    return count


def _signs(v: np.ndarray, kind: str) -> np.ndarray:
    return np.where(v >= 0, 1, -1) if kind == "binarize" else np.sign(v)


def _torch_values(torch_model, keys: list[str], feed: dict) -> dict[str, np.ndarray | None]:
    """Each key's value ('path': input 0 of that module, 'path:output': its output) in one run
    (None where the module ran more or less than once)."""
    got: dict[str, list] = {k: [] for k in keys}
    mods = dict(torch_model.named_modules())
    hooks = []
    for key in set(keys):
        path, _, port = key.partition(":")

        def grab(t, key=key):
            if isinstance(t, torch.Tensor):
                got[key].append(t.detach().to(torch.float64).cpu().numpy().copy())

        if port == "output":
            hooks.append(mods[path].register_forward_hook(lambda m, args, out, grab=grab: grab(out)))
        else:
            hooks.append(mods[path].register_forward_pre_hook(lambda m, args, grab=grab: grab(args[0]) if args else None))
    try:
        with torch.no_grad():
            torch_model(*[torch.from_numpy(np.asarray(v)) for v in feed.values()])
    finally:
        for h in hooks:
            h.remove()
    return {k: (v[0] if len(v) == 1 else None) for k, v in got.items()}


def _forcing_model(model: onnx.ModelProto, points: list[Point]) -> onnx.ModelProto:
    """A copy in which point k's binarizing consumer reads Where(mask_k, value_k, v) and v is an output."""
    m = copy.deepcopy(model)
    g = m.graph
    outputs = {o.name for o in g.output}
    for k, p in enumerate(points):
        mask, val, forced = f"cmc_force_mask_{k}", f"cmc_force_value_{k}", f"cmc_forced_{k}"
        g.input.append(onnx.helper.make_tensor_value_info(mask, onnx.TensorProto.BOOL, None))
        g.input.append(onnx.helper.make_tensor_value_info(val, onnx.TensorProto.FLOAT, None))
        for i in p.consumers:
            g.node[i].input[0] = forced
        if p.value not in outputs and p.value not in {i.name for i in g.input}:
            g.output.append(onnx.helper.make_empty_tensor_value_info(p.value))
    # The Where nodes go right before their consumers; insert from the back so indices stay valid.
    for k, p in sorted(enumerate(points), key=lambda kp: -kp[1].consumer):
        g.node.insert(p.consumer, onnx.helper.make_node(
            "Where", [f"cmc_force_mask_{k}", f"cmc_force_value_{k}", p.value], [f"cmc_forced_{k}"],
            name=f"cmc_force_{k}"))
    return m


@dataclass
class FlipReport:
    points: int
    attributed: int                       # binarization points with a PyTorch counterpart
    forced: int = 0                       # rounding flips forced to PyTorch's sign
    largest_forced_rel: float = 0.0       # max |v| / max|v| among them
    genuine: dict | None = None           # the first sign that differs beyond rounding
    outputs: list[dict] = field(default_factory=list)  # per output, the error with flips forced

    def to_dict(self) -> dict:
        return {"binarization_points": self.points, "attributed": self.attributed,
                "rounding_flips_forced": self.forced, "largest_forced_rel": self.largest_forced_rel,
                "genuine_divergence": self.genuine}


def attribute_flips(torch_model, onnx_model: onnx.ModelProto, feed: dict[str, np.ndarray],
                    reference: dict[str, np.ndarray], rel: float = DEFAULT_REL) -> FlipReport | None:
    """Re-run ``feed`` with the rounding flips forced to PyTorch's signs.

    ``reference``: PyTorch's outputs by ONNX output name. None when the model binarizes nothing;
    report.outputs holds max_abs_err / max_abs_ref per output of the forced run otherwise."""
    import onnxruntime as ort

    from .packed_chains import has_packed

    if has_packed(onnx_model):  # the values a packed layer binarizes never leave its function body
        raise ValueError("the model has packed chains: attribute flips on packed_chains.unpack_chains(model)")
    points = binarization_points(onnx_model)
    if not points:
        return None
    for p in points:
        p.module = _torch_key(torch_model, onnx_model.graph.node[p.consumer])
    tv = _torch_values(torch_model, [p.module for p in points if p.module], feed)
    report = FlipReport(points=len(points), attributed=0)
    for p in points:
        if p.module is not None and (tv.get(p.module) is None):
            p.module = None
    report.attributed = sum(p.module is not None for p in points)

    # Shapes of the binarized tensors, from a plain run of the unmodified model.
    plain = _exposed_values(onnx_model, feed, [p.value for p in points])
    fm = _forcing_model(onnx_model, points)
    sess = ort.InferenceSession(fm.SerializeToString(), providers=["CPUExecutionProvider"])
    out_names = [o.name for o in onnx_model.graph.output]
    graph_inputs = {i.name for i in onnx_model.graph.input}
    exposed = list(dict.fromkeys(p.value for p in points if p.value not in graph_inputs))
    masks = {k: np.zeros(plain[p.value].shape, bool) for k, p in enumerate(points)}
    values = {k: np.zeros(plain[p.value].shape, np.float32) for k, p in enumerate(points)}

    def run():
        f = dict(feed)
        for k in range(len(points)):
            f[f"cmc_force_mask_{k}"], f[f"cmc_force_value_{k}"] = masks[k], values[k]
        res = sess.run(out_names + exposed, f)
        got = dict(zip(exposed, res[len(out_names):]))
        return res[:len(out_names)], [got[p.value] if p.value in got else feed[p.value] for p in points]

    order = sorted(range(len(points)), key=lambda k: points[k].consumer)
    outs, vals = run()
    for k in order:  # graph order: forcing point k changes everything downstream of it
        p = points[k]
        if p.module is None:
            continue
        v_t = tv[p.module]
        v_o = np.asarray(vals[k], np.float64)
        if v_t.shape != v_o.shape and v_t.size == v_o.size:  # a linear layer's [N, F] as a 1x1 conv's [N, F, 1, 1]
            v_t = v_t.reshape(v_o.shape)
        if v_t.shape != v_o.shape:
            p.module = None
            report.attributed -= 1
            continue
        differ = _signs(v_t, p.kind) != _signs(v_o, p.kind)
        if not differ.any():
            continue
        scale = max(float(np.abs(v_t).max()), 1e-30)
        rounding = differ & (np.abs(v_t) <= rel * scale) & (np.abs(v_o) <= rel * scale)
        real = differ & ~rounding
        if real.any():
            idx = tuple(int(i) for i in np.argwhere(real)[0])
            report.genuine = {"value": p.value, "module": p.module, "count": int(real.sum()),
                              "first_index": list(idx), "torch": float(v_t[idx]), "onnx": float(v_o[idx]),
                              "message": f"{int(real.sum())} sign(s) of the input of {p.module} differ beyond "
                                         f"rounding (e.g. {v_t[idx]:.4g} in PyTorch vs {v_o[idx]:.4g})"}
            break
        masks[k] = rounding
        values[k] = np.where(rounding, v_t, 0.0).astype(np.float32)
        report.forced += int(rounding.sum())
        report.largest_forced_rel = max(report.largest_forced_rel, float(np.abs(v_t[rounding]).max()) / scale)
        outs, vals = run()
    for name, got in zip(out_names, outs):
        ref = np.asarray(reference[name], np.float64)
        got = np.asarray(got, np.float64)
        ref_max = float(np.abs(ref).max()) if ref.size else 0.0
        err = float(np.abs(ref - got).max()) if ref.size and ref.shape == got.shape else float("inf")
        report.outputs.append({"name": name, "max_abs_err": err, "max_abs_ref": ref_max})
    return report


def _exposed_values(model: onnx.ModelProto, feed: dict, names: list[str]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    m = copy.deepcopy(model)
    have = {o.name for o in m.graph.output}
    inputs = {i.name for i in m.graph.input}
    expose = [n for n in names if n not in have and n not in inputs]
    for n in expose:
        m.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    want = [n for n in names if n not in inputs]
    got = dict(zip(want, sess.run(want, feed)))
    got.update({n: feed[n] for n in names if n in inputs})
    return got
