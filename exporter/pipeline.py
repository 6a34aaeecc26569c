"""The export pipeline: load -> convert -> shrink -> export -> verify -> (build) -> report.

Each step is a plain function from the modules beside this one; this file only orders them, times
them, reports progress on stderr and collects the report. Artifacts are staged and moved into the
output folder only when every step succeeded.
"""
from __future__ import annotations

import copy
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import __version__
from .artifacts import Staging, sha256
from .errors import CmcError, ParityError


def log(msg: str):
    print(f"[cmc] {msg}", file=sys.stderr, flush=True)


def warn(msg: str):
    print(f"cmc-export: warning: {msg}", file=sys.stderr, flush=True)


class Steps:
    """Numbered progress lines with timings: '[cmc] 2 export ... done (3.1 s)'."""

    def __init__(self):
        self.n, self.timings = 0, {}

    def __call__(self, name: str, detail: str = ""):
        steps = self

        class _Step:
            def __enter__(self):
                steps.n += 1
                self.t0 = time.perf_counter()
                log(f"{steps.n} {name}{(' ' + detail) if detail else ''} ...")
                return self

            def __exit__(self, exc_type, exc, tb):
                dt = time.perf_counter() - self.t0
                steps.timings[name] = round(dt, 3)
                if exc_type is None:
                    log(f"{steps.n} {name} done ({dt:.1f} s)")
                return False

        return _Step()


