"""Where ``cmc serve`` gets a Triton server from.

The ``nvidia-pytriton`` wheel carries a real ``tritonserver`` with its Python backend, but pins NumPy < 2
while cmc runs on NumPy 2. cmc therefore never installs it into its own environment:
``cmc serve --install-triton`` creates a separate virtual environment (default
``~/.cache/cmc/triton-env``, or ``$CMC_TRITON_ENV``) holding nvidia-pytriton, onnxruntime and numpy<2.
That environment serves three things: the server binary, the Python the server's Python-backend stub
imports numpy/onnxruntime from, and the Triton client (``tritonclient`` http + grpc) that ``cmc serve
--check`` runs in a subprocess. A user's own ``tritonserver`` (``--tritonserver`` or on PATH, e.g. in
NVIDIA's containers) is used as it is, with its own backends.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CmcError

PACKAGES = ("nvidia-pytriton==0.7.0", "onnxruntime>=1.20", "numpy<2")
MARKER = "cmc-triton-env.json"


def default_env_dir() -> Path:
    return Path(os.environ.get("CMC_TRITON_ENV") or Path.home() / ".cache" / "cmc" / "triton-env")


@dataclass
class TritonEnv:
    server: Path                      # the tritonserver binary
    backend_dir: Path | None          # --backend-directory (None: the binary's default)
    client_python: Path | None        # a Python with tritonclient[http,grpc] (and numpy)
    env: dict = field(default_factory=dict)  # extra environment for the server process
    source: str = ""

    def backends(self) -> set[str]:
        d = self.backend_dir or Path("/opt/tritonserver/backends")
        return {p.name for p in d.iterdir() if p.is_dir()} if d.is_dir() else set()


def _venv_python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def _env_facts(python: Path) -> dict:
    """Facts about the environment's interpreter, read by running it."""
    code = ("import json, sys, sysconfig, site, pathlib, importlib.util as u\n"
            "spec = u.find_spec('pytriton')\n"
            "print(json.dumps({'version': '%d.%d' % sys.version_info[:2],"
            " 'libdir': sysconfig.get_config_var('LIBDIR'), 'ldlibrary': sysconfig.get_config_var('LDLIBRARY'),"
            " 'site_packages': site.getsitepackages()[0],"
            " 'pytriton': str(pathlib.Path(spec.origin).parent) if spec else None}))")
    r = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise CmcError(f"the Triton environment's Python {python} does not run: {r.stderr.strip().splitlines()[-1:]}")
    return json.loads(r.stdout)


def install(env_dir: Path | None = None, log=print) -> TritonEnv:
    """Create (or reuse) the isolated environment; idempotent: a complete one is only checked. Concurrent
    installs (two shells, parallel test workers) wait for each other on a lock file beside the folder."""
    import fcntl

    env_dir = Path(env_dir or default_env_dir())
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(env_dir.parent / f".{env_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _install_locked(env_dir, log)


def _install_locked(env_dir: Path, log) -> TritonEnv:
    marker = env_dir / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("packages") == list(PACKAGES):
        return locate_installed(env_dir)
    if env_dir.exists() and any(env_dir.iterdir()) and not marker.is_file() and not _venv_python(env_dir).exists():
        raise CmcError(f"{env_dir} exists and is not a cmc Triton environment; remove it or set CMC_TRITON_ENV")
    lib = Path(sysconfig.get_config_var("LIBDIR") or "") / (sysconfig.get_config_var("LDLIBRARY") or "")
    if not str(lib).endswith(".so") and ".so." not in str(lib):
        raise CmcError(f"this Python ({sys.executable}) has no shared libpython ({lib.name}); the Python backend's "
                       "stub embeds libpython: use a Python built with --enable-shared (pyenv: "
                       "PYTHON_CONFIGURE_OPTS=--enable-shared)")
    log(f"creating the Triton environment in {env_dir} ({', '.join(PACKAGES)}); cmc's own environment is not touched")
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(env_dir)], check=True)
    r = subprocess.run([str(_venv_python(env_dir)), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *PACKAGES], capture_output=True, text=True)
    if r.returncode != 0:
        tail = [ln for ln in r.stderr.strip().splitlines() if ln.strip() and not ln.startswith("WARNING")][-1:]
        raise CmcError(f"pip could not install {' '.join(PACKAGES)} into {env_dir}: {tail[0] if tail else 'no detail'}")
    facts = _env_facts(_venv_python(env_dir))
    _link_backends(env_dir, facts)
    marker.write_text(json.dumps({"packages": list(PACKAGES), **facts}, indent=2) + "\n")
    return locate_installed(env_dir)


