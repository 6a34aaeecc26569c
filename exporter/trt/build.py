"""TensorRT engine build, verification and manifest: :func:`build_trt`."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import CmcError, ParityError
from .builder_config import attach_timing_cache, check_timing_cache_path, network_flags, set_tf32, trt_major
from .engine_check import (TorchReference, default_tolerance, make_feeds, reference_kind, relative_error,  # noqa: F401
                           verify_engine)
from .env import TensorRTEnv, find_tensorrt
from .onnx_prep import prepare_onnx_for_trt, save_onnx_atomic

MANIFEST = "tensorrt_manifest.json"
MANIFEST_FORMAT = "cmc-tensorrt-manifest/1"
_FLOAT_TYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16}


# ---------------------------------------------------------------- small pure helpers (CPU-tested)

def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class _Out:
    """Where artifacts go: a plain folder (each file written atomically) or the CLI's Staging object
    (files are moved into the output folder by its commit())."""

    def __init__(self, out_dir):
        self.staging = out_dir if hasattr(out_dir, "path") and hasattr(out_dir, "dir") else None
        self.dir = Path(self.staging.dir) if self.staging is not None else Path(out_dir)
        if self.staging is None:
            self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.staging.path(name) if self.staging is not None else self.dir / name

    def write_bytes(self, name: str, data: bytes) -> Path:
        return write_bytes_atomic(self.path(name), data)

    def copy(self, name: str, src: str | os.PathLike) -> Path:
        dst = self.path(name)
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
        return dst


def normalize_batch(batch, example=None) -> tuple[int, int, int]:
    """(min, opt, max) from None, an int, or a 1-3 sequence; None -> (1, b, b) with b the example's batch."""
    if batch is None:
        b = int(example.shape[0]) if example is not None and len(getattr(example, "shape", ())) > 0 else 1
        batch = (1, b, b)
    elif isinstance(batch, int):
        batch = (batch, batch, batch)
    batch = tuple(int(b) for b in batch)
    if len(batch) == 1:
        batch = batch * 3
    if len(batch) != 3:
        raise CmcError(f"batch profile must be MIN:OPT:MAX, got {batch}")
    lo, opt, hi = batch
    if not (1 <= lo <= opt <= hi):
        raise CmcError(f"batch profile {lo}:{opt}:{hi} must satisfy 1 <= min <= opt <= max")
    return lo, opt, hi


def input_profiles(model: onnx.ModelProto, batch: tuple[int, int, int], example=None) -> dict[str, dict]:
    """{input: {"min": shape, "opt": shape, "max": shape, "dtype": str}} for the graph's real inputs.

    Dimension 0 takes the batch profile when it is dynamic (else it must lie inside the profile's
    range); other dynamic dimensions come from ``example`` (a tensor of the first input), else it is an error.
    """
    inits = {i.name for i in model.graph.initializer}
    out = {}
    inputs = [i for i in model.graph.input if i.name not in inits]
    for k, vi in enumerate(inputs):
        tt = vi.type.tensor_type
        dims = []
        for d_i, d in enumerate(tt.shape.dim):
            dims.append(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1)
        if not dims:
            raise CmcError(f"input {vi.name} has no shape in the ONNX model")
        ex = tuple(example.shape) if (example is not None and k == 0) else None
        shapes = {}
        for which, b in zip(("min", "opt", "max"), batch):
            s = list(dims)
            if s[0] == -1:
                s[0] = b
            for j in range(1, len(s)):
                if s[j] == -1:
                    if ex is None or len(ex) != len(s):
                        raise CmcError(f"input {vi.name} has dynamic dimension {j}; give an example input to fix it")
                    s[j] = int(ex[j])
            shapes[which] = tuple(s)
        if dims[0] != -1 and not (batch[0] <= dims[0] <= batch[2]):
            raise CmcError(f"input {vi.name} has a static batch of {dims[0]}, outside the profile {batch[0]}:{batch[1]}:{batch[2]}")
        np_type = _FLOAT_TYPES.get(tt.elem_type)
        shapes["dtype"] = np.dtype(np_type).name if np_type is not None else onnx.TensorProto.DataType.Name(tt.elem_type)
        out[vi.name] = shapes
    return out


