"""``cmc serve --check URL MODEL_NAME CHECKPOINT --arch ...``: parity re-checked on a deployed server.

The verify step's seeded inputs go over HTTP and gRPC (Triton's own client, run in the Triton
environment: ``wire_client.py``); every response is compared with the user's PyTorch model at the
contract tolerance of the cmc operators the model converts to (max|Δ|/max|y| per output, as
``cmc-export verify``). Writes a JSON verdict and JUnit XML (one case per protocol, batch and output);
exit 0 when every response is within tolerance, 3 when one is not.

Binary networks: a value within float rounding of 0 can take another sign in the deployed graph than in
PyTorch and flip a whole ±1 input downstream (see README, the parity proof). The wire does not show those
values, so with ``--onnx ARTIFACT`` (the served model's ONNX) a response that misses PyTorch is accepted
only where it equals that artifact run locally in onnxruntime (within the tolerance) *and* the artifact
passes cmc's verify on the same inputs with its sign-flip rule; the verdict says which rule passed each case.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..errors import CmcError
from .environment import client_python

WIRE_CLIENT = Path(__file__).with_name("wire_client.py")


def run_client(args: list[str], python: Path | None = None, timeout: float = 300) -> dict:
    python = python or client_python()
    try:
        r = subprocess.run([str(python), str(WIRE_CLIENT), *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CmcError(f"the Triton client did not finish within {timeout:g} s ({args[0]} {args[1]})") from None
    try:
        out = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise CmcError(f"the Triton client failed: {(r.stderr.strip().splitlines() or ['no output'])[-1][:300]}") from None
    if r.returncode != 0 or "error" in out:
        raise CmcError(f"server {args[1]}: {out.get('error', 'the client failed')}")
    return out


def tolerance_of(converted: list[dict]) -> float:
    """The loosest fp32 contract tolerance among the cmc operators the model's layers became."""
    from cmc.plugins.registry import by_op_type

    from ..verify import BASE_TOLERANCE

    tol = BASE_TOLERANCE
    for info in converted:
        op = str(info.get("to", "")).split(" ", 1)[0]
        try:
            tol = max(tol, by_op_type(op)["contract"].tol("float32"))
        except (KeyError, TypeError):
            continue
    return tol


def _torch_outputs(reference, feed: np.ndarray) -> list[np.ndarray]:
    import torch

    from ..idioms import eager_idioms

    with eager_idioms(), torch.no_grad():  # the reference is the user's eager model
        out = reference(torch.from_numpy(feed))
    outs = out if isinstance(out, (tuple, list)) else [out]
    return [o.detach().cpu().numpy() for o in outs]


