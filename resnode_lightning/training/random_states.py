"""The global random generators' states in checkpoints, so that a resumed run draws what the
uninterrupted run would have drawn."""

from __future__ import annotations

import random
from typing import Any

import numpy
import torch
from lightning.pytorch import Callback, LightningModule, Trainer


def random_states() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's global generators (CPU, and CUDA once used),
    as plain values and tensors, so that a checkpoint holding them still loads with ``weights_only``."""
    kind, keys, position, has_gauss, cached_gaussian = numpy.random.get_state(legacy=True)
    states = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(numpy.int64)), position, has_gauss, cached_gaussian),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict[str, Any]) -> None:
    """Put the generators back into states from :func:`random_states` (CUDA only where it has as
    many devices as when they were taken)."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached_gaussian = states["numpy"]
    numpy.random.set_state((kind, keys.numpy().astype(numpy.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available() and torch.cuda.device_count() == len(states["cuda"]):
        torch.cuda.set_rng_state_all(states["cuda"])


class RandomStates(Callback):
    """Saves the global generators' states (:func:`random_states`) in every checkpoint and puts
    them back when ``fit`` resumes from one, just before the first training batch (after the
    sanity check, which may draw numbers of its own).

    Lightning restores the model, the optimizer, the schedules, the loops and the data module
    (the augmentation generator, the position in the epoch), but not these generators, which
    dropout, stochastic depth and any ``torch.rand`` in a network draw from: without them a
    resumed run would reseed and draw other numbers. The checkpoint holds rank 0's states;
    every rank gets them back, as ``seed_everything`` gives every rank the same seed.
    """

    def __init__(self) -> None:
        self.restored: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return random_states()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.restored = state_dict

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.restored is not None:
            set_random_states(self.restored)
            self.restored = None
