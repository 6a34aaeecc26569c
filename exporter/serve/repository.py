"""The Triton model repository ``cmc-export --to triton`` writes.

Per exported model, up to three Triton models over the same ONNX:

* ``<name>_onnxruntime``: ``onnxruntime_onnx`` platform (NVIDIA's containers ship that backend);
* ``<name>_python``: the Python backend running onnxruntime (CPU or CUDA execution provider) —
  served by any Triton with the Python backend, including the ``tritonserver`` inside the
  ``nvidia-pytriton`` wheel that ``cmc serve`` uses on machines without NVIDIA's containers;
* ``<name>_tensorrt``: ``tensorrt_plan`` when an engine was built, with cmc's plugin library beside
  the repository and a launch script that preloads it.

Every config has explicit tensor names, types and dims, ``max_batch_size`` and ``dynamic_batching``
from the export's batch range, an instance group and a warm-up request. The configs are written as
protobuf text by hand (cmc's environment does not hold Triton's protobuf classes); the tests parse
every one of them with ``tritonclient``'s ``model_config_pb2``.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import onnx

from ..errors import CmcError

PYTHON_MODEL_SOURCE = Path(__file__).with_name("python_model.py")
DEFAULT_BATCH = (1, 8, 32)  # min:opt:max when --batch is not given
DEVICES = ("cpu", "cuda")

_TRITON_TYPES = {
    onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16", onnx.TensorProto.DOUBLE: "TYPE_FP64",
    onnx.TensorProto.INT32: "TYPE_INT32", onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.INT8: "TYPE_INT8",
    onnx.TensorProto.UINT8: "TYPE_UINT8", onnx.TensorProto.BOOL: "TYPE_BOOL",
}

# The oldest onnxruntime that reads a model of this IR version (onnxruntime's published compatibility
# table); opset 18, which the exporter writes, needs 1.14 as well.
_ORT_FOR_IR = {8: "1.14", 9: "1.15", 10: "1.18", 11: "1.22"}
_ORT_FOR_OPSET = {18: "1.14", 19: "1.15", 20: "1.17", 21: "1.18", 22: "1.20"}
# Element types that need a newer IR than 8: float8 (IR 9), int4/uint4 (IR 10), float4 and 8-bit ints (IR 11).
_TYPES_NEWER_IR = {17: 9, 18: 9, 19: 9, 20: 9, 21: 10, 22: 10, 23: 11, 24: 11, 25: 11}


@dataclass
class TensorSpec:
    name: str
    triton_type: str
    dims: list[int]  # without the batch dimension when the model is batched; -1 for a free dimension


def tensor_specs(values, batched: bool) -> list[TensorSpec]:
    specs = []
    for v in values:
        t = v.type.tensor_type
        if t.elem_type not in _TRITON_TYPES:
            raise CmcError(f"tensor {v.name!r} has ONNX element type {onnx.TensorProto.DataType.Name(t.elem_type)}, "
                           "which the Triton configs cmc writes do not cover")
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in t.shape.dim]
        specs.append(TensorSpec(v.name, _TRITON_TYPES[t.elem_type], dims[1:] if batched else dims))
    return specs


def lowest_exact_ir_version(model: onnx.ModelProto) -> int:
    """The smallest IR version that holds this model unchanged: 8 (model-local functions) unless a
    tensor type or function feature of a later IR appears."""
    need = 8
    graphs = [model.graph]
    for g in graphs:
        for v in list(g.input) + list(g.output) + list(g.value_info):
            need = max(need, _TYPES_NEWER_IR.get(v.type.tensor_type.elem_type, 8))
        for init in g.initializer:
            need = max(need, _TYPES_NEWER_IR.get(init.data_type, 8))
        for n in g.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    graphs.append(a.g)
                if a.type == onnx.AttributeProto.TENSOR:
                    need = max(need, _TYPES_NEWER_IR.get(a.t.data_type, 8))
    for f in model.functions:
        if f.overload or len(f.value_info):  # both arrived with IR 10
            need = max(need, 10)
    return min(need, model.ir_version)


def onnx_for_older_runtimes(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict]:
    """The model with the lowest IR version that represents it exactly, and what it needs to run."""
    ir = lowest_exact_ir_version(model)
    lowered = onnx.ModelProto()
    lowered.CopyFrom(model)
    lowered.ir_version = ir
    onnx.checker.check_model(lowered)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=18)
    ort_min = max(_ORT_FOR_IR.get(ir, "1.22"), _ORT_FOR_OPSET.get(opset, "1.20"), key=lambda s: tuple(map(int, s.split("."))))
    return lowered, {"ir_version": ir, "exported_ir_version": model.ir_version, "opset": opset,
                     "min_onnxruntime": ort_min}


def _dims(d: list[int]) -> str:
    return "[ " + ", ".join(map(str, d)) + " ]"


def _tensors(kind: str, specs: list[TensorSpec]) -> str:
    rows = [f'  {{ name: "{s.name}" data_type: {s.triton_type} dims: {_dims(s.dims)} }}' for s in specs]
    return f"{kind} [\n" + ",\n".join(rows) + "\n]\n"


def config_text(name: str, *, platform: str | None = None, backend: str | None = None,
                inputs: list[TensorSpec], outputs: list[TensorSpec], batch: tuple[int, int, int] | None,
                kind: str, parameters: dict[str, str] | None = None) -> str:
    """One config.pbtxt. batch None: a static-batch model (max_batch_size 0, the batch is in dims)."""
    lines = [f'name: "{name}"']
    if platform:
        lines.append(f'platform: "{platform}"')
    if backend:
        lines.append(f'backend: "{backend}"')
    lines.append(f"max_batch_size: {batch[2] if batch else 0}")
    text = "\n".join(lines) + "\n" + _tensors("input", inputs) + _tensors("output", outputs)
    if batch:
        preferred = sorted({b for b in (batch[1], batch[2]) if b > 1})
        text += ("dynamic_batching {\n"
                 + (f"  preferred_batch_size: {_dims(preferred)}\n" if preferred else "")
                 + "  max_queue_delay_microseconds: 500\n}\n")
    text += f"instance_group [ {{ count: 1 kind: {kind} }} ]\n"
    # Warm-up: one random request at batch 1 before the model is marked ready (the first onnxruntime /
    # TensorRT call allocates; it should not land on a user's request).
    warm_inputs = "\n".join(
        f'    inputs {{ key: "{s.name}" value {{ data_type: {s.triton_type} '
        f'dims: {_dims([d if d > 0 else 1 for d in s.dims])} random_data: true }} }}' for s in inputs)
    text += (f'model_warmup [\n  {{\n    name: "random_batch_1"\n    batch_size: {1 if batch else 0}\n'
             f"{warm_inputs}\n  }}\n]\n")
    for k, v in (parameters or {}).items():
        text += f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n'
    return text


def write_repository(root: Path, onnx_model: onnx.ModelProto, name: str, *, dynamic_batch: bool,
                     batch: tuple[int, int, int] | None = None, device: str = "cpu",
                     engine: Path | None = None, trt_onnx: onnx.ModelProto | None = None) -> dict:
    """Write ``root`` (a model repository); returns what was written for the report."""
    if device not in DEVICES:
        raise CmcError(f"--triton-device {device!r}: choose one of {', '.join(DEVICES)}")
    batch = (batch or DEFAULT_BATCH) if dynamic_batch else None
    inputs = tensor_specs(onnx_model.graph.input, batched=batch is not None)
    outputs = tensor_specs(onnx_model.graph.output, batched=batch is not None)
    lowered, runtime = onnx_for_older_runtimes(onnx_model)
    kind = "KIND_GPU" if device == "cuda" else "KIND_CPU"
    models = {}

    ort_name = f"{name}_onnxruntime"
    _write_model(root / ort_name, lowered, config_text(ort_name, platform="onnxruntime_onnx", inputs=inputs,
                                                        outputs=outputs, batch=batch, kind=kind))
    models[ort_name] = {"backend": "onnxruntime", "platform": "onnxruntime_onnx", **runtime}

    py_name = f"{name}_python"
    provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    _write_model(root / py_name, onnx_model, config_text(
        py_name, backend="python", inputs=inputs, outputs=outputs, batch=batch, kind=kind,
        parameters={"execution_provider": provider, "onnx_file": "model.onnx"}))
    shutil.copyfile(PYTHON_MODEL_SOURCE, root / py_name / "1" / "model.py")
    models[py_name] = {"backend": "python", "execution_provider": provider,
                       "needs": "numpy and onnxruntime in the Python backend's environment"}

    if engine is not None:
        trt_name = f"{name}_tensorrt"
        (root / trt_name / "1").mkdir(parents=True)
        shutil.copyfile(engine, root / trt_name / "1" / "model.plan")
        trt_io = trt_onnx or onnx_model
        (root / trt_name / "config.pbtxt").write_text(config_text(
            trt_name, platform="tensorrt_plan", inputs=tensor_specs(trt_io.graph.input, batch is not None),
            outputs=tensor_specs(trt_io.graph.output, batch is not None), batch=batch, kind="KIND_GPU"))
        models[trt_name] = {"backend": "tensorrt", "platform": "tensorrt_plan"}
    return {"models": models, "max_batch_size": batch[2] if batch else 0,
            "preferred_batch_size": batch[1] if batch else None, "device": device,
            "inputs": [s.__dict__ for s in inputs], "outputs": [s.__dict__ for s in outputs]}


def _write_model(folder: Path, model: onnx.ModelProto, config: str):
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.onnx").write_bytes(model.SerializeToString())
    (folder / "config.pbtxt").write_text(config)
