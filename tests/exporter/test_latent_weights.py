"""--binarize-weights: the codebases' own binarization of latent float weights."""
import pytest
import torch

from cmc.exporter.errors import CmcError
from cmc.exporter.latent_weights import binarize


def _xnor_binop(w: torch.Tensor) -> torch.Tensor:
    """XNOR-Net-PyTorch's BinOp.binarization() on one conv weight, step by step as its util.py does it."""
    w = w.clone()
    w = w.add(w.mean(1, keepdim=True).mul(-1).expand_as(w))   # meancenterConvParams
    w = w.clamp(-1.0, 1.0)                                      # clampConvParams
    n = w[0].nelement()
    if w.dim() == 4:
        m = w.norm(1, 3, keepdim=True).sum(2, keepdim=True).sum(1, keepdim=True).div(n)
    else:
        m = w.norm(1, 1, keepdim=True).div(n)
    return w.sign().mul(m.expand(w.size()))                    # binarizeConvParams


@pytest.mark.parametrize("shape", [(6, 5, 3, 3), (7, 12)])
def test_xnor_scheme_is_binops(shape):
    torch.manual_seed(0)
    w = torch.randn(*shape) * 0.8  # some |W| > 1: the clamp matters
    got, want = binarize(w, "xnor"), _xnor_binop(w)
    assert torch.equal(got.sign(), want.sign())
    assert torch.allclose(got, want, rtol=1e-6, atol=0)
    assert all(torch.unique(row.abs()).numel() == 1 for row in got.flatten(1))


def test_sign_scheme_and_unknown_scheme():
    w = torch.tensor([[0.3, -0.2, 0.0]])
    assert torch.equal(binarize(w, "sign"), torch.tensor([[1.0, -1.0, 0.0]]))
    with pytest.raises(CmcError, match="choose one of xnor, sign"):
        binarize(w, "ternary")
