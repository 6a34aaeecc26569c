"""AdderConv's model-local function body in standard ONNX ops (onnxruntime runs it as-is).

im2col is a convolution of each input channel with a one-hot [K, 1, kh, kw] kernel: ONNX Conv's own
zero padding then makes a padded tap read 0, so it adds |0 - w| = |w| exactly as the contract says.

Bounded memory (issue 20): |X - W| for a whole layer is N x M x CK x L values (10.7 GB peak verifying an
ImageNet ResNet-50), so the body computes it a slice of output channels at a time in a ``Loop``: S
filters per group per iteration, S = clamp(SLICE_ELEMS // (N * C * K * L), 1, M/g), so one iteration's
|X - W| holds at most max(SLICE_ELEMS, N * C * K * L) values — no more than the im2col itself when even
one filter per group exceeds the budget. Each output value is the same ReduceSum over the same taps as in
an unsliced body; the filters are zero-padded to a multiple of S and the padded outputs sliced off.
It is the portable fallback, not the fast path.

Precision (the contract's rule): X of any float type (float16 for FP16 activations) is cast to float32
exactly, W is float32, the sum and the epilogue are float32, and only Y is cast back to X's type.
"""
from __future__ import annotations

import onnx

from ..onnx_function import Body, epilogue, make_function
from .reference import CONTRACT

F32 = onnx.TensorProto.FLOAT
I64 = onnx.TensorProto.INT64
# |X - W| values one Loop iteration may hold (float32: 2 MiB for Sub's output, as much again for Abs). Small
# enough to stay in cache between Sub, Abs and ReduceSum: an AdderNet ResNet-50 at 224x224 ran in onnxruntime
# in ~0.9-1.0 s a sample with this budget against ~2.0-2.3 s with 32 MiB (2-core AMD EPYC, batch 1).
SLICE_ELEMS = 1 << 19
TAP_BLOCK = 32  # taps summed per block before the blocks are summed (see _distance_loop)


