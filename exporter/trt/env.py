"""Locating TensorRT: the Python package, the C++ headers (to build cmc's plugin library) and libnvinfer.

Nothing here imports ``tensorrt`` at module import time; :func:`find_tensorrt` does, and raises
:class:`cmc.exporter.errors.CmcError` with one line naming what is missing and how to get it.
"""
from __future__ import annotations

import glob
import importlib
import importlib.util
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import CmcError

HEADER = "NvInferRuntime.h"
VERSION_HEADER = "NvInferVersion.h"

# Where distributions put the headers when no variable says otherwise (JetPack first).
SYSTEM_INCLUDE_DIRS = (
    "/usr/include/aarch64-linux-gnu",  # JetPack / L4T (nvidia-tensorrt-dev, libnvinfer-dev)
    "/usr/include/x86_64-linux-gnu",   # Debian/Ubuntu libnvinfer-dev
    "/usr/local/tensorrt/include",
    "/usr/include",
)
SYSTEM_LIB_DIRS = (
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/local/tensorrt/lib",
)

HOW_TO_GET_PYTHON = ("install it with `pip install tensorrt` (x86_64/SBSA), or on Jetson use JetPack's "
                     "`sudo apt install python3-libnvinfer` (and create your venv with --system-site-packages)")
HOW_TO_GET_HEADERS = ("set TENSORRT_INCLUDE_DIR=<dir with NvInferRuntime.h> or TENSORRT_ROOT=<TensorRT tar dir>, "
                      "install `libnvinfer-dev` (JetPack: `sudo apt install nvidia-tensorrt-dev`), "
                      "or pass a prebuilt plugin library (--plugin-lib)")


@dataclass
class TensorRTEnv:
    """What :func:`find_tensorrt` found. ``include_dir`` is None when headers were not required and not found."""

    python_version: str | None
    python_module_path: str | None
    include_dir: str | None
    header_version: str | None
    lib_dir: str | None
    include_source: str | None = None  # which rule found the headers (env var, system path, pip package)
    notes: list[str] = field(default_factory=list)

    @property
    def major(self) -> int | None:
        v = self.python_version or self.header_version
        return int(v.split(".")[0]) if v else None

    def to_dict(self) -> dict:
        return asdict(self)


def header_version(include_dir: str | os.PathLike) -> str | None:
    """'MAJOR.MINOR.PATCH' from NvInferVersion.h (10.x defines NV_TENSORRT_*, 11.x TRT_*_ENTERPRISE)."""
    path = Path(include_dir) / VERSION_HEADER
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    parts = []
    for part in ("MAJOR", "MINOR", "PATCH"):
        m = (re.search(rf"^#define\s+TRT_{part}_ENTERPRISE\s+(\d+)", text, re.M)
             or re.search(rf"^#define\s+NV_TENSORRT_{part}\s+(\d+)", text, re.M))
        if not m:
            return None
        parts.append(m.group(1))
    return ".".join(parts)


def _has_headers(d: str | os.PathLike | None) -> bool:
    return bool(d) and (Path(d) / HEADER).is_file() and (Path(d) / VERSION_HEADER).is_file()


def _site_dirs() -> list[Path]:
    out = []
    for p in sys.path:
        if p and os.path.isdir(p) and ("site-packages" in p or "dist-packages" in p):
            out.append(Path(p))
    return out


def _pip_include_dirs(module_path: str | None) -> list[str]:
    """Include dirs shipped inside pip packages (tensorrt, tensorrt_libs, tensorrt-cu*-libs layouts)."""
    roots = []
    if module_path:
        roots.append(Path(module_path).parent)
    for site in _site_dirs():
        roots.extend(Path(p) for p in glob.glob(str(site / "tensorrt*")))
    dirs = []
    for r in roots:
        for cand in (r / "include", r / "include" / "tensorrt"):
            if _has_headers(cand) and str(cand) not in dirs:
                dirs.append(str(cand))
    return dirs


def _header_candidates(module_path: str | None) -> list[tuple[str, str]]:
    """(dir, source) in search order."""
    cands: list[tuple[str, str]] = []
    env_inc = os.environ.get("TENSORRT_INCLUDE_DIR")
    if env_inc:
        cands.append((env_inc, "TENSORRT_INCLUDE_DIR"))
    root = os.environ.get("TENSORRT_ROOT")
    if root:
        cands.append((os.path.join(root, "include"), "TENSORRT_ROOT"))
    cands.extend((d, "system") for d in SYSTEM_INCLUDE_DIRS)
    cands.extend((d, "pip package") for d in _pip_include_dirs(module_path))
    return cands