def write_manifest(out: _Out, manifest: dict) -> Path:
    return out.write_bytes(MANIFEST, (json.dumps(manifest, indent=2, default=str) + "\n").encode())


# ---------------------------------------------------------------- environment facts

def gpu_info() -> dict:
    """GPU name, compute capability and CUDA versions, from whatever is installed (torch, cuda-python, nvidia-smi)."""
    info: dict[str, Any] = {}
    try:
        import torch

        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            info.update(name=p.name, compute_capability=f"{p.major}.{p.minor}", memory_bytes=int(p.total_memory),
                        cuda_runtime_torch=torch.version.cuda)
    except Exception:  # noqa: BLE001
        pass
    try:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart  # older cuda-python
        err, rt = cudart.cudaRuntimeGetVersion()
        if int(err) == 0:
            info["cuda_runtime"] = f"{rt // 1000}.{(rt % 1000) // 10}"
        err, drv = cudart.cudaDriverGetVersion()
        if int(err) == 0:
            info["cuda_driver"] = f"{drv // 1000}.{(drv % 1000) // 10}"
    except Exception:  # noqa: BLE001
        pass
    if "name" not in info and shutil.which("nvidia-smi"):
        import subprocess

        try:
            r = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30)
            if r.returncode == 0 and r.stdout.strip():
                name, cc, drv = [s.strip() for s in r.stdout.strip().splitlines()[0].split(",")]
                info.update(name=name, compute_capability=cc, driver=drv)
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    return info


# ---------------------------------------------------------------- the build

def make_logger(trt, verbose: bool | None = None):
    """A TensorRT logger that keeps the errors, so a one-line CmcError can quote the first."""
    verbose = bool(os.environ.get("CMC_TRT_VERBOSE")) if verbose is None else verbose

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(str(msg))
            if verbose or severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                print(f"[TensorRT] {msg}", file=sys.stderr)

    return Logger()


def has_fp16(model: onnx.ModelProto) -> bool:
    """Does the model already compute in float16 (a float16 graph input/output or initializer)?"""
    f16 = onnx.TensorProto.FLOAT16
    return (any(v.type.tensor_type.elem_type == f16 for v in list(model.graph.input) + list(model.graph.output))
            or any(i.data_type == f16 for i in model.graph.initializer))


def built_precision(model: onnx.ModelProto) -> str:
    """"fp16" when some node of the model TensorRT builds computes on float16 tensors, else "fp32": the label,
    the network type and the engine check's tolerance follow what is built, not what was asked."""
    from .fp16_plan import float16_compute_nodes

    return "fp16" if has_fp16(model) and float16_compute_nodes(model) else "fp32"


def _calibration_feeds(original: onnx.ModelProto, batch, example, seed: int) -> list[dict]:
    """Inputs for the FP16 conversion's range check: the example (if any) and random inputs at the profile's
    opt and max batch (seeds apart from the verification's)."""
    profiles = input_profiles(original, batch, example)
    feeds = [make_feeds(profiles, which, seed + 1000 + k) for k, which in enumerate(("opt", "max"))]
    if example is not None and len(profiles) == 1:
        x = example.detach().cpu().numpy() if hasattr(example, "detach") else np.asarray(example)
        feeds.append({next(iter(profiles)): x.astype(np.float32)})
    return feeds


