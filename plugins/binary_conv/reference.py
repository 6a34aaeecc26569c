"""The BinaryConv contract as plain float64 NumPy, plus the weight bit-packing it defines."""
from __future__ import annotations

import numpy as np

from ..contract import load, reference_conv, variants

CONTRACT = load("binary_conv")
WORD_BITS = 32


def binarize(v):
    """+1 where v >= 0, else -1 (binarize(0) = +1, unlike torch.sign)."""
    v = np.asarray(v)
    return np.where(v >= 0, 1.0, -1.0)


#: 2^-24 (float16 bits 0x0001): the float16 of least magnitude (contract.json "float16_rounding").
FLOAT16_TINY = 2.0 ** -24


def round_to_float16(v) -> np.ndarray:
    """The contract's float16 rounding of a BinaryConv result: round to nearest even, except that a nonzero
    value that would become zero becomes +-2^-24 with its sign, so that binarize and sign of the result are
    those of v."""
    v32 = np.asarray(v, np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # beyond 65504 float16 holds +-inf, as the kernels store
        h = v32.astype(np.float16)
    tiny = np.where(v32 < 0, np.float16(-FLOAT16_TINY), np.float16(FLOAT16_TINY))
    return np.where((v32 != 0) & (h == 0), tiny, h)


def words_per_tap(c_per_group: int) -> int:
    return (c_per_group + WORD_BITS - 1) // WORD_BITS


def pack_weights(w) -> np.ndarray:
    """float [M, Cg, kh, kw] -> int32 [M, kh, kw, ceil(Cg/32)]: bit b of word k is channel 32k+b
    (LSB first), 1 for +1 (w >= 0), 0 for -1; tail bits zero."""
    w = np.asarray(w)
    m, cg, kh, kw = w.shape
    nw = words_per_tap(cg)
    bits = np.zeros((m, kh, kw, nw * WORD_BITS), dtype=np.uint64)
    bits[..., :cg] = (np.transpose(w, (0, 2, 3, 1)) >= 0)
    bits = bits.reshape(m, kh, kw, nw, WORD_BITS)
    weights = (np.uint64(1) << np.arange(WORD_BITS, dtype=np.uint64))
    words = (bits * weights).sum(axis=-1).astype(np.uint32)
    return words.view(np.int32)


def unpack_weights(packed, c_per_group: int) -> np.ndarray:
    """int32 [M, kh, kw, nw] -> float64 +-1 [M, Cg, kh, kw]."""
    words = np.asarray(packed).astype(np.int32).view(np.uint32).astype(np.uint64)
    m, kh, kw, nw = words.shape
    if nw != words_per_tap(c_per_group):
        raise ValueError(f"packed weights hold {nw} words per tap; {c_per_group} channels need {words_per_tap(c_per_group)}")
    bits = (words[..., None] >> np.arange(WORD_BITS, dtype=np.uint64)) & np.uint64(1)
    bits = bits.reshape(m, kh, kw, nw * WORD_BITS)
    if np.any(bits[..., c_per_group:]):
        raise ValueError("packed weights have nonzero tail bits")
    pm1 = np.where(bits[..., :c_per_group] == 1, 1.0, -1.0)
    return np.transpose(pm1, (0, 3, 1, 2))


def reference(x, w_packed, scale, shift, **attrs) -> np.ndarray:
    a = CONTRACT.normalize(attrs)
    x = np.asarray(x, dtype=np.float64)
    if x.shape[1] % a["group"]:
        raise ValueError(f"X has {x.shape[1]} channels, not divisible by group {a['group']}")
    w = unpack_weights(w_packed, x.shape[1] // a["group"])
    xb = binarize(x) if a["binarize_input"] else x
    # Padding after binarization: padded taps read 0 and add nothing.
    return reference_conv(xb, w, scale, shift, a, lambda patch, wv: patch * wv)


# ---- packed activations (contract.json "packed_activations"; the variants' contracts: VARIANTS) ----

VARIANTS = {v.op_type: v for v in variants("binary_conv")}
#: Packed activations are 128-bit aligned per pixel: 4 int32 words per started 128 channels.
PIXEL_ALIGN_BITS = 128


def packed_words_per_pixel(c: int) -> int:
    return (PIXEL_ALIGN_BITS // WORD_BITS) * ((c + PIXEL_ALIGN_BITS - 1) // PIXEL_ALIGN_BITS)


def pack_activations(x) -> np.ndarray:
    """float [N, C, H, W] -> int32 [N, H, W, packed_words_per_pixel(C)]: bit b (LSB first) of word k is
    channel 32k+b, 1 where the value is >= 0 (binarize = +1; NaN gives 0 = -1), pad bits 0."""
    x = np.asarray(x)
    n, c, h, w = x.shape
    nw = packed_words_per_pixel(c)
    bits = np.zeros((n, h, w, nw * WORD_BITS), dtype=np.uint64)
    with np.errstate(invalid="ignore"):
        bits[..., :c] = np.transpose(x, (0, 2, 3, 1)) >= 0
    weights = np.uint64(1) << np.arange(WORD_BITS, dtype=np.uint64)
    words = (bits.reshape(n, h, w, nw, WORD_BITS) * weights).sum(axis=-1).astype(np.uint32)
    return words.view(np.int32)


def unpack_activations(packed, c: int) -> np.ndarray:
    """int32 [N, H, W, packed_words_per_pixel(c)] -> float64 +-1 [N, c, H, W] (pad bits ignored)."""
    words = np.asarray(packed)
    if words.dtype != np.int32 or words.ndim != 4:
        raise ValueError(f"packed activations must be int32 [N, H, W, words], got {words.dtype} {list(words.shape)}")
    if words.shape[3] != packed_words_per_pixel(c):
        raise ValueError(f"packed activations hold {words.shape[3]} words per pixel; {c} channels need "
                         f"{packed_words_per_pixel(c)}")
    w64 = words.view(np.uint32).astype(np.uint64)
    bits = (w64[..., None] >> np.arange(WORD_BITS, dtype=np.uint64)) & np.uint64(1)
    bits = bits.reshape(*words.shape[:3], -1)[..., :c]
    return np.transpose(np.where(bits == 1, 1.0, -1.0), (0, 3, 1, 2))


def reference_variant(op_type: str):
    """The float64 reference of a packed variant: unpack X (packed input), the BinaryConv reference, pack
    the signs of Y (packed output)."""
    contract = VARIANTS[op_type]

    def ref(x, w_packed, scale, shift, **attrs):
        a = contract.normalize(attrs)
        in_channels = a.pop("in_channels", None)
        if contract.input_packed:
            x = unpack_activations(x, in_channels)
        y = reference(x, w_packed, scale, shift, **a)
        return pack_activations(y) if contract.output_packed else y

    ref.__name__ = f"reference_{op_type}"
    return ref


def reads_sign_of_input(op_type: str, binarize_input: int | None) -> bool:
    """Whether a com.cmc node of ``op_type`` takes only the sign of its input 0 (the one rule every pass
    that cares asks: parity's sign-flip attribution, the FP16 planner, the packed-chain pass). BinaryConv and
    a float-input variant do when ``binarize_input`` is 1 (its default); a packed input is the sign its
    producer already took, so a packed-input variant always does."""
    if op_type == "BinaryConv":
        return binarize_input is None or int(binarize_input) == 1
    contract = VARIANTS.get(op_type)
    if contract is None:
        return False
    return contract.input_packed or binarize_input is None or int(binarize_input) == 1
