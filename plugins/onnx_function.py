"""Helpers to write model-local ONNX function bodies for com.cmc ops in standard ONNX ops.

A function body lets onnxruntime (and TensorRT without cmc's plugin) run a com.cmc node with no
extra library. Bodies refer to the node's attributes (``ref_attr_name``), so one function per op
type serves every node of that type.
"""
from __future__ import annotations

import onnx
from onnx import helper

# Standard-op opset the bodies are written against (BitwiseAnd needs 18).
BODY_OPSET = 18


class Body:
    """A tiny builder: ``b.op("Abs", [x])`` returns the fresh output name."""

    def __init__(self, prefix: str):
        self.nodes: list[onnx.NodeProto] = []
        self._prefix = prefix
        self._n = 0

    def _name(self, hint: str) -> str:
        self._n += 1
        return f"{self._prefix}_{hint}_{self._n}"

    def op(self, op_type: str, inputs, n_out: int = 1, **attrs):
        outs = [self._name(op_type.lower()) for _ in range(n_out)]
        node = helper.make_node(op_type, list(inputs), outs, **attrs)
        self.nodes.append(node)
        return outs[0] if n_out == 1 else outs

    def ref(self, op_type: str, inputs, refs: dict, **attrs):
        """A node some of whose attributes reference the function's attributes: refs = {attr: (fn_attr, type)}."""
        out = self._name(op_type.lower())
        node = helper.make_node(op_type, list(inputs), [out], **attrs)
        for name, (fn_attr, atype) in refs.items():
            a = onnx.AttributeProto()
            a.name = name
            a.ref_attr_name = fn_attr
            a.type = atype
            node.attribute.append(a)
        self.nodes.append(node)
        return out

    def const_ints(self, values):
        return self.op("Constant", [], value_ints=list(values))

    def attr_ints(self, fn_attr: str):
        return self.ref("Constant", [], {"value_ints": (fn_attr, onnx.AttributeProto.INTS)})

    def attr_int(self, fn_attr: str):
        return self.ref("Constant", [], {"value_int": (fn_attr, onnx.AttributeProto.INT)})


def make_function(contract, body: Body, inputs, outputs, extra_attributes=()) -> onnx.FunctionProto:
    """Wrap ``body`` as the model-local function of ``contract``'s op.

    ``extra_attributes`` are names the node may carry for TensorRT's parser (plugin_version,
    plugin_namespace) that the body ignores; they are declared so every checker accepts the node.
    """
    attr_protos = []
    for a in contract.attributes:
        if a.default is not None:
            attr_protos.append(helper.make_attribute(a.name, a.default))
    plain = [a.name for a in contract.attributes if a.default is None] + list(extra_attributes)
    fn = helper.make_function(
        contract.domain,
        contract.op_type,
        list(inputs),
        list(outputs),
        body.nodes,
        opset_imports=[helper.make_opsetid("", BODY_OPSET)],
        attributes=plain,
        attribute_protos=attr_protos,
        doc_string=contract.raw.get("summary", ""),
    )
    return fn


def epilogue(b: Body, acc: str, scale: str, shift: str, like: str) -> str:
    """act(scale * acc + shift), scale/shift float32 [M] broadcast over [N, M, H, W]."""
    shape = b.const_ints([1, -1, 1, 1])
    s = b.op("CastLike", [b.op("Reshape", [scale, shape]), like])
    t = b.op("CastLike", [b.op("Reshape", [shift, shape]), like])
    # Mul(s, acc), not Mul(acc, s): onnxruntime's Conv+Mul / Conv+Add fusions (which need the constant
    # as the Mul's second input) would otherwise fold scale and shift into a constant Conv weight and
    # round differently from this epilogue, and differently again where the weight is not constant —
    # a packed chain would no longer equal the unpacked graph bit for bit.
    y = b.op("Add", [b.op("Mul", [s, acc]), t])
    relu = b.op("Cast", [b.attr_int("activation")], to=onnx.TensorProto.BOOL)
    return b.op("Where", [relu, b.op("Relu", [y]), y])
