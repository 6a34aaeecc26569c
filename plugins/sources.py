"""Where the C++/CUDA sources (trt_plugins/) are, for the builds cmc runs itself.

One answer for every caller (the PyTorch CUDA binding, the TensorRT plugin library build):
$CMC_TRT_PLUGINS_DIR if set, else the ``cmc.trt_plugins`` data package — the repository's
trt_plugins/ folder in an editable install, its installed copy otherwise. The contracts sit beside it
(``cmc.plugins``), at the same relative place ``../plugins`` in both layouts.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

ENV = "CMC_TRT_PLUGINS_DIR"


def trt_plugins_dir() -> Path:
    env = os.environ.get(ENV)
    if env:
        return Path(env)
    spec = importlib.util.find_spec("cmc.trt_plugins")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(__file__).resolve().parents[1] / "trt_plugins"


def contracts_dir() -> Path:
    return Path(__file__).resolve().parent
