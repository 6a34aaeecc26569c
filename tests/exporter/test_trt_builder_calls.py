"""What cmc's engine builder hands to TensorRT (flags, network type, parser flags, timing cache, the ONNX file),
checked on CPU against a recording stand-in for the ``tensorrt`` module (tests/exporter/fake_tensorrt.py).

The stand-in computes nothing and its "engine" is never run: these tests check calls, not results.
Engine parity is tested on a GPU with real TensorRT (tests marked ``tensorrt`` in test_trt_backend.py).
"""
from __future__ import annotations

import sys

import onnx
import pytest
from onnx import TensorProto as TP

from cmc.exporter.errors import CmcError
from cmc.exporter.trt import plugin_lib
from cmc.exporter.trt.env import TensorRTEnv

from . import fake_tensorrt
from .fake_tensorrt import calls_named
from .onnx_models import PLUGIN_ATTRS, binary_adder_model


@pytest.fixture
def build(monkeypatch, tmp_path):
    """build(version, **build_trt kwargs) -> (fake trt module, manifest) with the plugin loading recorded."""
    from cmc.exporter.trt import build_trt

    def run(version="10.3.0", model=None, fake_kwargs=None, **kwargs):
        trt = fake_tensorrt.make(version, **(fake_kwargs or {}))
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(plugin_lib, "load_plugin_library",
                            lambda path: trt.calls.append(("load_plugin_library", (str(path),))) or {"how": "fake"})
        src = tmp_path / "m.onnx"
        onnx.save(model or binary_adder_model(), src)
        lib = tmp_path / "libcmc_trt_plugins_dynamic.so"
        lib.write_bytes(b"not a library: the loader is replaced in this test")
        env = TensorRTEnv(python_version=version, python_module_path=trt.__file__, include_dir=None,
                          header_version=None, lib_dir=None)
        kwargs.setdefault("verify", False)
        manifest = build_trt(src, tmp_path / "out", plugin_lib=lib, env=env, batch=(1, 2, 4), **kwargs)
        return trt, manifest

    return run


def _built_flags(trt):
    (args,) = calls_named(trt, "builder.build_serialized_network")
    network_flags, config_flags, cache_blob = args
    return network_flags, config_flags, cache_blob


def _parsed_model(trt) -> onnx.ModelProto:
    (args,) = calls_named(trt, "parser.parse_from_file")
    return onnx.load_from_string(args[1])


# ---------------------------------------------------------------- TF32

@pytest.mark.parametrize("version", ["10.3.0", "11.1.0"])
def test_fp32_engine_does_not_allow_tf32(build, version):
    """TensorRT enables BuilderFlag.TF32 by default: plain Conv layers of an 'FP32' engine would round their
    inputs to 10-bit mantissas (0.21 of max|y| on the sample BNN, whose tolerance is 1e-4: benchmarks/tf32_effect.py)."""
    trt, manifest = build(version)
    _, config_flags, _ = _built_flags(trt)
    assert trt.BuilderFlag.TF32 not in config_flags
    assert manifest["tf32"] is False and manifest["precision"] == "fp32"


@pytest.mark.parametrize("version", ["10.3.0", "11.1.0"])
def test_tf32_is_an_explicit_opt_in(build, version):
    trt, manifest = build(version, tf32=True)
    assert trt.BuilderFlag.TF32 in _built_flags(trt)[1]
    assert manifest["tf32"] is True


def test_fp16_engine_does_not_allow_tf32_either(build):
    """FP16 engines keep float32 islands on purpose (large activations, binarization inputs): TF32 there would
    undo that."""
    trt, manifest = build("11.1.0", fp16=True)
    assert trt.BuilderFlag.TF32 not in _built_flags(trt)[1]


# ---------------------------------------------------------------- FP16: a strongly typed FP16 ONNX on 10.x and 11.x

