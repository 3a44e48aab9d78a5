"""Keeping running statistics untouched while a backward pass re-evaluates residual functions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


def unique_buffers(modules: Iterable[nn.Module]) -> list[torch.Tensor]:
    """Every buffer of the modules once, shared (tied) modules included only once."""
    return list(dict.fromkeys(b for m in modules for b in m.buffers()))


@contextmanager
def preserved_buffers(buffers: list[torch.Tensor]) -> Iterator[None]:
    """Restore the buffers (BatchNorm's running mean/var and ``num_batches_tracked``, or any
    other running state) to their values on entry when the block exits, even on error.

    Re-evaluating a train-mode BatchNorm still normalises with the statistics of the batch it
    sees, as the forward pass did, but would also move the running statistics a second and third
    time (docs/method.md, section 3). Modules keep their train/eval mode: nothing here calls
    ``.eval()``.
    """
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(buffers, saved):
                buffer.copy_(value)
