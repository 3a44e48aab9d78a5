"""A network without BatchNorm and a callback that saves each rank's weights, for the DDP tests.

The tests run `python -m resnode_lightning` in subprocesses with this folder on PYTHONPATH, so
configs can name these classes by ``class_path`` (``ddp_helpers.TanhStackNet``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback
from torch import nn

from resnode_lightning.models import Freezable
from resnode_lightning.numerics import ResidualStack


def tanh_block(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))


class TanhStackNet(Freezable):
    """8x8 images → linear → untied stack → stack of one tied block → linear logits (no BatchNorm,
    so that several processes compute exactly what one process computes on their combined batch)."""

    def __init__(self, width: int = 16, depth: int = 4, num_classes: int = 10, gradient: str = "adjoint") -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(64, width))
        self.untied = ResidualStack([tanh_block(width) for _ in range(depth)], gradient=gradient)
        self.tied = ResidualStack.tied(tanh_block(width), depth, gradient=gradient)
        self.head = nn.Linear(width, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.tied(self.untied(self.stem(images))))


class SaveRankWeights(Callback):
    """At the end of training, every rank saves its network's state dict as ``rank<k>.pt``."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_train_end(self, trainer, pl_module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save(pl_module.network.state_dict(), self.folder / f"rank{trainer.global_rank}.pt")
