"""cmc.exporter.trt.runner on CPU: argument checks, the CUDA backend choice and the order of CUDA/TensorRT
set-up, with stand-ins for TensorRT (tests/exporter/fake_tensorrt.py) and for the CUDA bindings. Nothing here
runs an engine; the runner's inference is tested on a GPU (test_trt_backend.py, marked tensorrt)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from cmc.exporter.errors import CmcError
from cmc.exporter.trt import runner

from . import fake_tensorrt


class _Fails:
    def __init__(self, exc):
        self.exc = exc

    def __call__(self, *a, **k):
        raise self.exc


# ---------------------------------------------------------------- the CUDA backend

def test_falls_back_to_pycuda_when_cuda_python_fails_at_init(monkeypatch, capsys):
    """cuda-python 13 on a CUDA 12 driver (JetPack 6) imports fine and fails at its first call."""
    monkeypatch.setattr(runner._CudaPython, "__init__", _Fails(CmcError(
        "CUDA error 35 (cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version)")))
    monkeypatch.setattr(runner._PyCuda, "__init__", lambda self: None)
    backend = runner._cuda_backend()
    assert isinstance(backend, runner._PyCuda)
    err = capsys.readouterr().err
    assert "cuda-python" in err and "error 35" in err and "using pycuda" in err
    assert backend.fallback_from and "error 35" in backend.fallback_from[0]


def test_any_exception_of_the_first_backend_falls_back(monkeypatch):
    monkeypatch.setattr(runner._CudaPython, "__init__", _Fails(RuntimeError("cuInit failed")))
    monkeypatch.setattr(runner._PyCuda, "__init__", lambda self: None)
    assert isinstance(runner._cuda_backend(), runner._PyCuda)


def test_no_backend_names_both_reasons_and_pins_cuda_python_to_the_driver(monkeypatch):
    monkeypatch.setattr(runner._CudaPython, "__init__", _Fails(CmcError("CUDA error 35 (insufficient driver)")))
    monkeypatch.setattr(runner._PyCuda, "__init__", _Fails(ModuleNotFoundError("No module named 'pycuda'")))
    monkeypatch.setattr(runner, "driver_cuda_version", lambda: (12, 6), raising=False)
    with pytest.raises(CmcError) as e:
        runner._cuda_backend()
    msg = str(e.value)
    assert "\n" not in msg
    assert "cuda-python: CmcError: CUDA error 35" in msg and "pycuda: ModuleNotFoundError" in msg
    assert 'pip install "cuda-python>=12,<13"' in msg and "CUDA 12.6" in msg


def test_no_driver_says_so(monkeypatch):
    monkeypatch.setattr(runner._CudaPython, "__init__", _Fails(ImportError("No module named 'cuda'")))
    monkeypatch.setattr(runner._PyCuda, "__init__", _Fails(ImportError("No module named 'pycuda'")))
    monkeypatch.setattr(runner, "driver_cuda_version", lambda: None, raising=False)
    with pytest.raises(CmcError, match="no NVIDIA driver"):
        runner._cuda_backend()


def test_driver_cuda_version_reads_libcuda(monkeypatch):
    class FakeLibcuda:
        def cuDriverGetVersion(self, ptr):
            ptr._obj.value = 12060
            return 0

    monkeypatch.setattr(runner.ctypes, "CDLL", lambda name: FakeLibcuda(), raising=False)
    assert runner.driver_cuda_version() == (12, 6)
    monkeypatch.setattr(runner.ctypes, "CDLL", _Fails(OSError("libcuda.so.1: cannot open shared object file")))
    assert runner.driver_cuda_version() is None


def test_pycuda_backend_uses_the_primary_context(monkeypatch):
    """TensorRT runs in the CUDA runtime's primary context; pycuda.autoinit would make a second context current,
    and buffers from it are not the engine's."""
    calls = []

    class Ctx:
        def push(self):
            calls.append("push")

        def pop(self):
            calls.append("pop")

    class Device:
        def __init__(self, i):
            calls.append(f"Device({i})")

        def retain_primary_context(self):
            calls.append("retain_primary_context")
            return Ctx()

    drv = type(sys)("pycuda.driver")
    drv.init = lambda: calls.append("init")
    drv.Device = Device
    drv.Stream = lambda: calls.append("Stream") or object()
    pycuda = type(sys)("pycuda")
    pycuda.driver = drv
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    monkeypatch.setitem(sys.modules, "pycuda.autoinit", None)  # importing it would fail the test
    backend = runner._PyCuda()
    assert calls == ["init", "Device(0)", "retain_primary_context", "push", "Stream"]
    backend.close()
    assert calls[-1] == "pop"