def build_trt(onnx_path: str | os.PathLike, out_dir, *, fp16: bool = False, tf32: bool = False, batch=None,
              workspace_mb: int = 1024, timing_cache: str | os.PathLike | None = None,
              plugin_lib: str | os.PathLike | None = None, env: TensorRTEnv | None = None, reference: Any = None,
              example=None, verify: bool = True, tolerance: float | None = None, seed: int = 0,
              engine_name: str | None = None) -> dict:
    """Build a TensorRT engine from a cmc ONNX model, verify it, and write a manifest.

    onnx_path     the exporter's ONNX (com.cmc nodes + their function bodies), float32 or already float16.
    out_dir       a folder, or the CLI's ``Staging`` (files are then placed by its commit()). Written there:
                  <stem>.plan (the engine), <stem>.trt.onnx (the ONNX the parser saw: plugin ops without
                  function bodies), <stem>.fp16.onnx (with fp16: the converted model with its function
                  bodies, for onnxruntime), the plugin library the engine needs (libcmc_trt_plugins*.so), and
                  tensorrt_manifest.json.
    fp16          build an FP16 engine: cmc converts the ONNX to float16 (cmc.exporter.trt.fp16_onnx: float16
                  activations, float32 where float16 would not be honest) and TensorRT builds it strongly
                  typed, on 10.x and 11.x alike. A model that already holds float16 is built as given.
    tf32          allow TF32 for float32 layers (TensorRT's default; cmc's default is False: FP32 means float32).
    batch         (min, opt, max) for dimension 0 of every input; an int means min=opt=max; None means
                  (1, b, b) with b the example's batch (1 without example).
    workspace_mb  builder workspace pool limit (MiB, > 0).
    timing_cache  file read before and written (atomically) after the build; created when missing; a cache
                  TensorRT refuses (another GPU/version) is reported on stderr and replaced by a fresh one.
    plugin_lib    a prebuilt cmc plugin library (either variant); None builds one for the local GPU
                  (cached, needs cmake, nvcc and the TensorRT headers).
    env           the TensorRTEnv from find_tensorrt() (found again when None).
    reference     what the engine is compared with: None = onnxruntime on ``onnx_path`` (CPU, through the
                  function bodies); a torch.nn.Module (run on CPU in float64, see engine_check); or
                  callable(feeds: dict) -> dict/list.
    example       an example input tensor (fixes non-batch dynamic dims, default batch, FP16 calibration).
    verify        run the engine (Polygraphy TrtRunner) at the min/opt/max batch against ``reference``.
    tolerance     max |y - ref| / max |ref| per output; default: the loosest contract tolerance of the
                  model's cmc ops for the precision.
    Returns the manifest (dict). Raises CmcError (environment, build) or ParityError (verification;
    the manifest is written first, with "verification": {"passed": false, ...}).
    """
    t0 = time.perf_counter()
    onnx_path = Path(onnx_path)
    if int(workspace_mb) <= 0:
        raise CmcError(f"the builder workspace must be a positive number of MiB, got {workspace_mb}")
    if timing_cache is not None:
        check_timing_cache_path(timing_cache)  # before the long steps
    env = env or find_tensorrt(need_headers=plugin_lib is None)
    if env.python_version is None:
        env = find_tensorrt(need_headers=plugin_lib is None)
    import tensorrt as trt

    from .plugin_lib import DYNAMIC_LIB, STATIC_LIB, build_plugin_library, load_plugin_library

    out = _Out(out_dir)
    stem = engine_name or onnx_path.stem
    try:
        original = onnx.load(str(onnx_path))
    except Exception as e:  # noqa: BLE001
        raise CmcError(f"cannot read {onnx_path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    batch = normalize_batch(batch, example)

    # 1. The model TensorRT builds: float32 as exported, or cmc's float16 conversion of it.
    model, fp16_report, fp16_onnx, notes = original, None, None, []
    if fp16 and not has_fp16(original):
        from .fp16_onnx import convert_to_fp16

        converted, fp16_report = convert_to_fp16(original, _calibration_feeds(original, batch, example, seed))
        if fp16_report["fp16_nodes"]:
            model = converted
            fp16_onnx = save_onnx_atomic(model, out.path(f"{stem}.fp16.onnx"))
        else:  # an "FP16" engine that computes nothing in float16 would be a float32 engine under a false label
            reasons = "; ".join(sorted({r["reason"] for r in fp16_report["fp32_nodes"]}))[:300] or "no float activations"
            notes.append(f"--fp16: no node of this model can compute in float16 ({reasons}); built in FP32")
            print(f"cmc: warning: {notes[-1]}", file=sys.stderr)
    precision = built_precision(model)
    profiles = input_profiles(model, batch, example)

    # 2. The plugin library, loaded into this process.
    libs = {}
    if plugin_lib is None:
        dyn = build_plugin_library(env, variant="dynamic")
        libs = {DYNAMIC_LIB: dyn, STATIC_LIB: dyn.with_name(STATIC_LIB)}
        load_info = load_plugin_library(dyn)
    else:
        libs = {Path(plugin_lib).name: Path(plugin_lib)}
        load_info = load_plugin_library(plugin_lib)

    # 3. The ONNX the parser sees (plugin ops without function bodies; no parser flags: see builder_config).
    prepared, prep_report = prepare_onnx_for_trt(model)
    trt_onnx = out.path(f"{stem}.trt.onnx")
    save_onnx_atomic(prepared, trt_onnx)

    # 4. Network, profile, config.
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, strongly_typed=precision == "fp16"))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(trt_onnx)):
        errs = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)] or logger.errors
        raise CmcError(f"TensorRT's ONNX parser rejected {trt_onnx.name}: {errs[0] if errs else 'no detail'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    tf32_set = set_tf32(trt, config, tf32)
    profile = builder.create_optimization_profile()
    for name, p in profiles.items():
        profile.set_shape(name, p["min"], p["opt"], p["max"])
    if config.add_optimization_profile(profile) < 0:
        raise CmcError(f"TensorRT rejected the optimisation profile {batch[0]}:{batch[1]}:{batch[2]} "
                       f"({logger.errors[-1] if logger.errors else 'no detail'})")
    cache, cache_facts = (None, None) if timing_cache is None else attach_timing_cache(config, timing_cache, logger)

    # 5. Build.
    t_build = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise CmcError(f"TensorRT could not build the engine: {logger.errors[0] if logger.errors else 'no detail'}")
    engine_bytes = bytes(serialized)
    build_s = time.perf_counter() - t_build
    engine_path = out.write_bytes(f"{stem}.plan", engine_bytes)
    placed_libs = {}
    for name, src in libs.items():
        if Path(src).is_file():
            placed_libs[name] = out.copy(name, src)

    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "engine": engine_path.name,
        "onnx": onnx_path.name,
        "onnx_for_tensorrt": trt_onnx.name,
        "fp16_onnx": fp16_onnx.name if fp16_onnx is not None else None,
        "plugin_libraries": {n: {"file": p.name, "sha256": sha256_file(p)} for n, p in placed_libs.items()},
        "plugin_load": load_info,
        "precision": precision,
        "fp16_requested": bool(fp16),
        "network": "strongly typed" if precision == "fp16" or trt_major(trt) >= 11 else "weakly typed (float32)",
        "tf32": tf32_set,
        "fp16_conversion": fp16_report,
        "profiles": [{name: {k: list(p[k]) for k in ("min", "opt", "max")} for name, p in profiles.items()}],
        "input_dtypes": {name: p["dtype"] for name, p in profiles.items()},
        "workspace_mb": int(workspace_mb),
        "timing_cache": cache_facts,
        "tensorrt": {"python": trt.__version__, "headers": env.header_version, "include_dir": env.include_dir},
        "gpu": gpu_info(),
        "onnx_preparation": prep_report,
        "sha256": {"engine": hashlib.sha256(engine_bytes).hexdigest(), "onnx": sha256_file(onnx_path),
                   "onnx_for_tensorrt": sha256_file(trt_onnx)},
        "timings_s": {"build": round(build_s, 3)},
        "notes": notes,
    }

    # 6. Verification: the engine against the reference at each distinct batch of the profile.
    verdict = None
    if verify:
        verdict = verify_engine(engine_bytes, original, profiles, reference, precision,
                                tolerance if tolerance is not None else default_tolerance(original, precision), seed)
        manifest["verification"] = verdict
    else:
        manifest["verification"] = {"skipped": "verify=False"}
    manifest["timings_s"]["total"] = round(time.perf_counter() - t0, 3)
    write_manifest(out, manifest)
    if verdict is not None and not verdict["passed"]:
        worst = max(c["rel_err"] for c in verdict["cases"])
        raise ParityError(f"TensorRT engine differs from the reference: worst error {worst:.3g} of max|y| > tolerance "
                          f"{verdict['tolerance']:g} ({precision})")
    if cache is not None:  # the user's file changes only when the whole build succeeded
        write_bytes_atomic(timing_cache, bytes(cache.serialize()))
    return manifest
