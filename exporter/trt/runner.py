"""A small TensorRT engine runner for serving scripts (Jetson included).

    from cmc.exporter.trt.runner import EngineRunner
    with EngineRunner("out/model.plan", plugin_lib="out/libcmc_trt_plugins_dynamic.so") as r:
        y = r.infer({"x": batch})["y"]            # numpy in, numpy out

GPU memory and streams go through cuda-python or, when it does not import or fails to initialise (a
cuda-python built for a newer CUDA than the driver, e.g. 13.x on JetPack 6's CUDA 12 driver), PyCUDA on
the same primary context TensorRT uses; the reason for falling back is printed. cuda-python must match
the driver's CUDA major version (``pip install "cuda-python>=12,<13"`` for a CUDA 12 driver). Both are
imported lazily, as is TensorRT. Command line:

    python -m cmc.exporter.trt.runner model.plan --plugin-lib lib.so --shape x=1x3x32x32 [--iters 100]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import CmcError


class _CudaPython:
    name = "cuda-python"

    def __init__(self):
        try:
            from cuda.bindings import runtime as rt
        except ImportError:
            from cuda import cudart as rt  # cuda-python < 12.6
        self.rt = rt
        self.stream = self._ok(rt.cudaStreamCreate())

    def _ok(self, res):
        err, *rest = res if isinstance(res, tuple) else (res,)
        if int(err) != 0:
            raise CmcError(f"CUDA error {int(err)} ({self.rt.cudaGetErrorString(err)[1].decode(errors='replace')})")
        return rest[0] if len(rest) == 1 else (rest or None)

    def malloc(self, nbytes: int) -> int:
        return int(self._ok(self.rt.cudaMalloc(max(int(nbytes), 1))))

    def free(self, ptr: int):
        self._ok(self.rt.cudaFree(ptr))

    def htod(self, ptr: int, arr: np.ndarray):
        self._ok(self.rt.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes,
                                         self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))

    def dtoh(self, arr: np.ndarray, ptr: int):
        self._ok(self.rt.cudaMemcpyAsync(arr.ctypes.data, ptr, arr.nbytes,
                                         self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))

    def sync(self):
        self._ok(self.rt.cudaStreamSynchronize(self.stream))

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    def close(self):
        if self.stream is not None:
            self.rt.cudaStreamDestroy(self.stream)
            self.stream = None


class _PyCuda:
    name = "pycuda"

    def __init__(self):
        import pycuda.driver as drv

        # TensorRT (through the CUDA runtime) works in the device's primary context; pycuda.autoinit would
        # create and push a second context, whose buffers the engine must not be given.
        drv.init()
        self.drv = drv
        self.ctx = drv.Device(0).retain_primary_context()
        self.ctx.push()
        self.stream = drv.Stream()
        self._allocs = {}

    def malloc(self, nbytes: int) -> int:
        a = self.drv.mem_alloc(max(int(nbytes), 1))
        self._allocs[int(a)] = a
        return int(a)

    def free(self, ptr: int):
        a = self._allocs.pop(int(ptr), None)
        if a is not None:
            a.free()

    def htod(self, ptr: int, arr: np.ndarray):
        self.drv.memcpy_htod_async(ptr, arr, self.stream)

    def dtoh(self, arr: np.ndarray, ptr: int):
        self.drv.memcpy_dtoh_async(arr, ptr, self.stream)

    def sync(self):
        self.stream.synchronize()

    @property
    def stream_handle(self) -> int:
        return int(self.stream.handle)

    def close(self):
        for p in list(self._allocs):
            self.free(p)
        if self.ctx is not None:
            self.ctx.pop()
            self.ctx = None


def driver_cuda_version() -> tuple[int, int] | None:
    """(major, minor) of the CUDA version the installed driver supports (libcuda's cuDriverGetVersion), or None
    when no driver library loads. Needs neither cuda-python nor PyCUDA."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
        v = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(v)) != 0 or v.value <= 0:
            return None
    except (OSError, AttributeError):
        return None
    return v.value // 1000, (v.value % 1000) // 10


