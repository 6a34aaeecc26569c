import numpy as np
import onnxruntime as ort
import pytest
import torch

from cmc.exporter.onnx_export import export_onnx
from cmc.plugins.spconv import SPConv2d
from samples.spconv_resnet import SPConv_3x3


@pytest.mark.parametrize("stride", [1, 2])
def test_matches_the_research_module(stride):
    torch.manual_seed(0)
    research = SPConv_3x3(32, 48, stride=stride).eval()
    ours = SPConv2d(32, 48, stride=stride).eval()
    ours.load_state_dict({k.replace("bn1", "bn_3x3").replace("bn2", "bn_1x1"): v for k, v in research.state_dict().items()})
    x = torch.randn(2, 32, 8, 8)
    assert torch.allclose(ours(x), research(x), atol=1e-5)


def test_exports_to_standard_ops_only():
    m = SPConv2d(16, 16, stride=2).eval()
    res = export_onnx(m, torch.randn(1, 16, 8, 8))
    assert not res.custom_node_counts()
    sess = ort.InferenceSession(res.model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 16, 8, 8)
    with torch.no_grad():
        assert np.allclose(sess.run(None, {"input": x.numpy()})[0], m(x).numpy(), atol=1e-5)


def test_bad_arguments():
    for kw in ({"ratio": 1.0}, {"stride": 3}, {"ratio": 0.01}):
        with pytest.raises(ValueError):
            SPConv2d(16, 16, **kw)
