"""Launch each BinaryConv CUDA kernel once on one layer, for a profiler (ncu) to capture: the BMMA
tensor-core kernel (FP16 input, then packed input and output), and the XNOR/popcount kernel.

    ncu --profile-from-start off ... python benchmarks/profile_binary.py --layer bnn.3x3.256-256.14

One untimed warm-up round first, then the profiled round between cudaProfilerStart/Stop. GPU only.
"""
from __future__ import annotations

import argparse
import sys

import torch

from bench_layers import SUITES


def main(argv=None):
    layers = {l[0]: l for suite in SUITES.values() for l in suite}
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layer", default="bnn.3x3.256-256.14", choices=sorted(layers))
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU: profile_binary.py only runs on a GPU machine")
    from cmc.plugins._cuda import loader
    from cmc.plugins.binary_conv.op import pack_weights

    ext = loader.load()
    if ext is None:
        sys.exit(f"cmc CUDA extension unavailable: {loader.unavailable_reason()}")
    _, n, c, h, w, m, k, s, p = layers[args.layer]
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

    def round_():
        fwd(x, 2, False)
        fwd(xp, 2, True)
        fwd(x, 1, False)

    round_()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    round_()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()
    print(f"profiled {args.layer}: BMMA (fp16 in), BMMA (packed in/out), popcount", file=sys.stderr)


if __name__ == "__main__":
    main()
