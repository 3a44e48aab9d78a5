"""Checkpoint files: finding the one a user means (a file, a run folder, ``last``) and writing them atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins import TorchCheckpointIO


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file that ``path`` names.

    A file is itself. A run folder is searched for its checkpoints: ``runs/<config>`` (all its
    runs) or ``runs/<config>/<version>`` (one run); the newest run's ``best.ckpt`` is taken, or its
    ``last.ckpt`` when it has no best one.

    Raises:
        FileNotFoundError: nothing is at ``path``, or the folder holds no checkpoint.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(
            f"init_from: {str(path)!r} does not exist. Give a checkpoint file (e.g. "
            "runs/<config>/version_0/checkpoints/best.ckpt), a state dict saved by torch.save, or the "
            "run folder of an earlier `resnode fit` (e.g. runs/<config>)."
        )
    found = [p for name in ("best.ckpt", "last.ckpt") for p in path.rglob(name)]
    if not found:
        raise FileNotFoundError(
            f"init_from: the folder {str(path)!r} holds no best.ckpt or last.ckpt. Did the run that "
            "should have written them finish an epoch? Give the checkpoint file itself otherwise."
        )
    newest_run = max(found, key=lambda p: p.parent.stat().st_mtime).parent
    return next(p for name in ("best.ckpt", "last.ckpt") if (p := newest_run / name).is_file())


def newest_last_checkpoint(runs: str | Path) -> Path | None:
    """The ``last.ckpt`` written most recently by any run below ``runs`` (``runs/<config>``), or None.

    This is what ``--ckpt_path last`` means for ``resnode``: a resumed run gets a folder of its
    own, so "last" is looked for among the earlier runs of the same config, not in the new folder.
    """
    found = [path for path in Path(runs).glob("*/checkpoints/last.ckpt") if path.is_file()]
    return max(found, key=lambda path: path.stat().st_mtime_ns, default=None)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic on every local file system.

    Lightning serialises a checkpoint into memory, then writes it inside an fsspec transaction:
    an exception while writing leaves the target untouched. But fsspec's temporary file lies in
    the system's temporary folder, and where that is another file system than the checkpoint's
    (a node's /tmp and a shared disk, as on most clusters) the final move is a copy into the
    target, which a kill can interrupt half-way, losing the previous checkpoint too. Here the
    checkpoint is written into a hidden file beside its target (``.last.ckpt.<random>.partial``),
    flushed to disk and renamed over the target, which is atomic on POSIX and Windows: a reader
    finds the old checkpoint or the new one, never part of one. A save interrupted by an
    exception removes its partial file; one interrupted by a kill leaves it beside the target.
    Remote paths (``s3://`` ...) keep Lightning's writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(partial, 0o666 & ~current_umask())  # what open() would give, not mkstemp's 0o600
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise


def current_umask() -> int:
    """The process's file-creation mask (read by setting it, then putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
