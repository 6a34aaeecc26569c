"""The one exception type the CLI turns into a one-line error (traceback only with --debug)."""


class CmcError(Exception):
    """A problem with the user's input or environment, worded as one line that names it."""

    exit_code = 2


class ParityError(CmcError):
    """The exported artifact does not compute what the PyTorch model computes."""

    exit_code = 3
