"""The ``cmc`` command (``cmc serve``; ``cmc-export serve`` is the same).

    cmc serve REPOSITORY [--host 127.0.0.1] [--http-port N] [--grpc-port N] [--metrics-port N] [--model NAME ...]
                         [--tritonserver PATH] [--timeout S] [--ready-file F] [--log F]
    cmc serve --install-triton [--env DIR]
    cmc serve --check URL MODEL_NAME CHECKPOINT --arch MODULE:CALLABLE [--grpc-url HOST:PORT] [--verify-batch 1,5,16]
                      [--json F] [--junit F] [--tolerance T] [--input-shape NxCxHxW]

Errors are one line and a non-zero exit code (2: bad input or a server that cannot start, 3: parity
failure over the wire, 1: internal error); no server is left running after an error.
"""
from __future__ import annotations

import json
import signal
import sys
import time
import traceback
from pathlib import Path

from ..cli import _Parser, _arch_args, _batches, _common, _latent, _shape
from ..errors import CmcError


def _port(text: str) -> int:
    v = int(text)
    if not 1 <= v <= 65535:
        raise ValueError(text)
    return v


def serve_parser() -> _Parser:
    p = _Parser(prog="cmc serve", description="Serve a model repository written by cmc-export --to triton with a "
                                              "real Triton server; Ctrl-C / SIGTERM stops it and everything it started.")
    p.add_argument("repository", metavar="REPOSITORY")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 opens it)")
    for name in ("http", "grpc", "metrics"):
        p.add_argument(f"--{name}-port", type=_port, default=None, metavar="N", help=f"{name} port (default: a free one)")
    p.add_argument("--model", action="append", metavar="NAME",
                   help="load only this model (repeatable; default: every model whose backend the server has)")
    p.add_argument("--tritonserver", metavar="PATH", help="the tritonserver binary (default: cmc's Triton environment, "
                                                            "then tritonserver on PATH)")
    p.add_argument("--env", metavar="DIR", help="cmc's Triton environment (default $CMC_TRITON_ENV or ~/.cache/cmc/triton-env)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S", help="seconds to wait until ready (default 120)")
    p.add_argument("--ready-file", metavar="FILE", help="write the endpoints as JSON here once the server is ready")
    p.add_argument("--log", metavar="FILE", help="Triton's log (default a temporary file, named on start)")
    p.add_argument("--debug", action="store_true")
    return p


def install_parser() -> _Parser:
    p = _Parser(prog="cmc serve --install-triton",
                description="Create cmc's Triton environment: a separate virtual environment with nvidia-pytriton "
                            "(tritonserver + Python backend), onnxruntime and numpy<2. cmc's own environment is not "
                            "changed. Idempotent.")
    p.add_argument("--install-triton", action="store_true", required=True)
    p.add_argument("--env", metavar="DIR")
    p.add_argument("--debug", action="store_true")
    return p


def check_parser() -> _Parser:
    p = _Parser(prog="cmc serve --check", description="Send the verify inputs to a served model over HTTP (and gRPC) "
                                                      "and check every response against the PyTorch model.")
    p.add_argument("--check", nargs=3, required=True, metavar=("URL", "MODEL_NAME", "CHECKPOINT"))
    p.add_argument("--grpc-url", metavar="HOST:PORT", help="also check over gRPC at this address")
    p.add_argument("--verify-batch", type=_batches, default=(1, 5, 16), metavar="B1,B2", help="default 1,5,16")
    p.add_argument("--onnx", metavar="ARTIFACT.onnx",
                   help="the served model's ONNX: a response that misses PyTorch passes only where it equals this "
                        "artifact and the artifact passes cmc's verify with the sign-flip rule (binary networks)")
    p.add_argument("--tolerance", type=float, default=None, help="override the contract tolerance (fraction of max|y|)")
    p.add_argument("--json", default="cmc-wire-verdict.json", metavar="FILE")
    p.add_argument("--junit", default="cmc-wire-verdict.xml", metavar="FILE")
    _latent(p)
    _common(p)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        argv = argv[1:]
    elif argv and not argv[0].startswith("-"):
        print(f"cmc: error: unknown command {argv[0]!r} (commands: serve)", file=sys.stderr)
        return 2
    return serve_main(argv)


