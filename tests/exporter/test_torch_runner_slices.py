"""The verify step's PyTorch runner evaluates a batch in slices of the example's batch size (issue 20:
the research adder2d unfold materialises N x M x CK x L values for the whole batch)."""
import numpy as np
import torch

from cmc.exporter.backend.torch_runner import TorchRunner


class _Recorder(torch.nn.Module):
    def __init__(self, pooled=False):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.pooled = pooled
        self.batches = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        y = self.conv(x)
        return y.sum() if self.pooled else (y, y.mean(dim=(2, 3)))


def _infer(model, batch_slice, n=6):
    runner = TorchRunner(model, ["x"], ["y", "z"][:1 if model.pooled else 2], [(2, 3, 8, 8)], batch_slice=batch_slice)
    x = np.random.default_rng(0).standard_normal((n, 3, 8, 8)).astype(np.float32)
    with runner:
        return runner.infer({"x": x})


def test_slices_give_the_whole_batch_outputs():
    torch.manual_seed(0)
    model = _Recorder().eval()
    whole = _infer(model, None)
    assert model.batches == [6]
    model.batches.clear()
    sliced = _infer(model, 2)
    assert model.batches == [2, 2, 2]
    for name in whole:
        assert sliced[name].shape == whole[name].shape
        np.testing.assert_allclose(sliced[name], whole[name], rtol=1e-6, atol=1e-6)


def test_outputs_without_a_batch_dimension_run_the_whole_batch():
    torch.manual_seed(0)
    model = _Recorder(pooled=True).eval()
    out = _infer(model, 2)
    assert model.batches[-1] == 6 and out["y"].size == 1  # one run of the whole batch, not a sum of slices
