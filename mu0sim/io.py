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


def exit_with_parent() -> None:
    """Ask the kernel (Linux) to send this process SIGTERM when its parent dies. Worker processes call it first:
    a parent stopped by SIGTERM or SIGKILL runs no clean-up, and its workers would otherwise go on replaying or
    rolling out for nobody, holding the cores (seen: a stopped probe's feature workers still busy 50 minutes later).
    Elsewhere a no-op."""
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before the call: nobody will send the signal
        os._exit(1)
