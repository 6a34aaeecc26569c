"""Launch each BinaryConv CUDA kernel once on one layer, for a profiler (ncu) to capture: the BMMA
tensor-core kernel with the rule's tile (FP16 input, then packed input and output), the XNOR/popcount
kernel, then each fused BMMA tile forced (FP16 input, packed input and output): P_a summed in the
k-loop, no pre-pass kernel (trt_plugins/KERNELS.md).

    ncu --profile-from-start off ... python benchmarks/profile_binary.py --layer bnn.3x3.256-256.14

One untimed warm-up round first, then the profiled round between cudaProfilerStart/Stop. GPU only.
"""
from __future__ import annotations

import torch

from _common import profile_setup, profiled_round


def main(argv=None):
    ext, (name, n, c, h, w, m, k, s, p) = profile_setup("profile_binary.py", __doc__, "bnn.3x3.256-256.14", argv)
    from cmc.plugins.binary_conv.op import pack_weights

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=gen).cuda().half()
    wp = pack_weights(torch.randn(m, c, k, k, generator=gen)).cuda()
    prep = ext.binary_prepare_weights(wp, c, 1)
    ones, zeros = torch.ones(m, device="cuda"), torch.zeros(m, device="cuda")
    st, pads, dil = [s, s], [p, p, p, p], [1, 1]
    xp = ext.binary_pack_activations(x)

    def fwd(inp, kernel, packed):
        return ext.binary_forward_ex(inp, prep, ones, zeros, c, m, k, k, st, pads, dil, 1, 1, 0,
                                     packed, packed, 1, kernel)

    fused = [i for i, t in enumerate(ext.binary_bmma_tiles()) if t.startswith("fused")]

    def round_():
        fwd(x, 2, False)
        fwd(xp, 2, True)
        fwd(x, 1, False)
        try:
            for i in fused:
                ext.binary_bmma_force_tile(i)
                fwd(x, 2, False)
                fwd(xp, 2, True)
        finally:
            ext.binary_bmma_force_tile(-1)

    profiled_round(round_, f"{name}: BMMA (fp16 in), BMMA (packed in/out), popcount, then fused tiles {fused}")


if __name__ == "__main__":
    main()
