"""A recording stand-in for the ``tensorrt`` Python module, for CPU tests of cmc's builder code.

It has the names cmc calls, with the enum members each TensorRT major version has (10.x: BuilderFlag.FP16,
NetworkDefinitionCreationFlag.STRONGLY_TYPED = 1; 11.x: no FP16 flag, STRONGLY_TYPED deprecated = 0), and
records every call in ``calls`` as (name, args). It computes nothing: the "engine" it returns is a fixed
byte string that no test may run or compare with anything. Tests use it to check which flags,
files and caches cmc hands to TensorRT, never what TensorRT would compute.

Behaviour a test can choose: ``timing_cache_accepts(blob) -> bool`` decides what
IBuilderConfig.set_timing_cache returns (TensorRT returns False, and logs an error, for a cache written
on another device unless ignore_mismatch is set); ``cache_blob_valid(blob) -> bool`` decides whether
create_timing_cache can read a blob at all.
"""
from __future__ import annotations

import enum
import types

ENGINE_BYTES = b"fake-tensorrt-engine: never run"


class Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


def make(version: str = "10.3.0", *, timing_cache_accepts=lambda blob: True, cache_blob_valid=lambda blob: True):
    major = int(version.split(".")[0])
    calls: list[tuple[str, tuple]] = []
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.__file__ = "/nonexistent/site-packages/tensorrt/__init__.py"
    trt.calls = calls

    def record(name, *args):
        calls.append((name, args))

    flags = {"INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "TF32": 6,
             "SPARSE_WEIGHTS": 7}
    if major < 11:
        flags["FP16"] = 0
        flags["BF16"] = 17
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", flags)
    trt.NetworkDefinitionCreationFlag = enum.IntEnum(
        "NetworkDefinitionCreationFlag", {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1} if major < 11
        else {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1, "PREFER_AOT_PYTHON_PLUGINS": 2})
    trt.OnnxParserFlag = enum.IntEnum("OnnxParserFlag", {"NATIVE_INSTANCENORM": 0, "ENABLE_PLUGIN_OVERRIDE": 3})
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0})

    class ILogger:
        Severity = globals()["Severity"]

        def __init__(self):
            pass

    trt.ILogger = ILogger

    class TimingCache:
        def __init__(self, blob: bytes):
            self.blob = bytes(blob)

        def serialize(self):
            record("TimingCache.serialize", self.blob)
            return self.blob + b"+updated"

    class Config:
        def __init__(self, logger):
            self.logger = logger
            self.flags = {trt.BuilderFlag.TF32}  # TensorRT's default: TF32 enabled
            self.timing_cache = None

        def set_flag(self, f):
            record("config.set_flag", f)
            self.flags.add(f)

        def clear_flag(self, f):
            record("config.clear_flag", f)
            self.flags.discard(f)

        def get_flag(self, f):
            return f in self.flags

        def set_memory_pool_limit(self, pool, size):
            record("config.set_memory_pool_limit", pool, size)

        def add_optimization_profile(self, profile):
            record("config.add_optimization_profile", profile.shapes)
            return 0

        def create_timing_cache(self, blob):
            record("config.create_timing_cache", bytes(blob))
            if blob and not cache_blob_valid(bytes(blob)):
                self.logger.log(Severity.ERROR, "Invalid timing cache blob")
                return None
            return TimingCache(blob)

        def set_timing_cache(self, cache, ignore_mismatch):
            record("config.set_timing_cache", cache.blob, ignore_mismatch)
            ok = ignore_mismatch or not cache.blob or timing_cache_accepts(cache.blob)
            if not ok:
                self.logger.log(Severity.ERROR, "Timing cache was created with a different device (fake message)")
                return False
            self.timing_cache = cache
            return True

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            record("profile.set_shape", name, tuple(lo), tuple(opt), tuple(hi))
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Network:
        def __init__(self, flags):
            self.flags = flags

    class Builder:
        def __init__(self, logger):
            self.logger = logger
            record("Builder", )

        def create_network(self, flags=0):
            record("builder.create_network", flags)
            return Network(flags)

        def create_builder_config(self):
            self.config = Config(self.logger)
            return self.config

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            record("builder.build_serialized_network", network.flags, frozenset(config.flags),
                   config.timing_cache.blob if config.timing_cache is not None else None)
            return ENGINE_BYTES

    class OnnxParser:
        def __init__(self, network, logger):
            self.num_errors = 0

        def set_flag(self, f):
            record("parser.set_flag", f)

        def clear_flag(self, f):
            record("parser.clear_flag", f)

        def parse_from_file(self, path):
            with open(path, "rb") as fh:
                record("parser.parse_from_file", path, fh.read())
            return True

    trt.TensorIOMode = enum.IntEnum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})

    class Engine:
        """Describes its I/O tensors; create_execution_context returns a context that records calls only."""

        num_io_tensors = 2

        def get_tensor_name(self, i):
            return ["x", "y"][i]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if name == "x" else trt.TensorIOMode.OUTPUT

        def create_execution_context(self):
            record("engine.create_execution_context")
            return object()

    class Runtime:
        def __init__(self, logger):
            record("Runtime")

        def deserialize_cuda_engine(self, blob):
            record("runtime.deserialize_cuda_engine", bytes(blob))
            return Engine()

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


def calls_named(trt, name: str) -> list[tuple]:
    return [args for n, args in trt.calls if n == name]