def _why(e: BaseException) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _cuda_backend():
    """cuda-python, else PyCUDA: any failure of a backend's set-up (not only ImportError) moves on to the next,
    and the reason is printed; when none works the error names every reason and the pinned install command."""
    errors = []
    for cls in (_CudaPython, _PyCuda):
        try:
            backend = cls()
        except Exception as e:  # noqa: BLE001 - a binding built for another CUDA fails in many ways
            errors.append(f"{cls.name}: {_why(e)}")
            continue
        backend.fallback_from = list(errors)
        if errors:
            print(f"cmc runner: note: {'; '.join(errors)}; using {cls.name}", file=sys.stderr)
        return backend
    drv = driver_cuda_version()
    if drv is None:
        hint = ("no NVIDIA driver library (libcuda.so.1) loads here: install the driver (JetPack on Jetson), then "
                "cuda-python matching its CUDA major version or PyCUDA")
    else:
        hint = (f"the driver supports CUDA {drv[0]}.{drv[1]}: `pip install \"cuda-python>={drv[0]},<{drv[0] + 1}\"` "
                f"(cuda-python must match the driver's CUDA major version) or `pip install pycuda`")
    raise CmcError(f"running a TensorRT engine from Python needs cuda-python or PyCUDA ({'; '.join(errors)}); {hint}")


def _np_dtype(trt, dt) -> np.dtype:
    table = {trt.float32: np.float32, trt.float16: np.float16, trt.int32: np.int32, trt.int8: np.int8,
             trt.bool: np.bool_}
    if hasattr(trt, "int64"):
        table[trt.int64] = np.int64
    if dt not in table:
        raise CmcError(f"tensor type {dt} is not supported by this runner")
    return np.dtype(table[dt])


