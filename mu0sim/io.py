"""Small file helpers shared by the commands that write results."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path`` (never a half-written file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def checkpoint_fingerprint(directory: str | os.PathLike) -> str:
    """Short hash of a checkpoint folder's ``model.safetensors``: what a record of its use (traces it produced,
    episodes it played) is tied to, so a checkpoint retrained in place is not mistaken for the old one."""
    return hashlib.sha256((Path(directory) / "model.safetensors").read_bytes()).hexdigest()[:12]
