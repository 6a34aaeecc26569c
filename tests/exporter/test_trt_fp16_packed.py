"""--fp16 on binary networks exported with packed chains (the default): the FP16 ONNX must hold float16
activations around the chains, list every float32 island with its reason, and an engine is labelled (and
checked) FP16 only when something in it computes in float16 (issue 21, item 1).

The samples are exported once per module (BNN NIN at 32x32, BNN ResNet-18 at 32x32 with 10 classes, to keep
the CPU suite short); the FP16 models run in onnxruntime against the float64 PyTorch model.
"""
from __future__ import annotations

import copy
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto as TP
from onnx import helper

from cmc.exporter.trt.engine_check import default_tolerance, relative_error
from cmc.exporter.trt.fp16_onnx import convert_to_fp16
from cmc.exporter.trt.fp16_plan import float16_compute_nodes, tensor_types

from .test_trt_fp16_onnx import _run, _run16

SHAPE = (2, 3, 32, 32)
PACKED = ("BinaryConvPackedOut", "BinaryConvPackedIn", "BinaryConvPackedInOut")


def _sample(name):
    from samples import bnn_resnet18
    from samples.make_checkpoints import build, calibrate

    if name == "bnn_resnet18":
        torch.manual_seed(0)
        return calibrate(bnn_resnet18.resnet18(num_classes=10), batches=2, batch_size=8)
    return build(name)


@pytest.fixture(scope="module")
def packed_samples():
    from cmc.exporter.convert import convert_research_layers, pack_for_deployment
    from cmc.exporter.onnx_export import export_onnx

    cache = {}

    def get(name):
        if name not in cache:
            model = _sample(name)
            x = torch.randn(*SHAPE, generator=torch.Generator().manual_seed(0))
            converted, _ = convert_research_layers(model, x)
            res = export_onnx(pack_for_deployment(converted).eval(), x, packed_chains=True)
            assert res.packed_chains["chains"], f"{name}: no packed chain, the test would not test packed chains"
            calib = [{"input": np.random.default_rng(7 + b).standard_normal((b, *SHAPE[1:])).astype(np.float32)}
                     for b in (1, 4)]
            cache[name] = (model, res.model, *convert_to_fp16(res.model, calib))
        return cache[name]

    return get


@pytest.mark.parametrize("name", ["bnn_nin", "bnn_resnet18"])
def test_packed_sample_fp16_onnx_holds_float16_activations(packed_samples, name):
    """Before the fix the planner saw no activation behind a BinaryConvPackedIn (its X is int32) and had no
    float16 form for BinaryConvPackedOut: BNN NIN converted to 0 float16 nodes with FLOAT input and output."""
    _, onnx32, m16, report = packed_samples(name)
    types, _ = tensor_types(m16)
    assert report["fp16_nodes"] > 0 and float16_compute_nodes(m16) > 0
    assert set(report["outputs"].values()) == {"FLOAT16"}
    # every packed-out node reads float16 X (the plugin's and the body's float16 form); W/scale/shift keep theirs
    for node in m16.graph.node:
        if node.op_type == "BinaryConvPackedOut":
            assert [types.get(t) for t in node.input] == [TP.FLOAT16, TP.INT32, TP.FLOAT, TP.FLOAT], node.name
        if node.op_type == "BinaryConvPackedIn":  # float32 Y by contract, cast to float16 for its consumers
            assert types[node.output[0]] == TP.FLOAT
    # each float32 island has a reason, and only the reasons the rules give
    for island in report["fp32_nodes"]:
        assert island["reason"], island
        op = island["node"].split(" (")[-1].rstrip(")").split("::")[-1]
        if op == "BinaryConvPackedIn":
            assert "float32 by contract" in island["reason"]
        else:
            assert any(w in island["reason"] for w in ("binarized", "threshold", "cancel")), island
    packed_in = sum(1 for n in onnx32.graph.node if n.op_type == "BinaryConvPackedIn")
    assert sum("BinaryConvPackedIn" in i["node"] for i in report["fp32_nodes"]) == packed_in


@pytest.mark.parametrize("name", ["bnn_nin", "bnn_resnet18"])
def test_packed_sample_fp16_matches_float32_onnx_and_float64_pytorch(packed_samples, name):
    """The packed FP16 ONNX (function bodies, onnxruntime; every float16 tensor rounded as TensorRT stores it, and
    onnxruntime's own float16) within the FP16 tolerance of the float32 ONNX on every sample, and of the
    float64 PyTorch model where the float32 ONNX agrees with it (elsewhere a binarized value lay within float32
    rounding of 0: out of every contract). Before the float16 rounding rule, ResNet-18's onnxruntime float16 run
    was 0.56 of max|y| off on a sample: an epilogue result in [-2^-25, 0) stored as -0 binarized to +1."""
    model, onnx32, m16, _ = packed_samples(name)
    tol16, tol32 = default_tolerance(onnx32, "fp16"), default_tolerance(onnx32, "fp32")
    assert tol32 == 1e-4 and tol16 >= 5e-3  # BinaryConv's contract (float16: the 1e-2 floor without AdderConv)
    ref64 = copy.deepcopy(model).double().eval()
    agree64 = 0
    for seed in range(4):
        x = np.random.default_rng(100 + seed).standard_normal(SHAPE).astype(np.float16).astype(np.float32)
        y32 = _run(onnx32, {"input": x})[0]
        with torch.no_grad():
            y64 = ref64(torch.from_numpy(x).double()).numpy()
        refs = {"float32 ONNX": y32}
        if relative_error(y32, y64) <= tol32:
            refs["float64 PyTorch"] = y64
            agree64 += 1
        for how, run in (("rounded", _run16), ("onnxruntime float16", _run)):
            y16 = run(m16, {"input": x})[0]
            for which, ref in refs.items():
                err = relative_error(y16, ref)
                assert err <= tol16, f"{name} ({how}) vs {which}: float16 error {err:.3g} > {tol16:g} (seed {seed})"
    assert agree64 >= 1, "no sample on which the float32 ONNX agrees with float64"