class EngineRunner:
    """Load a serialized engine (with cmc's plugin library) and run it on numpy inputs."""

    def __init__(self, engine_path: str | os.PathLike, plugin_lib: str | os.PathLike | None = None,
                 manifest: str | os.PathLike | None = None):
        from .build import make_logger
        from .env import _import_tensorrt
        from .plugin_lib import load_plugin_library

        trt = _import_tensorrt()  # a one-line CmcError when TensorRT is missing
        self.trt = trt
        engine_path = Path(engine_path)
        if not engine_path.is_file():
            raise CmcError(f"engine file {engine_path} does not exist")
        if plugin_lib is None:
            plugin_lib = _plugin_from_manifest(engine_path, manifest)
        if plugin_lib is not None:
            load_plugin_library(plugin_lib)
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (ptr, capacity bytes)
        self.context = self.engine = None
        # CUDA first: the engine is deserialized (its weights allocated) in the context the backend made current.
        self.cuda = _cuda_backend()
        try:
            self.logger = make_logger(trt)
            self.runtime = trt.Runtime(self.logger)
            self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
            if self.engine is None:
                detail = self.logger.errors[0] if self.logger.errors else "no detail"
                raise CmcError(f"TensorRT could not load {engine_path} ({detail}); engines only load on the TensorRT "
                               f"version and GPU they were built for, with cmc's plugin library loaded")
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise CmcError(f"TensorRT could not create an execution context for {engine_path} "
                               f"({self.logger.errors[-1] if self.logger.errors else 'out of GPU memory?'})")
        except BaseException:
            self.cuda.close()
            raise
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, cap = self._buffers.get(name, (0, 0))
        if cap < nbytes:
            if ptr:
                self.cuda.free(ptr)
            ptr, cap = self.cuda.malloc(nbytes), nbytes
            self._buffers[name] = (ptr, cap)
        return ptr

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.inputs if n not in feeds]
        if missing:
            raise CmcError(f"missing input(s) {missing}; the engine takes {self.inputs}")
        host_in = {}
        for name in self.inputs:
            arr = np.ascontiguousarray(feeds[name], dtype=_np_dtype(self.trt, self.engine.get_tensor_dtype(name)))
            if not self.context.set_input_shape(name, tuple(arr.shape)):
                raise CmcError(f"input {name} shape {arr.shape} is outside the engine's optimisation profile")
            ptr = self._buffer(name, arr.nbytes)
            self.cuda.htod(ptr, arr)
            self.context.set_tensor_address(name, ptr)
            host_in[name] = arr  # keep alive until the copies ran
        results = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            arr = np.empty(shape, dtype=_np_dtype(self.trt, self.engine.get_tensor_dtype(name)))
            ptr = self._buffer(name, arr.nbytes)
            self.context.set_tensor_address(name, ptr)
            results[name] = (arr, ptr)
        if not self.context.execute_async_v3(self.cuda.stream_handle):
            raise CmcError(f"TensorRT execution failed: {self.logger.errors[-1] if self.logger.errors else 'no detail'}")
        for arr, ptr in results.values():
            self.cuda.dtoh(arr, ptr)
        self.cuda.sync()
        return {n: a for n, (a, _) in results.items()}

    def close(self):
        for ptr, _ in self._buffers.values():
            self.cuda.free(ptr)
        self._buffers.clear()
        self.cuda.close()
        self.context = None
        self.engine = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _plugin_from_manifest(engine_path: Path, manifest) -> Path | None:
    """The plugin library named by the build manifest beside the engine (dynamic variant preferred)."""
    from .build import MANIFEST
    from .plugin_lib import DYNAMIC_LIB

    mpath = Path(manifest) if manifest else engine_path.with_name(MANIFEST)
    if not mpath.is_file():
        if manifest:
            raise CmcError(f"manifest {mpath} does not exist")
        return None
    try:
        libs = json.loads(mpath.read_text()).get("plugin_libraries", {})
        files = {name: libs[name]["file"] for name in libs}
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as e:
        raise CmcError(f"cannot read the plugin libraries from {mpath} ({type(e).__name__}); pass the plugin "
                       f"library explicitly (--plugin-lib)") from None
    for name in sorted(files, key=lambda n: n != DYNAMIC_LIB):
        cand = engine_path.with_name(files[name])
        if cand.is_file():
            return cand
    return None


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line like every other error."""

    def error(self, message):
        raise CmcError(message)


def _parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    name, _, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.lower().split("x")) if name and dims else ()
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise argparse.ArgumentTypeError(f"--shape wants NAME=DxDx..., positive whole numbers (e.g. x=1x3x32x32), "
                                         f"got {text!r}")
    return name, shape


def _iterations(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--iters {text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"--iters must be at least 1, got {n}")
    return n


def _shapes(engine: Path, given: list, inputs: list[str]) -> dict[str, tuple[int, ...]]:
    shapes = dict(given)
    unknown = sorted(set(shapes) - set(inputs))
    if unknown:
        raise CmcError(f"no input named {unknown[0]!r}; the engine's inputs are {inputs}")
    if len(shapes) < len(inputs):
        from .build import MANIFEST

        mpath = engine.with_name(MANIFEST)
        try:
            prof = json.loads(mpath.read_text())["profiles"][0] if mpath.is_file() else {}
        except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
            raise CmcError(f"cannot read the input shapes from {mpath} ({type(e).__name__}); pass --shape") from None
        for n in inputs:
            if n not in shapes and n in prof:
                shapes[n] = tuple(int(d) for d in prof[n]["opt"])
    missing = [n for n in inputs if n not in shapes]
    if missing:
        raise CmcError(f"no shape for input {missing[0]!r}; pass --shape {missing[0]}=DxDx... (or keep the build's "
                       f"manifest next to the engine)")
    return shapes


def main(argv=None) -> int:
    p = _Parser(prog="python -m cmc.exporter.trt.runner", description="Run a cmc TensorRT engine on random input")
    p.add_argument("engine")
    p.add_argument("--plugin-lib", help="cmc plugin library (default: the one the manifest beside the engine names)")
    p.add_argument("--shape", action="append", type=_parse_shape, default=[], metavar="NAME=DxDxD",
                   help="input shape (default: the profile's opt shape from the manifest)")
    p.add_argument("--iters", type=_iterations, default=10, help="timed runs after one warm-up (default 10)")
    try:
        args = p.parse_args(argv)
        engine = Path(args.engine)
        if not engine.is_file():
            raise CmcError(f"engine file {engine} does not exist")
        with EngineRunner(engine, plugin_lib=args.plugin_lib) as r:
            shapes = _shapes(engine, args.shape, list(r.inputs))
            rng = np.random.default_rng(0)
            feeds = {n: rng.standard_normal(shapes[n]).astype(np.float32) for n in r.inputs}
            out = r.infer(feeds)  # warm-up
            t = time.perf_counter()
            for _ in range(args.iters):
                out = r.infer(feeds)
            ms = (time.perf_counter() - t) * 1e3 / args.iters
            print(json.dumps({"inputs": {n: list(v.shape) for n, v in feeds.items()},
                              "outputs": {n: list(v.shape) for n, v in out.items()}, "latency_ms": round(ms, 3)}))
    except CmcError as e:
        print(f"cmc runner: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