@pytest.mark.parametrize("version", ["10.3.0", "11.1.0"])
def test_fp16_builds_from_cmc_fp16_onnx(build, version):
    """TensorRT 11 has no FP16 builder flag; cmc converts the ONNX itself and builds it strongly typed
    (on 10.x with NetworkDefinitionCreationFlag.STRONGLY_TYPED and no FP16 flag)."""
    trt, manifest = build(version, fp16=True)
    network_flags, config_flags, _ = _built_flags(trt)
    if version.startswith("10."):
        assert network_flags == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        assert trt.BuilderFlag.FP16 not in config_flags  # precision flags are not allowed on strongly typed networks
    else:
        assert network_flags == 0  # 11.x: always strongly typed; the old flag is deprecated
    parsed = _parsed_model(trt)
    assert len(parsed.functions) == 0  # the plugin ops' bodies are stripped as for FP32
    types = {i.name: i.data_type for i in parsed.graph.initializer}
    assert types == {"W_packed": TP.INT32, "bscale": TP.FLOAT, "bshift": TP.FLOAT, "W": TP.FLOAT,
                     "ascale": TP.FLOAT, "ashift": TP.FLOAT}  # AdderConv weights stay float32
    assert parsed.graph.input[0].type.tensor_type.elem_type == TP.FLOAT16
    assert parsed.graph.output[0].type.tensor_type.elem_type == TP.FLOAT16
    assert [n.op_type for n in parsed.graph.node] == ["BinaryConv", "AdderConv"]  # no casts needed here
    assert manifest["precision"] == "fp16" and manifest["input_dtypes"] == {"X": "float16"}
    assert manifest["fp16_conversion"]["inputs"] == {"X": "FLOAT16"}
    # the converted model (with function bodies, for onnxruntime) is written next to the engine
    assert (manifest["fp16_onnx"] == "m.fp16.onnx")


def test_fp16_profiles_use_the_converted_input_types(build):
    trt, manifest = build("11.1.0", fp16=True)
    assert calls_named(trt, "profile.set_shape") == [("X", (1, 4, 8, 8), (2, 4, 8, 8), (4, 4, 8, 8))]
    assert manifest["input_dtypes"] == {"X": "float16"}


def test_already_fp16_onnx_is_built_as_given(build, tmp_path):
    from cmc.exporter.trt.fp16_onnx import convert_to_fp16

    m16, _ = convert_to_fp16(binary_adder_model())
    trt, manifest = build("11.1.0", model=m16)
    assert manifest["precision"] == "fp16" and manifest.get("fp16_conversion") is None
    assert _parsed_model(trt).graph.input[0].type.tensor_type.elem_type == TP.FLOAT16


# ---------------------------------------------------------------- parser flags

@pytest.mark.parametrize("version", ["10.3.0", "11.1.0"])
def test_parser_does_not_enable_plugin_override(build, version):
    """plugin_namespace on each node selects cmc's plugin; ENABLE_PLUGIN_OVERRIDE would additionally let any
    creator named like a standard ONNX op (TensorRT's own ScatterND plugin, ...) replace the built-in importer."""
    trt, _ = build(version)
    # no parser flag at all (10.3 binds no ENABLE_PLUGIN_OVERRIDE: the faithful stand-in has none to name)
    assert calls_named(trt, "parser.set_flag") == []
    parsed = _parsed_model(trt)
    for node in parsed.graph.node:
        attrs = {a.name: a.s for a in node.attribute if a.name in PLUGIN_ATTRS}
        assert attrs == {"plugin_version": b"1", "plugin_namespace": b"cmc"}


# ---------------------------------------------------------------- timing cache

def test_timing_cache_created_when_missing(build, tmp_path):
    cache = tmp_path / "cache" / "t.cache"
    trt, manifest = build(timing_cache=cache)
    assert cache.read_bytes() == b"+updated"  # the fresh cache after the build
    assert manifest["timing_cache"]["used_existing"] is False and manifest["timing_cache"]["rejected"] is None


def test_timing_cache_reused_when_accepted(build, tmp_path):
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"cache-from-this-gpu")
    trt, manifest = build(timing_cache=cache)
    assert _built_flags(trt)[2] == b"cache-from-this-gpu"
    assert cache.read_bytes() == b"cache-from-this-gpu+updated"
    assert manifest["timing_cache"]["used_existing"] is True