# ---------------------------------------------------------------- the label follows what is built

@pytest.fixture
def fake_build(monkeypatch, tmp_path):
    from cmc.exporter.trt import build_trt, plugin_lib
    from cmc.exporter.trt.env import TensorRTEnv

    from . import fake_tensorrt

    def run(model, version="10.3.0", **kwargs):
        trt = fake_tensorrt.make(version)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(plugin_lib, "load_plugin_library", lambda path: {"how": "fake"})
        src = tmp_path / "m.onnx"
        onnx.save(model, src)
        lib = tmp_path / "libcmc_trt_plugins_dynamic.so"
        lib.write_bytes(b"not a library: the loader is replaced in this test")
        env = TensorRTEnv(python_version=version, python_module_path=trt.__file__, include_dir=None,
                          header_version=None, lib_dir=None)
        manifest = build_trt(src, tmp_path / "out", plugin_lib=lib, env=env, batch=(1, 2, 4), verify=False, **kwargs)
        return trt, manifest

    return run


def test_packed_bnn_fp16_engine_is_built_from_float16_tensors(packed_samples, fake_build, tmp_path):
    from .fake_tensorrt import calls_named

    _, onnx32, _, _ = packed_samples("bnn_nin")
    trt, manifest = fake_build(onnx32, fp16=True)
    assert manifest["precision"] == "fp16" and manifest["fp16_requested"] is True
    built = onnx.load(tmp_path / "out" / manifest["fp16_onnx"])
    assert float16_compute_nodes(built) > 0
    assert manifest["fp16_conversion"]["fp16_nodes"] > 0
    (network_flags,) = [a[0] for a in calls_named(trt, "builder.create_network")]
    assert network_flags == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert default_tolerance(onnx32, manifest["precision"]) > default_tolerance(onnx32, "fp32")


def _no_float16_model() -> onnx.ModelProto:
    """Input -> an op without a type rule (another domain) -> output: no node can compute in float16."""
    fn = helper.make_function("com.other", "Mystery", ["X"], ["Y"], [helper.make_node("Neg", ["X"], ["Y"])],
                              opset_imports=[helper.make_opsetid("", 18)])
    graph = helper.make_graph([helper.make_node("Mystery", ["x"], ["y"], domain="com.other")], "g",
                              [helper.make_tensor_value_info("x", TP.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, ["N", 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.other", 1)],
                             ir_version=10, functions=[fn])


def test_fp16_request_that_converts_nothing_is_built_and_labelled_fp32(fake_build, capsys, tmp_path):
    """Labelled FP16 with no float16 tensor is what issue 21 found; now the label, the network type and the
    engine check's tolerance (FP32's, not FP16's) follow the model actually built, and the user hears why."""
    from .fake_tensorrt import calls_named

    trt, manifest = fake_build(_no_float16_model(), fp16=True)
    assert manifest["precision"] == "fp32" and manifest["fp16_requested"] is True
    assert manifest["fp16_onnx"] is None and not list((tmp_path / "out").glob("*.fp16.onnx"))
    assert manifest["fp16_conversion"]["fp16_nodes"] == 0
    assert any("no node of this model can compute in float16" in n for n in manifest["notes"])
    err = capsys.readouterr().err
    assert "built in FP32" in err and "no type rule for com.other::Mystery" in err
    assert [a[0] for a in calls_named(trt, "builder.create_network")] == [0]
    assert manifest["input_dtypes"] == {"x": "float32"}


# ---------------------------------------------------------------- the planner's side of the float16 sign rule

def test_fp16_plan_narrows_a_binarized_float32_value_keeping_its_sign(monkeypatch):
    """A float32 island's output read by a Sign in float16: plain rounding turns [-2^-25, 0) into -0 (Sign 0,
    where the float32 Sign is -1, and (0, 2^-25] to +0); the conversion narrows it by BinaryConv's float16 rule
    instead."""
    from cmc.exporter.trt import fp16_plan

    from ..plugins.test_binary_float16_sign import BOUNDARY

    n = len(BOUNDARY)
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Add", ["x", "zero"], ["a"]), helper.make_node("Sign", ["a"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TP.FLOAT, [1, n])], [helper.make_tensor_value_info("y", TP.FLOAT, [1, n])],
        [onnx.numpy_helper.from_array(np.zeros(1, np.float32), "zero")]),
        opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    feed = {"x": BOUNDARY.reshape(1, n)}
    want = np.sign(BOUNDARY.astype(np.float64))
    m16, report = convert_to_fp16(model, [feed])
    assert report["sign_keeping_casts"] == 1 and report["inputs"] == {"x": "FLOAT"}
    for run in (_run, _run16):
        np.testing.assert_array_equal(run(m16, feed)[0][0], want)
    with monkeypatch.context() as mp:  # the same conversion with plain rounding flips the four values
        mp.setattr(fp16_plan, "sign_read_tensors", lambda graph, act: set())
        plain, _ = convert_to_fp16(model, [feed])
    assert int((_run(plain, feed)[0][0] != want).sum()) == 6  # [-2^-25, 0) -> -0 and (0, 2^-25] -> +0: Sign 0
