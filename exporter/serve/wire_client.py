"""Triton's client side of ``cmc serve --check`` (and of the serve tests and benchmark).

Runs in the Triton environment's Python (tritonclient http + grpc, numpy < 2), never in cmc's own:
tritonclient's grpc part pins protobuf < 7. It imports nothing from cmc, so it can run as a script:

    python wire_client.py metadata HTTP_URL MODEL
    python wire_client.py infer HTTP_URL GRPC_URL|- MODEL INPUTS.npz OUTPUTS_PREFIX

``infer`` sends every array of INPUTS.npz (one request each, keys like ``b5``) over HTTP and gRPC and
writes OUTPUTS_PREFIX.http.npz / .grpc.npz with keys ``<key>/<output name>``; the summary is JSON on stdout.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

_NP_TO_TRITON = {np.dtype("float32"): "FP32", np.dtype("float16"): "FP16", np.dtype("float64"): "FP64",
                 np.dtype("int32"): "INT32", np.dtype("int64"): "INT64", np.dtype("uint8"): "UINT8",
                 np.dtype("int8"): "INT8", np.dtype("bool"): "BOOL"}


def _host_port(url: str) -> str:
    return url.split("://", 1)[-1].rstrip("/")


def http_client(url: str, timeout: float = 30.0, concurrency: int = 1):
    import tritonclient.http as th

    return th.InferenceServerClient(_host_port(url), connection_timeout=timeout, network_timeout=timeout,
                                    concurrency=concurrency)


def grpc_client(url: str):
    import tritonclient.grpc as tg

    return tg.InferenceServerClient(_host_port(url))


def metadata(url: str, model: str) -> dict:
    md = http_client(url).get_model_metadata(model)
    cfg = http_client(url).get_model_config(model)
    return {"inputs": md["inputs"], "outputs": md["outputs"], "max_batch_size": cfg.get("max_batch_size", 0)}


def infer_once(protocol: str, client, model: str, inputs: dict[str, np.ndarray], output_names: list[str],
               timeout: float = 30.0) -> dict[str, np.ndarray]:
    if protocol == "http":
        import tritonclient.http as mod
    else:
        import tritonclient.grpc as mod
    req = []
    for name, arr in inputs.items():
        t = mod.InferInput(name, list(arr.shape), _NP_TO_TRITON[arr.dtype])
        if protocol == "http":
            t.set_data_from_numpy(arr, binary_data=True)
        else:
            t.set_data_from_numpy(arr)
        req.append(t)
    outs = [mod.InferRequestedOutput(n) for n in output_names]
    if protocol == "http":
        res = client.infer(model, req, outputs=outs, timeout=int(timeout * 1e6))
    else:
        res = client.infer(model, req, outputs=outs, client_timeout=timeout)
    return {n: res.as_numpy(n) for n in output_names}


def infer_all(http_url: str, grpc_url: str | None, model: str, inputs_npz: str, prefix: str) -> dict:
    md = metadata(http_url, model)
    input_name = md["inputs"][0]["name"]
    output_names = [o["name"] for o in md["outputs"]]
    data = np.load(inputs_npz)
    summary = {"inputs": md["inputs"], "outputs": md["outputs"], "max_batch_size": md["max_batch_size"],
               "protocols": {}}
    clients = {"http": http_client(http_url)}
    if grpc_url:
        clients["grpc"] = grpc_client(grpc_url)
    for protocol, client in clients.items():
        got, times, errors = {}, {}, {}
        for key in data.files:
            t0 = time.perf_counter()
            try:
                res = infer_once(protocol, client, model, {input_name: data[key]}, output_names)
            except Exception as e:  # the server's answer is a finding, not a crash of the check
                errors[key] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
                continue
            times[key] = time.perf_counter() - t0
            for n, v in res.items():
                got[f"{key}/{n}"] = v
        np.savez(f"{prefix}.{protocol}.npz", **got)
        summary["protocols"][protocol] = {"seconds": times, "errors": errors, "file": f"{prefix}.{protocol}.npz"}
    return summary


def main(argv: list[str]) -> int:
    if argv[:1] == ["metadata"] and len(argv) == 3:
        print(json.dumps(metadata(argv[1], argv[2])))
        return 0
    if argv[:1] == ["infer"] and len(argv) == 6:
        print(json.dumps(infer_all(argv[1], None if argv[2] == "-" else argv[2], argv[3], argv[4], argv[5])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        print(json.dumps({"error": f"{type(e).__name__}: {msg}"}))
        sys.exit(1)
