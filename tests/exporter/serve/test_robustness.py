"""The running server under load and abuse (127.0.0.1 only, every loop bounded): 8 concurrent clients for
10 s with every response at parity, bad requests answered with errors while the server keeps serving, and
the server killed during load: the client sees an error within seconds, and a restart serves again."""
from __future__ import annotations

import json
import signal
import subprocess
import time

import numpy as np
import pytest
import torch

from cmc.exporter.serve.launcher import start_server
from cmc.exporter.serve.wire_check import tolerance_of

from .conftest import HERE, SAMPLES, processes_mentioning, shm_segments

MODEL = "addernet_resnet20_python"


@pytest.fixture(scope="module")
def reference_data(exported, tmp_path_factory):
    """64 inputs and the PyTorch model's outputs for them (the parity every response is held to)."""
    from cmc.exporter.pipeline import ExportOptions, Steps, prepare

    ckpt, _ = exported["addernet_resnet20"]
    ref, _, _, report = prepare(ExportOptions(model=str(ckpt), arch=SAMPLES["addernet_resnet20"],
                                              input_shape=(1, 3, 32, 32), shrink=False), Steps())
    x = np.random.default_rng(7).standard_normal((64, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        y = ref(torch.from_numpy(x)).numpy()
    path = tmp_path_factory.mktemp("load") / "data.npz"
    np.savez(path, input=x, expected=y)
    return path, tolerance_of(report["converted"])


def client(triton_env, *args, timeout=180):
    r = subprocess.run([str(triton_env.client_python), str(HERE / "load_clients.py"), *map(str, args)],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_eight_concurrent_clients_for_ten_seconds(triton_env, server, reference_data):
    data, tol = reference_data
    e = server.endpoints.to_dict()
    res = client(triton_env, "concurrent", e["http"], e["grpc"], MODEL, 10, 8, data, tol)
    assert res["seconds"] >= 10 and res["alive"] == 0
    for i, c in enumerate(res["clients"]):
        assert c["failed"] == 0, (i, c["errors"][:3])
        assert c["ok"] > 0 and c["off"] == 0 and c["worst"] <= tol, (i, c)


def test_bad_requests_get_errors_and_the_server_keeps_serving(triton_env, server):
    e = server.endpoints.to_dict()
    res = client(triton_env, "bad", e["http"], e["grpc"], MODEL, 32)
    answered = {k: v for k, v in res.items() if v is None}
    assert not answered, f"accepted without an error: {answered}"
    assert len(res) == 10
    assert server.proc.poll() is None and server.ready()


def test_server_killed_during_load_then_restart(triton_env, exported, tmp_path):
    _, d = exported["addernet_resnet20"]
    repo = d / "model_repository"
    shm_before = shm_segments()
    srv = start_server(triton_env, repo, models=[MODEL], log_path=tmp_path / "a.log")
    try:
        load = subprocess.Popen([str(triton_env.client_python), str(HERE / "load_clients.py"), "until_error",
                                 srv.endpoints.to_dict()["http"], MODEL, "60"], stdout=subprocess.PIPE, text=True)
        assert json.loads(load.stdout.readline())["started"]
        time.sleep(2)
        killed_at = time.time()
        import os

        os.killpg(srv.proc.pid, signal.SIGKILL)  # the whole server, stubs included, without a clean shutdown
        out, _ = load.communicate(timeout=30)  # the client never hangs
        res = json.loads(out.strip().splitlines()[-1])
        assert res["ok"] > 0 and res["first_error"] is not None
        assert res["first_error"]["at"] - killed_at < 10, res
    finally:
        done = srv.stop()
    assert done["processes_left"] == []
    # The killed stubs could not unlink their shared memory: stop() removes what the group had mapped.
    assert not {s for s in shm_segments() - shm_before if s.startswith("triton_python_backend")}
    srv2 = start_server(triton_env, repo, models=[MODEL], log_path=tmp_path / "b.log")
    try:
        e = srv2.endpoints.to_dict()
        res = client(triton_env, "until_error", e["http"], MODEL, 2)
        assert res["ok"] > 0 and res["first_error"] is None
    finally:
        srv2.stop()
    assert not processes_mentioning(str(repo))
