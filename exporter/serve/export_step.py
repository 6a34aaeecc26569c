"""``cmc-export --to triton``: the model repository, its README and (with an engine) the launch script,
written into the export's staging folder so that they appear only when the whole export succeeded."""
from __future__ import annotations

import shlex
from pathlib import Path

from ..errors import CmcError
from .plugin_loading import plugin_load_problem
from .repository import write_repository

REPOSITORY = "model_repository"
SELF_REGISTERING = "libcmc_trt_plugins.so"


def write_triton(stage, res, stem: str, trt_report: dict | None, options: dict) -> dict:
    root = stage.path(REPOSITORY)
    root.mkdir()
    engine = None
    trt_onnx = None
    plugin = None
    if trt_report and trt_report.get("engine"):
        import onnx

        engine = stage.dir / trt_report["engine"]
        trt_onnx = onnx.load(str(stage.dir / trt_report["onnx_for_tensorrt"]), load_external_data=False)
        libs = {v["file"] for v in (trt_report.get("plugin_libraries") or {}).values()}
        if SELF_REGISTERING not in libs:
            raise CmcError(f"--to triton with an engine needs {SELF_REGISTERING} (Triton loads plugins by dlopen / "
                           f"LD_PRELOAD, which only the self-registering library serves); the build placed {sorted(libs)}")
        plugin = stage.dir / SELF_REGISTERING
        problem = plugin_load_problem(plugin)
        # Only an unresolved symbol is the library's fault; a libnvinfer that this machine's loader cannot
        # find (pip's TensorRT keeps it off the library path) is there in a Triton container.
        if problem and "undefined symbol" in problem:
            raise CmcError(f"{SELF_REGISTERING} would not load in Triton: {problem}")
    rep = write_repository(root, res.model, stem, dynamic_batch=res.dynamic_batch,
                           batch=options.get("batch"), device=options.get("device", "cpu"),
                           engine=engine, trt_onnx=trt_onnx)
    rep["repository"] = REPOSITORY
    if plugin is not None:
        script = stage.path("serve_tensorrt.sh")
        script.write_text(launch_script(SELF_REGISTERING))
        script.chmod(0o755)
        rep["launch_script"] = script.name
        rep["plugin_library"] = SELF_REGISTERING
    stage.path("TRITON.md").write_text(readme(stem, rep))
    rep["readme"] = "TRITON.md"
    return rep


def launch_script(plugin_name: str) -> str:
    """Triton's TensorRT backend resolves cmc's plugins from TensorRT's global registry: the library must be
    loaded (and have registered) before the engine is deserialised. Both documented ways are given; the
    script uses LD_PRELOAD, which every Triton release honours."""
    return f"""#!/usr/bin/env bash
# Serve the model repository beside this script with Triton's TensorRT backend and cmc's plugins.
# Written by cmc-export --to triton. Run inside a Triton container (or JetPack build) whose TensorRT
# matches the one that built the engine (see tensorrt_manifest.json).
set -euo pipefail
here="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
plugin="$here/{plugin_name}"
# LD_PRELOAD: the library registers its creators in TensorRT's registry when it is loaded; it is linked
# against libnvinfer, so getPluginRegistry resolves even though tritonserver itself does not link TensorRT.
# Equivalent on Triton >= 23.05 without LD_PRELOAD: --backend-config=tensorrt,plugins="$plugin"
export LD_PRELOAD="$plugin${{LD_PRELOAD:+:$LD_PRELOAD}}"
exec tritonserver --model-repository="$here/{REPOSITORY}" "$@"
"""


def readme(stem: str, rep: dict) -> str:
    models = rep["models"]
    ort = models[f"{stem}_onnxruntime"]
    lines = [f"# Serving {stem} with Triton Inference Server", "",
             f"`{REPOSITORY}/` holds the same exported ONNX as up to three Triton models "
             f"(inputs {', '.join(i['name'] for i in rep['inputs'])}; outputs "
             f"{', '.join(o['name'] for o in rep['outputs'])}; max_batch_size {rep['max_batch_size']}):", "",
             f"* `{stem}_onnxruntime` (`onnxruntime_onnx`): NVIDIA's Triton containers. The model is written with "
             f"IR version {ort['ir_version']} (exported as {ort['exported_ir_version']}; the same graph, no later-IR "
             f"feature in it) and opset {ort['opset']}: it needs onnxruntime >= {ort['min_onnxruntime']} in the server.",
             f"* `{stem}_python` (Python backend, onnxruntime, {models[f'{stem}_python']['execution_provider']}): any "
             "Triton with the Python backend whose Python has numpy and onnxruntime, e.g. `cmc serve "
             f"{REPOSITORY}` (the tritonserver of the nvidia-pytriton wheel).", ""]
    if "launch_script" in rep:
        lines += [f"* `{stem}_tensorrt` (`tensorrt_plan`): needs cmc's plugin library, loaded before the engine: "
                  f"`./{rep['launch_script']}` (LD_PRELOAD={rep['plugin_library']}; or "
                  f"`--backend-config=tensorrt,plugins=$PWD/{rep['plugin_library']}`).", ""]
    lines += ["Check parity over the wire against the PyTorch model:", "",
              f"    cmc serve --check http://127.0.0.1:8000 {stem}_python CHECKPOINT --arch MODULE:CALLABLE "
              "--grpc-url 127.0.0.1:8001", ""]
    return "\n".join(lines)


def shell_quote(p: Path) -> str:
    return shlex.quote(str(p))