def run_check(url: str, model_name: str, checkpoint: str, *, arch=None, arch_args=None, grpc_url=None,
              batches=(1, 5, 16), tolerance=None, input_shape=None, json_path="cmc-wire-verdict.json",
              junit_path="cmc-wire-verdict.xml", allow_pickle=False, binarize_weights=None, slim=None,
              onnx_path=None) -> int:
    from ..pipeline import ExportOptions, Steps, log, prepare, versions
    from ..verify import make_feeds
    from ..verify_cmd import _write_atomic

    md = run_client(["metadata", url, model_name])
    if len(md["inputs"]) != 1:
        raise CmcError(f"model {model_name} has {len(md['inputs'])} inputs; the wire check feeds models with one")
    inp = md["inputs"][0]
    dims = [int(d) for d in inp["shape"]]
    max_batch = int(md.get("max_batch_size") or 0)
    if max_batch:
        too_big = [b for b in batches if b > max_batch]
        if too_big:
            raise CmcError(f"batch {too_big[0]} exceeds the model's max_batch_size {max_batch}")
        sample = (1, *dims[1:])
    else:
        sample = tuple(dims)
        batches = (dims[0],)
    if input_shape is not None:
        sample = tuple(input_shape)
    if any(d <= 0 for d in sample[1:]):
        raise CmcError(f"the served input {inp['name']} has free dimensions {dims}: give --input-shape")
    steps = Steps()
    opts = ExportOptions(model=checkpoint, arch=arch, input_shape=sample, allow_pickle=allow_pickle, shrink=False,
                         arch_args=dict(arch_args or {}), slim=slim, binarize_weights=binarize_weights)
    reference, _, _, report = prepare(opts, steps)
    tol = tolerance if tolerance is not None else tolerance_of(report.get("converted", []))
    feeds = make_feeds(inp["name"], sample, batches)
    protocols = ["http"] + (["grpc"] if grpc_url else [])
    with steps("wire", f"{model_name} over {' and '.join(p.upper() for p in protocols)} at batch "
                       f"{','.join(map(str, batches))}"), tempfile.TemporaryDirectory(prefix="cmc-wire-") as tmp:
        npz = Path(tmp) / "inputs.npz"
        np.savez(npz, **{f"b{b}": f[inp["name"]] for b, f in zip(batches, feeds)})
        summary = run_client(["infer", url, grpc_url or "-", model_name, str(npz), str(Path(tmp) / "out")])
        got = {p: dict(np.load(summary["protocols"][p]["file"])) for p in protocols}
    output_names = [o["name"] for o in md["outputs"]]
    artifact = _artifact_rule(onnx_path, reference, sample, batches, feeds, tol) if onnx_path else None
    cases, passed = [], True
    for b, feed in zip(batches, feeds):
        expected = _torch_outputs(reference, feed[inp["name"]])
        if len(expected) != len(output_names):
            raise CmcError(f"the PyTorch model returns {len(expected)} outputs, {model_name} serves {len(output_names)}")
        for p in protocols:
            case = {"protocol": p, "batch": b, "outputs": {}}
            err = summary["protocols"][p]["errors"].get(f"b{b}")
            if err:
                case["error"], passed = err, False
            for name, ref in zip(output_names, expected):
                y = got[p].get(f"b{b}/{name}")
                if y is None:
                    case["outputs"][name] = {"rel_err": None, "passed": False}
                    passed = False
                    continue
                if y.shape != ref.shape:
                    case["outputs"][name] = {"rel_err": None, "passed": False,
                                             "shape": {"served": list(y.shape), "pytorch": list(ref.shape)}}
                    passed = False
                    continue
                scale = float(np.max(np.abs(ref))) or 1.0
                abs_err = float(np.max(np.abs(y.astype(np.float64) - ref.astype(np.float64))))
                ok = abs_err / scale <= tol
                entry = {"rel_err": abs_err / scale, "max_abs_err": abs_err, "max_abs_ref": scale, "passed": ok,
                         "rule": "PyTorch directly"}
                if not ok and artifact is not None:
                    local = artifact["outputs"][b][name]
                    vs_artifact = float(np.max(np.abs(y.astype(np.float64) - local.astype(np.float64)))) / scale
                    ok = vs_artifact <= tol and artifact["passed"][b]
                    entry.update(passed=ok, rel_err_vs_artifact=vs_artifact,
                                 artifact_rounding_flips_forced=artifact["flips"][b],
                                 rule="the artifact (sign-flip rule), which the server's response equals")
                passed &= ok
                case["outputs"][name] = entry
            cases.append(case)
    errs = [o.get("rel_err_vs_artifact", o["rel_err"]) for c in cases for o in c["outputs"].values()
            if o["rel_err"] is not None]
    verdict = {"passed": passed, "tolerance": tol, "worst": max(errs, default=None), "url": url, "grpc_url": grpc_url,
               "model_name": model_name, "checkpoint": checkpoint, "arch": arch, "batches": list(batches),
               "protocols": protocols, "grpc": "checked" if grpc_url else "not checked (no --grpc-url)",
               "cases": cases, "versions": versions()}
    _write_atomic(json_path, (json.dumps(verdict, indent=2, default=str) + "\n").encode())
    _write_atomic(junit_path, junit_xml(verdict))
    log(f"wrote {json_path} and {junit_path}")
    if not passed:
        bad = next(c for c in cases if c.get("error") or not all(o["passed"] for o in c["outputs"].values()))
        detail = bad.get("error") or ", ".join(f"{n}: rel err {o['rel_err']}" for n, o in bad["outputs"].items()
                                               if not o["passed"])
        print(f"cmc serve: error: parity over the wire failed for {model_name} ({bad['protocol']}, batch "
              f"{bad['batch']}): {detail} (tolerance {tol:g} of max|y|)", file=sys.stderr)
        return 3
    print(f"cmc serve: ok: {model_name} at {url} matches the PyTorch model over {' and '.join(protocols)} at batch "
          f"{','.join(map(str, batches))} (worst {verdict['worst']:.3g} <= {tol:g} of max|y|)")
    return 0


def _artifact_rule(onnx_path, reference, sample, batches, feeds, tol) -> dict:
    """The served model's ONNX: its onnxruntime outputs per batch, and cmc's verify verdict per batch."""
    import onnx
    import onnxruntime as ort

    from ..idioms import eager_idioms
    from ..verify import verify

    try:
        model = onnx.load(str(onnx_path))
    except Exception as e:
        raise CmcError(f"--onnx {onnx_path}: not a readable ONNX model ({type(e).__name__})") from e
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    outputs = {b: dict(zip(names, sess.run(names, f))) for b, f in zip(batches, feeds)}
    with eager_idioms():
        v = verify(reference, model, tuple(sample), batches=batches, tolerance=tol)
    by_batch = {c["batch"]: c for c in v.cases}
    packed_ok = v.packed_chains is None or v.packed_chains["identical"]  # packed model == its unpacked form

    def case_ok(c):
        direct = all(o["rel_err"] <= tol for o in c["outputs"].values())
        return bool(packed_ok and (direct or c.get("passed_with_rounding_flips_forced")))

    ok = {b: case_ok(by_batch[b]) for b in batches}
    flips = {b: by_batch[b].get("sign_flips", {}).get("rounding_flips_forced", 0) for b in batches}
    return {"outputs": outputs, "passed": ok, "flips": flips}


def junit_xml(verdict: dict) -> bytes:
    suite = ET.Element("testsuite", name="cmc-wire-parity", tests=str(0), failures="0", errors="0")
    n = fails = 0
    for c in verdict["cases"]:
        for name, o in c["outputs"].items():
            n += 1
            tc = ET.SubElement(suite, "testcase", classname=f"cmc.wire.{verdict['model_name']}",
                               name=f"{c['protocol']}.batch{c['batch']}.{name}")
            if c.get("error") or not o["passed"]:
                fails += 1
                msg = c.get("error") or f"rel err {o['rel_err']} > tolerance {verdict['tolerance']:g} of max|y|"
                ET.SubElement(tc, "failure", message=msg).text = msg
            else:
                ET.SubElement(tc, "system-out").text = f"rel_err={o['rel_err']:.3g} max_abs_err={o['max_abs_err']:.3g}"
    suite.set("tests", str(n))
    suite.set("failures", str(fails))
    root = ET.Element("testsuites")
    root.append(suite)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
