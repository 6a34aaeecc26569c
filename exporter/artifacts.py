"""Atomic artifact writing: everything goes to a staging folder beside the output folder and is
moved in only when the whole job succeeded, so a failure leaves nothing half-written."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import CmcError


class Staging:
    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir).resolve()
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise CmcError(f"output path {str(out_dir)!r} exists and is not a folder")
        # Stage in the nearest existing ancestor: same file system, so the final moves are renames.
        anchor = self.out_dir.parent
        while not anchor.exists():
            anchor = anchor.parent
        if not anchor.is_dir() or not os.access(anchor, os.W_OK):
            raise CmcError(f"cannot write in {str(anchor)!r}")
        self.anchor = anchor
        self.dir: Path | None = None
        self.files: list[str] = []

    def __enter__(self):
        self.dir = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.cmc-staging-", dir=self.anchor))
        return self

    def path(self, name: str) -> Path:
        self.files.append(name)
        return self.dir / name

    def write_json(self, name: str, data) -> Path:
        p = self.path(name)
        p.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
        return p

    def commit(self) -> list[Path]:
        """Move the staged files into the output folder (each move is an atomic rename)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        placed = []
        for name in self.files:
            src = self.dir / name
            if src.exists():
                dst = self.out_dir / name
                if src.is_dir() and dst.exists():
                    # A folder (the Triton model repository) replaces the previous one whole: the old one
                    # is renamed away first (os.replace cannot replace a non-empty folder), then removed.
                    old = Path(tempfile.mkdtemp(prefix=f".{name}.cmc-old-", dir=self.out_dir))
                    os.replace(dst, old / name)
                    os.replace(src, dst)
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    os.replace(src, dst)
                placed.append(dst)
        return placed

    def __exit__(self, exc_type, exc, tb):
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
