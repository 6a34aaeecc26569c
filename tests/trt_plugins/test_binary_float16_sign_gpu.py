"""The CUDA BinaryConv kernels at the float16 rounding boundary (contract.json "float16_rounding"; issue 21
item 2): a float16 Y holds +-2^-24 where plain rounding would give +-0, so its binarization is the float32
value's, and a packed output's bits are those signs. Popcount and BMMA kernels (binarize_input=1) and the float
path (binarize_input=0); the same rule's CPU side: tests/plugins/test_binary_float16_sign.py and
tests/trt_plugins/test_bmma_model_float16.py. Marked gpu: skipped with the reason where there is no CUDA GPU."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cmc.plugins.binary_conv import reference as binary_ref

from ..plugins.test_binary_float16_sign import BOUNDARY
from .cuda_ext import load_extension
from .test_binary_bmma_gpu import BMMA, DEV, POPCOUNT, _bits, _fwd, _sm

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="no CUDA GPU (torch.cuda.is_available() is False"
                              + (", CPU-only PyTorch build)" if torch.version.cuda is None else ")")),
]

A = dict(c=16, m=16, kh=3, kw=3, strides=[1, 1], pads=[1, 1, 1, 1], dil=[1, 1], group=1)


@pytest.fixture(scope="module")
def ext():
    return load_extension()


@pytest.mark.parametrize("kernel,bin_in", [(POPCOUNT, 1), (BMMA, 1), (POPCOUNT, 0)],
                         ids=["popcount", "bmma", "float-input"])
def test_float16_output_keeps_the_sign_at_underflow(ext, kernel, bin_in):
    if kernel == BMMA and _sm() < 80:
        pytest.skip(f"BMMA needs sm_80+ (this GPU: sm_{_sm()})")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, A["c"], 6, 5, generator=g).half().to(DEV)
    wp = binary_ref.pack_weights(torch.randn(A["m"], A["c"], 3, 3, generator=g).numpy())
    prep = ext.binary_prepare_weights(torch.from_numpy(wp).to(DEV), A["c"], A["group"])
    shift = np.resize(BOUNDARY, A["m"]).astype(np.float32)  # scale 0: Y[:, m] = 0 * B + shift[m] = shift[m]
    s, t = torch.zeros(A["m"], device=DEV), torch.from_numpy(shift).to(DEV)
    y = _fwd(ext, x, prep, s, t, A, bin_in=bin_in, dtype=1, kernel=kernel).cpu().numpy()
    want = binary_ref.round_to_float16(shift)
    for row in range(A["m"]):
        np.testing.assert_array_equal(y[:, row], np.full(y[:, row].shape, want[row], np.float16), err_msg=f"row {row}")
    if bin_in:  # the packed output: bit = binarize of the float16 value = binarize of the float32 value
        yp = _fwd(ext, x, prep, s, t, A, dtype=1, out_packed=True, kernel=kernel)
        bits, pad = _bits(yp, A["m"])
        np.testing.assert_array_equal(bits, np.broadcast_to((shift >= 0).astype(np.uint8), bits.shape))
        assert not pad.any()
