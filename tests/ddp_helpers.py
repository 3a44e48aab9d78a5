"""Networks and a callback that saves each rank's weights, for the DDP tests.

The tests run `python -m resnode_lightning` in subprocesses with this folder on PYTHONPATH, so
configs can name these classes by ``class_path`` (``ddp_helpers.TanhStackNet``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as collective
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


class AllReducedBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose batch statistics, in training, are those of all ranks' batches together:
    what SyncBatchNorm computes on GPUs (which it needs), here with differentiable all-reduces that
    run on CPU processes (gloo): sums all-reduced in the forward, and by their backward, the
    gradients through them all-reduced in the backward. One process alone is plain BatchNorm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        count = torch.tensor(float(x.numel() // x.shape[1]))
        dist.all_reduce(count)
        mean = collective.all_reduce(x.sum((0, 2, 3))) / count
        centred = x - mean[None, :, None, None]
        variance = collective.all_reduce((centred**2).sum((0, 2, 3))) / count
        with torch.no_grad():
            self.num_batches_tracked += 1
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(variance * count / (count - 1), self.momentum)
        scale = self.weight / torch.sqrt(variance + self.eps)
        return centred * scale[None, :, None, None] + self.bias[None, :, None, None]


class SharedStatisticsNet(Freezable):
    """Digits (1x8x8) → conv → a stack of conv-BatchNorm-tanh-conv blocks whose BatchNorm statistics
    are shared by the ranks (:class:`AllReducedBatchNorm`) → pooled linear logits."""

    def __init__(self, width: int = 8, depth: int = 4, num_classes: int = 10, gradient: str = "adjoint") -> None:
        super().__init__()

        def block() -> nn.Module:
            return nn.Sequential(
                nn.Conv2d(width, width, 3, padding=1), AllReducedBatchNorm(width), nn.Tanh(),
                nn.Conv2d(width, width, 3, padding=1),
            )  # fmt: skip

        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.stack = ResidualStack([block() for _ in range(depth)], gradient=gradient)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.stack(self.stem(images)))


class SaveRankWeights(Callback):
    """At the end of training, every rank saves its network's state dict as ``rank<k>.pt``."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_train_end(self, trainer, pl_module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save(pl_module.network.state_dict(), self.folder / f"rank{trainer.global_rank}.pt")
