"""Runs in the Triton environment (tritonclient): client-side loads for the robustness tests. Every loop is
bounded by a deadline and every request by a timeout; results are JSON on stdout.

    load_clients.py concurrent HTTP GRPC MODEL SECONDS CLIENTS DATA.npz TOL
    load_clients.py bad HTTP GRPC MODEL MAX_BATCH
    load_clients.py until_error HTTP MODEL SECONDS
"""
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(sys.argv[0]).resolve().parents[3] / "exporter" / "serve"))
import wire_client as wc  # noqa: E402  (cmc's client helper, by path: cmc itself is not importable here)


def concurrent(http, grpc, model, seconds, clients, data, tol):
    d = np.load(data)
    inputs, expected = d["input"], d["expected"]
    scale = float(np.max(np.abs(expected)))
    stats = [{"ok": 0, "failed": 0, "off": 0, "worst": 0.0, "errors": []} for _ in range(clients)]
    deadline = time.monotonic() + seconds

    def work(i):
        proto = "http" if i % 2 == 0 else "grpc"
        client = wc.http_client(http) if proto == "http" else wc.grpc_client(grpc)
        rng = np.random.default_rng(i)
        s = stats[i]
        while time.monotonic() < deadline:
            b = int(rng.integers(1, 9))
            start = int(rng.integers(0, len(inputs) - b + 1))
            try:
                y = wc.infer_once(proto, client, model, {"input": inputs[start:start + b]}, ["output"], timeout=20)["output"]
            except Exception as e:
                s["failed"] += 1
                s["errors"].append(str(e)[:200])
                continue
            err = float(np.max(np.abs(y.astype(np.float64) - expected[start:start + b]))) / scale
            s["worst"] = max(s["worst"], err)
            s["ok"] += 1
            s["off"] += err > tol

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    return {"seconds": time.monotonic() - t0, "alive": sum(t.is_alive() for t in threads), "clients": stats}


def bad(http, grpc, model, max_batch):
    x = np.zeros((1, 3, 32, 32), np.float32)
    cases = {
        "wrong shape": lambda p, c: wc.infer_once(p, c, model, {"input": np.zeros((1, 3, 16, 16), np.float32)}, ["output"]),
        "wrong dtype": lambda p, c: wc.infer_once(p, c, model, {"input": x.astype(np.float64)}, ["output"]),
        "batch too large": lambda p, c: wc.infer_once(p, c, model, {"input": np.zeros((max_batch + 1, 3, 32, 32), np.float32)}, ["output"]),
        "unknown model": lambda p, c: wc.infer_once(p, c, "no_such_model", {"input": x}, ["output"]),
    }
    out = {}
    for proto, client in (("http", wc.http_client(http)), ("grpc", wc.grpc_client(grpc))):
        for name, call in cases.items():
            try:
                call(proto, client)
                out[f"{proto}: {name}"] = None
            except Exception as e:
                out[f"{proto}: {name}"] = str(e)[:200]
            # the server keeps serving after each bad request
            y = wc.infer_once(proto, client, model, {"input": x}, ["output"])["output"]
            assert y.shape == (1, 10)
    for body in (b"{not json", b'{"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": [1]}]}'):
        req = urllib.request.Request(f"{http}/v2/models/{model}/infer", data=body, method="POST")
        try:
            urllib.request.urlopen(req, timeout=10)
            out[f"http: malformed body {body[:12]!r}"] = None
        except urllib.error.HTTPError as e:
            out[f"http: malformed body {body[:12]!r}"] = f"HTTP {e.code}: {e.read()[:150].decode(errors='replace')}"
        wc.infer_once("http", wc.http_client(http), model, {"input": x}, ["output"])
    return out


def until_error(http, model, seconds):
    client = wc.http_client(http, timeout=5)
    x = np.zeros((4, 3, 32, 32), np.float32)
    print(json.dumps({"started": True}), flush=True)
    ok, first_error, last_ok = 0, None, None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            wc.infer_once("http", client, model, {"input": x}, ["output"], timeout=5)
            ok += 1
            last_ok = time.time()
        except Exception as e:
            first_error = {"at": time.time(), "error": str(e)[:200]}
            break
    return {"ok": ok, "last_ok": last_ok, "first_error": first_error, "ended": time.time()}


if __name__ == "__main__":
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "concurrent":
        res = concurrent(a[0], a[1], a[2], float(a[3]), int(a[4]), a[5], float(a[6]))
    elif cmd == "bad":
        res = bad(a[0], a[1], a[2], int(a[3]))
    else:
        res = until_error(a[0], a[1], float(a[2]))
    print(json.dumps(res), flush=True)
