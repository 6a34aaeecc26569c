"""Which line of the user's code: the innermost frame that belongs to the user's model.

Errors raised deep inside PyTorch (or inside cmc's own shims) are only useful to the user when they
name the line of *their* code that led there. A frame is the user's when its module is not PyTorch,
cmc or another library cmc drives, and its file lies outside site-packages and the standard library.
Where no such frame exists (a model installed as a package), the innermost frame outside PyTorch and
cmc is used instead.
"""
from __future__ import annotations

import linecache
import os
import sys
import sysconfig
import types
from typing import NamedTuple

# Top-level packages whose frames are never "the user's line".
_LIBRARIES = frozenset({"torch", "functorch", "cmc", "torch_pruning", "onnx", "onnxscript", "onnx_ir",
                        "onnxruntime", "polygraphy", "numpy", "sympy", "optree", "importlib", "contextlib"})
_LIBRARY_DIRS = tuple(os.path.normcase(os.path.realpath(p)) + os.sep for p in {
    sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")} if p)


class SourceLine(NamedTuple):
    file: str
    line: int
    source: str  # the stripped source text, '' where the file cannot be read

    def where(self) -> str:
        """'models/resnet.py:45' (relative to the current folder where the file lies below it)."""
        return f"{display_path(self.file)}:{self.line}"

    def quoted(self) -> str:
        """'models/resnet.py:45 (`out = torch.cat(...)`)'."""
        src = self.source if len(self.source) <= 100 else self.source[:97] + "..."
        return f"{self.where()} (`{src}`)" if src else self.where()


def display_path(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if rel.startswith("..") else rel


def _package(frame: types.FrameType) -> str:
    name = frame.f_globals.get("__name__") or ""
    return name.split(".", 1)[0]


def _in_library_dir(path: str) -> bool:
    p = os.path.normcase(os.path.realpath(path))
    return p.startswith(_LIBRARY_DIRS) or f"{os.sep}site-packages{os.sep}" in p \
        or f"{os.sep}dist-packages{os.sep}" in p


def is_library_frame(frame: types.FrameType) -> bool:
    """PyTorch, cmc and the libraries it drives: never the user's line."""
    return _package(frame) in _LIBRARIES


def is_user_frame(frame: types.FrameType) -> bool:
    file = frame.f_code.co_filename
    return not is_library_frame(frame) and not file.startswith("<") and not _in_library_dir(file)


def _source_line(frame: types.FrameType, lineno: int) -> SourceLine:
    file = frame.f_code.co_filename
    return SourceLine(file, lineno, linecache.getline(file, lineno, frame.f_globals).strip())


def _innermost(frames: list[tuple[types.FrameType, int]]) -> SourceLine | None:
    """``frames`` outermost first, each with its current line number."""
    for test in (is_user_frame, lambda f: not is_library_frame(f) and not f.f_code.co_filename.startswith("<")):
        for frame, lineno in reversed(frames):
            if test(frame):
                return _source_line(frame, lineno)
    return None


def user_line_of_traceback(tb: types.TracebackType | None) -> SourceLine | None:
    """The innermost user frame of an exception's traceback (where the user's code called into the failure)."""
    frames = []
    while tb is not None:
        frames.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    return _innermost(frames)


def user_line_of_exception(exc: BaseException) -> SourceLine | None:
    """Like ``user_line_of_traceback``, also looking through the exceptions it was raised from."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        line = user_line_of_traceback(exc.__traceback__)
        if line is not None:
            return line
        exc = exc.__cause__ or exc.__context__
    return None


def user_line_of_caller(skip: int = 1) -> SourceLine | None:
    """The innermost user frame of the current call stack (``skip`` frames above this function's caller)."""
    frame = sys._getframe(skip + 1)
    frames = []
    while frame is not None:
        frames.append((frame, frame.f_lineno))
        frame = frame.f_back
    frames.reverse()
    return _innermost(frames)
