"""Lightning's checkpoint writer, made atomic (:func:`resnode_lightning.files.atomic_write`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins import TorchCheckpointIO

from ..files import atomic_write


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
