"""`cmc-export verify`: re-check an existing ONNX artifact against the PyTorch model, for the user's CI.

Writes a JSON verdict and a JUnit XML file (one test case per batch size and output) that CI systems
display; exit code 0 when parity holds, 3 when it does not.
"""
from __future__ import annotations

import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import onnx

from .errors import CmcError
from .pipeline import ExportOptions, Steps, known_example, log, prepare, versions


def _write_atomic(path: str, data: bytes):
    p = Path(path)
    parent = p.resolve().parent
    if not parent.is_dir():
        raise CmcError(f"cannot write {path!r}: folder {str(parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _case_error(case: dict, o: dict) -> float:
    """The error that counts: with rounding flips forced where that made the case pass (verify.py)."""
    if case.get("passed_with_rounding_flips_forced"):
        return o.get("rel_err_flips_forced", o["rel_err"])
    return o["rel_err"]


def junit_xml(verdict: dict, artifact: str) -> bytes:
    cases = [(c["batch"], name, o, _case_error(c, o)) for c in verdict["cases"] for name, o in c["outputs"].items()]
    failures = [1 for *_, err in cases if not (err <= verdict["tolerance"])]
    suite = ET.Element("testsuite", name="cmc-parity", tests=str(len(cases)), failures=str(len(failures)), errors="0")
    for batch, name, o, err in cases:
        tc = ET.SubElement(suite, "testcase", classname=f"cmc.parity.{Path(artifact).name}", name=f"batch{batch}.{name}")
        if not (err <= verdict["tolerance"]):
            msg = f"rel err {err:.3g} > tolerance {verdict['tolerance']:g} of max|y|"
            where = (verdict.get("first_divergence") or {}).get("message")
            ET.SubElement(tc, "failure", message=msg).text = msg + (f"\n{where}" if where else "")
        elif err != o["rel_err"]:
            ET.SubElement(tc, "system-err").text = (f"passed with rounding flips forced to PyTorch's signs "
                                                   f"(plain rel err {o['rel_err']:.3g})")
        ET.SubElement(tc, "system-out").text = f"max_abs_err={o.get('max_abs_err')} max_abs_ref={o.get('max_abs_ref')}"
    for c in (verdict.get("packed_equals_unpacked") or {}).get("cases", []):  # packed chains vs the unpacked graph
        for name, o in c["outputs"].items():
            tc = ET.SubElement(suite, "testcase", classname=f"cmc.parity.{Path(artifact).name}",
                               name=f"batch{c['batch']}.{name}.packed_equals_unpacked")
            suite.set("tests", str(int(suite.get("tests")) + 1))
            if not o["identical"]:
                msg = f"packed chains differ from the unpacked graph in {o['differing_values']} value(s)"
                ET.SubElement(tc, "failure", message=msg).text = msg
                suite.set("failures", str(int(suite.get("failures")) + 1))
    if verdict.get("constant_outputs"):  # the check proves nothing about these outputs
        tc = ET.SubElement(suite, "testcase", classname=f"cmc.parity.{Path(artifact).name}", name="outputs_vary_with_input")
        suite.set("tests", str(int(suite.get("tests")) + 1))
        if verdict.get("constant_outputs_accepted"):
            ET.SubElement(tc, "system-err").text = verdict["warning"] + " (accepted: --accept-constant-output)"
        else:
            ET.SubElement(tc, "failure", message="outputs do not vary with the input").text = verdict["warning"]
            suite.set("failures", str(int(suite.get("failures")) + 1))
    root = ET.Element("testsuites")
    root.append(suite)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def run_verify(artifact, model, *, arch=None, input_shape=None, batches=(1, 5), tolerance=None,
               json_path="cmc-verdict.json", junit_path="cmc-verdict.xml", allow_pickle=False, arch_args=None,
               slim=None, accept_deviation=False, binarize_weights=None, zero_weights_as_plus_one=False,
               accept_constant_output=False) -> int:
    import json

    from .idioms import eager_idioms
    from .verify import constant_output_warning, verify

    a = Path(artifact)
    if not a.is_file():
        raise CmcError(f"artifact {artifact!r} does not exist")
    try:
        onnx_model = onnx.load(str(a))
        onnx.checker.check_model(onnx_model)
    except Exception as e:
        raise CmcError(f"{a.name} is not a valid ONNX model ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from e
    if input_shape is None:
        dims = onnx_model.graph.input[0].type.tensor_type.shape.dim
        input_shape = tuple(d.dim_value if d.dim_value > 0 else 1 for d in dims) or None
    steps = Steps()
    # --accept-deviation: the reference is the shrunk model with the accepted folds (as the export checked it)
    opts = ExportOptions(model=model, arch=arch, input_shape=input_shape, allow_pickle=allow_pickle,
                         shrink=accept_deviation, accept_deviation=accept_deviation, arch_args=dict(arch_args or {}),
                         slim=slim, binarize_weights=binarize_weights,
                         zero_weights_as_plus_one=zero_weights_as_plus_one)
    from .idioms import settled_scope

    with settled_scope():  # prepare() settles fixed-point updates; verify runs the user's eager model only
        memo: dict = {}
        reference, _, x, report = prepare(opts, steps, memo)
    with steps("verify", f"{a.name} vs PyTorch at batch {','.join(map(str, batches))}"):
        try:
            with eager_idioms():  # the reference is the user's eager model
                v = verify(reference, onnx_model, tuple(x.shape), batches=batches, tolerance=tolerance,
                           example=known_example(memo))
        except Exception as e:
            raise CmcError(f"could not run {a.name} against the model: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}") from e
    verdict = dict(v.to_dict(), artifact=str(a), model=str(model), arch=arch, versions=versions(),
                   constant_outputs_accepted=bool(accept_constant_output))
    _write_atomic(json_path, (json.dumps(verdict, indent=2, default=str) + "\n").encode())
    _write_atomic(junit_path, junit_xml(verdict, artifact))
    log(f"wrote {json_path} and {junit_path}")
    if not v.passed:
        where = (v.divergence or {}).get("message", "")
        if (v.divergence or {}).get("kind") == "packed_chains":
            print(f"cmc-export: error: parity check failed for {a.name}: {where}", file=sys.stderr)
            return 3
        print(f"cmc-export: error: parity check failed for {a.name}: worst error {v.worst():.3g} of max|y| > "
              f"tolerance {v.tolerance:g}" + (f"; {where}" if where else ""), file=sys.stderr)
        return 3
    if v.constant_outputs:
        warning = constant_output_warning(v.constant_outputs)
        if not accept_constant_output:
            print(f"cmc-export: error: {a.name}: {warning} (--accept-constant-output to accept)", file=sys.stderr)
            return 3
        print(f"cmc-export: warning: {a.name}: {warning} (accepted: --accept-constant-output)", file=sys.stderr)
    print(f"cmc-export: ok: {a.name} matches the PyTorch model (worst {v.worst():.3g} <= {v.tolerance:g} of max|y|)")
    return 0
