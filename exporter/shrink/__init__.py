"""cmc.exporter.shrink: physically remove pruned channels before export -- exactly, or refused with the reason.

    from cmc.exporter.shrink import find_pruned, shrink
    if find_pruned(model):
        res = shrink(model, (x,))          # res.model: new nn.Module; res.report: JSON-serialisable dict

See README.md beside this file for what counts as dead for each operator and why.
"""
from .core import DEFAULT_TOL, ShrinkResult, find_pruned, measure, shrink, tolerance
from .errors import AllChannelsPrunedError, MaskError, ShrinkError, ShrinkParityError
from .modules import ChannelSelect

__all__ = ["find_pruned", "shrink", "ShrinkResult", "ChannelSelect", "ShrinkError", "MaskError",
           "AllChannelsPrunedError", "ShrinkParityError", "DEFAULT_TOL", "measure", "tolerance"]
