"""What every data module here shares: uint8 batches become normalised float32 on the training device."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor

from .augment import normalise, random_crop_flip


def check_whole_number(field: str, value: object, minimum: int) -> None:
    """Refuse a data option that is not a whole number ``>= minimum`` (0 images per batch, -1 workers),
    naming it as the config does (``data.<field>``) and saying how to set it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"data.{field} must be a whole number >= {minimum}, got {value!r}: change it in the config's data "
            f"section or with --data.{field}."
        )


def batch_per_process(batch_size: int, world_size: int) -> int:
    """The batch each of ``world_size`` processes takes so that together they take ``batch_size``,
    the global batch of the config: ``batch_size / world_size``. One process steps on the batch the
    config names whatever the number of processes (the paper's learning rates are for that batch).

    Raises:
        ValueError: ``batch_size`` does not divide among the processes, with the nearest that do.
    """
    if batch_size % world_size:
        below, above = batch_size - batch_size % world_size, batch_size - batch_size % world_size + world_size
        raise ValueError(
            f"data.batch_size={batch_size} is the global batch (all processes together) and does not divide among "
            f"{world_size} processes: set --data.batch_size {below or above}{f' or {above}' if below else ''}, or "
            f"change the number of processes (trainer.devices x trainer.num_nodes)."
        )
    return batch_size // world_size


class ImageDataModule(LightningDataModule):
    """Base of the image data modules: loaders deliver uint8 (B, C, H, W) images and int64 labels.

    After Lightning has moved a batch to its device, :meth:`on_after_batch_transfer` converts it
    there: random crop and flip (:func:`~.augment.random_crop_flip`) while training if the data
    module augments, then per-channel normalisation (:func:`~.augment.normalise`) always. Moving
    uint8 rather than float32 also quarters the host-to-device traffic.

    The crop offsets and flips come from a CPU generator seeded with ``seed + global rank`` in
    :meth:`setup` (ranks augment differently, runs repeat exactly). Its state is the data module's
    ``state_dict``, which Lightning stores in checkpoints (rank 0's): a resumed run continues rank
    0's stream exactly, and the other ranks reseed from it plus their rank.

    Subclasses set ``num_classes`` and ``in_channels`` in ``__init__`` (the CLI links them into
    the model) and ``classes`` in ``setup``.

    Args:
        mean: per-channel mean of the pixels on the [0, 1] scale (from :mod:`~.constants`).
        std: per-channel standard deviation on the [0, 1] scale.
        crop_padding: zero padding of the random crop while training; 0: no crop.
        flip: random horizontal flips while training.
        seed: seed of the augmentation (plus the global rank).
    """

    num_classes: int
    in_channels: int

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        crop_padding: int = 0,
        flip: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.mean, self.std = tuple(mean), tuple(std)
        self.crop_padding, self.flip, self.seed = crop_padding, flip, seed
        self.augments = crop_padding > 0 or flip
        # made in setup: a torch.Generator cannot be sent to the processes ddp_spawn starts
        self.generator: torch.Generator | None = None
        self.classes: list[str] = []

    def check_data(self) -> None:
        """A quick check that the data is where the config says, raising the error that names the
        path and the fix; the CLI calls it before ``fit`` does any work. Nothing to check here."""

    @property
    def rank(self) -> int:
        """This process's global rank: 0 without a trainer."""
        return self.trainer.global_rank if self.trainer is not None else 0

    @property
    def device(self) -> torch.device:
        """The device the trainer trains on: the CPU without one."""
        strategy = getattr(self.trainer, "strategy", None)
        return getattr(strategy, "root_device", None) or torch.device("cpu")

    @property
    def world_size(self) -> int:
        """The number of processes: 1 without a trainer."""
        return self.trainer.world_size if self.trainer is not None else 1

    def setup(self, stage: str) -> None:
        """Seed the augmentation for this rank."""
        self.generator = torch.Generator().manual_seed(self.seed + self.rank)

    def transform_batch(self, batch: tuple[Tensor, Tensor], training: bool) -> tuple[Tensor, Tensor]:
        """uint8 images to normalised float32, augmented first if ``training`` and the module augments."""
        images, labels = batch
        if training and self.augments:
            if self.generator is None:
                raise RuntimeError(f"{type(self).__name__}.setup() must run before batches are augmented.")
            images = random_crop_flip(images, self.crop_padding, self.flip, self.generator)
        return normalise(images, self.mean, self.std), labels

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        """:meth:`transform_batch` on the device, augmenting only while the trainer trains."""
        return self.transform_batch(batch, training=self.trainer is not None and self.trainer.training)

    def state_dict(self) -> dict[str, Any]:
        """The augmentation generator's state (nothing before :meth:`setup`)."""
        return {} if self.generator is None else {"augmentation_generator": self.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue the augmentation stream of a checkpoint (Lightning calls this after :meth:`setup`)."""
        if "augmentation_generator" not in state_dict or self.generator is None:
            return
        self.generator.set_state(state_dict["augmentation_generator"])
        if self.rank > 0:  # the checkpoint holds rank 0's stream: derive a distinct one from it
            self.generator.manual_seed(int(torch.randint(2**62, (1,), generator=self.generator)) + self.rank)
