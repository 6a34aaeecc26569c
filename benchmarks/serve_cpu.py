"""Serving cost on CPU: Triton (the nvidia-pytriton tritonserver, Python backend + onnxruntime) against the
same ONNX called directly in onnxruntime, in the same run on the same machine.

    python benchmarks/serve_cpu.py [--repository DIR --model NAME] [--batch 1] [--seconds 10] [--json out.json]

Without --repository it exports the bundled AdderNet ResNet-20 checkpoint --to triton into a temporary
folder. Measures: server start-up (process start to ready, 3 starts), p50/p99 latency and throughput at
concurrency 1 and 8 over HTTP and gRPC, and onnxruntime directly (1 caller, 8 threads); the overhead ratio
is Triton's p50 over direct onnxruntime's p50 at the same concurrency. Needs `cmc serve --install-triton`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import cpu_name  # noqa: E402  (benchmarks/ is the script folder)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))




def main():
    from cmc.exporter.serve.environment import install
    from cmc.exporter.serve.launcher import start_server

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repository")
    ap.add_argument("--model", default="addernet_resnet20_python")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json")
    args = ap.parse_args()
    tenv = install()
    load_before = os.getloadavg()
    tmp = tempfile.TemporaryDirectory(prefix="cmc-serve-bench-")
    if args.repository:
        repo = Path(args.repository)
    else:
        from cmc.exporter.pipeline import ExportOptions, run_export

        out = Path(tmp.name) / "out"
        run_export(ExportOptions(model=str(ROOT / "samples/checkpoints/addernet_resnet20.pth"),
                                 arch="samples.addernet_resnet20:resnet20", input_shape=(1, 3, 32, 32),
                                 out_dir=str(out), to="onnx,triton", verify=False))
        repo = out / "model_repository"
    onnx_path = repo / args.model / "1" / "model.onnx"
    startups = []
    for i in range(3):
        t0 = time.perf_counter()
        srv = start_server(tenv, repo, models=[args.model], log_path=Path(tmp.name) / f"start{i}.log")
        startups.append(round(time.perf_counter() - t0, 3))
        if i < 2:
            srv.stop()
    try:
        e = srv.endpoints.to_dict()
        r = subprocess.run([str(tenv.client_python), str(ROOT / "benchmarks" / "serve_cpu_client.py"), e["http"],
                            e["grpc"], args.model, str(onnx_path), str(args.batch), str(args.seconds)],
                           capture_output=True, text=True, timeout=60 + 8 * args.seconds * 3)
        if r.returncode != 0:
            sys.exit(f"client failed: {r.stderr[-500:]}")
        res = json.loads(r.stdout)
    finally:
        srv.stop()
    direct = {p["concurrency"]: p for p in res["onnxruntime_direct"]}
    overhead = {proto: {str(p["concurrency"]): round(p["p50_ms"] / direct[p["concurrency"]]["p50_ms"], 2)
                        for p in points} for proto, points in res["triton"].items()}
    result = {"benchmark": "serve_cpu", "model": args.model, "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
              "python": platform.python_version()}, "server": tenv.source, "startup_s": startups, **res,
              "overhead_p50_ratio_vs_direct": overhead,
              "load_average": {"before": [round(v, 2) for v in load_before],
                               "after": [round(v, 2) for v in os.getloadavg()]},
              "note": "closed-loop clients on the same machine as the server (they share its CPU cores)"}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
