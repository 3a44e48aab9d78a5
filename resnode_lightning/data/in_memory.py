"""Data modules whose splits fit in memory as one uint8 tensor each."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .batches import TensorBatches
from .image_datamodule import ImageDataModule, batch_per_process, check_whole_number


@dataclass
class Split:
    """The images (N, C, H, W) as uint8 and the int64 labels (N,) of one split."""

    images: Tensor
    labels: Tensor

    @classmethod
    def from_channels_last(cls, pixels: Tensor, labels: Tensor) -> Split:
        """A split from (N, H, W, C) uint8 pixels, as PIL and torchvision's CIFAR ``.data`` hold them."""
        return cls(pixels.permute(0, 3, 1, 2).contiguous(), labels.to(torch.int64))

    def subset(self, indices: Tensor) -> Split:
        """The samples at ``indices``, in that order."""
        return Split(self.images.index_select(0, indices), self.labels.index_select(0, indices))

    def to(self, device: torch.device) -> Split:
        """The split on ``device`` (itself if it is there)."""
        if self.images.device == device:
            return self
        return Split(self.images.to(device), self.labels.to(device))


def seeded_split(size: int, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Disjoint sorted index sets (kept, held out) of 0..size-1, the held-out one ``round(fraction · size)`` long.

    The same ``size``, ``fraction`` and ``seed`` give the same split on every run and every rank.
    """
    held_out = round(fraction * size)
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    return order[held_out:].sort().values, order[:held_out].sort().values


class InMemoryDataModule(ImageDataModule):
    """Base of data modules that hold every split in memory and serve it with :class:`~.batches.TensorBatches`.

    Subclasses implement :meth:`load_splits`. :meth:`setup` calls it once, moves the splits to the
    trainer's device (a GPU holds CIFAR-10's 180 MB of uint8 at once: batches are then gathered
    there, with nothing to copy per step, and augmented there by :class:`ImageDataModule`), reads
    the rank and the world size from the attached trainer (0 and 1 without one) and builds the
    loaders: training batches are shuffled per epoch, sharded across ranks and drop the last incomplete batch;
    validation, test and predict batches keep the stored order, shard without dropping anything
    (every sample is evaluated once, on exactly one rank). Lightning does not insert a
    DistributedSampler into such iterables, which is why they shard themselves.

    ``batch_size`` is the global batch: each of W processes takes ``batch_size / W`` samples
    (:func:`~.image_datamodule.batch_per_process`), and since rank r takes every W-th sample of
    the epoch's order from r on, the W batches of a step are together exactly the batch one
    process would take at that step.

    Args:
        batch_size: samples per batch over all processes together (the global batch).
        image_options: the normalisation and augmentation of :class:`~.image_datamodule.ImageDataModule`.
    """

    def __init__(self, batch_size: int, **image_options) -> None:
        check_whole_number("batch_size", batch_size, minimum=1)
        super().__init__(**image_options)
        self.batch_size = batch_size
        self.splits: dict[str, Split] = {}
        self._loaders: dict[str, TensorBatches] = {}
        self._sharding = (0, 1)  # (rank, world size) the loaders were built for

    def load_splits(self) -> tuple[dict[str, Split], list[str]]:
        """The ``train``, ``val`` and ``test`` splits and the class names."""
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        """Load the splits (once) and build this rank's loaders."""
        super().setup(stage)
        if not self.splits:
            self.splits, self.classes = self.load_splits()
        device = self.device
        if any(split.images.device != device for split in self.splits.values()):
            moved: dict[int, Split] = {}  # a split that serves two stages (digits' val and test) moves once
            for split in self.splits.values():
                if id(split) not in moved:
                    moved[id(split)] = split.to(device)
            self.splits = {name: moved[id(split)] for name, split in self.splits.items()}
            self._loaders = {}
        if self._loaders and self._sharding == (self.rank, self.world_size):
            return  # keep the loaders, and with them the training epoch and position
        self._sharding = (self.rank, self.world_size)
        self._loaders = {
            name: TensorBatches(
                split.images,
                split.labels,
                batch_per_process(self.batch_size, self.world_size),
                shuffle=name == "train",
                drop_last=name == "train",
                seed=self.seed,
                rank=self.rank,
                world_size=self.world_size,
                epoch_source=self._trainer_epoch if name == "train" else None,
            )
            for name, split in self.splits.items()
        }

    def _trainer_epoch(self) -> int | None:
        return self.trainer.current_epoch if self.trainer is not None else None

    def _loader(self, name: str) -> TensorBatches:
        if name not in self._loaders:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its {name} loader is requested.")
        return self._loaders[name]

    def train_dataloader(self) -> TensorBatches:
        """Shuffled, sharded training batches."""
        return self._loader("train")

    def val_dataloader(self) -> TensorBatches:
        """Validation batches in stored order."""
        return self._loader("val")

    def test_dataloader(self) -> TensorBatches:
        """Test batches in stored order."""
        return self._loader("test")

    def predict_dataloader(self) -> TensorBatches:
        """The test split's batches."""
        return self._loader("test")
