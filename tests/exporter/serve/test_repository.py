"""--to triton: the model repository's configs against Triton's own schema, tensor names, and the ONNX
written for older onnxruntime releases."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cmc.exporter.errors import CmcError
from cmc.exporter.serve.repository import config_text, lowest_exact_ir_version, tensor_specs, write_repository

from .conftest import HERE, run_in_triton_env


def parse(triton_env, paths) -> dict:
    r = run_in_triton_env(triton_env, HERE / "parse_configs.py", *paths)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_sample_configs_parse_with_model_config_pb2(triton_env, exported):
    paths = sorted(p for _, d in exported.values() for p in (d / "model_repository").glob("*/config.pbtxt"))
    assert len(paths) == 4  # two samples x (onnxruntime, python)
    configs = parse(triton_env, paths)
    for path, cfg in configs.items():
        assert "error" not in cfg, (path, cfg)
        assert cfg["max_batch_size"] == 32
        assert cfg["dynamic_batching"]["preferred_batch_size"] == [8, 32]
        assert [i["name"] for i in cfg["input"]] == ["input"] and cfg["input"][0]["dims"] == ["3", "32", "32"]
        assert [o["name"] for o in cfg["output"]] == ["output"] and cfg["output"][0]["dims"] == ["10"]
        assert cfg["input"][0]["data_type"] == "TYPE_FP32"
        assert cfg["instance_group"][0]["kind"] == "KIND_CPU"
        warm = cfg["model_warmup"][0]
        assert warm["batch_size"] == 1 and warm["inputs"]["input"]["random_data"] is True
        if path.endswith("_python/config.pbtxt"):
            assert cfg["backend"] == "python"
            assert cfg["parameters"]["execution_provider"]["string_value"] == "CPUExecutionProvider"
        else:
            assert cfg["platform"] == "onnxruntime_onnx"


def test_schema_check_rejects_a_wrong_config(triton_env, tmp_path):
    """The schema check is a real one: a misspelt field and a bad enum value are refused."""
    bad1 = tmp_path / "a.pbtxt"
    bad1.write_text('name: "m"\nmax_batch_sizes: 4\n')
    bad2 = tmp_path / "b.pbtxt"
    bad2.write_text('name: "m"\ninput [ { name: "x" data_type: TYPE_FLOAT32 dims: [ 1 ] } ]\n')
    configs = parse(triton_env, [bad1, bad2])
    assert all("error" in c for c in configs.values()), configs


def test_exported_onnx_has_meaningful_tensor_names(exported):
    for name, (_, d) in exported.items():
        m = onnx.load(str(d / f"{name}.onnx"))
        assert [i.name for i in m.graph.input] == ["input"]
        assert [o.name for o in m.graph.output] == ["output"]
        report = json.loads((d / "report.json").read_text())
        assert report["export"]["outputs"] == ["output"]
        assert set(report["triton"]["models"]) == {f"{name}_onnxruntime", f"{name}_python"}
        assert f"model_repository/{name}_python/1/model.onnx" in report["artifacts"]


def test_user_tensor_names_and_static_batch(tmp_path):
    import torch

    from cmc.exporter.onnx_export import export_onnx

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()).eval()
    res = export_onnx(model, torch.randn(1, 3, 8, 8), dynamic_batch=False, input_names=["image"],
                      output_names=["logits"])
    assert [i.name for i in res.model.graph.input] == ["image"] and res.output_names == ["logits"]
    rep = write_repository(tmp_path / "repo", res.model, "tiny", dynamic_batch=False)
    text = (tmp_path / "repo" / "tiny_python" / "config.pbtxt").read_text()
    assert "max_batch_size: 0" in text and "dynamic_batching" not in text
    assert 'name: "image" data_type: TYPE_FP32 dims: [ 1, 3, 8, 8 ]' in text
    assert rep["max_batch_size"] == 0
    with pytest.raises(CmcError, match="--output-names gives 2 name"):
        export_onnx(model, torch.randn(1, 3, 8, 8), output_names=["a", "b"])


def test_onnxruntime_model_lowered_ir_is_exact(exported):
    """The onnxruntime_onnx model is written with the lowest IR that holds it; it computes the same values."""
    name, (_, d) = "bnn_nin", exported["bnn_nin"]
    original = onnx.load(str(d / f"{name}.onnx"))
    lowered_path = d / "model_repository" / f"{name}_onnxruntime" / "1" / "model.onnx"
    lowered = onnx.load(str(lowered_path))
    assert lowered.ir_version == 8 < original.ir_version
    x = np.random.default_rng(3).standard_normal((5, 3, 32, 32)).astype(np.float32)
    a = ort.InferenceSession(original.SerializeToString()).run(None, {"input": x})[0]
    b = ort.InferenceSession(str(lowered_path)).run(None, {"input": x})[0]
    assert np.array_equal(a, b)
    report = json.loads((d / "report.json").read_text())
    facts = report["triton"]["models"][f"{name}_onnxruntime"]
    assert facts["ir_version"] == 8 and facts["min_onnxruntime"] == "1.14"


def test_later_ir_features_keep_the_ir_version():
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT8E4M3FN, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT8E4M3FN, [1])
    g = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    m = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 19)])
    assert lowest_exact_ir_version(m) == 9


def test_config_for_gpu_and_unsupported_types(tmp_path):
    text = config_text("m", backend="python", inputs=[], outputs=[], batch=(1, 1, 4), kind="KIND_GPU")
    assert "preferred_batch_size: [ 4 ]" in text and "kind: KIND_GPU" in text
    v = onnx.helper.make_tensor_value_info("s", onnx.TensorProto.STRING, [1])
    with pytest.raises(CmcError, match="STRING"):
        tensor_specs([v], batched=False)
