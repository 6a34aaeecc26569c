"""Builds and loads the PyTorch binding of the trt_plugins CUDA kernels, on demand.

``load()`` returns the compiled extension module, or ``None`` when it cannot exist here; then
``unavailable_reason()`` says why (CPU-only PyTorch, no GPU, no nvcc, sources missing, or the build
error). The first successful call compiles with ``torch.utils.cpp_extension.load`` (ninja; a minute
or two) into PyTorch's extension cache (``TORCH_EXTENSIONS_DIR`` overrides it); later processes
reuse the build. Nothing is built at import time.

Environment:
    CMC_DISABLE_CUDA_KERNELS=1   never load (the ops then run their reference implementations)
    CMC_TRT_PLUGINS_DIR=<dir>    where trt_plugins/ lives (default: cmc.plugins.sources decides)
    CMC_CUDA_KERNELS_VERBOSE=1   show the compiler output
"""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_LOCK = threading.Lock()
_STATE: dict = {}

# Kernel sources, relative to trt_plugins/.
KERNEL_SOURCES = (
    "common/cmc_host.cpp",
    "common/cmc_binary_host.cpp",
    "adder_conv/adder_conv_kernels.cu",
    "binary_conv/binary_conv_kernels.cu",
    "binary_conv/binary_bmma_kernels.cu",
)


def trt_plugins_dir() -> Path:
    """The trt_plugins/ sources, from the project's one locator (cmc.plugins.sources):
    $CMC_TRT_PLUGINS_DIR, else the cmc.trt_plugins data package (checkout or installed copy)."""
    from ..sources import trt_plugins_dir as locate

    return locate()


def kernel_sources() -> tuple[list[Path], Path]:
    """(sources, include dir) of the extension; FileNotFoundError when trt_plugins/ is not there."""
    root = trt_plugins_dir()
    sources = [_HERE / "binding.cpp"] + [root / s for s in KERNEL_SOURCES]
    missing = [str(s) for s in sources if not s.is_file()]
    if missing:
        raise FileNotFoundError(f"cmc kernel sources not found: {', '.join(missing)} "
                                f"(set CMC_TRT_PLUGINS_DIR to the trt_plugins folder)")
    return sources, root / "common"


def _source_digest(sources: list[Path], include: Path) -> str:
    """Hash of every source and header (those beside each source too), so that an edited header
    gives a fresh build."""
    h = hashlib.sha256()
    folders = {include} | {s.parent for s in sources}
    files = sorted(set(sources) | {p for d in folders for p in d.iterdir() if p.suffix in (".h", ".cuh")})
    for p in files:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def _try_load(verbose: bool):
    if os.environ.get("CMC_DISABLE_CUDA_KERNELS", "") not in ("", "0"):
        return None, "disabled by CMC_DISABLE_CUDA_KERNELS"
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is a dependency
        return None, f"PyTorch is not importable: {e}"
    if torch.version.cuda is None:
        return None, f"PyTorch {torch.__version__} is a CPU-only build (torch.version.cuda is None)"
    if not torch.cuda.is_available():
        return None, "torch.cuda.is_available() is False: no CUDA GPU or driver"
    from torch.utils import cpp_extension

    if cpp_extension.CUDA_HOME is None:
        return None, "no CUDA toolkit found for building the extension (install nvcc or set CUDA_HOME)"
    nvcc = Path(cpp_extension.CUDA_HOME) / "bin" / "nvcc"
    if not nvcc.exists():
        return None, f"nvcc not found at {nvcc} (set CUDA_HOME to a CUDA toolkit)"
    try:
        sources, include = kernel_sources()
    except FileNotFoundError as e:
        return None, str(e)
    name = f"cmc_cuda_kernels_{_source_digest(sources, include)}"
    try:
        mod = cpp_extension.load(
            name=name,
            sources=[str(s) for s in sources],
            extra_include_paths=[str(include)],
            extra_cflags=["-O3"],
            extra_cuda_cflags=["-O3", "-lineinfo"],  # torch adds its own -std (C++20 in 2.13)
            verbose=verbose,
        )
    except Exception as e:  # compiler errors, missing ninja, ...
        return None, f"building the CUDA extension failed: {type(e).__name__}: {e}"
    return mod, None


def load(verbose: bool | None = None):
    """The extension module, or None (see unavailable_reason()). Cached per process."""
    if "done" in _STATE:
        return _STATE["module"]
    with _LOCK:
        if "done" not in _STATE:
            if verbose is None:
                verbose = os.environ.get("CMC_CUDA_KERNELS_VERBOSE", "") not in ("", "0")
            mod, reason = _try_load(verbose)
            _STATE.update(module=mod, reason=reason, done=True)
    return _STATE["module"]


def unavailable_reason() -> str | None:
    """None when load() gives the module, else a sentence saying why it cannot."""
    load()
    return _STATE["reason"]


def _reset_for_tests() -> None:
    _STATE.clear()
