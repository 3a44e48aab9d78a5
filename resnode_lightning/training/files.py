"""Files written whole or not at all: one atomic writer, used for checkpoints, sweep state and results."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins import TorchCheckpointIO


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through ``write(file)`` so that a reader finds the old file or the new one,
    never part of one.

    The content goes into a hidden file beside the target (``.<name>.<random>.partial``, on the
    same file system, so the final step is a rename and not a copy), is flushed to disk, gets the
    permissions ``open()`` would have given it, and is renamed over the target (atomic on POSIX and
    Windows). An exception removes the partial file; a kill leaves it beside the target.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(partial, 0o666 & ~current_umask())  # what open() would give, not mkstemp's 0o600
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write` of a UTF-8 text."""
    atomic_write(path, lambda file: file.write(text.encode()))


def current_umask() -> int:
    """The process's file-creation mask (read by setting it, then putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic on every local file system (:func:`atomic_write`).

    Lightning's own writer moves an fsspec temporary file from the system's temporary folder; where
    that is another file system than the checkpoint's (a node's /tmp and a shared disk, as on most
    clusters) the move is a copy that a kill can interrupt half-way, losing the previous checkpoint
    too. Remote paths (``s3://`` ...) keep Lightning's writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_write(path, lambda file: torch.save(checkpoint, file))
