"""AdderConv's model-local function body in standard ONNX ops (onnxruntime runs it as-is).

im2col is a convolution of each input channel with a one-hot [K, 1, kh, kw] kernel: ONNX Conv's own
zero padding then makes a padded tap read 0, so it adds |0 - w| = |w| exactly as the contract says.
The body materialises the |X - W| tensor; it is the portable fallback, not the fast path.

Precision (the contract's rule): X of any float type (float16 for FP16 activations) is cast to float32
exactly, W is float32, the sum and the epilogue are float32, and only Y is cast back to X's type.
"""
from __future__ import annotations

import onnx

from ..onnx_function import Body, epilogue, make_function
from .reference import CONTRACT

F32 = onnx.TensorProto.FLOAT


def build(extra_attributes=()) -> onnx.FunctionProto:
    b = Body("adder")
    x = b.op("Cast", ["X"], to=F32)  # fp16 activations: exact; all arithmetic below is float32
    w = b.op("Cast", ["W"], to=F32)  # W is float32 by the contract (a no-op then)
    ks = b.attr_ints("kernel_shape")
    k = b.op("ReduceProd", [ks], keepdims=1)
    one = b.const_ints([1])
    minus1 = b.const_ints([-1])
    eye = b.op("EyeLike", [b.op("ConstantOfShape", [b.op("Concat", [k, k], axis=0)],
                                value=onnx.helper.make_tensor("v", F32, [1], [0.0]))])
    onehot = b.op("Reshape", [eye, b.op("Concat", [k, one, ks], axis=0)])  # [K, 1, kh, kw]
    per_channel = b.op("Reshape", [x, b.const_ints([-1, 1, 0, 0])])  # [N*C, 1, H, W]
    cols = b.ref("Conv", [per_channel, onehot], {
        "strides": ("strides", onnx.AttributeProto.INTS),
        "pads": ("pads", onnx.AttributeProto.INTS),
        "dilations": ("dilations", onnx.AttributeProto.INTS),
    })  # [N*C, K, Ho, Wo]
    xshape = b.op("Shape", [x])
    n = b.op("Slice", [xshape, b.const_ints([0]), one])
    howo = b.op("Slice", [b.op("Shape", [cols]), b.const_ints([2]), b.const_ints([4])])
    g = b.op("Reshape", [b.attr_int("group"), one])
    cols5 = b.op("Reshape", [cols, b.op("Concat", [n, g, minus1, howo], axis=0)])  # [N, g, Cg*K, Ho, Wo]
    cols6 = b.op("Unsqueeze", [cols5, b.const_ints([2])])  # [N, g, 1, Cg*K, Ho, Wo]
    wflat = b.op("Flatten", [w], axis=1)  # [M, Cg*K]
    cgk = b.op("Slice", [b.op("Shape", [wflat]), one, b.const_ints([2])])
    w6 = b.op("Reshape", [wflat, b.op("Concat", [one, g, minus1, cgk, one, one], axis=0)])  # [1, g, Mg, CgK, 1, 1]
    dist = b.op("ReduceSum", [b.op("Abs", [b.op("Sub", [cols6, w6])]), b.const_ints([3])], keepdims=0)
    acc = b.op("Neg", [b.op("Reshape", [dist, b.op("Concat", [n, minus1, howo], axis=0)])])  # [N, M, Ho, Wo]
    y = epilogue(b, acc, "scale", "shift", acc)
    b.nodes.append(onnx.helper.make_node("CastLike", [y, "X"], ["Y"]))
    return make_function(CONTRACT, b, ["X", "W", "scale", "shift"], ["Y"], extra_attributes)
