"""``cmc serve REPOSITORY``: run a real Triton server on a model repository, and stop it cleanly.

The server runs in its own process group (its Python-backend stubs are its children); stopping sends
SIGTERM to the whole group, then SIGKILL after a grace period, and removes any shared-memory segment
that a process of the group had mapped and that outlived it (a killed stub cannot unlink its own).
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import CmcError
from .environment import TritonEnv

_PLATFORM_BACKEND = {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt", "pytorch_libtorch": "pytorch",
                     "tensorflow_savedmodel": "tensorflow", "tensorflow_graphdef": "tensorflow"}


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(host: str, n: int) -> list[int]:
    """n distinct ports the OS reports free now (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def model_backends(repository: Path) -> dict[str, str]:
    """model name -> the backend its config.pbtxt asks for."""
    out = {}
    for cfg in sorted(repository.glob("*/config.pbtxt")):
        text = cfg.read_text()
        m = re.search(r'^\s*backend\s*:\s*"([^"]+)"', text, re.M)
        p = re.search(r'^\s*platform\s*:\s*"([^"]+)"', text, re.M)
        backend = m.group(1) if m else _PLATFORM_BACKEND.get(p.group(1) if p else "", p.group(1) if p else "?")
        out[cfg.parent.name] = backend
    return out


def choose_models(repository: Path, available: set[str], wanted: list[str] | None) -> tuple[list[str], dict]:
    """The models to load, and the skipped ones with the reason."""
    backends = model_backends(repository)
    if not backends:
        raise CmcError(f"{repository} holds no model (no */config.pbtxt): give the model_repository folder "
                       "cmc-export --to triton wrote")
    if wanted:
        for name in wanted:
            if name not in backends:
                raise CmcError(f"model {name!r} is not in {repository} (it has {', '.join(backends)})")
            if backends[name] not in available:
                raise CmcError(f"model {name!r} needs Triton's {backends[name]!r} backend, which this server lacks "
                               f"(it has {', '.join(sorted(available)) or 'none'}); the nvidia-pytriton server has "
                               "only the Python backend: serve the *_python model, or use NVIDIA's Triton container")
        return list(wanted), {}
    load = [n for n, b in backends.items() if b in available]
    skipped = {n: f"no {b!r} backend in this server" for n, b in backends.items() if b not in available}
    if not load:
        raise CmcError(f"no model in {repository} has a backend this server provides "
                       f"({', '.join(sorted(available)) or 'none'}): {skipped}")
    return load, skipped


# Errors Triton logs on every CPU-only start; never the cause of a failure.
_BENIGN = ("CudaDriverHelper has not been initialized", "Failed to initialize NVML", "DCGM")


def failure_cause(log_text: str) -> str:
    """The error Triton logged (glog 'E' lines, 'error:' lines) that explains a failure, as one line."""
    errors = []
    for line in log_text.splitlines():
        if (re.match(r"^E\d{4} ", line) or line.startswith("error:")) and not any(b in line for b in _BENIGN):
            msg = line.split("] ", 1)[1] if re.match(r"^E\d{4} ", line) and "] " in line else line
            msg = msg.strip().strip('"').replace("\\n", " ")
            errors.append(msg.split("  At:")[0].strip()[:400])  # drop a Python backend's traceback
    if errors:
        # "failed to load 'model' ..." names the model and the cause; the other lines repeat or precede it.
        named = [e for e in errors if e.startswith("failed to load '")]
        specific = [e for e in errors if "failed to load all models" not in e]
        return (named or specific or errors)[0]
    tail = [ln for ln in log_text.splitlines() if ln.strip()]
    return tail[-1][:400] if tail else "no output"


def _terminate_with_parent():
    """In the child before exec: SIGTERM it when the thread that started it ends (also when its process is
    killed by SIGKILL), so a killed `cmc serve` leaves no server behind (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@dataclass
class Endpoints:
    host: str
    http: int
    grpc: int
    metrics: int

    def to_dict(self) -> dict:
        return {"http": f"http://{self.host}:{self.http}", "grpc": f"{self.host}:{self.grpc}",
                "metrics": f"http://{self.host}:{self.metrics}/metrics"}


class TritonServer:
    def __init__(self, tenv: TritonEnv, repository: Path, models: list[str], endpoints: Endpoints, log_path: Path):
        self.tenv, self.repository, self.models, self.endpoints, self.log_path = tenv, repository, models, endpoints, log_path
        self.proc: subprocess.Popen | None = None
        self.shm_seen: set[str] = set()

    def command(self) -> list[str]:
        e = self.endpoints
        cmd = [str(self.tenv.server), f"--model-repository={self.repository}",
               f"--http-address={e.host}", f"--http-port={e.http}", f"--grpc-address={e.host}",
               f"--grpc-port={e.grpc}", f"--metrics-address={e.host}", f"--metrics-port={e.metrics}",
               "--model-control-mode=explicit", "--strict-readiness=true", "--exit-on-error=true",
               "--exit-timeout-secs=5", "--log-verbose=0"]
        if self.tenv.backend_dir is not None:
            cmd.append(f"--backend-directory={self.tenv.backend_dir}")
        cmd += [f"--load-model={m}" for m in self.models]
        return cmd

    def start(self):
        env = dict(os.environ, **self.tenv.env)
        env.pop("PYTHONHOME", None)
        with open(self.log_path, "wb") as log:
            # A session of its own: the server and its backend stubs form one process group to stop.
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=_terminate_with_parent)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.endpoints.host}:{self.endpoints.http}/v2/health/ready",
                                        timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._note_shm()
            if self.proc.poll() is not None:
                cause = failure_cause(self.log_text())
                self.stop()
                raise CmcError(f"Triton exited during start-up (exit code {self.proc.returncode}): {cause}")
            if self.ready():
                self._note_shm()
                return
            time.sleep(0.2)
        cause = failure_cause(self.log_text())
        self.stop()
        raise CmcError(f"Triton was not ready within {timeout:g} s (last log line: {cause}); stopped it")

    def group_pids(self) -> list[int]:
        """Live processes of the server's process group."""
        if self.proc is None:
            return []
        pgid, pids = self.proc.pid, []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    stat = (d / "stat").read_text()
                except OSError:
                    continue
                fields = stat.rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    pids.append(int(d.name))
        return pids

    def _note_shm(self):
        """Remember the /dev/shm segments the group maps (the Python backend's regions)."""
        for pid in self.group_pids():
            try:
                for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                    path = line.split(None, 5)[5] if len(line.split(None, 5)) == 6 else ""
                    if path.startswith("/dev/shm/"):
                        self.shm_seen.add(path.replace(" (deleted)", ""))
            except (OSError, IndexError):
                continue

    def stop(self, grace: float = 10.0) -> dict:
        """SIGTERM to the group, SIGKILL after ``grace`` s; then remove segments it left. Returns what it did."""
        if self.proc is None:
            return {}
        self._note_shm()
        killed = False
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (self.proc.poll() is None or self.group_pids()):
            time.sleep(0.1)
        if self.proc.poll() is None or self.group_pids():
            killed = True
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
            end = time.monotonic() + 5
            while self.group_pids() and time.monotonic() < end:
                time.sleep(0.05)
        removed = []
        for path in sorted(self.shm_seen):
            if os.path.exists(path):
                os.unlink(path)
                removed.append(path)
        return {"exit_code": self.proc.returncode, "killed": killed, "shm_removed": removed,
                "processes_left": self.group_pids()}


def start_server(tenv: TritonEnv, repository: Path, *, host: str = "127.0.0.1", ports: dict | None = None,
                 models: list[str] | None = None, timeout: float = 120.0, log_path: Path | None = None) -> TritonServer:
    repository = Path(repository).resolve()
    if not repository.is_dir():
        raise CmcError(f"model repository {repository} does not exist")
    available = tenv.backends()
    load, skipped = choose_models(repository, available, models)
    ports = dict(ports or {})
    for name, port in ports.items():
        if port is not None and not port_is_free(host, port):
            raise CmcError(f"--{name}-port {port}: the port is taken on {host}")
    free = iter(free_ports(host, 3))
    chosen = {k: ports.get(k) or next(free) for k in ("http", "grpc", "metrics")}
    endpoints = Endpoints(host, chosen["http"], chosen["grpc"], chosen["metrics"])
    if log_path is None:
        import tempfile

        fd, name = tempfile.mkstemp(prefix="cmc-triton-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    server = TritonServer(tenv, repository, load, endpoints, Path(log_path))
    server.skipped = skipped
    server.start()
    try:
        server.wait_ready(timeout)
    except BaseException:
        server.stop()
        raise
    return server


def describe(server: TritonServer) -> dict:
    return {"endpoints": server.endpoints.to_dict(), "models": server.models, "skipped": server.skipped,
            "pid": server.proc.pid, "log": str(server.log_path), "server": server.tenv.source}


def dump(server: TritonServer) -> str:
    return json.dumps(describe(server))
