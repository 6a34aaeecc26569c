"""The BinaryConv benchmark scripts run their code paths on a CPU (--smoke): layer table rows and the
whole-network BNN benchmark (NIN, BNN ResNet-18) with the folded epilogues. Their times mean nothing;
what is checked is that the scripts run and that the folded cmc path computes the same network as the
cuDNN-style baseline (binarize + one convolution with +-scale weights and the shift as bias)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script, *args, tmp_path):
    out = tmp_path / "out.json"
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--out", str(out), *args],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(out.read_text())


def test_bench_layers_smoke(tmp_path):
    data = _run("bench_layers.py", tmp_path=tmp_path)
    assert data["benchmark"] == "layers" and data["records"]
    assert all("ms_median" in r or "error" in r for r in data["records"])


@pytest.mark.parametrize("net", ["nin", pytest.param("resnet18", marks=pytest.mark.slow)])
def test_bench_bnn_net_smoke(tmp_path, net):
    data = _run("bench_bnn_net.py", "--net", net, tmp_path=tmp_path)
    recs = [r for r in data["records"] if r["net"] == net]
    assert {r["impl"] for r in recs} == {"cmc", "torch_cpu"}
    assert all("ms_median" in r for r in recs)
    # the folded epilogue path and the baseline are the same network (float32 on the CPU)
    assert all(r["rel_dev_cmc_vs_cudnn"] <= 1e-4 for r in recs)


@pytest.mark.parametrize("script", ["profile_adder.py", "profile_binary.py"])
def test_profile_scripts_refuse_cleanly_without_a_gpu(script):
    """The ncu helpers take any bench_layers layer and exit with one line where no GPU exists."""
    if torch_cuda_available():
        pytest.skip("a CUDA GPU is present: the scripts would profile")
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--layer", "no-such-layer"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "invalid choice: 'no-such-layer'" in bad.stderr
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--layer", "r50.l1.1x1.64-256"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 1 and res.stderr.strip() == f"no CUDA GPU: {script} only runs on a GPU machine"


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def test_binary_summary_splits_prepass_and_fused_tiles():
    """The sweep's summary names the fastest tile of each BMMA kernel (P_a pre-pass vs fused) and of the
    forced packed-chain runs: the figures the tile rule is chosen from."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_layers
    finally:
        sys.path.pop(0)

    def rec(impl, ms, tile=None):
        r = dict(layer="L", impl=impl, dtype="fp16", ms_median=ms)
        return r if tile is None else dict(r, tile=tile)

    records = [rec("cudnn_conv", 0.060), rec("cmc_binary_bmma", 0.040),
               rec("cmc_binary_bmma_tile0", 0.050, "32x256 (warp 2x8, 1x4 warps)"),
               rec("cmc_binary_bmma_tile2", 0.038, "128x64 (warp 4x4, 2x2 warps)"),
               rec("cmc_binary_bmma_tile9", 0.030, "fused 128x64 (warp 4x4, 2x2 warps)"),
               rec("cmc_binary_bmma_tile11", 0.045, "fused 64x64 (warp 2x2, 2x4 warps)"),
               rec("cmc_binary_bmma_packed_io_tile9", 0.020, "fused 128x64 (warp 4x4, 2x2 warps)"),
               rec("cmc_binary_bmma_tile3", 0.001, "64x64 (warp 2x4, 2x2 warps)") | {"dtype": "fp32"}]
    (row,) = bench_layers.binary_summary(records)
    assert row["best_tile"] == "fused 128x64 (warp 4x4, 2x2 warps)" and row["best_tile_ms"] == 0.030
    assert row["best_prepass_tile"] == "128x64 (warp 4x4, 2x2 warps)" and row["best_prepass_tile_ms"] == 0.038
    assert row["best_fused_tile"] == "fused 128x64 (warp 4x4, 2x2 warps)"
    assert row["best_fused_tile_speedup_vs_cudnn_fp16"] == 2.0
    assert len(row["tile_ms"]) == 4  # fp16 sweep rows only, packed-chain rows apart
    assert row["best_packed_io_tile"] == "fused 128x64 (warp 4x4, 2x2 warps)"
    assert row["best_packed_io_tile_speedup_vs_cudnn_fp16"] == 3.0