def serve_main(argv: list[str]) -> int:
    debug = "--debug" in argv
    try:
        if "--install-triton" in argv:
            return _install(install_parser().parse_args(argv))
        if "--check" in argv:
            return _check(check_parser().parse_args(argv))
        return _serve(serve_parser().parse_args(argv))
    except CmcError as e:
        if debug:
            traceback.print_exc()
        print(f"cmc serve: error: {e}", file=sys.stderr)
        return e.exit_code
    except Exception as e:
        if debug:
            traceback.print_exc()
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        print(f"cmc serve: internal error: {type(e).__name__}: {msg} (rerun with --debug)", file=sys.stderr)
        return 1


def _install(args) -> int:
    from .environment import install

    t0 = time.perf_counter()
    tenv = install(Path(args.env) if args.env else None, log=lambda m: print(f"cmc serve: {m}", file=sys.stderr))
    print(f"cmc serve: Triton environment ready ({tenv.source}; {time.perf_counter() - t0:.0f} s): {tenv.server}")
    return 0


def _check(args) -> int:
    from .wire_check import run_check

    url, model_name, checkpoint = args.check
    return run_check(url, model_name, checkpoint, arch=args.arch, arch_args=_arch_args(args.arch_args),
                     grpc_url=args.grpc_url, batches=args.verify_batch, tolerance=args.tolerance,
                     input_shape=_shape(args.input_shape), json_path=args.json, junit_path=args.junit,
                     allow_pickle=args.allow_pickle, binarize_weights=args.binarize_weights, slim=args.slim,
                     onnx_path=args.onnx)


class _Stop(Exception):
    pass


def _serve(args) -> int:
    from .environment import locate
    from .launcher import describe, failure_cause, start_server

    tenv = locate(args.tritonserver, Path(args.env) if args.env else None)
    stop_requested = []

    def on_signal(signum, frame):
        stop_requested.append(signum)
        raise _Stop()

    # SIGTERM and Ctrl-C both end in the same clean stop, also during start-up.
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    server = None
    try:
        t0 = time.perf_counter()
        server = start_server(tenv, Path(args.repository), host=args.host, models=args.model, timeout=args.timeout,
                              ports={"http": args.http_port, "grpc": args.grpc_port, "metrics": args.metrics_port},
                              log_path=Path(args.log) if args.log else None)
        info = describe(server)
        info["startup_s"] = round(time.perf_counter() - t0, 3)
        for name, why in server.skipped.items():
            print(f"cmc serve: not loading {name}: {why}", file=sys.stderr)
        e = info["endpoints"]
        print(f"cmc serve: ready in {info['startup_s']:.1f} s ({tenv.source}): HTTP {e['http']}  gRPC {e['grpc']}  "
              f"metrics {e['metrics']}; models {', '.join(server.models)}; log {server.log_path}", flush=True)
        if args.ready_file:
            Path(args.ready_file).write_text(json.dumps(info) + "\n")
        while server.proc.poll() is None:
            time.sleep(0.2)
        cause = failure_cause(server.log_text())
        server.stop()
        server = None
        raise CmcError(f"Triton exited on its own: {cause}")
    except (_Stop, KeyboardInterrupt):
        if server is not None:
            done = server.stop()
            server = None
            left = done.get("processes_left")
            print(f"cmc serve: stopped (exit code {done.get('exit_code')}"
                  + (", killed after the grace period" if done.get("killed") else "")
                  + (f", removed {len(done['shm_removed'])} shared-memory segment(s) it left" if done.get("shm_removed") else "")
                  + (f"; processes left: {left}" if left else "; nothing left running") + ")", file=sys.stderr)
        return 0
    finally:
        if server is not None:
            server.stop()
        for s, h in old.items():
            signal.signal(s, h)


if __name__ == "__main__":
    sys.exit(main())
