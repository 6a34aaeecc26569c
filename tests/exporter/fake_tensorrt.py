"""A recording stand-in for the ``tensorrt`` Python module, for CPU tests of cmc's builder code.

Its surface is the real bindings' for the version asked (10.3, 11.1): every enum is built from
trt_surface.json — the members and values each version binds, generated from the TensorRT sources by
trt_surface.py (10.x: BuilderFlag.FP16 and INT8, OnnxParserFlag with NATIVE_INSTANCENORM only; 11.1: no FP16 or
INT8 flag, STRONGLY_TYPED deprecated = 0, OnnxParserFlag.ENABLE_PLUGIN_OVERRIDE) — and every class defines only
methods that version binds (tests/exporter/test_trt_surface.py checks it), so a name cmc uses that a version
lacks raises AttributeError here as it would there. It records every call in ``calls`` as (name, args) and
computes nothing: the "engine" it returns is a fixed byte string that no test may run or compare with anything.
Tests use it to check which flags, files and caches cmc hands to TensorRT, never what TensorRT would compute.

Behaviour a test can choose: ``timing_cache_accepts(blob) -> bool`` decides what
IBuilderConfig.set_timing_cache returns (TensorRT returns False, and logs an error, for a cache written
on another device unless ignore_mismatch is set); ``cache_blob_valid(blob) -> bool`` decides whether
create_timing_cache can read a blob at all.
"""
from __future__ import annotations

import enum
import json
import types
from pathlib import Path

ENGINE_BYTES = b"fake-tensorrt-engine: never run"
SURFACE = json.loads((Path(__file__).with_name("trt_surface.json")).read_text())


def surface_version(version: str) -> str:
    """The table entry ("10.3", "11.1") that stands for a TensorRT version string."""
    key = ".".join(version.split(".")[:2])
    if key not in SURFACE["versions"]:
        raise ValueError(f"fake_tensorrt has no surface for TensorRT {version} (have {sorted(SURFACE['versions'])}); "
                         f"regenerate trt_surface.json with trt_surface.py from that version's sources")
    return key


def _enum(name: str, members: dict) -> type[enum.IntEnum]:
    """An IntEnum with the bound members; a member whose value the headers do not give gets a fresh one."""
    fresh = max([v for v in members.values() if v is not None], default=-1) + 1
    values = {}
    for member, value in members.items():
        if value is None:
            value, fresh = fresh, fresh + 1
        values[member] = value
    return enum.IntEnum(name, values)


def make(version: str = "10.3.0", *, timing_cache_accepts=lambda blob: True, cache_blob_valid=lambda blob: True):
    real = SURFACE["versions"][surface_version(version)]
    calls: list[tuple[str, tuple]] = []
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.__file__ = "/nonexistent/site-packages/tensorrt/__init__.py"
    trt.calls = calls

    def record(name, *args):
        calls.append((name, args))

    for name, members in real["enums"].items():
        if name != "Severity":  # ILogger.Severity, nested in the bindings as here
            setattr(trt, name, _enum(name, members))
    severity = _enum("Severity", real["enums"]["Severity"])
    trt.fake_classes = {}  # the real class each stand-in models: {binding name: stand-in}

    def models(binding_name):
        def register(cls):
            trt.fake_classes[binding_name] = cls
            return cls
        return register

    @models("ILogger")
    class ILogger:
        Severity = severity

        def __init__(self):
            pass

    trt.ILogger = ILogger

    @models("ITimingCache")
    class TimingCache:
        def __init__(self, blob: bytes):
            self._blob = bytes(blob)

        def serialize(self):
            record("TimingCache.serialize", self._blob)
            return self._blob + b"+updated"

    @models("IBuilderConfig")
    class Config:
        def __init__(self, logger):
            self._logger = logger
            self._flags = {trt.BuilderFlag.TF32}  # TensorRT's default: TF32 enabled
            self._timing_cache = None

        def set_flag(self, f):
            record("config.set_flag", f)
            self._flags.add(f)

        def clear_flag(self, f):
            record("config.clear_flag", f)
            self._flags.discard(f)

        def get_flag(self, f):
            return f in self._flags

        def set_memory_pool_limit(self, pool, size):
            record("config.set_memory_pool_limit", pool, size)

        def add_optimization_profile(self, profile):
            record("config.add_optimization_profile", profile._shapes)
            return 0

        def create_timing_cache(self, blob):
            record("config.create_timing_cache", bytes(blob))
            if blob and not cache_blob_valid(bytes(blob)):
                self._logger.log(severity.ERROR, "Invalid timing cache blob")
                return None
            return TimingCache(blob)

        def set_timing_cache(self, cache, ignore_mismatch):
            record("config.set_timing_cache", cache._blob, ignore_mismatch)
            ok = ignore_mismatch or not cache._blob or timing_cache_accepts(cache._blob)
            if not ok:
                self._logger.log(severity.ERROR, "Timing cache was created with a different device (fake message)")
                return False
            self._timing_cache = cache
            return True

    @models("IOptimizationProfile")
    class Profile:
        def __init__(self):
            self._shapes = {}

        def set_shape(self, name, lo, opt, hi):
            record("profile.set_shape", name, tuple(lo), tuple(opt), tuple(hi))
            self._shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    @models("INetworkDefinition")
    class Network:
        def __init__(self, flags):
            self._flags = flags

    @models("Builder")
    class Builder:
        def __init__(self, logger):
            self._logger = logger
            record("Builder", )

        def create_network(self, flags=0):
            record("builder.create_network", flags)
            return Network(flags)

        def create_builder_config(self):
            self._config = Config(self._logger)
            return self._config

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            record("builder.build_serialized_network", network._flags, frozenset(config._flags),
                   config._timing_cache._blob if config._timing_cache is not None else None)
            return ENGINE_BYTES

    @models("OnnxParser")
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

    @models("ICudaEngine")
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

    @models("Runtime")
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
