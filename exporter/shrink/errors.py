"""Errors of the shrink step; each is a CmcError so the CLI prints it as one line."""
from __future__ import annotations

from ..errors import CmcError, ParityError


class ShrinkError(CmcError):
    """The model's pruned structure cannot be read or removed (worded as one line naming the layer)."""


class MaskError(ShrinkError):
    """A mask of the wrong shape, with values other than 0/1, or two masks that contradict each other."""


class AllChannelsPrunedError(ShrinkError):
    """A layer would lose every channel: the model no longer computes anything through it."""


class ShrinkParityError(ParityError):
    """The shrunk model does not compute what the masked model computes (names the first layer that differs)."""
