"""The C++ plugin lifecycle harness (trt_plugins/tests/plugin_harness.cpp), built through CMake and run
against every set of TensorRT headers found, and its output checked here:

* the whole IPluginV3 lifecycle for both plugin libraries (self-registering / getCreators), every plugin
  (AdderConv, BinaryConv and BinaryConv's packed variants BinaryConvPackedOut/In/InOut), twice in one
  process: no failed check;
* the type/format combinations each plugin accepts equal its table in trt_plugins/<op>/README.md (the
  unnamed table for the folder's own operator, ``<!-- cmc-formats:begin NAME -->`` for a variant; read
  here by a parser of its own, independent of the harness's C++ one);
* every bad field set is rejected with nullptr and reported;
* without a GPU, enqueue is reported SKIPPED, never as passed; with one (``-m gpu``) it runs, also under
  compute-sanitizer memcheck when that tool exists;
* the harness's float64 C++ reference, with its packing of activations, equals plugins/<op>/reference.py
  (``reference`` and, for the packed variants, ``reference_variant``) on its cases;
* the generated contract headers (field tables, packed flags, output names, tolerances) say what
  cmc.plugins.contract says, for every op type and variant.

Header sets: ``$CMC_TRT_HEADER_DIRS`` (os.pathsep-separated; when set it is the only source, so an empty
value turns these tests off), else ``$TENSORRT_INCLUDE_DIR`` and ``/tmp/trt/*/include``. Needs cmake and
nvcc (the plugin libraries link the CUDA kernels) but no GPU and no libnvinfer.
"""
from __future__ import annotations

import glob
import importlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cmc.exporter.trt.env import header_version

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "trt_plugins"
#: plugin -> (folder, README format table: None for the folder's own, unnamed table)
PLUGINS = {
    "AdderConv": ("adder_conv", None),
    "BinaryConv": ("binary_conv", None),
    "BinaryConvPackedOut": ("binary_conv", "BinaryConvPackedOut"),
    "BinaryConvPackedIn": ("binary_conv", "BinaryConvPackedIn"),
    "BinaryConvPackedInOut": ("binary_conv", "BinaryConvPackedInOut"),
}
FORMS = ("dlopen", "getCreators")
ROUNDS = 2


def _header_dirs() -> list[str]:
    if "CMC_TRT_HEADER_DIRS" in os.environ:
        dirs = [d for d in os.environ["CMC_TRT_HEADER_DIRS"].split(os.pathsep) if d]
    else:
        dirs = [os.environ["TENSORRT_INCLUDE_DIR"]] if os.environ.get("TENSORRT_INCLUDE_DIR") else []
        dirs += sorted(glob.glob("/tmp/trt/*/include"))
    return [d for d in dict.fromkeys(dirs) if os.path.isfile(os.path.join(d, "NvInferRuntime.h"))]


