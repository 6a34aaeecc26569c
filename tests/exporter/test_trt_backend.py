"""cmc.exporter.trt: the pure-ONNX preparation for TensorRT's parser, find_tensorrt's error path and the
build helpers run on CPU here; engine builds (parity of each plugin configuration against the NumPy
contract references) are marked ``tensorrt`` and skipped where TensorRT or a GPU is missing."""
from __future__ import annotations

import importlib
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from cmc.exporter.errors import CmcError
from cmc.exporter.trt import env as trt_env
from cmc.exporter.trt import find_tensorrt, prepare_onnx_file, prepare_onnx_for_trt
from cmc.exporter.trt.build import (MANIFEST, _Out, default_tolerance, input_profiles, make_feeds, normalize_batch,
                                    relative_error, write_manifest)
from cmc.plugins.adder_conv import onnx_body as adder_body
from cmc.plugins.adder_conv.reference import CONTRACT as ADDER, reference as adder_reference
from cmc.plugins.binary_conv import onnx_body as binary_body
from cmc.plugins.binary_conv.reference import CONTRACT as BINARY, pack_weights, reference as binary_reference

PLUGIN_ATTRS = ("plugin_version", "plugin_namespace")


# ---------------------------------------------------------------- models

def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def adder_binary_model(adder_attrs=None, binary_attrs=None, with_functions=True, cmc_opset=True) -> onnx.ModelProto:
    """X -> AdderConv (3x3, pads 1) -> BinaryConv (3x3) -> Y, with the exporter's function bodies."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 4, 3, 3)).astype(np.float32), "W"),
        numpy_helper.from_array(np.ones(8, np.float32), "scale"),
        numpy_helper.from_array(np.zeros(8, np.float32), "shift"),
        numpy_helper.from_array(pack_weights(rng.standard_normal((8, 8, 3, 3))), "W_packed"),
    ]
    a = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], plugin_version="1", plugin_namespace="cmc")
    a.update(adder_attrs or {})
    b = dict(kernel_shape=[3, 3])
    b.update(binary_attrs or {})
    nodes = [
        helper.make_node("AdderConv", ["X", "W", "scale", "shift"], ["A"], domain="com.cmc", name="adder0",
                         **{k: v for k, v in a.items() if v is not None}),
        helper.make_node("BinaryConv", ["A", "W_packed", "scale", "shift"], ["Y"], domain="com.cmc", name="binary0",
                         **{k: v for k, v in b.items() if v is not None}),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TP.FLOAT, ["N", 4, 8, 8])],
                              [helper.make_tensor_value_info("Y", TP.FLOAT, ["N", 8, 6, 6])], inits)
    opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid("com.cmc", 1)] if cmc_opset else [])
    fns = [adder_body.build(extra_attributes=PLUGIN_ATTRS), binary_body.build(extra_attributes=PLUGIN_ATTRS)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10, functions=fns if with_functions else [])


# ---------------------------------------------------------------- ONNX preparation (CPU)

def test_prepare_strips_plugin_function_bodies_and_marks_nodes():
    model = adder_binary_model()
    before = model.SerializeToString()
    prepared, report = prepare_onnx_for_trt(model)
    assert model.SerializeToString() == before, "the input model must not be modified"
    assert len(prepared.functions) == 0
    assert sorted(report["stripped_functions"]) == ["com.cmc::AdderConv", "com.cmc::BinaryConv"]
    assert report["plugin_nodes"] == {"AdderConv": 1, "BinaryConv": 1}
    for node in prepared.graph.node:
        attrs = _attrs(node)
        assert attrs["plugin_version"] == b"1" and attrs["plugin_namespace"] == b"cmc"
        contract = ADDER if node.op_type == "AdderConv" else BINARY
        # every contract attribute is explicit (the parser passes only present attributes)
        assert set(contract.attribute_names) <= set(attrs)
        assert node.domain == "com.cmc"
    adder, binary = prepared.graph.node
    assert _attrs(adder)["pads"] == [1, 1, 1, 1]  # kept as given
    assert _attrs(binary)["binarize_input"] == 1 and _attrs(binary)["strides"] == [1, 1]  # defaults filled
    assert report["plugin_attrs_added"] == 2  # only BinaryConv lacked them
    assert {o.domain: o.version for o in prepared.opset_import}["com.cmc"] == 1
    onnx.checker.check_model(prepared)


def test_prepare_is_idempotent_and_keeps_the_graph():
    once, _ = prepare_onnx_for_trt(adder_binary_model())
    twice, report = prepare_onnx_for_trt(once)
    assert once.SerializeToString() == twice.SerializeToString()
    assert report["stripped_functions"] == [] and report["defaults_filled"] == 0
    assert [n.name for n in twice.graph.node] == ["adder0", "binary0"]
    assert [i.name for i in twice.graph.initializer] == ["W", "scale", "shift", "W_packed"]


def test_prepare_adds_missing_cmc_opset_import():
    prepared, _ = prepare_onnx_for_trt(adder_binary_model(cmc_opset=False), check=False)
    assert {o.domain: o.version for o in prepared.opset_import}.get("com.cmc") == 1


def test_original_still_runs_in_onnxruntime_and_matches_the_references():
    """The prepared copy is for TensorRT only; the exporter's model keeps running through its bodies."""
    import onnxruntime as ort

    model = adder_binary_model()
    x = np.random.default_rng(1).standard_normal((2, 4, 8, 8)).astype(np.float32)
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    a = adder_reference(x, inits["W"], inits["scale"], inits["shift"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    ref = binary_reference(a, inits["W_packed"], inits["scale"], inits["shift"], kernel_shape=[3, 3])
    assert relative_error(y, ref) <= BINARY.tol("float32") + ADDER.tol("float32")


@pytest.mark.parametrize("attr,value,needle", [
    ("plugin_namespace", "other", "plugin_namespace='other'"),
    ("plugin_version", "2", "plugin_version='2'"),
])
def test_prepare_rejects_another_plugin(attr, value, needle):
    with pytest.raises(CmcError) as e:
        prepare_onnx_for_trt(adder_binary_model(adder_attrs={attr: value}))
    msg = str(e.value)
    assert needle in msg and "adder0" in msg and "\n" not in msg


@pytest.mark.parametrize("attrs,needle", [
    ({"strides": [1, 1, 1]}, "strides"),
    ({"group": 0}, "group"),
    ({"activation": 2}, "activation"),
    ({"kernel_shape": None}, "kernel_shape"),
])
def test_prepare_rejects_attributes_against_the_contract(attrs, needle):
    with pytest.raises(CmcError) as e:
        prepare_onnx_for_trt(adder_binary_model(binary_attrs=attrs))
    assert needle in str(e.value) and "binary0" in str(e.value) and "\n" not in str(e.value)


def test_prepare_rejects_wrong_attribute_type():
    model = adder_binary_model()
    node = model.graph.node[0]
    for a in node.attribute:
        if a.name == "strides":
            node.attribute.remove(a)
            break
    node.attribute.append(helper.make_attribute("strides", [1.0, 1.0]))
    with pytest.raises(CmcError, match="strides has ONNX type FLOATS"):
        prepare_onnx_for_trt(model)


def test_prepare_walks_subgraphs():
    model = adder_binary_model()
    inner_node = helper.make_node("BinaryConv", ["A", "W_packed", "scale", "shift"], ["Yi"], domain="com.cmc",
                                  name="inner", kernel_shape=[3, 3])
    then_g = helper.make_graph([inner_node], "then", [], [helper.make_tensor_value_info("Yi", TP.FLOAT, None)])
    else_g = helper.make_graph([helper.make_node("Identity", ["Y"], ["Ye"])], "else", [],
                               [helper.make_tensor_value_info("Ye", TP.FLOAT, None)])
    cond = numpy_helper.from_array(np.array(True), "cond")
    model.graph.initializer.append(cond)
    model.graph.node.append(helper.make_node("If", ["cond"], ["Z"], then_branch=then_g, else_branch=else_g))
    prepared, report = prepare_onnx_for_trt(model, check=False)
    inner = prepared.graph.node[2].attribute[0].g.node[0] if prepared.graph.node[2].attribute[0].name == "then_branch" \
        else prepared.graph.node[2].attribute[1].g.node[0]
    assert _attrs(inner)["plugin_namespace"] == b"cmc"
    assert report["plugin_nodes"]["BinaryConv"] == 2


def test_prepare_keeps_functions_of_ops_without_plugin():
    model = adder_binary_model()
    fn = helper.make_function("com.cmc", "NoPluginOp", ["X"], ["Y"], [helper.make_node("Identity", ["X"], ["Y"])],
                              opset_imports=[helper.make_opsetid("", 18)])
    model.functions.append(fn)
    model.graph.node.append(helper.make_node("NoPluginOp", ["Y"], ["Z"], domain="com.cmc", name="np0"))
    model.graph.output.append(helper.make_tensor_value_info("Z", TP.FLOAT, ["N", 8, 6, 6]))
    prepared, report = prepare_onnx_for_trt(model)
    assert [f"{f.domain}::{f.name}" for f in prepared.functions] == ["com.cmc::NoPluginOp"]
    assert report["kept_functions"] == ["com.cmc::NoPluginOp"]
    assert report["without_plugin"] == ["NoPluginOp"]
    assert "plugin_namespace" not in _attrs(prepared.graph.node[2])


def test_prepare_onnx_file_writes_atomically(tmp_path):
    src = tmp_path / "m.onnx"
    onnx.save(adder_binary_model(), src)
    dst = tmp_path / "out" / "m.trt.onnx"
    report = prepare_onnx_file(src, dst)
    assert report["plugin_nodes"] == {"AdderConv": 1, "BinaryConv": 1}
    assert sorted(p.name for p in dst.parent.iterdir()) == ["m.trt.onnx"]  # no temporary left behind
    assert len(onnx.load(str(dst)).functions) == 0


def test_prepare_reports_unreadable_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(CmcError, match="cannot read ONNX model"):
        prepare_onnx_for_trt(bad)


# ---------------------------------------------------------------- find_tensorrt (CPU)

def _write_headers(d: Path, major=10, minor=3, patch=0, style="10"):
    d.mkdir(parents=True, exist_ok=True)
    (d / "NvInferRuntime.h").write_text("// stub\n")
    if style == "11":
        text = (f"#define TRT_MAJOR_ENTERPRISE {major}\n#define TRT_MINOR_ENTERPRISE {minor}\n"
                f"#define TRT_PATCH_ENTERPRISE {patch}\n#define NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE\n")
    else:
        text = f"#define NV_TENSORRT_MAJOR {major}\n#define NV_TENSORRT_MINOR {minor}\n#define NV_TENSORRT_PATCH {patch}\n"
    (d / "NvInferVersion.h").write_text(text)
    return d


@pytest.fixture
def no_system_tensorrt(monkeypatch):
    for var in ("TENSORRT_INCLUDE_DIR", "TENSORRT_ROOT", "TENSORRT_LIB_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(trt_env, "SYSTEM_INCLUDE_DIRS", ())
    monkeypatch.setattr(trt_env, "SYSTEM_LIB_DIRS", ())
    monkeypatch.setattr(trt_env, "_pip_include_dirs", lambda module_path: [])


@pytest.fixture
def fake_tensorrt(monkeypatch, tmp_path):
    def install(version="10.3.0"):
        mod = types.ModuleType("tensorrt")
        mod.__version__ = version
        mod.__file__ = str(tmp_path / "site" / "tensorrt" / "__init__.py")
        monkeypatch.setitem(sys.modules, "tensorrt", mod)
        return mod

    return install


def test_find_tensorrt_without_python_package(monkeypatch, no_system_tensorrt):
    real = importlib.import_module

    def fake_import(name, *a, **k):
        if name == "tensorrt":
            raise ImportError("No module named 'tensorrt'")
        return real(name, *a, **k)

    monkeypatch.setattr(trt_env.importlib, "import_module", fake_import)
    with pytest.raises(CmcError) as e:
        find_tensorrt()
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("TensorRT Python package not importable")
    assert "pip install tensorrt" in msg and "python3-libnvinfer" in msg


def test_find_tensorrt_without_headers(fake_tensorrt, no_system_tensorrt):
    fake_tensorrt("10.3.0")
    with pytest.raises(CmcError) as e:
        find_tensorrt()
    msg = str(e.value)
    assert "\n" not in msg
    assert "headers" in msg and "TENSORRT_INCLUDE_DIR" in msg and "--plugin-lib" in msg
    # headers are optional when a prebuilt plugin library is used
    env = find_tensorrt(need_headers=False)
    assert env.python_version == "10.3.0" and env.include_dir is None


def test_find_tensorrt_bad_include_dir_variable(fake_tensorrt, no_system_tensorrt, monkeypatch, tmp_path):
    fake_tensorrt()
    monkeypatch.setenv("TENSORRT_INCLUDE_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(CmcError, match=r"TENSORRT_INCLUDE_DIR=.*nowhere has no NvInferRuntime.h"):
        find_tensorrt()


@pytest.mark.parametrize("style,version", [("10", (10, 3, 0)), ("11", (11, 1, 0))])
def test_find_tensorrt_finds_headers_from_the_variable(fake_tensorrt, no_system_tensorrt, monkeypatch, tmp_path,
                                                       style, version):
    fake_tensorrt(".".join(map(str, version)))
    inc = _write_headers(tmp_path / "inc", *version, style=style)
    monkeypatch.setenv("TENSORRT_INCLUDE_DIR", str(inc))
    env = find_tensorrt()
    assert env.header_version == ".".join(map(str, version))
    assert env.include_source == "TENSORRT_INCLUDE_DIR"
    assert Path(env.include_dir) == inc.resolve()


def test_find_tensorrt_from_root_and_version_mismatch(fake_tensorrt, no_system_tensorrt, monkeypatch, tmp_path):
    fake_tensorrt("11.1.0")
    _write_headers(tmp_path / "TensorRT-10.3" / "include", 10, 3, 0)
    monkeypatch.setenv("TENSORRT_ROOT", str(tmp_path / "TensorRT-10.3"))
    with pytest.raises(CmcError, match="differ in major version") as e:
        find_tensorrt()
    assert "\n" not in str(e.value)
    env = find_tensorrt(need_headers=False)
    assert env.include_source == "TENSORRT_ROOT" and env.notes


@pytest.mark.skipif(not os.path.isdir("/tmp/trt/10.3/include") or not os.path.isdir("/tmp/trt/11.1/include"),
                    reason="real TensorRT headers not extracted to /tmp/trt")
def test_header_version_of_real_headers():
    assert trt_env.header_version("/tmp/trt/10.3/include") == "10.3.0"
    assert trt_env.header_version("/tmp/trt/11.1/include") == "11.1.0"


# ---------------------------------------------------------------- build helpers (CPU)

def test_normalize_batch():
    assert normalize_batch(None) == (1, 1, 1)
    assert normalize_batch(None, np.zeros((4, 3))) == (1, 4, 4)
    assert normalize_batch(8) == (8, 8, 8)
    assert normalize_batch((1, 4, 16)) == (1, 4, 16)
    with pytest.raises(CmcError):
        normalize_batch((4, 2, 8))
    with pytest.raises(CmcError):
        normalize_batch((0, 1, 1))


def test_input_profiles_and_feeds():
    model = adder_binary_model()
    prof = input_profiles(model, (1, 4, 8))
    assert prof == {"X": {"min": (1, 4, 8, 8), "opt": (4, 4, 8, 8), "max": (8, 4, 8, 8), "dtype": "float32"}}
    feeds = make_feeds(prof, "max", seed=0)
    assert feeds["X"].shape == (8, 4, 8, 8) and feeds["X"].dtype == np.float32
    # a dynamic non-batch dimension needs the example
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    with pytest.raises(CmcError, match="dynamic dimension 2"):
        input_profiles(model, (1, 1, 1))
    assert input_profiles(model, (1, 1, 1), example=np.zeros((1, 4, 16, 8)))["X"]["opt"] == (1, 4, 16, 8)


def test_relative_error_and_default_tolerance():
    assert relative_error(np.ones(3), np.ones(3)) == 0.0
    assert relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.2])) == pytest.approx(0.2 / 2.2)
    assert relative_error(np.ones(2), np.ones(3)) == float("inf")
    assert relative_error(np.array([np.nan]), np.array([1.0])) == float("inf")
    model = adder_binary_model()
    assert default_tolerance(model, "fp32") == ADDER.tol("float32")
    assert default_tolerance(model, "fp16") == max(ADDER.tol("float16"), BINARY.tol("float16"))


def test_outputs_into_a_folder_and_into_the_cli_staging(tmp_path):
    from cmc.exporter.artifacts import Staging

    out = _Out(tmp_path / "plain")
    write_manifest(out, {"format": "x"})
    assert json.loads((tmp_path / "plain" / MANIFEST).read_text()) == {"format": "x"}
    with Staging(tmp_path / "staged") as stage:
        out = _Out(stage)
        write_manifest(out, {"format": "y"})
        out.write_bytes("m.plan", b"engine")
        assert stage.files == [MANIFEST, "m.plan"]
        stage.commit()
    assert (tmp_path / "staged" / "m.plan").read_bytes() == b"engine"


def test_build_trt_without_tensorrt_fails_with_one_line(monkeypatch, no_system_tensorrt, tmp_path):
    from cmc.exporter.trt import build_trt

    real = importlib.import_module

    def fake_import(name, *a, **k):
        if name == "tensorrt":
            raise ImportError("No module named 'tensorrt'")
        return real(name, *a, **k)

    monkeypatch.setattr(trt_env.importlib, "import_module", fake_import)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    src = tmp_path / "m.onnx"
    onnx.save(adder_binary_model(), src)
    with pytest.raises(CmcError) as e:
        build_trt(src, tmp_path / "out")
    assert "\n" not in str(e.value) and "TensorRT Python package" in str(e.value)


def test_plugin_build_command(tmp_path, monkeypatch):
    from cmc.exporter.trt.env import TensorRTEnv
    from cmc.exporter.trt.plugin_lib import cmake_configure_command, plugin_source_dir

    # works from an installed (non-editable) cmc too: the sources are this checkout's trt_plugins/
    monkeypatch.setenv("CMC_TRT_PLUGINS_DIR", str(Path(__file__).resolve().parents[2] / "trt_plugins"))
    env = TensorRTEnv(python_version=None, python_module_path=None, include_dir="/opt/trt/include",
                      header_version="10.3.0", lib_dir="/opt/trt/lib")
    cmd = cmake_configure_command(plugin_source_dir(), tmp_path, env, "87")
    assert "-DTENSORRT_INCLUDE_DIR=/opt/trt/include" in cmd
    assert "-DCMAKE_CUDA_ARCHITECTURES=87" in cmd and "-DCMC_CUDA_ARCHITECTURES=87-real" in cmd
    assert "-DTENSORRT_LIB_DIR=/opt/trt/lib" in cmd


def test_runner_finds_the_plugin_library_from_the_manifest(tmp_path):
    from cmc.exporter.trt.runner import _plugin_from_manifest

    (tmp_path / "m.plan").write_bytes(b"")
    (tmp_path / "libcmc_trt_plugins_dynamic.so").write_bytes(b"")
    (tmp_path / "libcmc_trt_plugins.so").write_bytes(b"")
    (tmp_path / MANIFEST).write_text(json.dumps({"plugin_libraries": {
        "libcmc_trt_plugins.so": {"file": "libcmc_trt_plugins.so"},
        "libcmc_trt_plugins_dynamic.so": {"file": "libcmc_trt_plugins_dynamic.so"}}}))
    assert _plugin_from_manifest(tmp_path / "m.plan", None).name == "libcmc_trt_plugins_dynamic.so"


# ---------------------------------------------------------------- TensorRT engines (GPU + TensorRT)

def _tensorrt_skip_reason() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return f"TensorRT Python package not importable ({type(e).__name__}); TensorRT tests run where TensorRT is installed"
    try:
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU"
    except Exception:  # noqa: BLE001
        pass
    if not os.environ.get("CMC_TRT_PLUGIN_LIB"):
        try:
            find_tensorrt()
        except CmcError as e:
            return f"cannot build the plugin library: {e}"
    return None


TRT_SKIP = _tensorrt_skip_reason()

ADDER_CONFIGS = [
    dict(kernel_shape=[3, 3]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], activation=1),
    dict(kernel_shape=[3, 1], pads=[1, 0, 1, 0], dilations=[2, 1], group=2),
    dict(kernel_shape=[1, 1], group=4),
]
BINARY_CONFIGS = [
    dict(kernel_shape=[3, 3]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], activation=1),
    dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], binarize_input=0),
    dict(kernel_shape=[1, 3], pads=[0, 2, 0, 1], dilations=[1, 2], group=2),
]


