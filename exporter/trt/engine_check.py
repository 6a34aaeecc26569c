"""Checking a built engine against its reference: feeds, the reference outputs, the figure, the verdict.

The reference is the user's PyTorch model run on CPU in **float64** (a deep copy converted with
``.double()``; the float32 model only when the model cannot run in float64, which the verdict says), on
exactly the values the engine gets (float16 feeds are exactly representable in float64). The figure per
output is max|y_engine - y_ref| / max|y_ref|; the tolerance is the loosest contract tolerance of the cmc
ops in the model for the engine's precision (FP16 engines: the contracts' "float16" entries).
Without a PyTorch model the reference is onnxruntime on the exporter's float32 ONNX (function bodies).
"""
from __future__ import annotations

import copy

import numpy as np
import onnx

from ..errors import CmcError

DOMAIN = "com.cmc"


def make_feeds(profiles: dict[str, dict], which: str, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, p in profiles.items():
        dt = np.dtype(p["dtype"]) if p["dtype"] in ("float32", "float16") else None
        if dt is None:
            raise CmcError(f"input {name} has type {p['dtype']}; the verification feeds only float inputs")
        feeds[name] = rng.standard_normal(p[which]).astype(dt)
    return feeds


def relative_error(got, ref) -> float:
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return float("inf")
    if ref.size == 0:
        return 0.0
    if not np.isfinite(got).all():
        return float("inf")
    scale = float(np.abs(ref).max())
    err = float(np.abs(got - ref).max())
    return err / scale if scale > 0 else err


def default_tolerance(model: onnx.ModelProto, precision: str) -> float:
    """The loosest contract tolerance of the cmc ops in the model (1e-4 fp32 / 1e-2 fp16 without any)."""
    from cmc.plugins.registry import by_op_type

    tol = 1e-4 if precision == "fp32" else 1e-2
    dtype = "float32" if precision == "fp32" else "float16"
    for n in model.graph.node:
        if n.domain == DOMAIN:
            entry = by_op_type(n.op_type)
            if entry is not None:
                tol = max(tol, entry["contract"].tol(dtype))
    return tol


class TorchReference:
    """The user's module on CPU, in float64 when it runs so (else float32; ``kind`` says which and why)."""

    def __init__(self, module):
        import torch

        self.module32 = module.eval()
        self.module64 = None
        self.kind = "pytorch float32"
        try:
            self.module64 = copy.deepcopy(module).double().eval()
            self.kind = "pytorch float64"
        except Exception as e:  # noqa: BLE001 - a module that cannot be copied or converted
            self.kind = f"pytorch float32 (float64 copy failed: {type(e).__name__})"
        self._torch = torch

    def __call__(self, feeds: dict[str, np.ndarray]):
        from ..idioms import eager_idioms

        # The user's eager forward, research-code idioms included (legacy autograd Functions,
        # .cuda() on fresh tensors): the same shims as every other eager run of the pipeline.
        with eager_idioms():
            return self._run(feeds)

    def _run(self, feeds: dict[str, np.ndarray]):
        torch = self._torch
        if self.module64 is not None:
            try:
                with torch.no_grad():
                    return self.module64(*[torch.from_numpy(np.asarray(v, np.float64)) for v in feeds.values()])
            except Exception as e:  # noqa: BLE001 - e.g. float32 tensors made inside forward()
                self.module64 = None
                self.kind = f"pytorch float32 (float64 run failed: {type(e).__name__})"
        with torch.no_grad():
            return self.module32(*[torch.from_numpy(np.asarray(v, np.float32)) for v in feeds.values()])


def reference_outputs(reference, original: onnx.ModelProto, feeds: dict[str, np.ndarray],
                      output_names: list[str]) -> dict[str, np.ndarray]:
    """Outputs the engine must reproduce: onnxruntime on the original ONNX (function bodies, CPU) when
    ``reference`` is None, a TorchReference / torch.nn.Module, or a callable(feeds) -> dict/sequence."""
    if reference is None:
        import onnxruntime as ort

        sess = ort.InferenceSession(original.SerializeToString(), providers=["CPUExecutionProvider"])
        kinds = {i.name: i.type for i in sess.get_inputs()}
        typed = {k: np.asarray(v, np.float16 if kinds.get(k) == "tensor(float16)" else np.float32)
                 for k, v in feeds.items()}
        return dict(zip(output_names, sess.run(output_names, typed)))
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(reference, torch.nn.Module):
        reference = TorchReference(reference)
    if isinstance(reference, TorchReference):
        res = reference(feeds)
        if isinstance(res, torch.Tensor):
            res = [res]
        elif isinstance(res, dict):
            return {k: v.detach().cpu().numpy() for k, v in res.items()}
        return {n: r.detach().cpu().numpy() for n, r in zip(output_names, res)}
    res = reference({k: np.asarray(v, np.float32) for k, v in feeds.items()})
    if isinstance(res, dict):
        return {k: np.asarray(v) for k, v in res.items()}
    if isinstance(res, np.ndarray):
        res = [res]
    return {n: np.asarray(r) for n, r in zip(output_names, res)}


def reference_kind(reference) -> str:
    if reference is None:
        return "onnxruntime (float32 ONNX, CPU)"
    return getattr(reference, "kind", None) or type(reference).__name__


def verify_engine(engine_bytes: bytes, original: onnx.ModelProto, profiles: dict, reference, precision: str,
                  tol: float, seed: int) -> dict:
    """Run the engine (Polygraphy TrtRunner) at each distinct batch of the profile against the reference."""
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    try:
        import torch

        if isinstance(reference, torch.nn.Module):
            reference = TorchReference(reference)
    except ImportError:  # pragma: no cover
        pass
    output_names = [o.name for o in original.graph.output]
    cases = []
    ok = True
    with TrtRunner(EngineFromBytes(engine_bytes), name="tensorrt") as runner:
        for k, which in enumerate(("min", "opt", "max")):
            if k > 0 and all(p[which] == p[("min", "opt", "max")[k - 1]] for p in profiles.values()):
                continue
            feeds = make_feeds(profiles, which, seed + k)
            got = runner.infer(feed_dict=feeds)
            ref = reference_outputs(reference, original, feeds, output_names)
            for name in output_names:
                if name not in ref:
                    raise CmcError(f"the reference produced no output named {name!r}")
                rel = relative_error(got[name], ref[name])
                ok &= rel <= tol
                cases.append({"profile": which, "shapes": {n: list(f.shape) for n, f in feeds.items()},
                              "output": name, "rel_err": rel})
    return {"passed": bool(ok), "tolerance": tol, "precision": precision, "reference": reference_kind(reference),
            "cases": cases}
