"""locate_divergence: the module it names is the one whose ONNX value first differs from PyTorch's."""
import onnx
import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")


class Block(nn.Module):
    """A residual block whose output is its child ReLU's, computed after the block's own add."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv(x) + x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block(4)
        self.head = nn.Conv2d(4, 3, 1)

    def forward(self, x):
        return self.head(self.block(x))


def test_block_ending_in_a_child_relu_is_not_blamed_for_a_later_layer():
    from cmc.exporter.onnx_export import export_onnx
    from cmc.exporter.verify import locate_divergence

    torch.manual_seed(0)
    model = Net().eval()
    x = torch.randn(1, 4, 6, 6)
    proto = export_onnx(model, x).model
    head_w = next(t for t in proto.graph.initializer if t.name.startswith("head") and t.name.endswith("weight"))
    w = onnx.numpy_helper.to_array(head_w) * 1.5  # the ONNX head no longer matches PyTorch's
    head_w.CopyFrom(onnx.numpy_helper.from_array(w, head_w.name))
    found = locate_divergence(model, proto, {proto.graph.input[0].name: x.numpy()}, 1e-4)
    assert found["kind"] == "module" and found["module"] == "head", found


def test_intact_model_has_no_diverging_module():
    from cmc.exporter.onnx_export import export_onnx
    from cmc.exporter.verify import locate_divergence

    torch.manual_seed(1)
    model = Net().eval()
    x = torch.randn(2, 4, 6, 6)
    proto = export_onnx(model, x).model
    found = locate_divergence(model, proto, {proto.graph.input[0].name: x.numpy()}, 1e-4)
    assert found["kind"] == "unknown", found