def _link_backends(env_dir: Path, facts: dict):
    """A backend folder for this Python: the wheel ships one Python-backend stub per Python version and
    the stub must match the interpreter whose libpython it loads."""
    if not facts.get("pytriton"):
        raise CmcError(f"nvidia-pytriton is missing from {env_dir}")
    tree = Path(facts["pytriton"]) / "tritonserver"
    stub = tree / "python_backend_stubs" / facts["version"] / "triton_python_backend_stub"
    if not stub.is_file():
        raise CmcError(f"nvidia-pytriton has no Python-backend stub for Python {facts['version']} "
                       f"(it ships {sorted(p.name for p in (tree / 'python_backend_stubs').iterdir())})")
    dst = env_dir / "backends" / "python"
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for src in (tree / "backends" / "python" / "libtriton_python.so",
                tree / "backends" / "python" / "triton_python_backend_utils.py", stub):
        (dst / src.name).symlink_to(src)


def locate_installed(env_dir: Path) -> TritonEnv:
    marker = env_dir / MARKER
    if not marker.is_file():
        raise CmcError(f"no Triton environment in {env_dir}: run `cmc serve --install-triton` (or give --tritonserver)")
    facts = json.loads(marker.read_text())
    server = Path(facts["pytriton"]) / "tritonserver" / "bin" / "tritonserver"
    if not server.is_file():
        raise CmcError(f"the Triton environment in {env_dir} is incomplete ({server} is missing): rerun "
                       "`cmc serve --install-triton`")
    # The Python-backend stub embeds the interpreter's own libpython (first on the library path). It
    # ignores PYTHONPATH; its embedded Python finds its prefix by looking up "python3" on PATH, so with the
    # environment's bin/ first it reads that venv's pyvenv.cfg and imports numpy<2 and onnxruntime from
    # there instead of cmc's numpy 2 (with which the stub's tensors come back empty).
    env = {"LD_LIBRARY_PATH": os.pathsep.join(filter(None, [facts["libdir"], os.environ.get("LD_LIBRARY_PATH")])),
           "PATH": os.pathsep.join(filter(None, [str(env_dir / "bin"), os.environ.get("PATH")])),
           "PYTHONNOUSERSITE": "1"}
    return TritonEnv(server=server, backend_dir=env_dir / "backends", client_python=_venv_python(env_dir), env=env,
                     source=f"nvidia-pytriton in {env_dir}")


def locate(tritonserver: str | None = None, env_dir: Path | None = None) -> TritonEnv:
    """--tritonserver PATH, else the cmc Triton environment, else tritonserver on PATH."""
    env_dir = Path(env_dir or default_env_dir())
    client = _venv_python(env_dir) if (env_dir / MARKER).is_file() else None
    if tritonserver:
        p = Path(tritonserver)
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise CmcError(f"--tritonserver {tritonserver}: not an executable file")
        return TritonEnv(server=p, backend_dir=None, client_python=client, source=str(p))
    if (env_dir / MARKER).is_file():
        return locate_installed(env_dir)
    found = shutil.which("tritonserver")
    if found:
        return TritonEnv(server=Path(found), backend_dir=None, client_python=client, source=f"{found} (PATH)")
    raise CmcError("no Triton server found: run `cmc serve --install-triton` (a separate environment with the "
                   "nvidia-pytriton wheel's tritonserver; cmc's own environment is not changed), or put "
                   "tritonserver on PATH / give --tritonserver")


def client_python(env_dir: Path | None = None) -> Path:
    env_dir = Path(env_dir or default_env_dir())
    if not (env_dir / MARKER).is_file():
        raise CmcError(f"the wire check runs Triton's client from the Triton environment, and {env_dir} has none: "
                       "run `cmc serve --install-triton` first")
    return _venv_python(env_dir)