def _single_op_model(op: str, attrs: dict, c=8, m=8, hw=(9, 7), seed=0):
    rng = np.random.default_rng(seed)
    g = attrs.get("group", 1)
    kh, kw = attrs["kernel_shape"]
    scale = (rng.random(m) + 0.5).astype(np.float32)
    shift = rng.standard_normal(m).astype(np.float32)
    if op == "AdderConv":
        w = rng.standard_normal((m, c // g, kh, kw)).astype(np.float32)
        body = adder_body.build(extra_attributes=PLUGIN_ATTRS)
        ref = lambda x: adder_reference(x, w, scale, shift, **attrs)  # noqa: E731
    else:
        w = pack_weights(rng.standard_normal((m, c // g, kh, kw)))
        body = binary_body.build(extra_attributes=PLUGIN_ATTRS)
        ref = lambda x: binary_reference(x, w, scale, shift, **attrs)  # noqa: E731
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(scale, "scale"),
             numpy_helper.from_array(shift, "shift")]
    node = helper.make_node(op, ["X", "W", "scale", "shift"], ["Y"], domain="com.cmc", name=f"{op.lower()}0",
                            plugin_version="1", plugin_namespace="cmc", **attrs)
    probe = ref(np.zeros((1, c, *hw)))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TP.FLOAT, ["N", c, *hw])],
                              [helper.make_tensor_value_info("Y", TP.FLOAT, ["N", *probe.shape[1:]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.cmc", 1)],
                              ir_version=10, functions=[body])
    return model, ref


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.skipif(TRT_SKIP is not None, reason=TRT_SKIP or "")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("op,attrs", [("AdderConv", a) for a in ADDER_CONFIGS] + [("BinaryConv", a) for a in BINARY_CONFIGS],
                         ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}{v[k]}" for k in v))
def test_engine_matches_contract_reference(tmp_path, op, attrs, precision):
    from cmc.exporter.trt import build_trt

    model, ref = _single_op_model(op, attrs)
    src = tmp_path / "m.onnx"
    onnx.save(model, src)
    contract = ADDER if op == "AdderConv" else BINARY
    tol = 1e-4 if precision == "fp32" else contract.tol("float16")
    manifest = build_trt(src, tmp_path / "out", fp16=precision == "fp16", batch=(1, 2, 3), workspace_mb=256,
                         plugin_lib=os.environ.get("CMC_TRT_PLUGIN_LIB"), tolerance=tol,
                         reference=lambda feeds: [ref(feeds["X"])])
    assert manifest["verification"]["passed"], manifest["verification"]
    assert manifest["onnx_preparation"]["stripped_functions"] == [f"com.cmc::{op}"]
    out = tmp_path / "out"
    assert (out / "m.plan").is_file() and (out / MANIFEST).is_file()
    assert manifest["sha256"]["engine"] == __import__("hashlib").sha256((out / "m.plan").read_bytes()).hexdigest()


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.skipif(TRT_SKIP is not None, reason=TRT_SKIP or "")
def test_runner_runs_a_built_engine(tmp_path):
    from cmc.exporter.trt import build_trt
    from cmc.exporter.trt.runner import EngineRunner

    model, ref = _single_op_model("BinaryConv", BINARY_CONFIGS[1])
    src = tmp_path / "m.onnx"
    onnx.save(model, src)
    build_trt(src, tmp_path / "out", batch=(1, 2, 4), plugin_lib=os.environ.get("CMC_TRT_PLUGIN_LIB"))
    x = np.random.default_rng(5).standard_normal((3, 8, 9, 7)).astype(np.float32)
    with EngineRunner(tmp_path / "out" / "m.plan") as r:
        y = r.infer({"X": x})["Y"]
    assert relative_error(y, ref(x)) <= 1e-4
