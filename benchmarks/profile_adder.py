"""Launch each AdderConv CUDA kernel once on one layer, for a profiler (ncu / nsys) to capture:
FP32 forward, FP16-I/O forward (half X/Y, float32 W), backward (gradX + gradW with the adaptive scale).

    ncu ... python benchmarks/profile_adder.py --layer r18.l3.3x3.256-256       (see trt_plugins/KERNELS.md)

One untimed warm-up round first (extension load, lazy module loading), then the profiled round between
cudaProfilerStart/Stop (ncu --profile-from-start off captures only that round). GPU only.
"""
from __future__ import annotations

import argparse
import sys

import torch

from bench_layers import SUITES


def main(argv=None):
    layers = {l[0]: l for suite in SUITES.values() for l in suite}
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layer", default="r18.l3.3x3.256-256", choices=sorted(layers))
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU: profile_adder.py only runs on a GPU machine")
    from cmc.plugins._cuda import loader

    ext = loader.load()
    if ext is None:
        sys.exit(f"cmc CUDA extension unavailable: {loader.unavailable_reason()}")
    _, n, c, h, w, m, k, s, p = layers[args.layer]
    gen = torch.Generator().manual_seed(0)
    x32 = torch.relu(torch.randn(n, c, h, w, generator=gen)).cuda()
    w32 = (torch.randn(m, c, k, k, generator=gen) * 15).cuda()
    x16 = x32.half()
    ones, zeros = torch.ones(m, device="cuda"), torch.zeros(m, device="cuda")
    st, pads, dil = [s, s], [p, p, p, p], [1, 1]
    gy = torch.randn_like(ext.adder_forward(x32, w32, ones, zeros, st, pads, dil, 1, 0))

    def round_():
        ext.adder_forward(x32, w32, ones, zeros, st, pads, dil, 1, 0)
        ext.adder_forward(x16, w32, ones, zeros, st, pads, dil, 1, 0)
        ext.adder_backward(x32, w32, gy, st, pads, dil, 1, 0.2, True, True)

    round_()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    round_()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()
    print(f"profiled {args.layer}: fp32 forward, fp16-I/O forward, backward", file=sys.stderr)


if __name__ == "__main__":
    main()
