"""How far TF32 would move an "FP32" engine (a measurement on the CPU, not a test).

    python benchmarks/tf32_effect.py [--inputs 8] [--out benchmarks/results/tf32_effect_cpu.json]

TensorRT enables BuilderFlag.TF32 by default: its FP32 convolutions and matrix products may then round
their inputs to TF32 (10-bit mantissa). cmc's plugins compute in float32 either way, so only the standard
Conv / Gemm / MatMul nodes are affected. This script exports each sample model with cmc, rounds the
float inputs and weights of exactly those nodes to TF32 (round to nearest, ties away: the emulation, in
onnxruntime) and reports max|y_tf32 - y_fp32| / max|y_fp32| over random inputs, next to the model's
FP32 tolerance. Why cmc clears the flag (README, TensorRT).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
from pathlib import Path

from _common import cpu_name  # noqa: E402  (benchmarks/ is the script folder)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402

SAMPLES = {
    "bnn_nin": "samples.bnn_nin:nin",
    "addernet_resnet20": "samples.addernet_resnet20:resnet20",
    "spconv_resnet20": "samples.spconv_resnet:sp_resnet20",
}
TF32_OPS = ("Conv", "Gemm", "MatMul")


def tf32(a: np.ndarray) -> np.ndarray:
    """float32 rounded to 10 mantissa bits (nearest, ties away from zero), as float32."""
    bits = np.ascontiguousarray(a, np.float32).view(np.uint32)
    return ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


def with_tf32_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every float input of the standard Conv/Gemm/MatMul nodes rounded to TF32: weights
    rounded in place (tf32), activations by the same rounding written in standard ops (_round_chain)."""
    m = copy.deepcopy(model)
    inits = {t.name: t for t in m.graph.initializer}
    new_nodes = []
    for node in m.graph.node:
        if node.domain in ("", "ai.onnx") and node.op_type in TF32_OPS:
            for i, name in enumerate(node.input[:2]):
                if name in inits:
                    arr = numpy_helper.to_array(inits[name])
                    if arr.dtype == np.float32:
                        inits[name].CopyFrom(numpy_helper.from_array(tf32(arr), name))
                    continue
                node.input[i] = _round_chain(new_nodes, name, f"{name}__tf32_{len(new_nodes)}")
        new_nodes.append(node)
    del m.graph.node[:]
    m.graph.node.extend(new_nodes)
    return m


def _round_chain(nodes: list, src: str, out: str) -> str:
    """Rounding of an activation to TF32 with standard ops: x -> sign(x) * round_to_tf32(|x|) via
    frexp-like arithmetic (scale = 2^(floor(log2|x|) - 10); round(|x| / scale) * scale)."""
    c = lambda v, n: nodes.append(helper.make_node("Constant", [], [n], value=numpy_helper.from_array(np.array(v, np.float32), n)))  # noqa: E731
    c(2.0 ** -126, out + "_tiny")
    c(10.0, out + "_ten")
    c(2.0, out + "_two")
    c(0.5, out + "_half")
    nodes += [
        helper.make_node("Abs", [src], [out + "_abs"]),
        helper.make_node("Max", [out + "_abs", out + "_tiny"], [out + "_safe"]),
        helper.make_node("Log", [out + "_safe"], [out + "_ln"]),
    ]
    c(1.0 / np.log(2.0), out + "_inv_ln2")
    nodes += [
        helper.make_node("Mul", [out + "_ln", out + "_inv_ln2"], [out + "_log2"]),
        helper.make_node("Floor", [out + "_log2"], [out + "_e"]),
        helper.make_node("Sub", [out + "_e", out + "_ten"], [out + "_e10"]),
        helper.make_node("Pow", [out + "_two", out + "_e10"], [out + "_scale"]),
        helper.make_node("Div", [out + "_abs", out + "_scale"], [out + "_q"]),
        helper.make_node("Add", [out + "_q", out + "_half"], [out + "_qh"]),
        helper.make_node("Floor", [out + "_qh"], [out + "_qr"]),
        helper.make_node("Mul", [out + "_qr", out + "_scale"], [out + "_mag"]),
        helper.make_node("Sign", [src], [out + "_sgn"]),
        helper.make_node("Mul", [out + "_mag", out + "_sgn"], [out]),
    ]
    return out


def export(name: str, spec: str, tmp: Path) -> onnx.ModelProto:
    from cmc.exporter.pipeline import ExportOptions, run_export
    from samples import make_checkpoints

    ckpt = make_checkpoints.save(name, tmp)
    out = tmp / f"out_{name}"
    run_export(ExportOptions(model=str(ckpt), arch=spec, input_shape=(1, 3, 32, 32), out_dir=str(out),
                             verify=False, packed_chains=False))
    return onnx.load(str(out / f"{name}.onnx"))




def main(argv=None) -> int:
    import tempfile

    from cmc.exporter.verify import model_tolerance

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=8)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in SAMPLES.items():
            model = export(name, spec, Path(tmp))
            rounded = with_tf32_inputs(model)
            s32 = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            s_tf = ort.InferenceSession(rounded.SerializeToString(), providers=["CPUExecutionProvider"])
            x = rng.standard_normal((args.inputs, 3, 32, 32)).astype(np.float32)
            a = s32.run(None, {s32.get_inputs()[0].name: x})[0].astype(np.float64)
            b = s_tf.run(None, {s_tf.get_inputs()[0].name: x})[0].astype(np.float64)
            n_nodes = sum(n.op_type in TF32_OPS and n.domain in ("", "ai.onnx") for n in model.graph.node)
            rec = {"model": name, "tf32_nodes": n_nodes, "rel_err": float(np.abs(a - b).max() / np.abs(a).max()),
                   "fp32_tolerance": model_tolerance(model), "inputs": args.inputs}
            records.append(rec)
            print(f"{name:20s} {n_nodes} Conv/Gemm/MatMul nodes: TF32 moves y by {rec['rel_err']:.3g} of max|y| "
                  f"(FP32 tolerance {rec['fp32_tolerance']:g})", file=sys.stderr)
    result = {"benchmark": "tf32_effect", "machine": cpu_name(), "cores": os.cpu_count(),
              "onnxruntime": ort.__version__, "records": records}
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
