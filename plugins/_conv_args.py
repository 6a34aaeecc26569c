"""Turning nn.Conv2d-style arguments (int, pair, or 4 explicit pads) into the contract's lists."""
from __future__ import annotations


def pair(v, name: str) -> list[int]:
    if isinstance(v, int):
        return [v, v]
    v = [int(i) for i in v]
    if len(v) == 1:
        return v * 2
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v}")
    return v


def onnx_pads(padding) -> list[int]:
    """int / (ph, pw) / ONNX-order (top, left, bottom, right) -> [top, left, bottom, right]."""
    if isinstance(padding, str):
        raise ValueError(f"string padding {padding!r} is not supported; give explicit pads")
    if isinstance(padding, int):
        return [padding] * 4
    p = [int(i) for i in padding]
    if len(p) == 1:
        return p * 4
    if len(p) == 2:
        return [p[0], p[1], p[0], p[1]]
    if len(p) == 4:
        return p
    raise ValueError(f"padding must be an int, a pair or 4 ONNX-order pads, got {p}")
