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
