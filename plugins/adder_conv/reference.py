"""The AdderConv contract as plain float64 NumPy: slow, obvious, and what everything else is tested against."""
from __future__ import annotations

import numpy as np

from ..contract import conv_output_size, load

CONTRACT = load("adder_conv")


def reference(x, w, scale, shift, **attrs) -> np.ndarray:
    a = CONTRACT.normalize(attrs)
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    if list(a["kernel_shape"]) != [kh, kw]:
        raise ValueError(f"kernel_shape {a['kernel_shape']} does not match W {list(w.shape)}")
    g = a["group"]
    if c % g or m % g or c // g != cg:
        raise ValueError(f"X has {c} channels, W {list(w.shape)}, group {g}: inconsistent")
    (sh, sw), (dh, dw) = a["strides"], a["dilations"]
    pt, pl, pb, pr = a["pads"]
    ho = conv_output_size(h, kh, sh, pt, pb, dh)
    wo = conv_output_size(wd, kw, sw, pl, pr, dw)
    # Zero padding: a padded tap sees x = 0 and so adds |0 - w| = |w|.
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    acc = np.zeros((n, m, ho, wo))
    mg = m // g
    for oc in range(m):
        grp = oc // mg
        for ci in range(cg):
            for p in range(kh):
                for q in range(kw):
                    patch = xp[:, grp * cg + ci, p * dh: p * dh + sh * (ho - 1) + 1: sh,
                               q * dw: q * dw + sw * (wo - 1) + 1: sw]
                    acc[:, oc] -= np.abs(patch - w[oc, ci, p, q])
    y = acc * np.asarray(scale, np.float64).reshape(1, m, 1, 1) + np.asarray(shift, np.float64).reshape(1, m, 1, 1)
    if a["activation"] == 1:
        y = np.maximum(y, 0.0)
    return y
