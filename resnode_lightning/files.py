"""Files written whole or not at all: the one atomic writer of the package (checkpoints, decoded
data caches, sweep state, results). Torch-free, so that every layer may use it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any], mode: int | None = None) -> None:
    """Write ``path`` through ``write(file)`` so that a reader finds the old file or the new one,
    never part of one.

    The content goes into a hidden file beside the target (``.<name>.<random>.partial``, on the
    same file system, so the final step is a rename and not a copy), is flushed to disk, gets the
    permissions ``open()`` would have given it (an existing target's own, else the umask's), and is
    renamed over the target (atomic on POSIX and Windows). An exception removes the partial file; a
    kill leaves it beside the target. ``mode``: the file's permissions, whatever those would be.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(partial, permissions(target) if mode is None else mode)  # not mkstemp's private 0o600
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write` of a UTF-8 text."""
    atomic_write(path, lambda file: file.write(text.encode()))


def permissions(target: Path) -> int:
    """What ``open(target, "wb")`` leaves: an existing file's mode, else 0o666 less the umask."""
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~UMASK


def current_umask() -> int:
    """The process's file-creation mask (read by setting it, then putting it back: done once, at
    import, so that no other thread can create a file in between)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = current_umask()
