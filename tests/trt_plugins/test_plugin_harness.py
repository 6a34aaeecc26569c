"""The C++ plugin contract test (trt_plugins/tests/plugin_contract_test.cpp), built and run through
CMake/CTest against every set of TensorRT headers found: $TENSORRT_INCLUDE_DIR, or the extracted
/tmp/trt/<version>/include folders. Needs cmake and nvcc (the kernels are linked into the plugin
libraries) but no GPU and no libnvinfer; skipped with the reason otherwise."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cmc.exporter.trt.env import header_version

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "trt_plugins"


def _header_dirs() -> list[str]:
    dirs = []
    if os.environ.get("TENSORRT_INCLUDE_DIR"):
        dirs.append(os.environ["TENSORRT_INCLUDE_DIR"])
    dirs += sorted(glob.glob("/tmp/trt/*/include"))
    return [d for d in dict.fromkeys(dirs) if os.path.isfile(os.path.join(d, "NvInferRuntime.h"))]


def _nvcc() -> str | None:
    for cand in (os.environ.get("CUDACXX"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if cand and os.path.isfile(cand):
            return cand
    return None


HEADERS = _header_dirs()
SKIP_REASON = None
if not HEADERS:
    SKIP_REASON = "no TensorRT headers (set TENSORRT_INCLUDE_DIR or extract them to /tmp/trt/<version>/include)"
elif shutil.which("cmake") is None:
    SKIP_REASON = "cmake not installed"
elif _nvcc() is None:
    SKIP_REASON = "nvcc not found (the plugin libraries link the CUDA kernels)"
elif not (SRC / "CMakeLists.txt").is_file():
    SKIP_REASON = "trt_plugins/CMakeLists.txt missing"


def _run(cmd, log: Path, timeout=1500):
    with open(log, "ab") as f:
        f.write(("$ " + " ".join(map(str, cmd)) + "\n").encode())
        f.flush()
        return subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode


@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
@pytest.mark.parametrize("include_dir", HEADERS or ["none"], ids=lambda d: f"trt{header_version(d) or d}")
def test_plugin_contract_ctest(include_dir, tmp_path):
    build = tmp_path / "build"
    log = tmp_path / "build.log"
    arch = os.environ.get("CMC_TEST_CUDA_ARCH", "87")
    configure = ["cmake", "-S", SRC, "-B", build, f"-DTENSORRT_INCLUDE_DIR={include_dir}",
                 f"-DCMAKE_CUDA_ARCHITECTURES={arch}", f"-DCMC_CUDA_ARCHITECTURES={arch}-real",
                 "-DCMC_BUILD_TESTS=OFF", "-DCMC_BUILD_PLUGIN_TESTS=ON", f"-DCMAKE_CUDA_COMPILER={_nvcc()}"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    assert _run(configure, log) == 0, log.read_text()[-4000:]
    text = log.read_text()
    assert f"TensorRT {header_version(include_dir)} headers" in text, text[-2000:]
    assert _run(["cmake", "--build", build, "--target", "cmc_plugin_contract_test", "-j", "2"], log) == 0, \
        log.read_text()[-4000:]
    for lib in ("libcmc_trt_plugins.so", "libcmc_trt_plugins_dynamic.so"):
        assert (build / lib).is_file(), lib
    rc = _run(["ctest", "--test-dir", build, "-R", "cmc_plugin_contract", "--output-on-failure", "-V"], log)
    out = log.read_text()
    assert rc == 0, out[-4000:]
    assert " 0 failed" in out


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_configure_without_tensorrt_skips_plugins_with_a_message(tmp_path):
    """Without TensorRT headers the plugin targets are skipped with a clear message (kernels unaffected)."""
    if not (SRC / "CMakeLists.txt").is_file():
        pytest.skip("trt_plugins/CMakeLists.txt missing")
    env = {k: v for k, v in os.environ.items() if k not in ("TENSORRT_INCLUDE_DIR", "TENSORRT_ROOT")}
    build = tmp_path / "build"
    # Ignore the system folders, so that system-wide headers (if any) are not picked up.
    cmd = ["cmake", "-S", str(SRC), "-B", str(build), "-DCMC_WITH_CUDA=OFF", "-DCMC_BUILD_TESTS=OFF",
           "-DCMAKE_IGNORE_PREFIX_PATH=/usr;/usr/local", "-DCMAKE_IGNORE_PATH=/usr/include/aarch64-linux-gnu;"
           "/usr/include/x86_64-linux-gnu;/usr/include;/usr/local/tensorrt/include"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert "SKIPPED" in out and "TensorRT" in out, out[-3000:]
