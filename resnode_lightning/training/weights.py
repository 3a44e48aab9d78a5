"""Checkpoint files read as data: weights-only loading with errors that name the file, and the
network's plain state dict taken out of a Lightning checkpoint (the models layer takes plain
state dicts only)."""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

NETWORK_PREFIX = "network."
"""Where :class:`~.classifier.ImageClassifier` keeps the network in its state dict (``self.network``)."""


def read_checkpoint(path: str | os.PathLike, weights_only: bool = True) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain containers, never code
    (``weights_only=False`` unpickles anything, for a file its user trusts by name).

    A file in ``torch.save``'s zip format (every file torch >= 1.6 writes) is memory-mapped, so a
    large checkpoint's optimizer state is not read into memory unless used; an older file is read
    whole.

    Raises:
        FileNotFoundError: nothing exists at ``path`` (the message names it).
        ValueError: the path is a folder, the file is empty, truncated or not a ``torch.save`` file,
            or it holds objects whose unpickling could run code; the message names the file and the fix.
    """
    if os.path.isdir(path):
        raise ValueError(f"{os.fspath(path)!r} is a folder, not a checkpoint file: name the .ckpt file in it.")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{os.fspath(path)!r} does not exist: check the path of the checkpoint file.")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:
        # "Unsupported global: GLOBAL torch.optim.sgd.SGD", or "unsupported GLOBAL posix.system whose
        # module posix is blocked" for a pickle that would run code
        if "unsupported global" not in str(error).lower():
            raise unreadable(path, error) from error
        raise ValueError(
            f"{os.fspath(path)!r} holds objects other than tensors and plain containers, which are "
            "not loaded: unpickling them could run any code the file carries (weights_only=True). Save "
            "the weights alone, torch.save(model.state_dict(), path), and load that file."
        ) from error
    except (RuntimeError, KeyError, EOFError, ValueError, OSError) as error:  # what torch.load raises on bad bytes
        raise unreadable(path, error) from error


def unreadable(path: str | os.PathLike, error: Exception) -> ValueError:
    """The error for a file ``torch.load`` could not read, with the first sentence of its reason."""
    # torch's advice to retry with weights_only=False comes before the reason: it does not apply here
    detail = str(error).split("WeightsUnpickler error:", 1)[-1]
    line = next((line.strip() for line in detail.splitlines() if line.strip()), "no detail")
    reason = line.split(". ", 1)[0].rstrip(".")
    return ValueError(
        f"{os.fspath(path)!r} is not a readable torch.save file ({type(error).__name__}: {reason}): it is "
        "empty or truncated (an interrupted save or copy), or not a checkpoint at all. Check the path, or "
        "save the weights again."
    )


def network_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """The network's plain state dict: a Lightning checkpoint's ``state_dict`` entries under
    ``network.`` (without it), or ``checkpoint`` itself when it already is a plain state dict.

    Other entries of a Lightning checkpoint (an EMA copy, a loss's weights, the optimizer) are
    left out. A checkpoint of a LightningModule that holds no ``network.`` gives its whole
    ``state_dict``: pass :func:`~resnode_lightning.models.load_weights` the ``prefix`` of the
    model in it. ``_orig_mod.`` (a compiled network) is kept; ``load_weights`` drops it.

    Raises:
        ValueError: neither (the message says what ``checkpoint`` holds instead).
    """
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        tensors = checkpoint["state_dict"]
        network = {key.removeprefix(NETWORK_PREFIX): v for key, v in tensors.items() if key.startswith(NETWORK_PREFIX)}
        return network or dict(tensors)  # a Lightning module that keeps its network under another name
    if isinstance(checkpoint, Mapping) and checkpoint and all(isinstance(v, Tensor) for v in checkpoint.values()):
        return dict(checkpoint)
    if isinstance(checkpoint, Mapping):
        kind = f"a mapping with keys {sorted(map(str, checkpoint))[:5]}"
    else:
        kind = f"a {type(checkpoint).__name__}"
    raise ValueError(
        f"not a checkpoint: {kind}, where a Lightning checkpoint (with a 'state_dict') or a state dict "
        "(names → tensors, as torch.save(model.state_dict(), path) writes) was expected."
    )


def read_network_weights(path: str | os.PathLike) -> dict[str, Tensor]:
    """The network's plain state dict from a checkpoint file (:func:`read_checkpoint`,
    :func:`network_state_dict`); errors name the file."""
    try:
        return network_state_dict(read_checkpoint(path))
    except ValueError as error:
        message = str(error)
        raise ValueError(message if os.fspath(path) in message else f"{os.fspath(path)!r}: {message}") from None
