"""TensorRT engines with packed chains (BinaryConvPackedOut/In/InOut plugins): marked tensorrt + gpu, they run
only where TensorRT and a GPU exist (skipped here with the reason, like tests/exporter/test_trt_backend.py)."""
import os

import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from cmc.exporter.convert import pack_for_deployment
from cmc.exporter.onnx_export import export_onnx
from cmc.exporter.packed_chains import unpack_chains
from cmc.plugins.binary_conv import BinaryConv2d

from .test_trt_backend import _tensorrt_skip_reason

TRT_SKIP = _tensorrt_skip_reason()


class Chain(nn.Module):
    """Float stem, then four binary layers: 130 channels (two 128-bit blocks), a stride, a 1x1."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.b1 = nn.Sequential(BinaryConv2d(16, 130, 3, padding=1), nn.BatchNorm2d(130))
        self.b2 = nn.Sequential(BinaryConv2d(130, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64))
        self.b3 = nn.Sequential(BinaryConv2d(64, 64, 1), nn.BatchNorm2d(64), nn.ReLU())
        self.b4 = BinaryConv2d(64, 10, 3, padding=1)

    def forward(self, x):
        return self.b4(self.b3(self.b2(self.b1(self.stem(x))))).mean(dim=(2, 3))


def _packed_chain_model():
    torch.manual_seed(0)
    m = Chain().eval()
    with torch.no_grad():
        for bn in m.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.uniform_(-3, 3)
                bn.running_var.uniform_(0.5, 4)
    x = torch.randn(2, 3, 16, 16)
    return export_onnx(pack_for_deployment(m), x, packed_chains=True)


def test_the_chain_model_is_packed():
    """The model the engine tests build: checked everywhere (CPU), so the GPU tests test what they claim."""
    res = _packed_chain_model()
    assert res.packed_chains["chains"] == [["b1.0/BinaryConv", "b2.0/BinaryConv", "b3.0/BinaryConv", "b4/BinaryConv"]]
    assert res.custom_node_counts() == {"BinaryConvPackedOut": 1, "BinaryConvPackedInOut": 2, "BinaryConvPackedIn": 1}


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.skipif(TRT_SKIP is not None, reason=TRT_SKIP or "")
def test_packed_chain_engine_matches_onnxruntime(tmp_path):
    from cmc.exporter.trt import build_trt

    res = _packed_chain_model()
    src = tmp_path / "chain.onnx"
    onnx.save(res.model, src)
    sess = ort.InferenceSession(unpack_chains(res.model).SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    manifest = build_trt(src, tmp_path / "out", batch=(1, 2, 4), workspace_mb=256,
                         plugin_lib=os.environ.get("CMC_TRT_PLUGIN_LIB"), tolerance=1e-4,
                         reference=lambda feeds: sess.run(None, {name: feeds[name]}))
    assert manifest["verification"]["passed"], manifest["verification"]
    assert manifest["onnx_preparation"]["plugin_nodes"] == {"BinaryConvPackedOut": 1, "BinaryConvPackedInOut": 2,
                                                             "BinaryConvPackedIn": 1}
    assert sorted(manifest["onnx_preparation"]["stripped_functions"]) == [
        "com.cmc::BinaryConvPackedIn", "com.cmc::BinaryConvPackedInOut", "com.cmc::BinaryConvPackedOut"]


def test_fp16_keeps_the_value_a_packed_chain_binarizes_in_float32():
    """A chain's first node (BinaryConvPackedOut, float X) takes the sign of the stem's output: in the FP16
    ONNX the stem must stay float32 exactly as it does in front of a plain BinaryConv."""
    import numpy as np

    from cmc.exporter.trt.fp16_onnx import convert_to_fp16

    packed = _packed_chain_model().model
    rng = np.random.default_rng(0)
    feeds = [{"input": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)}]
    _, report = convert_to_fp16(packed, feeds)
    kept = {r["node"]: r["reason"] for r in report["fp32_nodes"]}
    stem = next(n for n in packed.graph.node if n.op_type == "Conv")  # the float stem feeding the chain
    key = f"{stem.name} (Conv)"
    assert key in kept and "binarized" in kept[key], kept