# ---------------------------------------------------------------- EngineRunner set-up

def test_engine_runner_sets_up_cuda_before_deserializing(monkeypatch, tmp_path):
    trt = fake_tensorrt.make("10.3.0")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)

    class Backend:
        name = "fake"

        def __init__(self):
            trt.calls.append(("cuda backend", ()))

        def close(self):
            trt.calls.append(("cuda close", ()))

    monkeypatch.setattr(runner, "_cuda_backend", Backend)
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"plan")
    r = runner.EngineRunner(plan)
    order = [n for n, _ in trt.calls]
    assert order.index("cuda backend") < order.index("runtime.deserialize_cuda_engine")
    assert r.inputs == ["x"] and r.outputs == ["y"]
    r.close()


def test_engine_runner_without_tensorrt_or_engine_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(CmcError, match="TensorRT Python package not importable") as e:
        runner.EngineRunner(tmp_path / "m.plan")
    assert "\n" not in str(e.value)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt.make("10.3.0"))
    with pytest.raises(CmcError, match="engine file .*m.plan does not exist"):
        runner.EngineRunner(tmp_path / "m.plan")


# ---------------------------------------------------------------- the command line

class _FakeRunner:
    """Stands in for EngineRunner in main(): records the feeds, returns zeros of a fixed shape (never compared)."""

    inputs = ["x"]
    seen: list = []

    def __init__(self, engine, plugin_lib=None):
        pass

    def infer(self, feeds):
        _FakeRunner.seen.append({k: v.shape for k, v in feeds.items()})
        return {"y": np.zeros((1, 10), np.float32)}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def plan(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "EngineRunner", _FakeRunner)
    _FakeRunner.seen = []
    p = tmp_path / "m.plan"
    p.write_bytes(b"plan")
    return p


@pytest.mark.parametrize("args,needle", [
    (["--shape", "x=1x3", "--iters", "0"], "--iters must be at least 1"),
    (["--shape", "x=1x3", "--iters", "-3"], "--iters must be at least 1"),
    (["--shape", "x=1x3", "--iters", "ten"], "--iters 'ten' is not a whole number"),
    (["--shape", "x=1xAx3"], "--shape wants NAME=DxDx..., positive whole numbers"),
    (["--shape", "x=1x0x3"], "--shape wants NAME=DxDx..., positive whole numbers"),
    (["--shape", "1x3x32x32"], "--shape wants NAME=DxDx..."),
    (["--shape", "z=1x3"], "no input named 'z'"),
    ([], "no shape for input 'x'"),
])
def test_main_rejects_bad_arguments_with_one_line(plan, capsys, args, needle):
    rc = runner.main([str(plan), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and len(err.splitlines()) == 1, err
    assert err.startswith("cmc runner: error: ")


def test_main_missing_engine_is_one_line(tmp_path, capsys):
    rc = runner.main([str(tmp_path / "nope.plan"), "--shape", "x=1x3"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "nope.plan does not exist" in err and len(err.splitlines()) == 1


def test_main_runs_the_requested_iterations(plan, capsys):
    assert runner.main([str(plan), "--shape", "x=2x3x4x4", "--iters", "3"]) == 0
    assert len(_FakeRunner.seen) == 4 and _FakeRunner.seen[0] == {"x": (2, 3, 4, 4)}  # warm-up + 3
    assert '"outputs": {"y": [1, 10]}' in capsys.readouterr().out


@pytest.mark.parametrize("text", ["{not json", '{"plugin_libraries": {"lib.so": "lib.so"}}', "[]"])
def test_unreadable_manifest_is_one_line(tmp_path, text):
    from cmc.exporter.trt.build import MANIFEST

    (tmp_path / "m.plan").write_bytes(b"")
    (tmp_path / MANIFEST).write_text(text)
    with pytest.raises(CmcError, match="cannot read the plugin libraries") as e:
        runner._plugin_from_manifest(tmp_path / "m.plan", None)
    assert "\n" not in str(e.value)
    with pytest.raises(CmcError, match="does not exist"):
        runner._plugin_from_manifest(tmp_path / "m.plan", tmp_path / "other.json")
