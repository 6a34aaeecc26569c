"""AdderConv: convolution with -|x - w| in place of x * w. Contract: contract.json beside this file."""
from .layer import AdderConv2d
from .reference import CONTRACT

__all__ = ["AdderConv2d", "CONTRACT"]
