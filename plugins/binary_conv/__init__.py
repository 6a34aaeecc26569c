"""BinaryConv: binary (+-1) weights and activations. Contract: contract.json beside this file."""
from .layer import BinaryConv2d, PackedBinaryConv2d
from .reference import CONTRACT

__all__ = ["BinaryConv2d", "PackedBinaryConv2d", "CONTRACT"]
