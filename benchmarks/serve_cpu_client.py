"""Runs in cmc's Triton environment (tritonclient + onnxruntime): the client half of serve_cpu.py.

    serve_cpu_client.py HTTP GRPC MODEL ONNX BATCH SECONDS

Closed-loop clients (each sends its next request when the previous answer arrived) at concurrency 1 and
8 over HTTP and gRPC, and the same ONNX called directly in onnxruntime in this process (one caller, then 8
threads) for the overhead ratio. JSON on stdout.
"""
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "exporter" / "serve"))
import wire_client as wc  # noqa: E402


def run(call_factory, concurrency: int, seconds: float) -> dict:
    lat: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    deadline = time.monotonic() + seconds

    def work(i):
        call = call_factory()
        call()  # connection set-up / first call outside the timed window
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                call()
            except Exception:
                errors[i] += 1
                continue
            lat[i].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(concurrency)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    all_lat = sorted(x for per in lat for x in per)
    n = len(all_lat)
    return {"concurrency": concurrency, "requests": n, "errors": sum(errors), "wall_s": round(wall, 3),
            "p50_ms": round(1e3 * all_lat[n // 2], 3) if n else None,
            "p99_ms": round(1e3 * all_lat[min(n - 1, int(0.99 * n))], 3) if n else None,
            "mean_ms": round(1e3 * statistics.fmean(all_lat), 3) if n else None,
            "requests_per_s": round(n / wall, 2)}


def main():
    http, grpc, model, onnx_path, batch, seconds = sys.argv[1:7]
    batch, seconds = int(batch), float(seconds)
    x = np.random.default_rng(0).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    out = {"batch": batch, "seconds_per_point": seconds, "triton": {}, "onnxruntime_direct": {}}
    for proto in ("http", "grpc"):
        def factory(proto=proto):
            client = wc.http_client(http) if proto == "http" else wc.grpc_client(grpc)
            return lambda: wc.infer_once(proto, client, model, {"input": x}, ["output"])
        out["triton"][proto] = [run(factory, c, seconds) for c in (1, 8)]
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    out["onnxruntime_direct"] = [run(lambda: (lambda: sess.run(["output"], {"input": x})), c, seconds) for c in (1, 8)]
    out["onnxruntime_version"] = ort.__version__
    print(json.dumps(out))


if __name__ == "__main__":
    main()
