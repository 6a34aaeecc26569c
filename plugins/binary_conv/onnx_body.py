"""BinaryConv's model-local function bodies in standard ONNX ops (opset 18: BitwiseAnd).

One body per op type: ``BinaryConv`` and its packed-activation variants (contract.json
"packed_activations"; ONNX functions cannot branch on attributes, so each variant is its own op).

* Weights: the int32 words are unpacked with BitwiseAnd against the 32 one-bit masks (int32 has no
  BitShift in ONNX); X is binarized with Where(X >= 0, 1, -1) (binarize(0) = +1), and Conv's zero
  padding adds 0 for padded taps.
* Packed X (int32 [N, H, W, 4*ceil(C/128)]): unpacked the same way to +-1 floats, C from ``in_channels``.
* Y in float16 (a float16 X): the contract's float16 rounding (a nonzero value never becomes zero, so
  the next binarization or Sign sees the float32 value's sign).
* Packed Y: the epilogue's float32 result, rounded to X's type when X is a float tensor (what the
  unpacked body outputs), compared >= 0, and the bits summed into int32 words with the powers of two
  (bit 31 weighs -2^31: a sum of distinct powers of two then is exactly the two's complement word).

The convolution and the epilogue are the same nodes in every variant, so a packed chain computes in
onnxruntime exactly the bits the unpacked graph binarizes.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ..onnx_function import Body, epilogue, make_function
from .reference import CONTRACT, FLOAT16_TINY, PIXEL_ALIGN_BITS, VARIANTS, WORD_BITS

F32 = onnx.TensorProto.FLOAT
INT32 = onnx.TensorProto.INT32
_BIT_VALUES = (np.uint32(1) << np.arange(WORD_BITS, dtype=np.uint32)).view(np.int32)


def _pm1_constants(b: Body):
    plus = b.op("Constant", [], value=onnx.helper.make_tensor("p", F32, [], [1.0]))
    minus = b.op("Constant", [], value=onnx.helper.make_tensor("m", F32, [], [-1.0]))
    return plus, minus


def _pm1(b: Body, bits: str) -> str:
    return b.op("Where", [bits, *_pm1_constants(b)])


def _word_bits(b: Body, words: str) -> str:
    """int32 [..., nw] -> bool [..., nw * 32], bit b of word k at position 32k + b."""
    masks = b.op("Constant", [], value=numpy_helper.from_array(_BIT_VALUES, "masks"))
    zero = b.op("Constant", [], value=numpy_helper.from_array(np.array(0, np.int32), "zero"))
    expanded = b.op("Unsqueeze", [words, b.const_ints([4])])  # rank 4 -> [..., nw, 1]
    bits = b.op("Not", [b.op("Equal", [b.op("BitwiseAnd", [expanded, masks]), zero])])  # [..., nw, 32]
    return b.op("Reshape", [bits, b.const_ints([0, 0, 0, -1])])


def _float_input(b: Body):
    """X as the unpacked contract reads it: (Conv input, channels per group as int64 [1])."""
    x = b.op("Cast", ["X"], to=F32)
    xbin = b.op("Where", [b.op("GreaterOrEqual", [x, b.op("CastLike", [b.op("Constant", [], value_float=0.0), x])]),
                          *_pm1_constants(b)])
    flag = b.op("Cast", [b.attr_int("binarize_input")], to=onnx.TensorProto.BOOL)
    xe = b.op("Where", [flag, xbin, x])
    c = b.op("Slice", [b.op("Shape", ["X"]), b.const_ints([1]), b.const_ints([2])])
    cg = b.op("Div", [c, b.op("Reshape", [b.attr_int("group"), b.const_ints([1])])])
    return xe, cg


def _packed_input(b: Body):
    """Packed X -> (+-1 float [N, C, H, W], C as int64 [1]); C is the in_channels attribute."""
    c = b.op("Reshape", [b.attr_int("in_channels"), b.const_ints([1])])
    bits = _word_bits(b, "X")  # [N, H, W, nw*32]
    bits = b.op("Slice", [bits, b.const_ints([0]), c, b.const_ints([3])])
    nchw = b.op("Transpose", [bits], perm=[0, 3, 1, 2])
    return _pm1(b, nchw), c  # group is 1 for packed variants: C is also C/group


def _weights(b: Body, cg: str) -> str:
    """W_packed int32 [M, kh, kw, nw] -> +-1 float [M, Cg, kh, kw]."""
    bits = _word_bits(b, "W_packed")  # [M, kh, kw, nw*32]
    wkeep = b.op("Slice", [_pm1(b, bits), b.const_ints([0]), cg, b.const_ints([3])])
    return b.op("Transpose", [wkeep], perm=[0, 3, 1, 2])


def _pack_signs(b: Body, y: str) -> str:
    """float [N, M, Ho, Wo] -> int32 [N, Ho, Wo, 4*ceil(M/128)]: bit = y >= 0, pad bits 0.

    Compared in float32, as the next layer's body compares its input (onnxruntime's float16
    comparisons tell -0 from +0: a float16 -0 would give bit 0 here but +1 there)."""
    y32 = b.op("Cast", [y], to=F32)
    zero = b.op("Constant", [], value=onnx.helper.make_tensor("zero_f", F32, [], [0.0]))
    bits = b.op("Cast", [b.op("GreaterOrEqual", [y32, zero])], to=INT32)
    nhwc = b.op("Transpose", [bits], perm=[0, 2, 3, 1])
    m = b.op("Slice", [b.op("Shape", ["W_packed"]), b.const_ints([0]), b.const_ints([1])])
    align = b.const_ints([PIXEL_ALIGN_BITS])
    padded = b.op("Mul", [b.op("Div", [b.op("Add", [m, b.const_ints([PIXEL_ALIGN_BITS - 1])]), align]), align])
    pads = b.op("Concat", [b.const_ints([0] * 7), b.op("Sub", [padded, m])], axis=0)
    full = b.op("Pad", [nhwc, pads])  # [N, Ho, Wo, nw*32], zeros appended
    words = b.op("Reshape", [full, b.const_ints([0, 0, 0, -1, WORD_BITS])])
    values = b.op("Constant", [], value=numpy_helper.from_array(_BIT_VALUES, "bit_values"))
    return b.op("ReduceSum", [b.op("Mul", [words, values]), b.const_ints([-1])], keepdims=0)


def _round_like_x(b: Body, y: str) -> str:
    """The float32 result in X's type by the contract's float16 rounding ("float16_rounding"): CastLike, and
    where a nonzero value became zero (float16 underflow), +-2^-24 with its sign instead, so its
    binarization (and Sign) is the float32 value's. For a float32 X the cast is exact: no correction."""
    r = b.op("CastLike", [y, "X"])
    zero = b.op("Constant", [], value=onnx.helper.make_tensor("zero_y", F32, [], [0.0]))
    lost = b.op("And", [b.op("Not", [b.op("Equal", [y, zero])]), b.op("Equal", [b.op("Cast", [r], to=F32), zero])])
    plus = b.op("Constant", [], value=onnx.helper.make_tensor("tiny", F32, [], [FLOAT16_TINY]))
    minus = b.op("Constant", [], value=onnx.helper.make_tensor("neg_tiny", F32, [], [-FLOAT16_TINY]))
    tiny = b.op("Where", [b.op("Less", [y, zero]), minus, plus])
    return b.op("Where", [lost, b.op("CastLike", [tiny, "X"]), r])


def build(extra_attributes=(), op_type: str = CONTRACT.op_type) -> onnx.FunctionProto:
    contract = CONTRACT if op_type == CONTRACT.op_type else VARIANTS[op_type]
    b = Body("binary")
    xe, cg = _packed_input(b) if contract.input_packed else _float_input(b)
    acc = b.ref("Conv", [xe, _weights(b, cg)], {
        "strides": ("strides", onnx.AttributeProto.INTS),
        "pads": ("pads", onnx.AttributeProto.INTS),
        "dilations": ("dilations", onnx.AttributeProto.INTS),
        "group": ("group", onnx.AttributeProto.INT),
    })
    y = epilogue(b, acc, "scale", "shift", acc)
    if contract.input_packed:
        out = y  # float32: a packed X carries no float type
    else:
        out = _round_like_x(b, y)  # rounded to X's type, as the unpacked output is
    if contract.output_packed:
        out = _pack_signs(b, out)
    b.nodes.append(onnx.helper.make_node("Identity", [out], ["Y"]))
    return make_function(contract, b, ["X", "W_packed", "scale", "shift"], ["Y"], extra_attributes)
