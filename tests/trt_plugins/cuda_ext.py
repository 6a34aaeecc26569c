"""The PyTorch CUDA extension for the GPU tests: loaded, or the test skips with the reason (fails where a
GPU is present but the extension did not build)."""
import pytest


def load_extension():
    loader = pytest.importorskip(
        "cmc.plugins._cuda", reason="cmc.plugins._cuda is not installed (pyproject.toml must list it)").loader
    mod = loader.load()
    if mod is None:
        reason = loader.unavailable_reason()
        if reason.startswith("building the CUDA extension failed"):
            pytest.fail(f"a CUDA GPU is present but the cmc extension did not build: {reason}")
        pytest.skip(f"cmc CUDA extension unavailable: {reason}")
    return mod
