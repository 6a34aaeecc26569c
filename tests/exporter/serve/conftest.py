"""Fixtures for the Triton tests: cmc's Triton environment (created once, cached), the quick-start AdderNet
and the BNN NIN sample exported --to triton, and a real Triton server on their Python-backend models.

The environment lives in $CMC_TRITON_ENV or ~/.cache/cmc/triton-env (``cmc serve --install-triton``;
about 40 s the first time on a 2-core machine, a check of a marker file after that). Where it cannot be
created the tests fail with pip's reason: they are part of CI. CMC_SKIP_TRITON=1 skips them, saying so.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cmc.exporter.serve import environment
from cmc.exporter.serve.launcher import start_server

HERE = Path(__file__).resolve().parent
SAMPLES = {"addernet_resnet20": "samples.addernet_resnet20:resnet20", "bnn_nin": "samples.bnn_nin:nin"}


def shm_segments() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line mentions ``text`` (a test's own temporary path)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if text in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
                    if stat[0] != "Z":
                        out.append(int(d.name))
            except OSError:
                continue
    return out


@pytest.fixture(scope="session")
def triton_env():
    if os.environ.get("CMC_SKIP_TRITON") == "1":
        pytest.skip("CMC_SKIP_TRITON=1: the Triton environment was not created")
    return environment.install(log=lambda m: print(m, file=sys.stderr))


@pytest.fixture(scope="session")
def exported(checkpoints, tmp_path_factory):
    """{sample: (checkpoint, output folder)} exported with --to onnx,triton (default batch range 1:8:32)."""
    from cmc.exporter.pipeline import ExportOptions, run_export

    root = tmp_path_factory.mktemp("triton_export")
    out = {}
    for name, arch in SAMPLES.items():
        ckpt = checkpoints[name]
        d = root / name
        run_export(ExportOptions(model=str(ckpt), arch=arch, input_shape=(1, 3, 32, 32), out_dir=str(d),
                                 to="onnx,triton", verify_batches=(1,), triton={"device": "cpu"}))
        out[name] = (ckpt, d)
    return out


@pytest.fixture(scope="session")
def served_repository(exported, tmp_path_factory):
    """One repository with both samples' Python-backend models (the server loads a whole repository)."""
    repo = tmp_path_factory.mktemp("served") / "model_repository"
    repo.mkdir()
    for name, (_, d) in exported.items():
        shutil.copytree(d / "model_repository" / f"{name}_python", repo / f"{name}_python")
    return repo


@pytest.fixture(scope="module")
def server(triton_env, served_repository, tmp_path_factory):
    """A running Triton server on 127.0.0.1, stopped in teardown; nothing of it may outlive the stop."""
    shm_before = shm_segments()
    log = tmp_path_factory.mktemp("triton_log") / "triton.log"
    srv = start_server(triton_env, served_repository, host="127.0.0.1", log_path=log)
    try:
        yield srv
    finally:
        done = srv.stop()
        assert done["processes_left"] == [], done
        assert not processes_mentioning(str(served_repository)), "a server process outlived the stop"
        leaked = {s for s in shm_segments() - shm_before if s.startswith("triton_python_backend")}
        assert not leaked, f"shared memory left behind: {leaked}"


def run_in_triton_env(triton_env, script: Path, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a client-side helper in the Triton environment's Python (tritonclient lives there, not in cmc's)."""
    return subprocess.run([str(triton_env.client_python), str(script), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)
