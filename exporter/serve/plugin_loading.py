"""Does a self-registering plugin library load the way Triton loads it?

Triton loads custom TensorRT plugins either by ``LD_PRELOAD`` (before tritonserver's own libraries;
tritonserver does not link TensorRT) or through the TensorRT backend's ``dlopen(RTLD_LOCAL)``. In both,
a library whose static initialiser calls ``getPluginRegistry()`` finds that symbol only if the library
itself links libnvinfer: left unresolved, loading fails with "undefined symbol: getPluginRegistry".
The check loads the library in a fresh process exactly so (RTLD_NOW | RTLD_LOCAL, nothing preloaded).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_LOADER = ("import ctypes, os, sys\n"
           "try:\n"
           "    ctypes.CDLL(sys.argv[1], mode=os.RTLD_NOW | os.RTLD_LOCAL)\n"
           "except OSError as e:\n"
           "    print(str(e)); sys.exit(1)\n")


def plugin_load_problem(library: str | os.PathLike, library_path: str | None = None, timeout: float = 60) -> str | None:
    """None when the library loads by itself; otherwise the loader's reason (one line)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if library_path is not None:
        env["LD_LIBRARY_PATH"] = library_path
    r = subprocess.run([sys.executable, "-c", _LOADER, str(Path(library).resolve())], env=env,
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode == 0:
        return None
    reason = (r.stdout.strip() or r.stderr.strip() or f"exit code {r.returncode}").splitlines()[-1]
    if "getPluginRegistry" in reason:
        reason += (" (the library leaves TensorRT's getPluginRegistry to the loading process: rebuild it linked "
                   "against libnvinfer, e.g. with TENSORRT_LIB_DIR set for CMake)")
    return reason
