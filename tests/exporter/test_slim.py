"""--slim: Network Slimming's global |γ| threshold, as the repository's prune scripts apply it."""
import pytest
import torch
import torch.nn as nn

from cmc.exporter.errors import CmcError
from cmc.exporter.shrink.slim import slim, sparsity_hint
from samples.pruning import repo_prune
from samples.pruning.common import randomize_bn
from samples.pruning.preresnet_cs import resnet


def _sparse_preresnet(seed=0):
    torch.manual_seed(seed)
    m = resnet(depth=20)
    randomize_bn(m, torch.Generator().manual_seed(seed))
    return repo_prune.sparsity_trained(m, seed=seed).eval()


@pytest.mark.parametrize("percent", [10, 37.5, 50, 80])
def test_slim_zeroes_what_the_prune_scripts_zero(percent):
    model, ref = _sparse_preresnet(), _sparse_preresnet()
    rep = slim(model, percent)
    masks = repo_prune.slim_masks(ref, percent)
    mods = dict(model.named_modules())
    for name, keep in masks:
        bn = mods[name]
        assert torch.equal(bn.weight != 0, keep) and torch.equal(bn.bias[~keep], torch.zeros(int((~keep).sum())))
    assert [entry["kept"] for entry in rep["layers"]] == [int(k.sum()) for _, k in masks]
    assert rep["pruned_channels"] == sum(int((~k).sum()) for _, k in masks)
    assert rep["pruned_channels"] == int(rep["channels"] * percent / 100) + 1   # the threshold channel goes too


def test_slim_keeps_untouched_channels_exactly():
    model, ref = _sparse_preresnet(), _sparse_preresnet()
    slim(model, 30)
    for (n, a), (_, b) in zip(model.named_parameters(), ref.named_parameters()):
        if n.endswith(("bn1.weight", "bn2.weight", "bn3.weight", "bn.weight")):
            kept = a != 0
            assert torch.equal(a[kept], b[kept])
        elif "bn" not in n:
            assert torch.equal(a, b), n


def test_slim_refuses_what_it_cannot_do():
    with pytest.raises(CmcError, match="between 0 and 100"):
        slim(_sparse_preresnet(), 0)
    with pytest.raises(CmcError, match="no BatchNorm2d"):
        slim(nn.Sequential(nn.Conv2d(3, 4, 3)), 50)
    m = _sparse_preresnet()
    with torch.no_grad():
        m.layer1[0].bn2.weight.mul_(1e-6)        # a layer whose every γ is below the rest
    with pytest.raises(CmcError, match=r"leaves no channel in BatchNorm 'layer1.0.bn2'.*smaller percentage"):
        slim(m, 20)


def test_sparsity_hint_only_for_sparsity_trained_gammas():
    assert "--slim PERCENT" in sparsity_hint(_sparse_preresnet())
    torch.manual_seed(0)
    dense = resnet(depth=20)
    randomize_bn(dense, torch.Generator().manual_seed(0))
    assert sparsity_hint(dense) is None
    assert sparsity_hint(nn.Sequential(nn.Conv2d(3, 4, 3))) is None