def test_binary_summary_states_each_binary_path_against_the_int8_gemm():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_layers
    finally:
        sys.path.pop(0)
    records = [dict(layer="L", impl=i, dtype="fp16", ms_median=ms) for i, ms in
               (("cudnn_conv", 0.060), ("int8_int_mm", 0.045), ("cmc_binary_bmma", 0.030))]
    (row,) = bench_layers.binary_summary(records)
    assert row["int8_int_mm_ms"] == 0.045 and row["cmc_binary_bmma_speedup_vs_int8"] == 1.5


def test_int8_gemm_operands_fit_int_mm():
    """torch._int_mm's shape rules (rows > 16, K and M multiples of 8): the GEMM of a layer with odd sizes."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_layers
    finally:
        sys.path.pop(0)
    a, b = bench_layers.int8_gemm_operands(9, 3 * 3 * 3, 10, "cpu")
    assert a.shape == (17, 32) and b.shape == (32, 16) and a.dtype == b.dtype == torch.int8
    assert b.stride() == (1, 32)  # column-major


def test_bnn_net_speedups_pair_eager_and_graph_runs():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_bnn_net
    finally:
        sys.path.pop(0)
    recs = [dict(net="nin", batch=64, impl=i, ms_median=ms) for i, ms in
            (("cmc", 2.0), ("cudnn_fp16", 4.0), ("cmc_graph", 0.5), ("cudnn_fp16_graph", 2.0))]
    recs += [dict(net="resnet18", batch=1, impl="cmc", ms_median=1.0),
             dict(net="resnet18", batch=1, impl="cudnn_fp16", error="out of memory")]
    (row,) = bench_bnn_net.speedups(recs)  # a pair with an error gives no row
    assert row == {"net": "nin", "batch": 64, "eager_cmc_ms": 2.0, "eager_cudnn_fp16_ms": 4.0, "eager_speedup": 2.0,
                   "graph_cmc_ms": 0.5, "graph_cudnn_fp16_ms": 2.0, "graph_speedup": 4.0}


def test_sass_stats_finds_the_k_loop():
    """sass_stats.py's reading of cuobjdump output: the largest backward-branch loop that holds BMMAs,
    its unroll factor from the warp tile, and the register line."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import sass_stats
    finally:
        sys.path.pop(0)
    name = "_ZN3cmc6detail1_20binaryBmmaConvKernelILi2ELi2ELi2ELi4E6__halfLb0ELb1EEEvNS_4bits8BmmaDimsE"
    body = ["BMMA.168256.AND.POPC R4, R8.ROW, R12.COL, R4"] * 8 + ["IADD3 R1, R1, 0x1, RZ"] * 7
    lines = [f"\t\tFunction : {name}", "        /*0000*/                   MOV R1, c[0x0][0x28] ;"]
    lines += [f"        /*{16 * (i + 1):04x}*/                   {t} ;" for i, t in enumerate(body)]
    lines += [f"        /*{16 * (len(body) + 1):04x}*/              @P0 BRA 0x10 ;",  # the inner loop
              f"        /*{16 * (len(body) + 2):04x}*/              @P1 BRA 0x0 ;",   # an outer one, larger
              f"        /*{16 * (len(body) + 3):04x}*/              @P2 BRA 0x60 ;",  # forward: no loop
              f"        /*{16 * (len(body) + 4):04x}*/                   EXIT ;"]
    funcs = sass_stats.parse_sass("\n".join(lines))
    ins = funcs[name]
    assert len(ins) == len(body) + 5
    loop = sass_stats.k_loop(ins)
    assert len(loop) == len(body) + 3  # the largest loop with BMMAs: from 0x0 to the second branch
    assert sass_stats.KERNEL.search(name).groups() == ("2", "2", "2", "4", "6__half", "0", "1")
    old = name.replace("Lb0ELb1E", "Lb1E")  # a build before the fused variant: no FUSED parameter
    assert sass_stats.KERNEL.search(old).groups()[5:] == ("1", None)
    usage = f"Function {name}:\n    REG:152 STACK:0 SHARED:0 LOCAL:0"
    assert sass_stats.registers(usage) == {name: {"regs": 152, "stack": 0}}
    assert sass_stats.warps_per_sm(152, 4) == 12 and sass_stats.warps_per_sm(60, 8) == 32