def _nvcc() -> str | None:
    for cand in (os.environ.get("CUDACXX"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if cand and os.path.isfile(cand):
            return cand
    return None


def _gpu_reason() -> str | None:
    """None when a CUDA GPU is usable from PyTorch, else why not."""
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU (torch.cuda.is_available() is False" + (
            ", CPU-only PyTorch build)" if torch.version.cuda is None else ")")
    return None


HEADERS = _header_dirs()
SKIP_REASON = None
if not HEADERS:
    SKIP_REASON = ("no TensorRT headers found (set CMC_TRT_HEADER_DIRS or TENSORRT_INCLUDE_DIR, or extract "
                   "them to /tmp/trt/<version>/include)")
elif shutil.which("cmake") is None:
    SKIP_REASON = "cmake not installed"
elif _nvcc() is None:
    SKIP_REASON = "nvcc not found (the plugin libraries link the CUDA kernels)"
needs_headers = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
header_sets = pytest.mark.parametrize("include_dir", HEADERS or ["none"],
                                      ids=lambda d: f"trt{header_version(d) or d}")


def _run(cmd, log: Path, timeout=1500, **kw):
    with open(log, "ab") as f:
        f.write(("$ " + " ".join(map(str, cmd)) + "\n").encode())
        f.flush()
        return subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, timeout=timeout, **kw).returncode


def _arch() -> str:
    if os.environ.get("CMC_TEST_CUDA_ARCH"):
        return os.environ["CMC_TEST_CUDA_ARCH"]
    if _gpu_reason() is None:  # build for the GPU that will run enqueue
        import torch
        major, minor = torch.cuda.get_device_capability()
        return f"{major}{minor}"
    return "87"


_BUILDS: dict[str, Path] = {}


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """include_dir -> the built harness executable (one build per header set and test module)."""
    def build(include_dir: str) -> Path:
        if include_dir in _BUILDS:
            return _BUILDS[include_dir]
        out = tmp_path_factory.mktemp("harness")
        log = out / "build.log"
        arch = _arch()
        configure = ["cmake", "-S", SRC, "-B", out / "build", f"-DTENSORRT_INCLUDE_DIR={include_dir}",
                     f"-DCMAKE_CUDA_ARCHITECTURES={arch}", f"-DCMC_CUDA_ARCHITECTURES={arch}-real",
                     "-DCMC_BUILD_TESTS=OFF", "-DCMC_BUILD_PLUGIN_TESTS=ON", f"-DCMAKE_CUDA_COMPILER={_nvcc()}"]
        if shutil.which("ninja"):
            configure += ["-G", "Ninja"]
        assert _run(configure, log) == 0, log.read_text()[-4000:]
        assert f"TensorRT {header_version(include_dir)} headers" in log.read_text()
        assert _run(["cmake", "--build", out / "build", "--target", "cmc_plugin_harness", "-j", "2"], log) == 0, \
            log.read_text()[-4000:]
        _BUILDS[include_dir] = out / "build" / "cmc_plugin_harness"
        return _BUILDS[include_dir]
    return build


def _readme_rows(path: Path, table: str | None) -> set[str]:
    """A README format table as 'X=float32:kLINEAR W=...' strings (the harness prints that form); `table`
    None is the unnamed one."""
    text = path.read_text()
    name = "" if table is None else " " + re.escape(table)
    m = re.search(rf"<!-- cmc-formats:begin{name} -->\n(.*?)<!-- cmc-formats:end{name} -->", text, re.S)
    assert m, f"{path}: no format table {table or '(unnamed)'}"
    lines = [ln.strip() for ln in m.group(1).splitlines() if ln.strip().startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[-1] == "format"
    rows = set()
    for ln in lines[1:]:
        cells = [c.strip().strip("`") for c in ln.strip("|").split("|")]
        if set("".join(cells)) <= set("-:"):
            continue
        fmt = cells[-1] if cells[-1].startswith("k") else "k" + cells[-1].upper()
        rows.add(" ".join(f"{n}={t}:{fmt}" for n, t in zip(header[:-1], cells[:-1])))
    return rows


def _harness_output(exe: Path, *args, timeout=600) -> tuple[int, str, str]:
    r = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


@needs_headers
@header_sets
def test_lifecycle_on_cpu(include_dir, harness, tmp_path):
    exe = harness(include_dir)
    # ctest runs it the same way (no arguments): prove the registered test passes.
    build = exe.parent
    log = tmp_path / "ctest.log"
    assert _run(["ctest", "--test-dir", build, "-R", "^cmc_plugin_harness$", "--output-on-failure"], log) == 0, \
        log.read_text()[-4000:]
    rc, out, err = _harness_output(exe)
    assert rc == 0, (out + err)[-6000:]
    assert f"TensorRT {header_version(include_dir)} headers" in out
    assert re.search(r"^\d+ passed, 0 failed, \d+ skipped$", out, re.M), out[-2000:]

    cases = {p: 0 for p in PLUGINS}
    for form in FORMS:
        for plugin in PLUGINS:
            n = len(re.findall(rf"^== {form} .*: {plugin} \(", out, re.M))
            assert n > 0 and n % ROUNDS == 0, f"{form} {plugin}: {n} lifecycles"
            cases[plugin] = n
    for plugin, (folder, table) in PLUGINS.items():
        readme = _readme_rows(SRC / folder / "README.md", table)
        accepted = re.findall(rf"^  accepted-format {plugin}: (.*)$", out, re.M)
        # Every lifecycle printed the same set, and it is the README's.
        assert len(accepted) == len(readme) * cases[plugin] * len(FORMS), plugin
        assert set(accepted) == readme, f"{plugin}: accepted {sorted(set(accepted))}, README {sorted(readme)}"

    bad = re.findall(r"^  bad fields: (\d+) of (\d+) field sets rejected with nullptr \((\d+) of them as the ONNX "
                     r"parser passes them, (\d+) with another plugin's field\), (\d+) reported", out, re.M)
    assert len(bad) == sum(cases.values()) * len(FORMS)
    for rejected, total, parser, foreign, reported in bad:
        assert int(rejected) == int(total) == int(reported) > 50 and int(parser) > 30
    # in_channels (packed-input variants only) is refused by every plugin without it.
    assert {int(f) for _, _, _, f, _ in bad} == {0, 1, 2}
    # Symbolic M: a packed Y's word count is the expression 4*ceil(M/128).
    assert re.search(r"^  shape BinaryConvPackedOut .*\(symbolic M\): Y = \[N, .*, \(ceildiv\(M, 128\) \* 4\)\]$", out, re.M)
    assert "and the registry's error recorder" in out  # the self-registering form's recorder

    if _gpu_reason() is not None:
        assert re.search(r"^enqueue: SKIPPED \(.+\)$", out, re.M), out[-2000:]
        assert not re.search(r"^  enqueue ", out, re.M), "no enqueue result may be claimed without a GPU"
        assert out.count("SKIPPED [") == sum(cases.values()) * len(FORMS)


@needs_headers
@header_sets
def test_cpp_reference_equals_reference_py(include_dir, harness, tmp_path):
    exe = harness(include_dir)
    rc, out, err = _harness_output(exe, "--dump-reference", str(tmp_path))
    assert rc == 0, out + err
    metas = sorted(tmp_path.glob("*.json"))
    assert {json.loads(m.read_text())["op"] for m in metas} == set(PLUGINS)
    for meta_path in metas:
        meta = json.loads(meta_path.read_text())
        base = str(meta_path)[:-5]
        ref = importlib.import_module(f"cmc.plugins.{meta['folder']}.reference")
        load = lambda part, dtype, shape: np.fromfile(f"{base}.{part}.bin", np.dtype(dtype)).reshape(shape)  # noqa: E731
        x = load("x", meta["x_dtype"], meta["x_shape"])
        x_float = load("x_float", "float64", meta["x_float_shape"])
        w = load("w", meta["w_dtype"], meta["w_shape"])
        scale = np.fromfile(base + ".scale.bin", np.float32)
        shift = np.fromfile(base + ".shift.bin", np.float32)
        y = load("y", meta["y_dtype"], meta["y_shape"])
        y_float = load("y_float", "float64", meta["y_float_shape"])
        attrs = dict(meta["attrs"])
        if meta["op"] in getattr(ref, "VARIANTS", {}):
            # The plugin's own contract: X / Y packed as the plugin takes / gives them.
            got = ref.reference_variant(meta["op"])(x, w, scale, shift, **attrs)
            assert got.dtype == y.dtype and got.shape == y.shape, meta_path.name
            if y.dtype == np.int32:
                assert np.array_equal(got, y), meta_path.name  # every sign bit, pad bits 0
            else:
                assert np.abs(y - got).max() <= 1e-12 * np.abs(got).max(), meta_path.name
            variant = ref.VARIANTS[meta["op"]]
            c = x_float.shape[1]
            if variant.input_packed:
                # The harness's packing of X is reference.py's: same signs (binarize(0) = +1), and pad bits
                # that hold garbage (the contract says they are ignored), so that the plugins are shown them.
                assert attrs["in_channels"] == c
                assert np.array_equal(ref.unpack_activations(x, c), ref.binarize(x_float)), meta_path.name
                pad = ref.pack_activations(x_float) ^ x
                assert np.any(pad), f"{meta_path.name}: no pad bit set in the packed X"
                assert not np.any(ref.unpack_activations(pad, c) > 0), meta_path.name  # only pad bits differ
                attrs.pop("in_channels")
            if variant.output_packed:
                assert np.array_equal(ref.pack_activations(y_float), y), meta_path.name
            # The float64 values behind the packed tensors are the base operator's on the float X.
            want = ref.reference(x_float, w, scale, shift, **attrs)
        else:
            want = ref.reference(x, w, scale, shift, **attrs)
            assert np.array_equal(y, y_float) and np.array_equal(x, x_float)
        assert want.shape == y_float.shape
        assert np.abs(y_float - want).max() <= 1e-12 * np.abs(want).max(), meta_path.name
        # The data is what the harness claims: post-ReLU inputs with exact zeros, trained AdderNet magnitudes,
        # signs of both kinds with exact zeros where activations are packed.
        if meta["folder"] == "adder_conv":
            assert np.abs(w).max() > 30
        if meta["input"] == "post_relu":
            assert np.any(x_float == 0) and x_float.min() >= 0
        if meta["input"] == "signs_with_zeros":
            assert np.any(x_float == 0) and np.any(x_float < 0) and np.any(x_float > 0)
        if y.dtype == np.int32:
            assert 0.2 < np.mean(y_float >= 0) < 0.8, f"{meta_path.name}: packed Y signs nearly constant"


def _generated_structs(header: Path) -> dict[str, dict]:
    """The structs of a generated cmc_contract_<op>.h: scalars, array initialisers and field rows, by op type."""
    out = {}
    for m in re.finditer(r"struct (\w+) \{(.*?)\n\};", header.read_text(), re.S):
        body = m.group(2)
        scalars = dict(re.findall(r"static constexpr (?:char const\*|int32_t|bool|double) (k\w+) = ([^;]+);", body))
        arrays = {k: re.findall(r'"([^"]*)"', v)
                  for k, v in re.findall(r"static constexpr char const\* (k\w+)\[\w+\] = \{([^}]*)\};", body)}
        rows = re.findall(r'\{"(\w+)", FieldKind::(\w+), (\d+), (true|false), (\d+), \{([^}]*)\}, (true|false), (-?\d+), '
                          r'(true|false), (-?\d+)\}', body)
        out[m.group(1)] = {"scalars": scalars, "arrays": arrays, "rows": rows}
    return out


@needs_headers
@header_sets
def test_generated_contract_tables(include_dir, harness):
    """CMake derives each plugin's field table (and the packed variants' tables) from contract.json by the
    same rules as cmc.plugins.contract.variants: both must give the same plugins, fields, tensors and
    tolerances."""
    from cmc.plugins.contract import load, variants

    gen_dir = harness(include_dir).parent / "cmc_generated"
    seen = set()
    for folder in ("adder_conv", "binary_conv"):
        structs = _generated_structs(gen_dir / f"cmc_contract_{folder}.h")
        contracts = [load(folder), *variants(folder)]
        assert sorted(structs) == sorted(c.op_type for c in contracts)
        for c in contracts:
            seen.add(c.op_type)
            st = structs[c.op_type]
            sc = st["scalars"]
            assert sc["kPluginName"] == f'"{c.plugin["name"]}"' and sc["kPluginVersion"] == f'"{c.plugin["version"]}"'
            assert int(sc["kOpsetVersion"]) == c.version
            assert (sc["kInputPacked"], sc["kOutputPacked"]) == (str(c.input_packed).lower(), str(c.output_packed).lower())
            assert st["arrays"]["kInputNames"] == [i["name"] for i in c.inputs] and int(sc["kNbInputs"]) == len(c.inputs)
            outputs = c.raw["outputs"]
            assert st["arrays"]["kOutputNames"] == [o["name"] for o in outputs] and int(sc["kNbOutputs"]) == len(outputs)
            for prec in ("float32", "float16"):
                assert float(sc[f"kTolerance{prec.capitalize()}"]) == c.tol(prec)
            assert [r[0] for r in st["rows"]] == c.attribute_names
            for row, a in zip(st["rows"], c.attributes):
                name, kind, length, required, nb_default, defaults, has_min, vmin, has_max, vmax = row
                assert (kind == "kInts") == (a.type == "ints") and required == str(a.required).lower()
                want_default = [] if a.default is None else (a.default if isinstance(a.default, list) else [a.default])
                assert [int(v) for v in defaults.split(",") if v.strip()] == want_default
                assert (has_min == "true", int(vmin) if has_min == "true" else None) == (a.min is not None, a.min)
                assert (has_max == "true", int(vmax) if has_max == "true" else None) == (a.max is not None, a.max)
    assert seen == set(PLUGINS)  # the harness drives every plugin the contracts declare


@needs_headers
def test_readme_table_mismatch_fails(harness, tmp_path):
    exe = harness(HEADERS[0])
    root = tmp_path / "trt_plugins"
    for folder in {f for f, _ in PLUGINS.values()}:
        (root / folder).mkdir(parents=True)
        shutil.copy(SRC / folder / "README.md", root / folder / "README.md")
    readme = root / "binary_conv" / "README.md"
    text = readme.read_text()

    def run(new_text, *extra):
        readme.write_text(new_text)
        rc, out, err = _harness_output(exe, "--plugins-root", str(root), "--rounds", "1", "--enqueue=off", *extra)
        return rc, out + err, err

    # A row missing from the unnamed table, and from a variant's named table.
    row = next(ln for ln in text.splitlines() if ln.startswith("| float16 | int32 | float32 | float32 | float16 |"))
    rc, both, err = run(text.replace(row + "\n", ""))
    assert rc == 1 and "accepted but not in trt_plugins/binary_conv/README.md: X=float16" in err, both[-3000:]
    packed = text.split("<!-- cmc-formats:begin BinaryConvPackedOut -->")[1]
    row = next(ln for ln in packed.splitlines() if ln.startswith("| float16 |"))
    rc, both, err = run(text.replace(row + "\n", "", 1))
    assert rc == 1 and "[round 1 / dlopen / packedout_" in err, both[-3000:]
    assert "accepted but not in trt_plugins/binary_conv/README.md: X=float16:kLINEAR W_packed=int32:kLINEAR " \
           "scale=float32:kLINEAR shift=float32:kLINEAR Y=int32:kLINEAR" in err, both[-3000:]

    # Marker problems stop the harness before any plugin is run.
    rc, both, err = run(text.replace("<!-- cmc-formats:begin -->\n", "").replace("<!-- cmc-formats:end -->\n", ""))
    assert rc == 1 and "no format table between '<!-- cmc-formats:begin -->'" in err, both[-3000:]
    rc, both, err = run(text.replace("<!-- cmc-formats:begin -->", ""))
    assert rc == 1 and "end marker of the unnamed table outside any table" in err, both[-3000:]
    rc, both, err = run(text.replace("BinaryConvPackedIn -->", "BinaryConvPakedIn -->"))
    assert rc == 1 and "no format table between '<!-- cmc-formats:begin BinaryConvPackedIn -->'" in err, both[-3000:]
    assert "format table 'BinaryConvPakedIn' belongs to no plugin of this folder" in err, both[-3000:]
    rc, both, err = run(text.replace("<!-- cmc-formats:end BinaryConvPackedOut -->", "<!-- cmc-formats:end BinaryConvPackedIn -->"))
    assert rc == 1 and "end marker of table 'BinaryConvPackedIn' inside table 'BinaryConvPackedOut'" in err, both[-3000:]
    assert not re.search(r"^== ", both, re.M)


@pytest.mark.gpu
@needs_headers
@header_sets
def test_enqueue_on_gpu(include_dir, harness, tmp_path):
    reason = _gpu_reason()
    if reason is not None:
        pytest.skip(reason)
    exe = harness(include_dir)
    rc, out, err = _harness_output(exe, "--enqueue=require")
    assert rc == 0, (out + err)[-6000:]
    m = re.search(r"^enqueue: (\d+) passed, 0 failed on ", out, re.M)
    assert m and int(m.group(1)) > 0, out[-3000:]
    assert "SKIPPED [" not in out
    for plugin in PLUGINS:  # every plugin, packed X / Y included, ran and matched its reference
        assert re.search(rf"^  enqueue {plugin} .* ok$", out, re.M), f"{plugin}: no enqueue result"
    assert not re.search(r"^  enqueue .*FAILED", out, re.M)
    sanitizer = shutil.which("compute-sanitizer") or "/usr/local/cuda/bin/compute-sanitizer"
    if os.path.isfile(sanitizer):
        r = subprocess.run([sanitizer, "--tool", "memcheck", "--error-exitcode", "9", str(exe), "--rounds", "1",
                            "--enqueue=require"], capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_configure_without_tensorrt_skips_plugins_with_a_message(tmp_path):
    """Without TensorRT headers the plugin targets are skipped with a clear message (kernels unaffected)."""
    if not (SRC / "CMakeLists.txt").is_file():
        pytest.skip("trt_plugins/CMakeLists.txt missing")
    env = {k: v for k, v in os.environ.items() if k not in ("TENSORRT_INCLUDE_DIR", "TENSORRT_ROOT")}
    build = tmp_path / "build"
    # Ignore the system folders, so that system-wide headers (if any) are not picked up.
    cmd = ["cmake", "-S", str(SRC), "-B", str(build), "-DCMC_WITH_CUDA=OFF", "-DCMC_BUILD_TESTS=OFF",
           "-DCMAKE_IGNORE_PREFIX_PATH=/usr;/usr/local", "-DCMAKE_IGNORE_PATH=/usr/include/aarch64-linux-gnu;"
           "/usr/include/x86_64-linux-gnu;/usr/include;/usr/local/tensorrt/include"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert "SKIPPED" in out and "TensorRT" in out, out[-3000:]