def versions() -> dict:
    out = {"cmc": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for mod in ("onnx", "onnxruntime", "onnxscript", "onnx_ir", "polygraphy", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # optional
            out[mod] = None
    return out


@dataclass
class ExportOptions:
    model: str
    to: str = "onnx"
    arch: str | None = None
    input_shape: tuple[int, ...] | None = None
    out_dir: str = "cmc_out"
    verify: bool = True
    verify_batches: tuple[int, ...] = (1, 5)
    allow_pickle: bool = False
    shrink: bool = True
    accept_deviation: bool = False
    dynamic_batch: bool = True
    packed_chains: bool = True
    binarize_weights: str | None = None  # latent float weights of binary layers: 'xnor' | 'sign' (latent_weights.py)
    zero_weights_as_plus_one: bool = False  # exact-zero sign-binarized weights taken as +1 (zero_weights.py)
    trt: dict = field(default_factory=dict)
    #: keyword arguments for --arch (--arch-args); the checkpoint's cfg is added by the load step
    arch_args: dict = field(default_factory=dict)
    #: Network Slimming: prune this percentage of BatchNorm channels by a global |gamma| threshold
    slim: float | None = None
    #: keep conv channel counts at multiples of this when shrinking (1: remove exactly what was pruned)
    align_channels: int = 1
    #: graph input / output names in the ONNX (None: 'input' / 'output')
    input_names: list[str] | None = None
    output_names: list[str] | None = None
    #: --to triton: the batch range (min, opt, max) for max_batch_size / dynamic_batching, and the device
    #: of the Python-backend model ('cpu' | 'cuda')
    triton: dict = field(default_factory=dict)

    def targets(self) -> set[str]:
        """--to onnx | trt | triton, or several joined by commas (the ONNX is always written)."""
        return {t.strip() for t in self.to.split(",") if t.strip()}


DEFAULT_SHAPE = (1, 3, 32, 32)


def example_input(shape, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


def _dry_run(model: torch.nn.Module, x: torch.Tensor):
    from .attribution import explain_failure
    from .idioms import eager_idioms

    try:
        with eager_idioms(), torch.no_grad():
            out = model(x)
    except Exception as e:
        raise explain_failure(e, during="a dry run", model=model, example=x) from e
    _check_outputs(out)


def _check_outputs(out):
    """The dry run's verdict on what the model returned: tensors, finite."""
    outs = out if isinstance(out, (tuple, list)) else [out]
    for o in outs:
        if not isinstance(o, torch.Tensor):
            raise CmcError(f"the model returns {type(o).__name__}; cmc exports models returning tensors")
        if o.is_floating_point() and not torch.isfinite(o).all():
            raise CmcError("the model's output contains NaN/Inf on a random input; refusing to export")


def _input_shape_of_program(ep) -> tuple[int, ...] | None:
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in ep.graph_signature.user_inputs:
            val = node.meta.get("val")
            if val is None:
                return None
            return tuple(d if isinstance(d, int) else 1 for d in val.shape)
    return None


def prepare(opts: ExportOptions, steps: Steps, memo: dict | None = None):
    """load + convert + shrink: returns (reference model, deployable model or program, example, report).

    ``memo``: where the reference model is the very model the first run computed, unchanged since (no state
    update, no --binarize-weights / --slim / --zero-weights-as-plus-one / accepted deviation), gets
    ``memo["example_output"]``: ``(example, that run's output on it)``, which the verify step reuses."""
    from .convert import convert_research_layers, pack_for_deployment, summarise
    from .idioms import capture_idioms
    from .load import load_model

    report: dict = {"input": {"model": opts.model, "arch": opts.arch}}
    with steps("load", Path(opts.model).name):
        loaded = load_model(opts.model, opts.arch, opts.allow_pickle, arch_args=opts.arch_args)
        report["input"]["sha256"] = sha256(opts.model)
        report["input"]["arch_kwargs"] = _jsonable(loaded.arch_kwargs)
        report["notes"] = list(loaded.notes)
        for n in loaded.notes:
            if n.startswith(("checkpoint:", "--arch")):
                log(f"    {n}")
        shape = opts.input_shape
        if shape is None and loaded.exported is not None:
            shape = _input_shape_of_program(loaded.exported)
        if shape is None:
            shape = DEFAULT_SHAPE
            report["notes"].append(f"no --input-shape given: used {'x'.join(map(str, shape))}")
        report["input"]["input_shape"] = list(shape)
        x = example_input(shape)

    if loaded.exported is not None:
        for flag, given in (("--slim", opts.slim is not None), ("--binarize-weights", bool(opts.binarize_weights))):
            if given:
                raise CmcError(f"{flag} needs the model's weights (a state_dict with --arch); a .pt2 program is "
                               "exported as captured")
        reference = loaded.exported.module()
        _dry_run(reference, x)
        report["converted"] = []
        report["shrink"] = {"skipped": "a .pt2 program is exported as captured"}
        return reference, loaded.exported, x, report

    user_model = loaded.module
    with steps("run", "the model as written (dry run, in-place state updates, dataflow)"):
        updates, flow, first_out = _first_runs(user_model, x)
    report["state_updates"] = [u.note() for u in updates]
    if opts.binarize_weights:
        from .latent_weights import binarize_latent_weights

        # The reference itself changes: the codebase computes with the binarized weights.
        report["binarized_weights"] = binarize_latent_weights(user_model, x, opts.binarize_weights)
        log(f"    --binarize-weights {opts.binarize_weights}: "
            f"{sum(bool(e['scheme']) for e in report['binarized_weights'])} layer(s) binarized")
    if opts.slim is not None:
        with steps("slim", f"Network Slimming, {opts.slim:g} % of BatchNorm channels"):
            report["slim"] = _slim(user_model, opts.slim, x)
    # Convert first, so research layers (adder2d, Conv2d_Q) are shrunk as the cmc operators they are.
    with steps("convert"):
        if opts.binarize_weights or opts.slim is not None:
            flow = None  # the weights changed since the first run: the recognisers' facts are observed again
        model, converted = convert_research_layers(user_model, x, opts.zero_weights_as_plus_one, flow=flow)
        report["converted"] = converted
        log(f"    research layers: {summarise(converted)}")
        for e in converted:  # what is not a com.cmc op is named, with the reason
            if e.get("status") == "kept" or (e.get("status") == "rebuilt" and "not binary" in e["to"]):
                log(f"    {e['layer']} ({e['class']}): {e['to']}")
    reference = user_model
    zeroed = [e["layer"] for e in converted if e.get("zero_weights")]
    if zeroed:
        reference = _zero_weights_reference(user_model, zeroed, x, report)
    elif opts.zero_weights_as_plus_one:
        report["zero_weights"] = {"layers": [], "note": "no binary layer with exact-zero weights: nothing changed"}
        log("    --zero-weights-as-plus-one: no binary layer holds exact-zero weights; nothing changed")
    with steps("shrink"), capture_idioms():  # shrinking traces the model with torch.export
        report["shrink"] = _maybe_shrink(opts, model, x, slimmed=opts.slim is not None)
        if report["shrink"].get("model") is not None:
            model = report["shrink"].pop("model")
            deviation = report["shrink"]["report"]["verification"]
            if deviation.get("accepted_deviation"):
                # The user accepted the folds: the artifact is checked against the model that has them,
                # and the deviation from the original is stated, not hidden in the report.
                reference = copy.deepcopy(model).eval()
                report["deviation"] = {"accepted": True, "max_rel_err": deviation["max_rel_err"],
                                       "against": "the model before shrinking",
                                       "parity_reference": "the shrunk model with the accepted folds"}
                warn(f"--accept-deviation: the shrunk model differs from the original by "
                     f"{deviation['max_rel_err']:.3g} of max|y| (constant channels folded into padded layers: exact "
                     "away from the borders); parity is checked against the shrunk model")
    model = _constant_channel_selections(model, x, report)
    deploy = pack_for_deployment(model).eval()
    _dry_run(deploy, x)
    if (memo is not None and reference is user_model and flow is not None and not user_model.training
            and not opts.binarize_weights and opts.slim is None):
        memo["example_output"] = first_out
    return reference, deploy, x, report


def known_example(memo: dict):
    """(example, the reference's output on it) where prepare() kept it, for ``verify(example=...)``."""
    return memo.get("example_output")


def _zero_weights_reference(user_model, layers: list[str], x, report: dict):
    """--zero-weights-as-plus-one: the model the export must match (the zeros taken as +alpha), and the measured
    deviation from the user's model, warned about and reported."""
    from .zero_weights import deviation, with_zeros_as_plus_one

    patched = with_zeros_as_plus_one(user_model, layers).eval()
    g = torch.Generator().manual_seed(3)
    dev = deviation(user_model, patched, [x, torch.randn(x.shape, generator=g)])
    n = sum(e["zero_weights"]["count"] for e in report["converted"] if e.get("zero_weights"))
    report["zero_weights"] = {"layers": layers, "weights": n, "max_rel_err": dev,
                              "against": "the user's model (torch.sign(0) = 0)",
                              "parity_reference": "the model with those weights taken as +1"}
    warn(f"--zero-weights-as-plus-one: {n} exact-zero weight(s) in {len(layers)} binary layer(s) taken as +1; this "
         f"changes the outputs by {dev:.3g} of max|y|; parity is checked against the model with that change")
    return patched


def _first_runs(model: torch.nn.Module, x: torch.Tensor):
    """The user's model's first eager runs: ``(settled updates, dataflow facts, (x, output on x))``. The first call
    is at once the dry run (it runs, it returns finite tensors), the first call of ``_settle`` and the
    dataflow observation the converter's recognisers read: one run of the whole model where there were three
    (a research AdderNet ResNet-50 at 224x224 takes seconds a run on two cores). Where that first call
    updated the model's state, facts and output are None: they describe a model that no longer exists (the
    converter observes the settled model again)."""
    from .attribution import explain_failure
    from .dataflow import observe_run

    seen = {}

    def first_call(m, example, recorder):
        try:
            # The model gets a copy and the pair (example as it was, output) is kept: a forward that changes its
            # input in place must not unpair what the verify step reuses (prepare's memo).
            seen["x"] = example.clone()
            seen["flow"], seen["out"] = observe_run(m, example.clone(), inner=recorder)
        except Exception as e:
            raise explain_failure(e, during="a dry run", model=m, example=example) from e
        _check_outputs(seen["out"])

    updates = _settle(model, x, first_call)
    if updates:
        return updates, None, None
    return updates, seen.get("flow"), (seen["x"], seen["out"])


def _settle(model: torch.nn.Module, x: torch.Tensor, first_call=None):
    """In-place updates of the model's state in forward that reach a fixed point (settle_state): dropped from the
    checked and captured runs until the enclosing ``idioms.settled_scope()`` ends."""
    from .attribution import explain_failure
    from .idioms import IdiomError, settle_state

    g = torch.Generator().manual_seed(7)
    try:
        updates = settle_state(model, [x, torch.randn(x.shape, generator=g)], first_call=first_call)
    except IdiomError:
        raise
    except Exception as e:
        raise explain_failure(e, during="a check run", model=model, example=x) from e
    for u in updates:
        log(f"    {u.note()}")
    return updates


def _constant_channel_selections(model, x, report: dict):
    """Network Slimming's channel_selection layers that shrinking did not replace (nothing pruned, or
    --no-shrink) become the constant index selections they are: their forward's NumPy gather cannot be
    captured. Each is checked on the example run (see shrink.normalize.constant_channel_selections)."""
    from .idioms import eager_idioms
    from .shrink.normalize import constant_channel_selections

    with eager_idioms():  # the user's eager forward, research-code idioms included
        model, replaced = constant_channel_selections(model, (x,))
    if replaced:
        identity = sum(e["action"].endswith(": Identity") for e in replaced)
        note = (f"channel_selection: {len(replaced)} layer(s) exported as constant index selections "
                f"({identity} select every channel: Identity; {len(replaced) - identity} gather)")
        report["notes"].append(note)
        report["channel_selections"] = replaced
        log(f"    {note}")
    return model


def _jsonable(d: dict) -> dict:
    import json

    try:
        json.dumps(d)
        return d
    except (TypeError, ValueError):
        return {k: repr(v) for k, v in d.items()}


def _slim(model, percent: float, x) -> dict:
    """Apply Network Slimming in place; measure how much it changed the outputs (the method's approximation)."""
    from .idioms import eager_idioms
    from .shrink.core import _rel_err
    from .shrink.slim import slim

    before = copy.deepcopy(model).eval()
    rep = slim(model, percent)
    g = torch.Generator().manual_seed(1)
    with eager_idioms(), torch.no_grad():  # the user's eager forward, research-code idioms included
        dev = max(_rel_err(before(t), model(t)) for t in (x, torch.randn(x.shape, generator=g)))
    rep["output_change"] = dev
    log(f"    |γ| threshold {rep['threshold']:.4g} over {rep['batchnorms']} BatchNorm2d: {rep['pruned_channels']} of "
        f"{rep['channels']} channels get γ = β = 0")
    warn(f"--slim {percent:g} changes the model's outputs by {dev:.3g} of max|y| (Network Slimming's pruning; "
         "fine-tune afterwards as the method does); the export is checked against the slimmed model")
    return rep


def _maybe_shrink(opts, model, x, slimmed: bool = False) -> dict:
    if not opts.shrink:
        return {"skipped": "--no-shrink"}
    from .shrink import AllChannelsPrunedError, find_pruned, shrink
    from .shrink.slim import sparsity_hint

    pruned = find_pruned(model)
    if not pruned:
        hint = sparsity_hint(model)
        reason = "no pruned structure found (no masks, zero filters, zero BatchNorm γ or channel_selection zeros)"
        log(f"    nothing to shrink: {reason}" + (f"; {hint}" if hint else ""))
        return {"skipped": reason + (f"; {hint}" if hint else "")}
    log(f"    pruned structure in {len(pruned)} layer(s): shrinking"
        + (f" (channel counts aligned to multiples of {opts.align_channels})" if opts.align_channels > 1 else ""))
    try:
        result = shrink(model, (x,), accept_deviation=opts.accept_deviation, round_to=opts.align_channels)
    except AllChannelsPrunedError as e:
        if slimmed:
            raise AllChannelsPrunedError(f"{e} (after --slim {opts.slim:g}: use a smaller percentage)") from e
        raise
    out = {"model": result.model, "report": result.report}
    rep = result.report
    narrowed = [e for e in rep["layers"] if (e["in_before"], e["out_before"]) != (e["in_after"], e["out_after"])]
    p0, p1 = rep["params"]["before"], rep["params"]["after"]
    if p1 == p0 and not narrowed:
        log(f"    shrink removed nothing: {_why_nothing(rep)}")
    else:
        log(f"    {len(narrowed)} layer(s) narrowed: parameters {p0:,} -> {p1:,} ({100 * (p0 - p1) / max(p0, 1):.1f} % "
            f"fewer), FLOPs / {(rep['flops']['ratio'] or 0):.2f}")
    if opts.align_channels > 1:
        out["alignment"] = _alignment_cost(opts, model, x, rep)
    return out


def _why_nothing(rep: dict) -> str:
    kept = rep.get("kept") or []
    if not kept:
        return "the pruned layers hold no removable channel"
    n = sum(len(k["channels"]) for k in kept)
    first = kept[0]
    return (f"{n} pruned channel(s) kept, e.g. {len(first['channels'])} of {first['layer']}: {first['reason']}"
            + (f" (+{len(kept) - 1} more group(s) in the report)" if len(kept) > 1 else ""))


def _alignment_cost(opts, model, x, aligned: dict) -> dict:
    """What --align-channels kept: the channels and parameters a round_to=1 shrink would also remove."""
    from .shrink import shrink

    exact = shrink(model, (x,), accept_deviation=opts.accept_deviation, round_to=1).report
    kept = [k for k in aligned.get("kept", []) if "multiple of" in (k.get("reason") or "")]
    n = sum(len(k["channels"]) for k in kept)
    extra_p = aligned["params"]["after"] - exact["params"]["after"]
    extra_f = aligned["flops"]["after"] - exact["flops"]["after"]
    log(f"    --align-channels {opts.align_channels} kept {n} removable channel(s) in {len(kept)} layer(s): "
        f"+{extra_p:,} parameters, +{extra_f:,} FLOPs per sample vs removing all "
        f"({exact['params']['after']:,} parameters)")
    return {"align_channels": opts.align_channels, "channels_kept": n, "layers": [k["layer"] for k in kept],
            "extra_params": extra_p, "extra_flops": extra_f, "params_without_alignment": exact["params"]["after"]}


def _prove_in_onnx(proto, converted: list[dict]):
    """Every layer the report calls converted must hold com.cmc nodes in the ONNX; one that does not is
    reported as kept (the report and the artifact agree), with a warning."""
    from .conversion_proof import demote, prove_onnx

    problems = prove_onnx(proto, converted)
    n = sum(e.get("status") == "converted" for e in converted)
    for e in converted:
        if e["layer"] in problems:
            demote(e, problems[e["layer"]])
            warn(f"layer {e['layer']} ({e['class']}) was converted but the ONNX does not run it as a com.cmc op: "
                 f"{problems[e['layer']]}; reported as kept")
    if n:
        log(f"    converted layers found in the ONNX as com.cmc node(s): {n - len(problems)} of {n}")


def _artifact_hashes(stage: Staging) -> dict:
    """sha256 and size of every staged file (the files inside a staged folder, such as the model repository)."""
    out = {}
    for name in stage.files:
        p = stage.dir / name
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            out[str(f.relative_to(stage.dir))] = {"sha256": sha256(f), "bytes": f.stat().st_size}
    return out


def run_export(opts: ExportOptions) -> dict:
    from .idioms import eager_idioms, settled_scope
    from .load import artifact_stem
    from .onnx_export import export_onnx
    from .sign_flips import annotate_binarization_points
    from .verify import constant_output_warning, verify

    t_start = time.perf_counter()
    trt_env = None
    targets = opts.targets()
    if "trt" in targets:
        from .trt import find_tensorrt  # fail before any long step when TensorRT is missing

        trt_env = find_tensorrt(need_headers=opts.trt.get("plugin_lib") is None)
    with Staging(opts.out_dir) as stage, settled_scope():
        steps = Steps()
        memo: dict = {}
        reference, deployable, x, report = prepare(opts, steps, memo)
        with steps("export", "ONNX (torch.export + dynamo exporter)"):
            res = export_onnx(deployable, x, dynamic_batch=opts.dynamic_batch, packed_chains=opts.packed_chains,
                              input_names=opts.input_names, output_names=opts.output_names)
            annotate_binarization_points(res.model, report.get("converted", []))
            stem = artifact_stem(opts.model)
            onnx_name = f"{stem}.onnx"
            onnx_path = stage.path(onnx_name)
            onnx_path.write_bytes(res.model.SerializeToString())
            counts = res.custom_node_counts()
            log(f"    com.cmc nodes: {counts or 'none'}; BN/ReLU folded into {len(res.folded)} node(s)")
            _prove_in_onnx(res.model, report.get("converted", []))


            if res.parameter_folding.get("nodes"):
                log(f"    {res.parameter_folding['nodes']} node(s) computed from parameters alone folded into "
                    f"{res.parameter_folding['constants']} constant(s)")
            elif res.parameter_folding.get("not_folded"):
                warn(res.parameter_folding["not_folded"])
            if res.packed_chains and res.packed_chains["chains"]:
                chains = res.packed_chains["chains"]
                log(f"    packed chains (1-bit activations between binary layers): {len(chains)} over "
                    f"{sum(map(len, chains))} layers")
        report["export"] = {
            "onnx": onnx_name, "opset": 18, "dynamic_batch": res.dynamic_batch,
            "custom_nodes": counts, "folded_epilogues": res.folded, "notes": res.notes,
            "parameter_folding": res.parameter_folding,
            "inputs": res.input_names, "outputs": res.output_names,
            "packed_chains": res.packed_chains if opts.packed_chains else {"skipped": "--no-packed-chains"},
        }
        if opts.verify:
            with steps("verify", f"PyTorch vs onnxruntime at batch {','.join(map(str, opts.verify_batches))}"):
                batches = opts.verify_batches if res.dynamic_batch else (x.shape[0],)
                with eager_idioms():  # the reference is the user's eager model
                    verdict = verify(reference, res.model, tuple(x.shape), batches=batches,
                                     example=known_example(memo))
                report["parity"] = verdict.to_dict()
                log(f"    worst error {verdict.worst():.3g} of max|y| (tolerance {verdict.tolerance:g})")
                if verdict.constant_outputs:
                    log(f"    warning: {constant_output_warning(verdict.constant_outputs)}")
                if verdict.rounding_flips():
                    log(f"    note: {verdict.rounding_flips()} binarized value(s) lay within float rounding of 0 and took "
                        "another sign than in PyTorch; compared with PyTorch's signs there (see report.json parity)")
                if verdict.packed_chains is not None:
                    log("    packed chains vs the unpacked graph (onnxruntime): "
                        + ("bit for bit identical" if verdict.packed_chains["identical"] else "DIFFERENT"))
            if not verdict.passed:
                where = (verdict.divergence or {}).get("message", "")
                if (verdict.divergence or {}).get("kind") == "packed_chains":
                    raise ParityError(f"parity check failed: {where}")
                raise ParityError(f"parity check failed: worst error {verdict.worst():.3g} of max|y| > tolerance "
                                  f"{verdict.tolerance:g}" + (f"; {where}" if where else ""))
        else:
            report["parity"] = {"skipped": "--no-verify"}
        if "trt" in targets:
            from .trt import build_trt

            with steps("build", "TensorRT engine"):
                report["tensorrt"] = build_trt(onnx_path, stage, env=trt_env, reference=reference,
                                               example=x, **opts.trt)
        if "triton" in targets:
            from .serve.export_step import write_triton

            with steps("triton", "model repository"):
                report["triton"] = write_triton(stage, res, stem, report.get("tensorrt"), opts.triton)
        report["artifacts"] = _artifact_hashes(stage)
        report["versions"] = versions()
        report["timings_s"] = dict(steps.timings, total=round(time.perf_counter() - t_start, 3))
        with steps("report"):
            stage.write_json("report.json", report)
            placed = stage.commit()
    for p in placed:
        log(f"wrote {p}")
    return report
