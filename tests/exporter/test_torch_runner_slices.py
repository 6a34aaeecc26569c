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


def test_a_slice_seen_again_is_computed_once():
    torch.manual_seed(0)
    model = _Recorder().eval()
    runner = TorchRunner(model, ["x"], ["y", "z"], [(1, 3, 8, 8)], batch_slice=1)
    stream = np.random.default_rng(0).standard_normal((5, 3, 8, 8)).astype(np.float32)
    with runner:
        one = runner.infer({"x": stream[:1].copy()})
        five = runner.infer({"x": stream.copy()})
    assert model.batches == [1, 1, 1, 1, 1]  # sample 0 once, although both feeds hold it
    assert (runner.slices_run, runner.slices_reused) == (5, 1)
    np.testing.assert_array_equal(five["y"][:1], one["y"])
    with torch.no_grad():
        y, _ = model(torch.from_numpy(stream))
    np.testing.assert_allclose(five["y"], y.numpy(), rtol=1e-6, atol=1e-6)


def test_make_feeds_are_prefixes_of_one_stream():
    from cmc.exporter.verify import make_feeds

    one, five = make_feeds("x", (1, 3, 4, 4), (1, 5))
    assert one["x"].shape == (1, 3, 4, 4) and five["x"].shape == (5, 3, 4, 4)
    np.testing.assert_array_equal(one["x"], five["x"][:1])
    assert len({five["x"][i].tobytes() for i in range(5)}) == 5


def test_remembered_outputs_are_reused_and_misfits_refused():
    torch.manual_seed(0)
    model = _Recorder().eval()
    runner = TorchRunner(model, ["x"], ["y", "z"], [(1, 3, 8, 8)], batch_slice=1)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        known = model(x)
    model.batches.clear()
    assert not runner.remember([torch.randn(2, 3, 8, 8)], model(torch.randn(2, 3, 8, 8)))  # not one slice
    assert not runner.remember([x], known[:1])  # fewer outputs than the runner's
    model.batches.clear()
    assert runner.remember([x], known)
    with runner:
        out = runner.infer({"x": torch.cat([x, torch.randn(1, 3, 8, 8)]).numpy()})
    assert model.batches == [1] and (runner.slices_run, runner.slices_reused) == (1, 1)
    np.testing.assert_array_equal(out["y"][:1], known[0].numpy())
