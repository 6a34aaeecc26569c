"""Verify step: does the ONNX artifact compute what the user's PyTorch model computes?

Polygraphy's Comparator runs the PyTorch model and onnxruntime (CPU, no extra library: com.cmc
nodes run through their function bodies) on the same seeded inputs at every requested batch size.
The figure per output is max|y_onnx - y_torch| / max|y_torch|, against the contract's tolerance of
the loosest cmc operator in the model.

A model with packed chains (1-bit activations between binary layers, ``cmc.exporter.packed_chains``)
is checked in two parts: PyTorch against its unpacked form (the same graph with float tensors between
the layers, where a sign flip can still be attributed), and the packed model against that unpacked form
in onnxruntime, which must agree bit for bit.

When parity fails, ``locate_divergence`` names where: first every com.cmc node is re-checked against
its contract reference on the inputs onnxruntime gave it; then the user's modules are compared,
in execution order, with the ONNX values their name scopes produced.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch

from cmc.plugins.registry import by_op_type

from .backend.torch_runner import TorchRunner
from .onnx_export import DOMAIN, module_path

BASE_TOLERANCE = 1e-4


def model_tolerance(onnx_model: onnx.ModelProto, dtype: str = "float32") -> float:
    """The loosest contract tolerance among the cmc ops the model uses (1e-4 without any)."""
    tol = BASE_TOLERANCE
    for n in onnx_model.graph.node:
        if n.domain == DOMAIN:
            tol = max(tol, by_op_type(n.op_type)["contract"].tol(dtype))
    return tol


def make_feeds(input_name: str, sample_shape, batches, seed: int = 0, first: np.ndarray | None = None):
    """One seeded stream of max(batches) samples; batch b's feed is its first b samples. A sample in two feeds
    is checked at both batch sizes, and the PyTorch reference (TorchRunner's slices) computes it once: a
    research AdderNet at 224x224 takes ~10 s a sample on two cores. ``first``: samples that open the stream
    (the export's example, whose reference output the first run already computed)."""
    rng = np.random.default_rng(seed)
    stream = rng.standard_normal((max(batches), *sample_shape[1:])).astype(np.float32)
    if first is not None:
        stream[:len(first)] = first[:len(stream)]
    return [{input_name: stream[:b].copy()} for b in batches]


@dataclass
class Verdict:
    passed: bool
    tolerance: float
    cases: list[dict] = field(default_factory=list)
    divergence: dict | None = None
    polygraphy_passed: bool | None = None
    packed_chains: dict | None = None  # packed model vs its unpacked form (packed_chains.compare_with_unpacked)
    constant_outputs: list[dict] = field(default_factory=list)  # outputs the check proves nothing about
    reference_slices: dict | None = None  # how the PyTorch reference ran: slice size, slices computed / reused

    def to_dict(self):
        d = {"passed": self.passed, "tolerance": self.tolerance, "polygraphy_passed": self.polygraphy_passed,
             "cases": self.cases, "first_divergence": self.divergence,
             "worst": self.worst(), "rounding_flips_forced": self.rounding_flips()}
        if self.packed_chains is not None:
            d["packed_equals_unpacked"] = self.packed_chains
        d["constant_outputs"] = self.constant_outputs
        if self.reference_slices is not None:
            d["reference_slices"] = self.reference_slices
        if self.constant_outputs:
            d["warning"] = constant_output_warning(self.constant_outputs)
        return d

    def worst(self) -> float:
        """The largest error that counts: with rounding flips forced where that made a case pass."""
        def err(c, o):
            return o.get("rel_err_flips_forced", o["rel_err"]) if c.get("passed_with_rounding_flips_forced") else o["rel_err"]
        return max((err(c, o) for c in self.cases for o in c["outputs"].values()), default=0.0)

    def rounding_flips(self) -> int:
        return sum(c.get("sign_flips", {}).get("rounding_flips_forced", 0) for c in self.cases
                   if c.get("passed_with_rounding_flips_forced"))


def _reference_batch_slice(onnx_model: onnx.ModelProto, sample_shape) -> int | None:
    """The PyTorch reference runs each batch in slices of the example's batch (the size the model ran
    with): research AdderNet layers hold one slice's N x M x CK x L tensor instead of the batch's. Not for
    binary networks: the sign-flip rule re-runs PyTorch on the whole batch and must see the very values
    the comparison saw (a slice can round a value near 0 differently), and their layers are small."""
    if any(n.domain == DOMAIN and n.op_type.startswith("Binary") for n in onnx_model.graph.node):
        return None
    return int(sample_shape[0]) if sample_shape else None


def constant_outputs(torch_iters, output_names, tol) -> list[dict]:
    """The outputs whose PyTorch values do not change across the verify inputs (every sample of every
    batch): a spread of at most ``tol`` of max|y|, so an artifact computing a constant would pass the
    same check. E.g. an untrained BatchNorm after an AdderConv (sums of -thousands, running mean 0) lets
    the ReLU zero everything, and the check passes with an error of exactly 0."""
    found = []
    for name in output_names:
        samples = []
        for out in torch_iters:
            a = np.asarray(out[name], np.float64)
            samples.extend(list(a) if a.ndim >= 1 else [a])  # one entry per input sample
        if len(samples) < 2 or any(s.shape != samples[0].shape for s in samples):
            continue
        scale = max((float(np.abs(s).max()) for s in samples if s.size), default=0.0)
        spread = max((float(np.abs(s - samples[0]).max()) for s in samples[1:] if s.size), default=0.0)
        if spread <= tol * scale:
            found.append({"output": name, "inputs": len(samples), "max_abs": scale,
                          "spread_of_max_abs": spread / scale if scale > 0 else 0.0})
    return found


def constant_output_warning(found: list[dict]) -> str:
    names = ", ".join(f"{f['output']!r} (max|y| {f['max_abs']:.3g}, spread {f['spread_of_max_abs']:.3g} of it)"
                      for f in found)
    return (f"the parity check proves nothing about output(s) {names}: the PyTorch model gives the same values "
            f"for all {found[0]['inputs']} verify inputs (within the tolerance), so an artifact computing a "
            "constant would pass too — e.g. untrained BatchNorm statistics after AdderConv let ReLU zero everything")


def _quiet_polygraphy():
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.ERROR
    logging.getLogger("polygraphy").setLevel(logging.ERROR)


def verify(torch_model: torch.nn.Module, onnx_model: onnx.ModelProto, sample_shape, batches=(1, 5),
           tolerance: float | None = None, seed: int = 0, locate: bool = True, example=None) -> Verdict:
    """``example``: ``(x, torch_model's output on x)`` already computed (the export's first run): where the
    reference runs in slices of x's batch, the verify inputs open with x and that output is reused."""
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.comparator import Comparator
    from polygraphy.comparator.compare import SimpleCompareFunc

    from .packed_chains import compare_with_unpacked, has_packed, unpack_chains

    _quiet_polygraphy()
    packed_model = None
    if has_packed(onnx_model):  # PyTorch is compared with the unpacked form, the packed one with that
        packed_model, onnx_model = onnx_model, unpack_chains(onnx_model)
    tol = model_tolerance(onnx_model) if tolerance is None else tolerance
    input_name = onnx_model.graph.input[0].name
    output_names = [o.name for o in onnx_model.graph.output]
    batch_slice = _reference_batch_slice(onnx_model, sample_shape)
    torch_runner = TorchRunner(torch_model, [input_name], output_names, [sample_shape], name="pytorch",
                               batch_slice=batch_slice)
    first = None
    if example is not None and batch_slice and example[0].shape[0] == batch_slice:
        if torch_runner.remember([example[0]], example[1]):
            first = example[0].numpy()
    feeds = make_feeds(input_name, sample_shape, batches, seed, first=first)
    runners = [
        torch_runner,
        OnnxrtRunner(SessionFromOnnx(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"]), name="onnxruntime"),
    ]
    results = Comparator.run(runners, data_loader=feeds)
    (_, torch_iters), (_, ort_iters) = results[0], results[1]
    cases, ok, scale = [], True, {n: 0.0 for n in output_names}
    explained = 0
    for b, feed, t_out, o_out in zip(batches, feeds, torch_iters, ort_iters):
        outs, case_ok = {}, True
        for name in output_names:
            ref = np.asarray(t_out[name], np.float64)
            got = np.asarray(o_out[name], np.float64)
            if ref.shape != got.shape:
                outs[name] = {"shape_torch": list(ref.shape), "shape_onnx": list(got.shape), "rel_err": float("inf")}
                case_ok = False
                continue
            ref_max = float(np.abs(ref).max()) if ref.size else 0.0
            err = float(np.abs(ref - got).max()) if ref.size else 0.0
            finite = bool(np.isfinite(got).all())
            rel = err / ref_max if ref_max > 0 else err
            outs[name] = {"max_abs_err": err, "max_abs_ref": ref_max, "rel_err": rel if finite else float("inf")}
            case_ok &= finite and rel <= tol
            scale[name] = max(scale[name], ref_max)
        case = {"batch": b, "outputs": outs}
        if not case_ok:
            case_ok = _explain_by_rounding_flips(case, torch_model, onnx_model, feed, t_out, output_names, tol)
            explained += case_ok
        ok &= case_ok
        cases.append(case)
    atol = {n: tol * max(s, 1e-30) for n, s in scale.items()}
    poly = Comparator.compare_accuracy(results, compare_func=SimpleCompareFunc(atol=atol, rtol=0.0, check_error_stat="max"))
    # Polygraphy compares the raw outputs; where a case only passed with rounding flips forced, its
    # plain comparison is expected to fail and the forced one (above) is the verdict.
    verdict = Verdict(passed=bool(ok and (poly or explained)), tolerance=tol, cases=cases, polygraphy_passed=bool(poly),
                      constant_outputs=constant_outputs(torch_iters, output_names, tol))
    if torch_runner.slices_run or torch_runner.slices_reused:
        verdict.reference_slices = {"size": batch_slice, "computed": torch_runner.slices_run,
                                    "reused": torch_runner.slices_reused,
                                    "first_is_the_export_example": first is not None}
    torch_parity = verdict.passed
    if packed_model is not None:
        verdict.packed_chains = compare_with_unpacked(packed_model, onnx_model, feeds)
        verdict.passed &= verdict.packed_chains["identical"]
    if not verdict.passed and locate:
        if not torch_parity:
            verdict.divergence = locate_divergence(torch_model, onnx_model, feeds[0], tol)
        if packed_model is not None and not verdict.packed_chains["identical"]:
            bad = [f"{name} at batch {c['batch']} ({o['differing_values']} value(s))" for c in verdict.packed_chains["cases"]
                   for name, o in c["outputs"].items() if not o["identical"]]
            verdict.divergence = {"kind": "packed_chains", "unpacked_form": verdict.divergence,
                                  "message": "the packed chains do not reproduce the unpacked graph bit for bit: "
                                             + ", ".join(bad)}
    return verdict


def _explain_by_rounding_flips(case, torch_model, onnx_model, feed, t_out, output_names, tol) -> bool:
    """A failing case of a binary network, re-checked with the signs decided by rounding forced to
    PyTorch's (see sign_flips). Records what it found in ``case``; True when the case then passes."""
    from .sign_flips import attribute_flips

    try:
        rep = attribute_flips(torch_model, onnx_model, feed, {n: t_out[n] for n in output_names})
    except Exception as e:  # a diagnostic: never let it hide the plain failure
        case["sign_flips"] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
        return False
    if rep is None:
        return False
    case["sign_flips"] = rep.to_dict()
    if rep.genuine is not None or rep.forced == 0:
        return False
    passed = True
    for o in rep.outputs:
        rel = o["max_abs_err"] / o["max_abs_ref"] if o["max_abs_ref"] > 0 else o["max_abs_err"]
        case["outputs"][o["name"]]["rel_err_flips_forced"] = rel
        passed &= bool(np.isfinite(rel) and rel <= tol)
    case["passed_with_rounding_flips_forced"] = passed
    return passed


# ---------------------------------------------------------------- localisation

def _module_path(node: onnx.NodeProto) -> str | None:
    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            return module_path(p.value)
    return None


def _enclosing_scopes(path: str) -> list[str]:
    """'layer1.0.conv1' -> ['layer1', 'layer1.0', 'layer1.0.conv1'] (module paths split at dots)."""
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _all_values(onnx_model: onnx.ModelProto, feed: dict) -> dict[str, np.ndarray]:
    """Run onnxruntime with every node output exposed."""
    import onnxruntime as ort
    from polygraphy import constants
    from polygraphy.backend.onnx import modify_outputs

    m = modify_outputs(copy.deepcopy(onnx_model), outputs=constants.MARK_ALL)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feed)))


def _initializers(onnx_model):
    return {t.name: onnx.numpy_helper.to_array(t) for t in onnx_model.graph.initializer}


def locate_divergence(torch_model, onnx_model, feed, tol) -> dict | None:
    try:
        values = _all_values(onnx_model, feed)
    except Exception as e:  # localisation is a diagnostic: never hide the parity failure behind it
        return {"error": f"could not expose intermediate values: {type(e).__name__}: {e}"}
    values.update(feed)
    inits = _initializers(onnx_model)

    # 1. Each com.cmc node against its contract reference, on the inputs it actually received.
    for node in onnx_model.graph.node:
        if node.domain != DOMAIN or node.output[0] not in values:
            continue
        entry = by_op_type(node.op_type)
        args = [values.get(i, inits.get(i)) for i in node.input]
        if any(a is None for a in args):
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute
                 if a.name in entry["contract"].attribute_names}
        try:
            ref = entry["reference"](*args, **attrs)
        except ValueError as e:  # the node's inputs or attributes break its contract (e.g. weight tail bits)
            return {"kind": "operator", "onnx_node": node.name, "op_type": node.op_type, "module": _module_path(node),
                    "message": f"{node.op_type} node {node.name} breaks its contract: {e}"}
        got = values[node.output[0]]
        denom = max(float(np.abs(ref).max()), 1e-30)
        err = float(np.abs(ref - got).max()) / denom
        if err > entry["contract"].tol():
            return {"kind": "operator", "onnx_node": node.name, "op_type": node.op_type,
                    "module": _module_path(node), "rel_err": err,
                    "message": f"{node.op_type} node {node.name} disagrees with its contract reference (rel err {err:.3g})"}

    # 2. The user's modules, in execution order, against the ONNX values of the same scope. A module's
    # output is the last value computed anywhere inside it: a block ending in a child module (a residual
    # block's final ReLU, scope 'layer1.0.relu') returns that child's value, not its own last add's.
    last_value: dict[str, tuple[str, str, bool]] = {}  # module path -> (value, node, relu applied after it)
    for node in onnx_model.graph.node:
        path = _module_path(node)
        if path and node.output and node.output[0] in values:
            for scope in _enclosing_scopes(path):
                last_value[scope] = (node.output[0], node.name, False)
        meta = {p.key: p.value for p in node.metadata_props}
        if meta.get("cmc.folded_module") and node.output[0] in values:
            last_value[meta["cmc.folded_module"]] = (node.output[0], node.name, meta.get("cmc.folded_relu") == "1")
    recorded: list[tuple[str, str, np.ndarray]] = []
    calls: dict[str, int] = {}
    hooks = []
    for name, mod in torch_model.named_modules(remove_duplicate=False):
        if name and name in last_value:
            def hook(m, inp, out, name=name):
                calls[name] = calls.get(name, 0) + 1
                if isinstance(out, torch.Tensor):
                    recorded.append((name, type(m).__name__, out.detach().clone().numpy()))
            hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            torch_model(*[torch.from_numpy(v) for v in feed.values()])
    finally:
        for h in hooks:
            h.remove()
    for name, cls, ref in recorded:
        if calls[name] != 1:  # a module used twice (a shared ReLU) has no single ONNX counterpart
            continue
        value_name, node_name, relu_after = last_value[name]
        got = values[value_name]
        if relu_after:
            ref = np.maximum(ref, 0)
        if got.shape != ref.shape:
            continue
        denom = max(float(np.abs(ref).max()), 1e-30)
        err = float(np.abs(ref.astype(np.float64) - got).max()) / denom
        if err > tol:
            return {"kind": "module", "module": name, "class": cls, "onnx_node": node_name, "rel_err": err,
                    "message": f"first diverging layer: {name} ({cls}) vs ONNX node {node_name} (rel err {err:.3g})"}
    return {"kind": "unknown", "message": "no single layer diverges beyond tolerance; the error accumulates over the network"}
