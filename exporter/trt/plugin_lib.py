"""cmc's TensorRT plugin library: building it for the local GPU (cached) and loading it into TensorRT.

Two variants come out of one build (see trt_plugins/TENSORRT.md):
  libcmc_trt_plugins.so          registers its creators when loaded (dlopen/ctypes, Polygraphy --plugins)
  libcmc_trt_plugins_dynamic.so  exports getCreators for IPluginRegistry.load_library / trtexec --dynamicPlugins
The Python backend loads the dynamic one through ``trt.get_plugin_registry().load_library`` (it needs no
libnvinfer symbol, so it loads whatever way the bindings loaded libnvinfer).
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import CmcError
from .env import TensorRTEnv

STATIC_LIB = "libcmc_trt_plugins.so"
DYNAMIC_LIB = "libcmc_trt_plugins_dynamic.so"

def plugin_source_dir() -> Path:
    """trt_plugins/ (the CMake project), located by cmc.plugins.sources ($CMC_TRT_PLUGINS_DIR overrides)."""
    from cmc.plugins.sources import ENV, trt_plugins_dir

    cand = trt_plugins_dir()
    if not (cand / "CMakeLists.txt").is_file() or not (cand / "cmake" / "plugins.cmake").is_file():
        raise CmcError(f"cmc plugin sources not found at {cand}: set {ENV} to a cmc checkout's "
                       f"trt_plugins/ folder, or pass a prebuilt plugin library (--plugin-lib)")
    return cand


def contracts_dir() -> Path:
    from cmc.plugins.sources import contracts_dir as _contracts

    return _contracts()


def local_cuda_arch() -> str:
    """Compute capability of GPU 0 as CMake wants it ('87' for Jetson Orin). $CMC_CUDA_ARCH overrides."""
    if os.environ.get("CMC_CUDA_ARCH"):
        return os.environ["CMC_CUDA_ARCH"].replace(".", "")
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return f"{major}{minor}"
    except Exception:  # noqa: BLE001 - any torch/CUDA problem: try the next way
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=30)
            first = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
            if first and first.replace(".", "").isdigit():
                return first.replace(".", "")
        except (OSError, subprocess.SubprocessError):
            pass
    if platform.machine() == "aarch64" and Path("/etc/nv_tegra_release").exists():
        return "87"  # JetPack 6 runs on Orin only (sm_87)
    raise CmcError("cannot tell the local GPU's compute capability (no CUDA torch, no nvidia-smi): set CMC_CUDA_ARCH, "
                   "e.g. CMC_CUDA_ARCH=87 for Jetson Orin")


def cache_root() -> Path:
    if os.environ.get("CMC_CACHE_DIR"):
        return Path(os.environ["CMC_CACHE_DIR"]) / "trt_plugins"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cmc" / "trt_plugins"


def _nvcc() -> str | None:
    for cand in (os.environ.get("CUDACXX"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def _source_digest(src: Path, contracts: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix in {".h", ".cuh", ".cpp", ".cu", ".cmake", ".txt"}
                   and not p.relative_to(src).parts[0].startswith("build"))
    files += sorted(contracts.glob("*/contract.json"))
    for p in files:
        h.update(str(p.name).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def cmake_configure_command(src: Path, build_dir: Path, env: TensorRTEnv, arch: str) -> list[str]:
    cmd = [
        "cmake", "-S", str(src), "-B", str(build_dir),
        "-DCMAKE_BUILD_TYPE=Release",
        f"-DTENSORRT_INCLUDE_DIR={env.include_dir}",
        f"-DCMAKE_CUDA_ARCHITECTURES={arch}",
        f"-DCMC_CUDA_ARCHITECTURES={arch}-real",
        f"-DCMC_CONTRACTS_DIR={contracts_dir()}",
        "-DCMC_BUILD_TESTS=OFF",
        "-DCMC_BUILD_PLUGIN_TESTS=OFF",
        "-DCMC_WITH_CUDA=ON",
    ]
    if env.lib_dir:
        cmd.append(f"-DTENSORRT_LIB_DIR={env.lib_dir}")
    nvcc = _nvcc()
    if nvcc:
        cmd.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
    return cmd


def _run(cmd: list[str], log, cwd=None):
    log.write(("$ " + " ".join(cmd) + "\n").encode())
    log.flush()
    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    return proc.returncode


def _last_error(log_path: Path) -> str:
    lines = log_path.read_text(errors="replace").splitlines()
    for line in reversed(lines):
        if "error" in line.lower():
            return line.strip()[:300]
    return lines[-1].strip()[:300] if lines else "no output"


def build_plugin_library(env: TensorRTEnv, *, arch: str | None = None, variant: str = "dynamic",
                         cache_dir: str | os.PathLike | None = None, rebuild: bool = False, jobs: int | None = None) -> Path:
    """Build (once per sources/TensorRT/GPU) both plugin library variants into the cache; return one.

    variant: "dynamic" (getCreators, for load_library/trtexec --dynamicPlugins) or "static"
    (self-registering, for ctypes/Polygraphy --plugins). The cache key covers the plugin sources, the
    contracts, the TensorRT header version and path, and the GPU architecture.
    """
    if variant not in ("dynamic", "static"):
        raise ValueError(f"variant must be 'dynamic' or 'static', not {variant!r}")
    if not env.include_dir:
        raise CmcError("building the cmc plugin library needs the TensorRT C++ headers: set TENSORRT_INCLUDE_DIR "
                       "or pass a prebuilt plugin library (--plugin-lib)")
    arch = (arch or local_cuda_arch()).replace(".", "")
    src = plugin_source_dir()
    digest = _source_digest(src, contracts_dir())
    key = hashlib.sha256(f"{digest}|{env.header_version}|{env.include_dir}|{env.lib_dir}|{arch}".encode()).hexdigest()[:16]
    root = Path(cache_dir) if cache_dir else cache_root()
    final = root / f"trt{env.header_version}-sm{arch}-{key}"
    name = DYNAMIC_LIB if variant == "dynamic" else STATIC_LIB
    if (final / name).is_file() and not rebuild:
        return final / name

    if shutil.which("cmake") is None:
        raise CmcError("building the cmc plugin library needs cmake (>= 3.25): `pip install cmake` or "
                       "`apt install cmake`, or pass a prebuilt plugin library (--plugin-lib)")
    if _nvcc() is None:
        raise CmcError("building the cmc plugin library needs nvcc (the CUDA toolkit; JetPack: "
                       "`sudo apt install cuda-toolkit-12-6` or nvidia-jetpack), or pass a prebuilt plugin library (--plugin-lib)")
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    log_path = root / f"build-{key}.log"
    try:
        with open(log_path, "wb") as log:
            rc = _run(cmake_configure_command(src, work / "build", env, arch), log)
            if rc == 0:
                rc = _run(["cmake", "--build", str(work / "build"), "--target", "cmc_trt_plugins",
                           "cmc_trt_plugins_dynamic", "-j", str(jobs or os.cpu_count() or 2)], log)
        if rc != 0:
            raise CmcError(f"building the cmc plugin library failed ({_last_error(log_path)}); full log: {log_path}")
        out = work / "out"
        out.mkdir()
        for lib in (STATIC_LIB, DYNAMIC_LIB):
            built = work / "build" / lib
            if not built.is_file():
                raise CmcError(f"the plugin build finished without {lib}; full log: {log_path}")
            shutil.copy2(built, out / lib)
        (out / "build_info.json").write_text(json.dumps({
            "tensorrt_headers": env.header_version, "include_dir": env.include_dir, "lib_dir": env.lib_dir,
            "cuda_arch": arch, "sources": str(src), "source_digest": digest}, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(out, final)  # atomic: a half-built library is never visible in the cache
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final / name


def _plugin_keys():
    from .onnx_prep import plugin_contracts

    return [(c.plugin["name"], str(c.plugin["version"]), c.plugin["namespace"]) for c in plugin_contracts().values()]


def _registered(registry) -> list[tuple[str, str, str]]:
    get = getattr(registry, "get_creator", None) or getattr(registry, "get_plugin_creator")
    return [k for k in _plugin_keys() if get(*k) is not None]


_LOADED: dict[str, object] = {}


def load_plugin_library(path: str | os.PathLike) -> dict:
    """Make cmc's plugin creators available to TensorRT in this process (idempotent).

    Accepts either variant: a library exporting getCreators goes through
    ``trt.get_plugin_registry().load_library``; the self-registering one is loaded with ctypes.
    """
    import tensorrt as trt

    path = str(Path(path).resolve())
    if not os.path.isfile(path):
        raise CmcError(f"plugin library {path} does not exist")
    registry = trt.get_plugin_registry()
    keys = _plugin_keys()
    if len(_registered(registry)) == len(keys):
        return {"path": path, "how": "already registered"}
    try:
        handle = ctypes.CDLL(path, mode=getattr(os, "RTLD_GLOBAL", 0) | getattr(os, "RTLD_NOW", 2))
    except OSError as e:
        raise CmcError(f"cannot load plugin library {path} ({str(e).splitlines()[0]}); with the TensorRT Python "
                       f"bindings use {DYNAMIC_LIB}, which needs no libnvinfer symbols") from None
    _LOADED[path] = handle
    how = "self-registered on load"
    if hasattr(handle, "getCreators") and len(_registered(registry)) < len(keys):
        if not registry.load_library(path):
            raise CmcError(f"TensorRT's IPluginRegistry.load_library({path}) failed (creators registered by another "
                           f"copy of the library?)")
        how = "IPluginRegistry.load_library"
    missing = [k for k in keys if k not in _registered(registry)]
    if missing:
        raise CmcError(f"plugin library {path} did not register {', '.join(f'{ns}::{n} v{v}' for n, v, ns in missing)}")
    return {"path": path, "how": how}
