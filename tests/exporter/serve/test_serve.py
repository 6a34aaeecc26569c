"""`cmc serve` on a real Triton server (the nvidia-pytriton wheel's tritonserver, in cmc's Triton
environment): start, parity over HTTP and gRPC at batch 1, 5 and 16 for the quick-start AdderNet and the
BNN NIN sample, a clean stop on SIGTERM; and the start-up failures, each one line with nothing left running."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cmc.exporter.serve.wire_check import run_check

from .conftest import SAMPLES, processes_mentioning, shm_segments


def cmc_serve(*args, env_dir=None) -> list[str]:
    return [sys.executable, "-m", "cmc.exporter.serve.cli", "serve", *map(str, args)]


def _env(triton_env):
    return dict(os.environ, CMC_TRITON_ENV=str(triton_env.client_python.parent.parent))


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return json.loads(path.read_text())
        if proc.poll() is not None:
            raise AssertionError(f"cmc serve exited {proc.returncode}: {proc.stderr.read()}")
        time.sleep(0.2)
    raise AssertionError("cmc serve was not ready in time")


def test_cmc_serve_check_and_stop(triton_env, exported, served_repository, tmp_path):
    shm_before = shm_segments()
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(cmc_serve(served_repository, "--ready-file", ready), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(triton_env))
    try:
        info = wait_for(ready, proc)
        http, grpc = info["endpoints"]["http"], info["endpoints"]["grpc"]
        assert http.startswith("http://127.0.0.1:") and grpc.startswith("127.0.0.1:")
        assert sorted(info["models"]) == sorted(f"{n}_python" for n in SAMPLES)
        for name, arch in SAMPLES.items():
            ckpt, _ = exported[name]
            js, xml = tmp_path / f"{name}.json", tmp_path / f"{name}.xml"
            onnx_path = served_repository / f"{name}_python" / "1" / "model.onnx"
            rc = run_check(http, f"{name}_python", str(ckpt), arch=arch, grpc_url=grpc, batches=(1, 5, 16),
                           json_path=str(js), junit_path=str(xml), onnx_path=str(onnx_path))
            verdict = json.loads(js.read_text())
            assert rc == 0 and verdict["passed"], verdict
            assert {(c["protocol"], c["batch"]) for c in verdict["cases"]} == {
                (p, b) for p in ("http", "grpc") for b in (1, 5, 16)}
            for c in verdict["cases"]:
                for o in c["outputs"].values():  # direct, or equal to the artifact that passed with flips forced
                    assert o["rel_err"] <= verdict["tolerance"] or (
                        o["rel_err_vs_artifact"] <= verdict["tolerance"] and o["artifact_rounding_flips_forced"] > 0)
            if name == "addernet_resnet20":  # no binarization: every response is at PyTorch's tolerance directly
                assert all(o["rule"] == "PyTorch directly" for c in verdict["cases"] for o in c["outputs"].values())
            suite = ET.parse(xml).getroot().find("testsuite")
            assert suite.get("tests") == "6" and suite.get("failures") == "0"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err
    assert "nothing left running" in err
    assert not processes_mentioning(str(served_repository))
    assert not {s for s in shm_segments() - shm_before if s.startswith("triton_python_backend")}


def test_check_detects_a_wrong_model(triton_env, exported, server, tmp_path):
    """The wire check can fail: the AdderNet checkpoint against the BNN model's server answers (exit 3)."""
    e = server.endpoints.to_dict()
    ckpt, _ = exported["addernet_resnet20"]
    rc = run_check(e["http"], "bnn_nin_python", str(ckpt), arch=SAMPLES["addernet_resnet20"], batches=(1,),
                   json_path=str(tmp_path / "v.json"), junit_path=str(tmp_path / "v.xml"))
    assert rc == 3
    assert json.loads((tmp_path / "v.json").read_text())["passed"] is False


def _fails_cleanly(triton_env, args, marker: str, must_say: str):
    before = set(processes_mentioning(marker))
    r = subprocess.run(cmc_serve(*args), capture_output=True, text=True, timeout=120, env=_env(triton_env))
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("cmc serve: error:")]
    assert r.returncode != 0, r.stderr
    assert len(lines) == 1 and must_say in lines[0], r.stderr
    assert set(processes_mentioning(marker)) <= before, "a server was left running"
    return lines[0]


def test_taken_port(triton_env, served_repository):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        _fails_cleanly(triton_env, [served_repository, "--http-port", port], str(served_repository),
                       f"--http-port {port}: the port is taken")


def test_missing_backend(triton_env, exported):
    _, d = exported["addernet_resnet20"]
    repo = d / "model_repository"
    _fails_cleanly(triton_env, [repo, "--model", "addernet_resnet20_onnxruntime"], str(repo),
                   "needs Triton's 'onnxruntime' backend, which this server lacks")


def test_model_that_fails_to_load(triton_env, exported, tmp_path):
    repo = tmp_path / "broken_repository"
    _, d = exported["bnn_nin"]
    shutil.copytree(d / "model_repository" / "bnn_nin_python", repo / "bnn_nin_python")
    (repo / "bnn_nin_python" / "1" / "model.onnx").write_bytes(b"not an onnx model")
    line = _fails_cleanly(triton_env, [repo], str(repo), "Triton exited during start-up")
    assert "failed to load 'bnn_nin_python'" in line and "INVALID_PROTOBUF" in line, line


def test_no_server_anywhere(tmp_path):
    r = subprocess.run(cmc_serve(tmp_path, "--env", tmp_path / "nothing"), capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, PATH="/usr/bin:/bin"))
    assert r.returncode == 2 and "run `cmc serve --install-triton`" in r.stderr, r.stderr


def test_killed_cmc_serve_takes_its_server_along(triton_env, exported, tmp_path):
    """Even SIGKILL of `cmc serve` (no handler runs) stops the server: it gets SIGTERM when its parent dies."""
    repo = tmp_path / "repo"
    _, d = exported["addernet_resnet20"]
    shutil.copytree(d / "model_repository" / "addernet_resnet20_python", repo / "addernet_resnet20_python")
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(cmc_serve(repo, "--ready-file", ready), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(triton_env))
    try:
        wait_for(ready, proc)
        assert processes_mentioning(str(repo))
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while processes_mentioning(str(repo)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not processes_mentioning(str(repo)), "the server outlived a killed cmc serve"