def _find_lib_dir(module_path: str | None, major: int | None) -> str | None:
    names = ["libnvinfer.so"] + ([f"libnvinfer.so.{major}"] if major else [])
    dirs = []
    if os.environ.get("TENSORRT_LIB_DIR"):
        dirs.append(os.environ["TENSORRT_LIB_DIR"])
    if os.environ.get("TENSORRT_ROOT"):
        dirs += [os.path.join(os.environ["TENSORRT_ROOT"], "lib"), os.path.join(os.environ["TENSORRT_ROOT"], "lib64")]
    dirs += list(SYSTEM_LIB_DIRS)
    for site in _site_dirs():
        dirs += glob.glob(str(site / "tensorrt_libs")) + glob.glob(str(site / "tensorrt_cu*_libs"))
    if module_path:
        dirs.append(str(Path(module_path).parent))
    for d in dirs:
        for n in names:
            if os.path.exists(os.path.join(d, n)):
                return d
    return None


def _import_tensorrt():
    try:
        return importlib.import_module("tensorrt")
    except ImportError as e:  # also covers a broken install whose libnvinfer is missing
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CmcError(f"TensorRT Python package not importable ({detail}): {HOW_TO_GET_PYTHON}") from None


def find_tensorrt(need_python: bool = True, need_headers: bool = True) -> TensorRTEnv:
    """Locate TensorRT for ``--to trt``.

    need_python: the ``tensorrt`` package must import (engine build, runner).
    need_headers: the C++ headers must be found (to compile the plugin library; not needed with a
    prebuilt ``plugin_lib``). Search order: $TENSORRT_INCLUDE_DIR, $TENSORRT_ROOT/include,
    /usr/include/aarch64-linux-gnu (JetPack), /usr/include/x86_64-linux-gnu, /usr/local/tensorrt/include,
    /usr/include, then include/ folders inside the pip packages.

    Raises CmcError (one line: what is missing and how to get it).
    """
    trt_version = module_path = None
    if need_python:
        trt = _import_tensorrt()
        trt_version = str(getattr(trt, "__version__", "")) or None
        module_path = getattr(trt, "__file__", None)
        if trt_version is None:
            raise CmcError(f"the module imported as `tensorrt` ({module_path}) has no __version__: is another "
                           f"package shadowing TensorRT? {HOW_TO_GET_PYTHON}")
    else:
        spec = importlib.util.find_spec("tensorrt")
        module_path = spec.origin if spec is not None else None

    include_dir = inc_version = source = None
    tried = []
    for d, src in _header_candidates(module_path):
        tried.append(d)
        if _has_headers(d):
            include_dir, source, inc_version = str(Path(d).resolve()), src, header_version(d)
            break
    if src_env := os.environ.get("TENSORRT_INCLUDE_DIR"):
        if not _has_headers(src_env) and need_headers:
            raise CmcError(f"TENSORRT_INCLUDE_DIR={src_env} has no {HEADER}/{VERSION_HEADER}: "
                           f"point it at the folder that holds the TensorRT headers")
    if include_dir is None and need_headers:
        raise CmcError(f"TensorRT C++ headers ({HEADER}) not found (looked in {', '.join(tried[:6])}, ...): "
                       f"{HOW_TO_GET_HEADERS}")
    notes = []
    if trt_version and inc_version and trt_version.split(".")[0] != inc_version.split(".")[0]:
        msg = (f"TensorRT headers {inc_version} ({include_dir}) and the Python package {trt_version} differ in major "
               f"version: a plugin library built against those headers cannot load; point TENSORRT_INCLUDE_DIR at "
               f"the {trt_version.split('.')[0]}.x headers")
        if need_headers:
            raise CmcError(msg)
        notes.append(msg)
    major = int((trt_version or inc_version or "0").split(".")[0]) or None
    return TensorRTEnv(
        python_version=trt_version,
        python_module_path=module_path,
        include_dir=include_dir,
        header_version=inc_version,
        lib_dir=_find_lib_dir(module_path, major),
        include_source=source,
        notes=notes,
    )
