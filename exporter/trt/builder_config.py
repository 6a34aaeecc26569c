"""The TensorRT builder settings cmc chooses, one function per decision (each tested against a recording
stand-in for ``tensorrt`` in tests/exporter/test_trt_builder_calls.py).

* Network: FP16 engines are built from cmc's FP16 ONNX as a *strongly typed* network on every version
  (11.x: always; 10.x: NetworkDefinitionCreationFlag.STRONGLY_TYPED, and no BuilderFlag.FP16, which
  strongly typed networks do not take). FP32 engines: a plain network from the FP32 ONNX.
* TF32: TensorRT enables BuilderFlag.TF32 by default, letting float32 convolutions and matrix
  products round their inputs to 10-bit mantissas. cmc clears it unless asked (``tf32=True``,
  ``--tf32``): an "FP32" engine computes in float32, and an FP16 engine's float32 islands stay float32.
* Parser flags: none. Each plugin node carries ``plugin_namespace`` (prepare_onnx_for_trt), which
  selects the plugin on every parser version; ENABLE_PLUGIN_OVERRIDE would also let any registered
  creator named like a standard ONNX op (TensorRT's own ScatterND plugin, for one) replace the
  built-in importer of that op.
* Timing cache: the result of set_timing_cache is checked; a cache TensorRT refuses (another GPU or
  TensorRT version) or cannot read is reported on stderr with TensorRT's reason, and a fresh cache is
  used and written instead of the old blob.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import CmcError


def trt_major(trt) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError:
        return 0


def network_flags(trt, strongly_typed: bool) -> int:
    """Flags for Builder.create_network: STRONGLY_TYPED on 10.x when asked; 0 on 11.x (always strongly typed)."""
    if not strongly_typed or trt_major(trt) >= 11:
        return 0
    flag = getattr(getattr(trt, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED", None)
    if flag is None:
        raise CmcError(f"TensorRT {trt.__version__} cannot build strongly typed networks, which cmc's FP16 "
                       f"engines are; use TensorRT 10.0 or later, or build in FP32")
    return 1 << int(flag)


def set_tf32(trt, config, enabled: bool) -> bool:
    """Set or clear BuilderFlag.TF32 (enabled by TensorRT's default); returns the state set."""
    flag = getattr(trt.BuilderFlag, "TF32", None)
    if flag is None:
        return False
    if enabled:
        config.set_flag(flag)
    else:
        config.clear_flag(flag)
    return bool(enabled)


def _new_errors(logger, since: int) -> str | None:
    errs = logger.errors[since:]
    del logger.errors[since:]  # not a build error: keep them out of later "could not build" messages
    return "; ".join(errs) if errs else None


def check_timing_cache_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise CmcError(f"the timing cache {path} is a folder; give a file name (the file is created when missing)")
    return path


def attach_timing_cache(config, path: str | Path, logger) -> tuple[object, dict]:
    """Read ``path`` (if it exists) into a timing cache the builder uses; returns (cache, facts).

    facts: {"path", "used_existing": bool, "rejected": reason or None}. A cache TensorRT refuses or cannot
    read is not used (a warning names the reason) and a fresh one takes its place, so the file written
    after the build is a cache this build produced.
    """
    path = check_timing_cache_path(path)
    blob = path.read_bytes() if path.is_file() else b""
    facts = {"path": str(path), "used_existing": False, "rejected": None}
    if blob:
        n = len(logger.errors)
        try:
            cache = config.create_timing_cache(blob)
        except Exception as e:  # noqa: BLE001 - the bindings raise on some unreadable blobs
            cache, reason = None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        else:
            reason = None
        if cache is None:
            facts["rejected"] = reason or _new_errors(logger, n) or "TensorRT cannot read it as a timing cache"
        elif not config.set_timing_cache(cache, False):
            facts["rejected"] = _new_errors(logger, n) or ("TensorRT refused it: it was written on another GPU "
                                                           "or TensorRT version")
        else:
            _new_errors(logger, n)
            facts["used_existing"] = True
            return cache, facts
        print(f"cmc: warning: timing cache {path} not used ({facts['rejected']}); building without it and "
              f"writing a fresh cache there", file=sys.stderr)
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, False):
        raise CmcError(f"TensorRT did not accept a new empty timing cache for {path}; build without --timing-cache")
    return cache, facts
