"""CPU-side tests of the trt_plugins kernels: the CMake build (nvcc, no TensorRT), the host unit tests
under ctest, the SASS/PTX targets in libcmc_kernels.a, and the PyTorch binding's host side.

Runs ``cmake -S trt_plugins -B <tmp> && cmake --build <tmp> && ctest`` and fails when any of them
fails. Without nvcc it still builds and runs the host tests (CMC_WITH_CUDA=OFF) and skips the CUDA
checks with the reason; without cmake everything here is skipped with the reason.

CMC_TEST_CUDA_ARCHITECTURES picks the architectures compiled here (default: the two the acceptance
names, sm_87 and sm_90, plus compute_90 PTX, to keep the build short on 2 cores); the default list
itself is checked from a configure-only run.
"""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRT = ROOT / "trt_plugins"
TEST_ARCHS = os.environ.get("CMC_TEST_CUDA_ARCHITECTURES", "87-real;90-real;90-virtual")
DEFAULT_ARCHS = ["75-real", "80-real", "86-real", "87-real", "89-real", "90-real", "90-virtual"]
_NOT_INSTALLED = "cmc.plugins._cuda is not installed (pyproject.toml must list the package cmc.plugins._cuda)"


def _cuda_pkg():
    return pytest.importorskip("cmc.plugins._cuda", reason=_NOT_INSTALLED)


