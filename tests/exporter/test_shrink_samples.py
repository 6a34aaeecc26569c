"""Whole pruning samples: shrink, export with torch.onnx (dynamo), run in onnxruntime, compare with
the masked PyTorch model, and check the ONNX weights are physically smaller (marked slow)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from cmc.exporter.shrink import find_pruned, shrink

pytestmark = pytest.mark.slow


def _onnx(model, x, path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), dynamo=True, verbose=False).save(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    return y, sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)


CASES = {
    "mlp": ("samples.pruning.mnist:mlp_pruned", {}),
    "convnet": ("samples.pruning.mnist:convnet_pruned", {}),
    "vgg16": ("samples.pruning.vgg_slim:vgg16_slimmed", {}),
    "resnet56": ("samples.pruning.resnet56_l1:resnet56_l1", {}),
    "preresnet": ("samples.pruning.preresnet_cs:preresnet_slimmed", {"depth": 29}),
}


def _build(spec, kw):
    import importlib
    mod, fn = spec.split(":")
    f = getattr(importlib.import_module(mod), fn)
    return f(**kw), f.input_shape


@pytest.mark.parametrize("name", sorted(CASES))
def test_sample_onnx_matches_masked_model_and_is_smaller(name, tmp_path):
    model, shape = _build(*CASES[name])
    assert find_pruned(model)
    x = torch.randn(2, *shape[1:])
    res = shrink(model, (x,))
    json.dumps(res.report)
    with torch.no_grad():
        ref = model(x).numpy()
    y, n_small = _onnx(res.model, x, tmp_path / "shrunk.onnx")
    assert np.abs(y - ref).max() / np.abs(ref).max() <= res.report["verification"]["tol"]
    assert res.report["params"]["after"] < res.report["params"]["before"]
    if name != "preresnet":  # the research channel_selection (NumPy indexing) does not export as is
        _, n_full = _onnx(model, x, tmp_path / "masked.onnx")
        assert n_small < n_full


def test_preresnet_channel_selection_shrinks_in_rounds():
    from samples.pruning import preresnet_cs
    m = preresnet_cs.preresnet_slimmed(depth=11)
    x = torch.randn(2, 3, 32, 32)
    res = shrink(m, (x,), round_to=1)
    assert res.report["rounds"] == 2
    blk = res.model.layer1[0]
    assert blk.conv1.in_channels < 16 and blk.conv1.in_channels == blk.select.out_channels
    assert res.model.fc.in_features < 256


def test_adder_resnet20_shrinks_exactly():
    """The AdderNet sample against its masked self in PyTorch (its ONNX goes through cmc's exporter)."""
    from cmc.plugins.contract import load
    from samples.pruning import adder_resnet20
    m = adder_resnet20.adder_resnet20_pruned()
    x = torch.randn(2, 3, 32, 32)
    res = shrink(m, (x,))
    assert res.report["verification"]["tol"] == load("adder_conv").tol()
    with torch.no_grad():
        a, b = m(x), res.model(x)
    assert float((a - b).abs().max() / a.abs().max()) <= load("adder_conv").tol()
    blk = res.model.layer1[0]
    assert blk.conv1.out_channels == 8 and blk.conv2.in_channels == 8
    assert any(f["into"] == "layer1.0.conv2" for f in res.report["folded"])