def test_rejected_timing_cache_warns_and_is_replaced(build, tmp_path, capsys):
    """set_timing_cache returns False for a cache from another device: the old blob must not be written back
    as if it had been used, and the user must hear why."""
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"cache-from-another-gpu")
    trt, manifest = build(timing_cache=cache, fake_kwargs={"timing_cache_accepts": lambda blob: False})
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if "timing cache" in line and "not used" in line]
    assert len(warning) == 1 and "different device" in warning[0] and str(cache) in warning[0]
    assert _built_flags(trt)[2] == b""  # built with a fresh cache
    assert cache.read_bytes() == b"+updated"  # and that fresh cache is what was written
    assert manifest["timing_cache"]["used_existing"] is False
    assert "different device" in manifest["timing_cache"]["rejected"]


def test_unreadable_timing_cache_warns_and_is_replaced(build, tmp_path, capsys):
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"garbage")
    trt, manifest = build(timing_cache=cache, fake_kwargs={"cache_blob_valid": lambda blob: False})
    assert "not used" in capsys.readouterr().err
    assert cache.read_bytes() == b"+updated"


def test_timing_cache_path_that_is_a_folder_is_a_one_line_error(build, tmp_path):
    with pytest.raises(CmcError) as e:
        build(timing_cache=tmp_path)
    assert "timing cache" in str(e.value) and "folder" in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------- the command line

@pytest.mark.parametrize("args,needle", [
    (["--workspace", "0"], "--workspace must be a positive number of MiB"),
    (["--workspace", "-5"], "--workspace must be a positive number of MiB"),
    (["--workspace", "lots"], "--workspace 'lots' must be a whole number"),
    (["--timing-cache", "."], "is a folder"),
])
def test_cli_rejects_bad_trt_options_before_any_work(args, needle, capsys, tmp_path):
    from cmc.exporter.cli import main

    rc = main([str(tmp_path / "missing.pth"), "--to", "trt", *args, "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the engine's reference

def test_engine_reference_is_the_float64_pytorch_model():
    """Engines (FP32 and FP16) are compared with the user's model in float64, fed the engine's exact inputs."""
    import numpy as np
    import torch

    from cmc.exporter.trt.engine_check import TorchReference, reference_outputs

    class Scale(torch.nn.Module):
        def forward(self, x):
            return x * (1 + 1e-9)  # invisible in float32

    ref = TorchReference(Scale())
    out = reference_outputs(ref, None, {"x": np.full((2, 3), 0.5, np.float16)}, ["y"])
    assert ref.kind == "pytorch float64" and out["y"].dtype == np.float64
    assert np.all(out["y"] == 0.5 * (1 + 1e-9))


def test_engine_reference_falls_back_to_float32_and_says_so():
    import numpy as np
    import torch

    from cmc.exporter.trt.engine_check import TorchReference, reference_outputs

    class MadeInForward(torch.nn.Module):
        def forward(self, x):
            return x @ torch.ones(3, 2)  # a float32 tensor made inside forward: no float64 run

    ref = TorchReference(MadeInForward())
    out = reference_outputs(ref, None, {"x": np.ones((2, 3), np.float32)}, ["y"])
    assert out["y"].dtype == np.float32 and np.all(out["y"] == 3.0)
    assert ref.kind.startswith("pytorch float32 (float64 run failed")


def test_engine_reference_runs_research_idioms():
    """The engine check runs the user's eager model (XNOR-Net's legacy BinActive Function) with the same
    shims as the pipeline's other eager runs; without them PyTorch 2.x refuses the legacy Function."""
    import numpy as np
    import torch

    from cmc.exporter.trt.engine_check import TorchReference

    from .xnor_models import reference_forward, tiny_xnor

    model = tiny_xnor()
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with pytest.raises(RuntimeError, match="[Ll]egacy autograd function"):
        with torch.no_grad():
            model(torch.from_numpy(x))
    ref = TorchReference(model)
    got = ref({"input": x})
    with torch.no_grad():
        want = reference_forward(model.double(), torch.from_numpy(x).double())
    assert ref.kind == "pytorch float64"
    assert torch.allclose(got, want, atol=1e-9)
