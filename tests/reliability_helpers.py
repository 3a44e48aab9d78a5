"""Test-only pieces for tests/test_reliability.py, importable by subprocesses that have this
folder on PYTHONPATH (``--trainer.callbacks+=reliability_helpers.KillAfterStep``)."""

from __future__ import annotations

import os
import random
import shutil
import signal
from pathlib import Path

import numpy
import torch
from lightning.pytorch import Callback
from torch import nn

from resnode_lightning.models import Freezable


class KillAfterStep(Callback):
    """Kills its own process with SIGKILL once optimizer step ``step`` is done, as the OOM killer or a
    preempting scheduler would: no exception, no hook, no checkpoint of its own."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class KeepCheckpointOfStep(Callback):
    """Copies ``last.ckpt`` as the step checkpoint saved it after optimizer step ``step`` to ``to``:
    what a run killed right after that step leaves (in-process, without killing it)."""

    def __init__(self, step: int, to: str) -> None:
        self.step, self.to = step, to

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            shutil.copy(Path(trainer.checkpoint_callback.dirpath) / "last.ckpt", self.to)


class RandomisedNet(Freezable):
    """8x8 images → logits through a network that, while training, draws from Python's, NumPy's
    and torch's global generators at every step (a random gain and dropout), so that its weights
    after training depend on every generator's state."""

    def __init__(self, width: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.Tanh(), nn.Dropout(0.2))
        self.head = nn.Linear(width, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.body(images)
        if self.training:
            features = features * (1 + 0.1 * random.random()) * (1 + 0.1 * float(numpy.random.rand()))
        return self.head(features)


class PoisonedGradient(torch.autograd.Function):
    """The identity, whose backward returns NaN: a fault born inside a backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> torch.Tensor:
        return gradient * float("nan")


class PoisonBackwardOnRank(Callback):
    """Makes a NaN be born in the backward of ``network.untied.blocks[1]`` (an adjoint stack of
    ``ddp_helpers.TanhStackNet``) on one rank, at one step."""

    def __init__(self, rank: int = 1, step: int = 1) -> None:
        self.rank, self.step = rank, step

    def on_fit_start(self, trainer, pl_module) -> None:
        def poison(block, inputs, output):
            armed = trainer.global_rank == self.rank and trainer.global_step == self.step
            return PoisonedGradient.apply(output) if armed and torch.is_grad_enabled() else output

        pl_module.network.untied.blocks[1].register_forward_hook(poison)
