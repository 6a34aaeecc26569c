"""The AdderConv contract as plain float64 NumPy: slow, obvious, and what everything else is tested against."""
from __future__ import annotations

import numpy as np

from ..contract import load, reference_conv

CONTRACT = load("adder_conv")


def reference(x, w, scale, shift, **attrs) -> np.ndarray:
    a = CONTRACT.normalize(attrs)
    # Zero padding: a padded tap sees x = 0 and so adds -|0 - w| = -|w|.
    return reference_conv(np.asarray(x, np.float64), np.asarray(w, np.float64), scale, shift, a,
                          lambda patch, wv: -np.abs(patch - wv))
