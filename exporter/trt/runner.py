"""A small TensorRT engine runner for serving scripts (Jetson included).

    from cmc.exporter.trt.runner import EngineRunner
    with EngineRunner("out/model.plan", plugin_lib="out/libcmc_trt_plugins_dynamic.so") as r:
        y = r.infer({"x": batch})["y"]            # numpy in, numpy out

GPU memory and streams go through cuda-python (``pip install cuda-python``; JetPack wheels exist) or,
failing that, PyCUDA; both are imported lazily, as is TensorRT. Command line:

    python -m cmc.exporter.trt.runner model.plan --plugin-lib lib.so --shape x=1x3x32x32 [--iters 100]
"""
from __future__ import annotations

import argparse
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
        import pycuda.autoinit  # noqa: F401 - creates the context
        import pycuda.driver as drv

        self.drv = drv
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


def _cuda_backend():
    errors = []
    for cls in (_CudaPython, _PyCuda):
        try:
            return cls()
        except ImportError as e:
            errors.append(f"{cls.name}: {e}")
    raise CmcError("running a TensorRT engine from Python needs cuda-python (`pip install cuda-python`) or PyCUDA "
                   f"(`pip install pycuda`): {'; '.join(errors)}")


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
        import tensorrt as trt

        from .build import make_logger
        from .plugin_lib import load_plugin_library

        self.trt = trt
        engine_path = Path(engine_path)
        if plugin_lib is None:
            plugin_lib = _plugin_from_manifest(engine_path, manifest)
        if plugin_lib is not None:
            load_plugin_library(plugin_lib)
        self.logger = make_logger(trt)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            detail = self.logger.errors[0] if self.logger.errors else "no detail"
            raise CmcError(f"TensorRT could not load {engine_path} ({detail}); engines only load on the TensorRT "
                           f"version and GPU they were built for, with cmc's plugin library loaded")
        self.context = self.engine.create_execution_context()
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.cuda = _cuda_backend()
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (ptr, capacity bytes)

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
        return None
    libs = json.loads(mpath.read_text()).get("plugin_libraries", {})
    for name in sorted(libs, key=lambda n: n != DYNAMIC_LIB):
        cand = engine_path.with_name(libs[name]["file"])
        if cand.is_file():
            return cand
    return None


def _parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    name, _, dims = text.partition("=")
    if not dims:
        raise argparse.ArgumentTypeError(f"--shape wants NAME=1x3x32x32, got {text!r}")
    return name, tuple(int(d) for d in dims.lower().split("x"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m cmc.exporter.trt.runner", description="Run a cmc TensorRT engine on random input")
    p.add_argument("engine")
    p.add_argument("--plugin-lib", help="cmc plugin library (default: the one the manifest beside the engine names)")
    p.add_argument("--shape", action="append", type=_parse_shape, default=[], metavar="NAME=DxDxD",
                   help="input shape (default: the profile's opt shape from the manifest)")
    p.add_argument("--iters", type=int, default=10)
    args = p.parse_args(argv)
    try:
        with EngineRunner(args.engine, plugin_lib=args.plugin_lib) as r:
            shapes = dict(args.shape)
            if not shapes:
                from .build import MANIFEST

                mpath = Path(args.engine).with_name(MANIFEST)
                prof = json.loads(mpath.read_text())["profiles"][0] if mpath.is_file() else {}
                shapes = {n: tuple(v["opt"]) for n, v in prof.items()}
            rng = np.random.default_rng(0)
            feeds = {n: rng.standard_normal(shapes[n]).astype(np.float32) for n in r.inputs}
            r.infer(feeds)  # warm-up
            t = time.perf_counter()
            for _ in range(args.iters):
                out = r.infer(feeds)
            ms = (time.perf_counter() - t) * 1e3 / max(args.iters, 1)
            print(json.dumps({"inputs": {n: list(v.shape) for n, v in feeds.items()},
                              "outputs": {n: list(v.shape) for n, v in out.items()}, "latency_ms": round(ms, 3)}))
    except CmcError as e:
        print(f"cmc runner: error: {e}", file=sys.stderr)
        return 2
    except KeyError as e:
        print(f"cmc runner: error: no shape for input {e}; pass --shape NAME=DxD...", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
