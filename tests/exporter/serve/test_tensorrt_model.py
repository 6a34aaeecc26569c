"""The tensorrt_plan model of --to triton and the plugin library's loading order, with stand-ins (no
TensorRT here): a stand-in 'libnvinfer' that defines getPluginRegistry, and plugin libraries whose static
initialiser calls it — one left unresolved (as a library built without libnvinfer), one linked."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import onnx
import pytest
import torch

from cmc.exporter.artifacts import Staging
from cmc.exporter.errors import CmcError
from cmc.exporter.onnx_export import export_onnx
from cmc.exporter.serve.export_step import write_triton
from cmc.exporter.serve.plugin_loading import plugin_load_problem

from .conftest import HERE, run_in_triton_env

CC = shutil.which("gcc") or shutil.which("cc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler to build the stand-in libraries")

REGISTRY = "void *getPluginRegistry(void) { static int registry; return &registry; }\n"
PLUGIN = ("extern void *getPluginRegistry(void);\n"
          "static void *registered;\n"
          "__attribute__((constructor)) static void register_creators(void) { registered = getPluginRegistry(); }\n")


@pytest.fixture(scope="module")
def libs(tmp_path_factory):
    d = tmp_path_factory.mktemp("standin")
    (d / "registry.c").write_text(REGISTRY)
    (d / "plugin.c").write_text(PLUGIN)
    subprocess.run([CC, "-shared", "-fPIC", "-o", d / "libnvinfer_standin.so", d / "registry.c"], check=True)
    (d / "unlinked").mkdir()
    (d / "linked").mkdir()
    subprocess.run([CC, "-shared", "-fPIC", "-o", d / "unlinked" / "libcmc_trt_plugins.so", d / "plugin.c"], check=True)
    subprocess.run([CC, "-shared", "-fPIC", "-o", d / "linked" / "libcmc_trt_plugins.so", d / "plugin.c",
                    f"-L{d}", "-lnvinfer_standin", f"-Wl,-rpath,{d}"], check=True)
    return d


def test_unresolved_registry_fails_under_dlopen_local(libs):
    problem = plugin_load_problem(libs / "unlinked" / "libcmc_trt_plugins.so")
    assert problem and "undefined symbol: getPluginRegistry" in problem and "libnvinfer" in problem
    assert plugin_load_problem(libs / "linked" / "libcmc_trt_plugins.so") is None


def test_ld_preload_order(libs):
    """LD_PRELOAD loads the library before the program's own libraries: only the linked one survives it."""
    env = dict(os.environ)
    bad = subprocess.run(["/bin/true"], env=dict(env, LD_PRELOAD=str(libs / "unlinked" / "libcmc_trt_plugins.so")),
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "getPluginRegistry" in bad.stderr
    good = subprocess.run(["/bin/true"], env=dict(env, LD_PRELOAD=str(libs / "linked" / "libcmc_trt_plugins.so")),
                          capture_output=True, text=True)
    assert good.returncode == 0, good.stderr


def _stage_with_engine(tmp_path, plugin: Path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()).eval()
    res = export_onnx(model, torch.randn(2, 3, 8, 8))
    stage = Staging(tmp_path / "out").__enter__()
    stage.path("m.plan").write_bytes(b"stand-in engine")
    stage.path("m.trt.onnx").write_bytes(res.model.SerializeToString())
    shutil.copyfile(plugin, stage.path("libcmc_trt_plugins.so"))
    trt = {"engine": "m.plan", "onnx_for_tensorrt": "m.trt.onnx",
           "plugin_libraries": {"self_registering": {"file": "libcmc_trt_plugins.so"}}}
    return stage, res, trt


def test_tensorrt_model_launch_script_and_config(libs, tmp_path, triton_env):
    stage, res, trt = _stage_with_engine(tmp_path, libs / "linked" / "libcmc_trt_plugins.so")
    try:
        rep = write_triton(stage, res, "m", trt, {"batch": (1, 4, 16)})
        repo = stage.dir / "model_repository"
        assert (repo / "m_tensorrt" / "1" / "model.plan").read_bytes() == b"stand-in engine"
        script = (stage.dir / "serve_tensorrt.sh").read_text()
        assert 'export LD_PRELOAD="$plugin' in script and "--model-repository" in script
        assert os.access(stage.dir / "serve_tensorrt.sh", os.X_OK)
        assert "--backend-config=tensorrt,plugins=" in (stage.dir / "TRITON.md").read_text()
        r = run_in_triton_env(triton_env, HERE / "parse_configs.py", repo / "m_tensorrt" / "config.pbtxt")
        cfg = json.loads(r.stdout)[str(repo / "m_tensorrt" / "config.pbtxt")]
        assert cfg["platform"] == "tensorrt_plan" and cfg["max_batch_size"] == 16
        assert cfg["instance_group"][0]["kind"] == "KIND_GPU"
        assert rep["models"]["m_tensorrt"]["platform"] == "tensorrt_plan"
    finally:
        stage.__exit__(None, None, None)


def test_unlinked_plugin_library_is_refused(libs, tmp_path):
    stage, res, trt = _stage_with_engine(tmp_path, libs / "unlinked" / "libcmc_trt_plugins.so")
    try:
        with pytest.raises(CmcError, match="would not load in Triton: .*getPluginRegistry"):
            write_triton(stage, res, "m", trt, {})
    finally:
        stage.__exit__(None, None, None)
