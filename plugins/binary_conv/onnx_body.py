"""BinaryConv's model-local function body in standard ONNX ops (needs opset 18 for BitwiseAnd).

Unpacks the int32 weight words with BitwiseAnd against the 32 one-bit masks (int32 has no BitShift
in ONNX), binarizes X with Where(X >= 0, 1, -1) (binarize(0) = +1), and lets Conv's zero padding
add 0 for padded taps.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ..onnx_function import Body, epilogue, make_function
from .reference import CONTRACT, WORD_BITS

F32 = onnx.TensorProto.FLOAT


def build(extra_attributes=()) -> onnx.FunctionProto:
    b = Body("binary")
    x = b.op("Cast", ["X"], to=F32)
    plus = b.op("Constant", [], value=onnx.helper.make_tensor("p", F32, [], [1.0]))
    minus = b.op("Constant", [], value=onnx.helper.make_tensor("m", F32, [], [-1.0]))
    xbin = b.op("Where", [b.op("GreaterOrEqual", [x, b.op("CastLike", [b.op("Constant", [], value_float=0.0), x])]), plus, minus])
    flag = b.op("Cast", [b.attr_int("binarize_input")], to=onnx.TensorProto.BOOL)
    xe = b.op("Where", [flag, xbin, x])
    masks = (np.uint32(1) << np.arange(WORD_BITS, dtype=np.uint32)).view(np.int32)
    mask_c = b.op("Constant", [], value=numpy_helper.from_array(masks, "masks"))
    zero_i = b.op("Constant", [], value=numpy_helper.from_array(np.array(0, np.int32), "zero"))
    words = b.op("Unsqueeze", ["W_packed", b.const_ints([4])])  # [M, kh, kw, nw, 1]
    bits = b.op("Not", [b.op("Equal", [b.op("BitwiseAnd", [words, mask_c]), zero_i])])  # [M, kh, kw, nw, 32]
    pm1 = b.op("Where", [bits, plus, minus])
    flat = b.op("Reshape", [pm1, b.const_ints([0, 0, 0, -1])])  # [M, kh, kw, nw*32]
    c = b.op("Slice", [b.op("Shape", ["X"]), b.const_ints([1]), b.const_ints([2])])
    cg = b.op("Div", [c, b.op("Reshape", [b.attr_int("group"), b.const_ints([1])])])
    wkeep = b.op("Slice", [flat, b.const_ints([0]), cg, b.const_ints([3])])
    wt = b.op("Transpose", [wkeep], perm=[0, 3, 1, 2])  # [M, Cg, kh, kw]
    acc = b.ref("Conv", [xe, wt], {
        "strides": ("strides", onnx.AttributeProto.INTS),
        "pads": ("pads", onnx.AttributeProto.INTS),
        "dilations": ("dilations", onnx.AttributeProto.INTS),
        "group": ("group", onnx.AttributeProto.INT),
    })
    y = epilogue(b, acc, "scale", "shift", acc)
    b.nodes.append(onnx.helper.make_node("CastLike", [y, "X"], ["Y"]))
    return make_function(CONTRACT, b, ["X", "W_packed", "scale", "shift"], ["Y"], extra_attributes)