def _distance_loop(b: Body, cols5: str, wflat: str, g: str) -> str:
    """sum_k |cols - w| for every filter, [N, g, Mg, Ho, Wo], a slice of S filters per group at a time.

    The taps are summed in two levels, within blocks of TAP_BLOCK taps and then over the blocks:
    onnxruntime's ReduceSum over a middle axis adds one tap after another in float32, and over the 4608
    taps of an ImageNet ResNet-50 3x3 layer (|w| ~ 60) that alone cost 7e-4 of max|y| per layer (the
    PyTorch op: 3e-5). Both cols and W are zero-padded to a whole number of blocks: |0 - 0| adds 0."""
    one, zero = b.const_ints([1]), b.const_ints([0])
    cgk = b.op("Slice", [b.op("Shape", [wflat]), one, b.const_ints([2])])
    blk = b.op("Min", [cgk, b.const_ints([TAP_BLOCK])])
    kb = b.op("Div", [b.op("Sub", [b.op("Add", [cgk, blk]), one]), blk])  # ceil(CgK / block)
    kpad = b.op("Sub", [b.op("Mul", [kb, blk]), cgk])
    wg = b.op("Reshape", [wflat, b.op("Concat", [g, b.const_ints([-1]), cgk], axis=0)])  # [g, Mg, CgK]
    mg = b.op("Slice", [b.op("Shape", [wg]), one, b.const_ints([2])])  # [1]
    cshape = b.op("Shape", [cols5])
    colsp = b.op("Pad", [cols5, b.op("Concat", [zero, zero, zero, zero, zero, zero, zero, kpad, zero, zero], axis=0)])
    cols7 = b.op("Reshape", [colsp, b.op("Concat", [b.op("Slice", [cshape, zero, b.const_ints([2])]), one, kb, blk,
                                                    b.op("Slice", [cshape, b.const_ints([3]), b.const_ints([5])])],
                                         axis=0)])  # [N, g, 1, Kb, block, Ho, Wo]
    per_filter = b.op("Reshape", [b.op("Size", [cols7]), one])  # N*C*K*L (padded): one filter per group
    s = b.op("Min", [mg, b.op("Max", [one, b.op("Div", [b.const_ints([SLICE_ELEMS]), per_filter])])])
    iters = b.op("Div", [b.op("Sub", [b.op("Add", [mg, s]), one]), s])  # ceil(Mg / S)
    pad_rows = b.op("Sub", [b.op("Mul", [iters, s]), mg])
    wpad = b.op("Pad", [wg, b.op("Concat", [zero, zero, zero, zero, pad_rows, kpad], axis=0)])  # [g, iters*S, Kb*block]
    chunks = b.op("Reshape", [wpad, b.op("Concat", [g, iters, s, kb, blk, one, one], axis=0)])
    chunks = b.op("Transpose", [chunks], perm=[1, 0, 2, 3, 4, 5, 6])  # [iters, g, S, Kb, block, 1, 1]
    in_block, over_blocks = b.const_ints([4]), b.const_ints([3])
    # The iteration's graph reads chunks, cols7 and the axes from the function's scope.
    it, cond_in, cond_out, w_i, dist_i = (b._name(h) for h in ("it", "cond_in", "cond_out", "w_i", "dist_i"))
    diff_i, abs_i, part_i = b._name("diff_i"), b._name("abs_i"), b._name("part_i")
    step = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", [cond_in], [cond_out]),
         onnx.helper.make_node("Gather", [chunks, it], [w_i], axis=0),  # [g, S, Kb, block, 1, 1]: cols7's last 6
         onnx.helper.make_node("Sub", [cols7, w_i], [diff_i]),          # [N, g, S, Kb, block, Ho, Wo]
         onnx.helper.make_node("Abs", [diff_i], [abs_i]),
         onnx.helper.make_node("ReduceSum", [abs_i, in_block], [part_i], keepdims=0),
         onnx.helper.make_node("ReduceSum", [part_i, over_blocks], [dist_i], keepdims=0)],  # [N, g, S, Ho, Wo]
        b._name("slice"),
        [onnx.helper.make_tensor_value_info(it, I64, []),
         onnx.helper.make_tensor_value_info(cond_in, onnx.TensorProto.BOOL, [])],
        [onnx.helper.make_tensor_value_info(cond_out, onnx.TensorProto.BOOL, []),
         onnx.helper.make_tensor_value_info(dist_i, F32, None)])
    trips = b.op("Squeeze", [iters, zero])
    stacked = b.op("Loop", [trips, ""], body=step)  # [iters, N, g, S, Ho, Wo]
    stacked = b.op("Transpose", [stacked], perm=[1, 2, 0, 3, 4, 5])  # [N, g, iters, S, Ho, Wo]
    n_g = b.op("Slice", [b.op("Shape", [stacked]), zero, b.const_ints([2])])
    howo = b.op("Slice", [b.op("Shape", [stacked]), b.const_ints([4]), b.const_ints([6])])
    flat = b.op("Reshape", [stacked, b.op("Concat", [n_g, b.const_ints([-1]), howo], axis=0)])  # [N, g, iters*S, Ho, Wo]
    return b.op("Slice", [flat, zero, mg, b.const_ints([2])])  # [N, g, Mg, Ho, Wo]


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
    wflat = b.op("Flatten", [w], axis=1)  # [M, Cg*K]
    dist = _distance_loop(b, cols5, wflat, g)  # [N, g, Mg, Ho, Wo]
    acc = b.op("Neg", [b.op("Reshape", [dist, b.op("Concat", [n, minus1, howo], axis=0)])])  # [N, M, Ho, Wo]
    y = epilogue(b, acc, "scale", "shift", acc)
    b.nodes.append(onnx.helper.make_node("CastLike", [y, "X"], ["Y"]))
    return make_function(CONTRACT, b, ["X", "W", "scale", "shift"], ["Y"], extra_attributes)
