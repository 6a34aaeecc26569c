"""SPConv ("Split to Be Slim"): standard ops only, so it has no com.cmc node and no contract file."""
from .layer import SPConv2d

__all__ = ["SPConv2d"]