def _nvcc() -> str | None:
    for cand in (os.environ.get("CUDACXX"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if cand and Path(cand).is_file():
            return cand
    return None


CMAKE = shutil.which("cmake")
CTEST = shutil.which("ctest")
NVCC = _nvcc()
needs_cmake = pytest.mark.skipif(CMAKE is None or CTEST is None, reason="cmake/ctest not installed")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found (CUDACXX, PATH, /usr/local/cuda/bin)")


def _run(cmd, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if res.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout[-6000:]}\n{res.stderr[-6000:]}")
    return res


def _configure(build: Path, *extra: str):
    cmd = [CMAKE, "-S", str(TRT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", *extra]
    if shutil.which("ninja"):
        cmd += ["-G", "Ninja"]
    if NVCC:
        cmd += ["-DCMC_WITH_CUDA=ON", f"-DCMAKE_CUDA_COMPILER={NVCC}"]
    else:
        cmd += ["-DCMC_WITH_CUDA=OFF"]
    return _run(cmd)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    if CMAKE is None or CTEST is None:
        pytest.skip("cmake/ctest not installed")
    build = tmp_path_factory.mktemp("cmc_kernels_build")
    _configure(build, f"-DCMC_CUDA_ARCHITECTURES={TEST_ARCHS}")
    _run([CMAKE, "--build", str(build), "-j", "2"])
    return build


# ---- fatbin reading (so that the check needs no cuobjdump) ------------------------------------------
def _archive_members(data: bytes):
    if not data.startswith(b"!<arch>\n"):
        yield "object", data
        return
    off = 8
    while off + 60 <= len(data):
        hdr = data[off:off + 60]
        size = int(hdr[48:58].decode().strip())
        yield hdr[:16].decode().strip(), data[off + 60:off + 60 + size]
        off += 60 + size + (size & 1)


def _elf_section(obj: bytes, wanted: str) -> bytes | None:
    if obj[:4] != b"\x7fELF" or obj[4] != 2:  # ELF64 only
        return None
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", obj, 0x3A)
    secs = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * shentsize) for i in range(shnum)]
    names_off = secs[shstrndx][4]
    for s in secs:
        name = obj[names_off + s[0]:obj.index(b"\0", names_off + s[0])].decode()
        if name == wanted:
            return obj[s[4]:s[4] + s[5]]
    return None


def fatbin_targets(path: Path) -> dict[str, set[tuple[str, int]]]:
    """{archive member: {("elf" | "ptx", sm)}} from the .nv_fatbin sections of an object/archive."""
    out = {}
    for name, obj in _archive_members(path.read_bytes()):
        fb = _elf_section(obj, ".nv_fatbin")
        if not fb:
            continue
        entries, off = set(), 0
        while off + 16 <= len(fb):
            magic, _ver, hsize, fsize = struct.unpack_from("<IHHQ", fb, off)
            if magic != 0xBA55ED50:
                break
            e, end = off + hsize, off + hsize + fsize
            while e < end:
                kind, _v, ehs, size = struct.unpack_from("<HHIQ", fb, e)
                arch, = struct.unpack_from("<I", fb, e + 28)
                entries.add(({1: "ptx", 2: "elf"}.get(kind, str(kind)), arch))
                e += ehs + size
            off = end
        out[name] = entries
    return out


# ---- tests ---------------------------------------------------------------------------------------------
@needs_cmake
def test_cmake_build_and_ctest(build_dir):
    res = _run([CTEST, "--test-dir", str(build_dir), "--output-on-failure"])
    out = res.stdout
    assert re.search(r"cmc_host_tests \.+\s+Passed", out), out
    if NVCC:
        # the GPU smoke test is built; it passes on a GPU machine and is skipped elsewhere
        assert "cmc_device_tests" in out, out
    # the host test binary prints its own count
    res = _run([str(build_dir / "cmc_host_tests")])
    assert re.search(r"cmc host tests: \d+ checks, 0 failed", res.stdout), res.stdout
    # the BMMA kernel's CPU model (lane by lane, emulated m16n8k256) against a +-1 convolution
    assert re.search(r"cmc_host_bmma_tests \.+\s+Passed", out), out
    res = _run([str(build_dir / "cmc_host_bmma_tests")])
    assert re.search(r"cmc BMMA host tests: \d+ checks, 0 failed", res.stdout), res.stdout


@needs_cmake
@needs_nvcc
def test_kernels_have_sass_for_requested_archs(build_dir):
    lib = build_dir / "libcmc_kernels.a"
    assert lib.is_file(), f"{lib} was not built"
    targets = fatbin_targets(lib)
    assert len(targets) >= 2, f"expected the adder and binary kernel objects, got {sorted(targets)}"
    want = set()
    for a in TEST_ARCHS.split(";"):
        num = int(re.match(r"\d+", a).group())
        want.add(("ptx", num) if a.endswith("-virtual") else ("elf", num))
    for member, entries in targets.items():
        assert want <= entries, f"{member}: has {sorted(entries)}, wants {sorted(want)}"
    # cross-check with cuobjdump where it exists
    cuobjdump = shutil.which("cuobjdump") or (str(Path(NVCC).parent / "cuobjdump") if (Path(NVCC).parent / "cuobjdump").exists() else None)
    if cuobjdump:
        res = subprocess.run([cuobjdump, "--list-elf", str(lib)], capture_output=True, text=True)
        if res.returncode == 0:
            for a in TEST_ARCHS.split(";"):
                if a.endswith("-real"):
                    assert f"sm_{a[:-5]}" in res.stdout, res.stdout


def _cuda_tool(name: str) -> str | None:
    """A CUDA binary tool: on PATH, beside nvcc, or from the nvidia-cuda-* wheels (test extras) —
    benchmarks/sass_stats.py's finder, the one place that knows where they live."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    try:
        from sass_stats import cuda_tool
    finally:
        sys.path.pop(0)
    return cuda_tool(name, NVCC)


def _sass_functions(lib: Path, arch: int) -> dict[str, str]:
    """{mangled kernel name: SASS text} of the sm_<arch> code in lib (cuobjdump -sass)."""
    cuobjdump, nvdisasm = _cuda_tool("cuobjdump"), _cuda_tool("nvdisasm")
    if cuobjdump is None or nvdisasm is None:
        pytest.skip("cuobjdump/nvdisasm not found (PATH, beside nvcc, or the nvidia-cuda-cuobjdump / "
                    "nvidia-cuda-nvdisasm wheels of the test extras)")
    env = dict(os.environ, PATH=f"{Path(nvdisasm).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    res = subprocess.run([cuobjdump, "-sass", "-arch", f"sm_{arch}", str(lib)], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        pytest.fail(f"cuobjdump -sass failed: {res.stderr[-2000:]}")
    funcs, name = {}, None
    for line in res.stdout.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            name = m.group(1)
            funcs[name] = ""
        elif name:
            funcs[name] += line + "\n"
    return funcs


@needs_cmake
@needs_nvcc
@pytest.mark.parametrize("arch", [87, 90])
def test_binary_kernels_use_bit_tensor_cores(build_dir, arch):
    """The sm_87 (Jetson Orin) and sm_90 (Hopper) SASS of the BinaryConv BMMA kernels holds the
    1-bit tensor-core instruction (BMMA.168256.AND.POPC), every instantiation of it."""
    if f"{arch}-real" not in TEST_ARCHS.split(";"):
        pytest.skip(f"sm_{arch} not in CMC_TEST_CUDA_ARCHITECTURES={TEST_ARCHS}")
    funcs = _sass_functions(build_dir / "libcmc_kernels.a", arch)
    bmma_kernels = {k: v for k, v in funcs.items() if "binaryBmmaConvKernel" in k}
    assert len(bmma_kernels) >= 32, sorted(funcs)  # 8 tile shapes x fp32/fp16 x packed/unpacked output
    for name, sass in bmma_kernels.items():
        assert re.search(r"\bBMMA\.168256\.AND\.POPC\b", sass), f"{name}: no BMMA instruction in its sm_{arch} SASS"
        assert "LDL" not in sass and "STL" not in sass, f"{name}: local-memory spills"
    # the CUDA-core kernels stay off the tensor cores (a sanity check of the SASS reading itself)
    popc = [v for k, v in funcs.items() if "binaryPopcConvKernel" in k]
    assert popc and all("BMMA" not in v and "POPC" in v for v in popc)


@needs_cmake
@needs_nvcc
def test_default_architecture_list(tmp_path):
    """Configure only: the default list is sm_75, 80, 86, 87, 89, 90 SASS + compute_90 PTX, and this
    nvcc accepts every entry (CUDA 13 dropped everything below sm_75)."""
    _configure(tmp_path / "b")
    cache = (tmp_path / "b" / "CMakeCache.txt").read_text()
    m = re.search(r"^CMC_CUDA_ARCHITECTURES:STRING=(.*)$", cache, re.M)
    assert m and m.group(1).split(";") == DEFAULT_ARCHS, m and m.group(1)
    codes = subprocess.run([NVCC, "--list-gpu-code"], capture_output=True, text=True)
    if codes.returncode == 0:  # nvcc >= 11.?
        for a in DEFAULT_ARCHS:
            num = re.match(r"\d+", a).group()
            assert f"sm_{num}" in codes.stdout, f"nvcc does not support sm_{num}: {codes.stdout}"
    # the kernel build reads nothing from TensorRT (the plugins attach via cmake/plugins.cmake)
    own = (TRT / "CMakeLists.txt").read_text()
    assert "NvInfer" not in own and not re.search(r"find_(package|path|library)\s*\(\s*TensorRT", own, re.I)
    assert "include(${CMAKE_CURRENT_SOURCE_DIR}/cmake/plugins.cmake OPTIONAL)" in own


def _torch_include_dirs():
    torch = pytest.importorskip("torch")
    base = Path(torch.__file__).parent / "include"
    return [base, base / "torch" / "csrc" / "api" / "include"]


def _cuda_include_dir():
    for d in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if d and (Path(d) / "include" / "cuda_runtime_api.h").is_file():
            return Path(d) / "include"
    if NVCC and (Path(NVCC).parents[1] / "include" / "cuda_runtime_api.h").is_file():
        return Path(NVCC).parents[1] / "include"
    return None


def test_torch_binding_compiles(tmp_path):
    """binding.cpp (the PyTorch extension's C++ side) passes the host compiler against the installed
    torch headers: catches API drift on machines where the extension itself cannot be built."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no host C++ compiler")
    cuda_inc = _cuda_include_dir()
    if cuda_inc is None:
        pytest.skip("CUDA headers (cuda_runtime_api.h) not found")
    incs = _torch_include_dirs()
    # CPU wheels lack this generated header; it only carries build macros, so an empty one will do
    stub = tmp_path / "stub"
    (stub / "c10" / "cuda" / "impl").mkdir(parents=True)
    (stub / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").write_text("#pragma once\n")
    import sysconfig

    cmd = [cxx, "-std=c++20", "-fsyntax-only", "-DTORCH_EXTENSION_NAME=cmc_cuda_kernels",
           "-DTORCH_API_INCLUDE_EXTENSION_H", f"-I{sysconfig.get_paths()['include']}"]
    cmd += [f"-I{d}" for d in incs]
    cmd += [f"-idirafter{stub}", f"-I{cuda_inc}", f"-I{TRT / 'common'}", str(ROOT / "plugins" / "_cuda" / "binding.cpp")]
    if not (incs[0] / "c10" / "cuda" / "CUDAStream.h").is_file():
        pytest.skip("this torch has no c10/cuda headers")
    _run(cmd)


def test_loader_reports_reason_without_cuda():
    torch = pytest.importorskip("torch")
    loader = _cuda_pkg().loader

    loader._reset_for_tests()
    try:
        if torch.cuda.is_available():
            pytest.skip("a CUDA GPU is present: the GPU tests cover the loaded extension")
        assert loader.load() is None
        reason = loader.unavailable_reason()
        assert isinstance(reason, str) and reason
        assert "CPU-only" in reason or "is_available" in reason or "CUDA" in reason
    finally:
        loader._reset_for_tests()


def test_loader_disabled_by_env(monkeypatch):
    loader = _cuda_pkg().loader

    monkeypatch.setenv("CMC_DISABLE_CUDA_KERNELS", "1")
    loader._reset_for_tests()
    try:
        assert loader.load() is None
        assert "CMC_DISABLE_CUDA_KERNELS" in loader.unavailable_reason()
    finally:
        loader._reset_for_tests()


def test_kernel_sources_present():
    loader = _cuda_pkg().loader

    sources, include = loader.kernel_sources()
    assert all(s.is_file() for s in sources)
    assert (include / "cmc_kernels.h").is_file()


def test_cuda_kernels_registered_and_cpu_untouched(monkeypatch):
    """The ops carry 'cuda' kernels; CPU tensors never reach the extension loader."""
    torch = pytest.importorskip("torch")
    loader = _cuda_pkg().loader
    from cmc.plugins.adder_conv.op import adder_conv
    from cmc.plugins.binary_conv.op import binary_conv, binary_conv_train, pack_weights

    for op in (adder_conv, binary_conv, binary_conv_train):
        assert "cuda" in op._backend_fns, op

    def boom(*a, **k):
        raise AssertionError("the CUDA extension loader was called for CPU tensors")

    monkeypatch.setattr(loader, "load", boom)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 5, 5, generator=gen).requires_grad_(True)
    w = torch.randn(3, 4, 3, 3, generator=gen).requires_grad_(True)
    ones, zeros = torch.ones(3), torch.zeros(3)
    y = adder_conv(x, w, ones, zeros, [1, 1], [1, 1, 1, 1], [1, 1], 1, 0, 0.2)
    y.sum().backward()
    assert x.grad is not None and w.grad is not None
    binary_conv(x.detach(), pack_weights(w.detach()), ones, zeros, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0)
    binary_conv_train(x.detach(), w.detach(), ones, zeros, [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0)
