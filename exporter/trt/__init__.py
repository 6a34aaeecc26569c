"""cmc.exporter.trt: the TensorRT backend of cmc-export.

    find_tensorrt()            locate the TensorRT Python package, headers and libnvinfer (CmcError if missing)
    build_plugin_library(env)  build cmc's plugin library for the local GPU into a cache (cmake + nvcc)
    load_plugin_library(path)  register cmc's plugin creators with TensorRT in this process
    prepare_onnx_for_trt(m)    strip plugin ops' function bodies, add plugin_version/plugin_namespace (pure ONNX)
    fp16_onnx.convert_to_fp16  the FP16 ONNX an --fp16 engine is built from (pure ONNX + onnxruntime calibration)
    build_trt(onnx, out, ...)  engine build + verification + manifest (the entry point the CLI calls)
    runner.EngineRunner        run an engine from Python (cuda-python or PyCUDA)

Importing this package does not import TensorRT; the functions that need it do.
"""
from __future__ import annotations

from .env import TensorRTEnv, find_tensorrt, header_version
from .onnx_prep import prepare_onnx_file, prepare_onnx_for_trt

__all__ = [
    "TensorRTEnv",
    "build_plugin_library",
    "build_trt",
    "find_tensorrt",
    "header_version",
    "load_plugin_library",
    "prepare_onnx_file",
    "prepare_onnx_for_trt",
]


def __getattr__(name):
    if name == "build_trt":
        from .build import build_trt

        return build_trt
    if name in ("build_plugin_library", "load_plugin_library"):
        from . import plugin_lib

        return getattr(plugin_lib, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
