"""The operators cmc knows: one entry per folder. Adding an operator = adding its folder + a line here."""
from __future__ import annotations

from functools import partial

from . import adder_conv, binary_conv
from .adder_conv import onnx_body as adder_body, op as adder_op, reference as adder_ref, research as adder_research
from .binary_conv import onnx_body as binary_body, op as binary_op, reference as binary_ref, research as binary_research

# Each entry: the contract, the torch op(s) that export to it with their ONNX decomposition, the
# function-body builder, the float64 reference, and the recogniser for the research code's layer.
OPERATORS = [
    dict(contract=adder_conv.CONTRACT,
         decompositions={"cmc::adder_conv": adder_op.to_onnx},
         body=adder_body.build,
         reference=adder_ref.reference,
         recognise=adder_research.recognise),
    dict(contract=binary_conv.CONTRACT,
         decompositions={"cmc::binary_conv": binary_op.to_onnx},
         body=binary_body.build,
         reference=binary_ref.reference,
         recognise=binary_research.recognise),
]


def _no_research_layer(module, facts):
    return None


# BinaryConv's packed-activation variants (binary_conv/contract.json "packed_activations"): op types of
# their own, made by the exporter's packed-chain pass from BinaryConv nodes, never from a torch op.
OPERATORS += [
    dict(contract=variant,
         decompositions={},
         body=partial(binary_body.build, op_type=variant.op_type),
         reference=binary_ref.reference_variant(variant.op_type),
         recognise=_no_research_layer)
    for variant in binary_ref.VARIANTS.values()
]


def by_op_type(op_type: str):
    for entry in OPERATORS:
        if entry["contract"].op_type == op_type:
            return entry
    return None
