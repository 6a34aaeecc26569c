"""Launch each AdderConv CUDA kernel once on one layer, for a profiler (ncu / nsys) to capture:
FP32 forward, FP16-I/O forward (half X/Y, float32 W), backward (gradX + gradW with the adaptive scale).

    ncu ... python benchmarks/profile_adder.py --layer r18.l3.3x3.256-256       (see trt_plugins/KERNELS.md)

One untimed warm-up round first (extension load, lazy module loading), then the profiled round between
cudaProfilerStart/Stop (ncu --profile-from-start off captures only that round). GPU only.
"""
from __future__ import annotations

import torch

from _common import profile_setup, profiled_round


def main(argv=None):
    ext, (name, n, c, h, w, m, k, s, p) = profile_setup("profile_adder.py", __doc__, "r18.l3.3x3.256-256", argv)
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

    profiled_round(round_, f"{name}: fp32 forward, fp16-I/O forward, backward")


if __name__ == "__main__":
    main()
