"""Batches cut from in-memory tensors: shuffled per epoch, sharded across ranks, resumable mid-epoch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor


class TensorBatches:
    """An iterable of ``(images, labels)`` batches indexed out of one tensor per split.

    Each batch is ``images[index], labels[index]`` for a block of indices: one gather per batch,
    no per-sample collate. Every call to ``iter()`` starts an epoch: the one ``epoch_source``
    returns if it is given and returns a number (the data modules pass the trainer's current
    epoch, so that Lightning's extra ``iter()`` calls, e.g. its check that the loader is
    iterable, change nothing), otherwise the one after the previous iteration's. With ``shuffle`` the
    epoch's order is ``torch.randperm(n)`` drawn from a generator seeded with ``seed + epoch``
    (DistributedSampler's convention), so every rank computes the same permutation; rank ``r`` of
    ``world_size`` then takes every ``world_size``-th index from ``r`` on, so ranks never share a
    sample. With ``drop_last`` every rank gets ``n // world_size`` samples cut into full batches
    (equal batch counts on all ranks, as DDP needs for training); without it nothing is dropped
    and rank batch counts may differ by one (for evaluation).

    ``state_dict()`` holds the epoch and the number of batches already delivered in it;
    ``load_state_dict()`` makes the next ``iter()`` continue exactly there. Lightning's fit loop
    saves this state in checkpoints for any training iterable with both methods and restores it
    before its first ``iter()`` on resume; since the iterable has a length, Lightning fetches no
    batch ahead, so "delivered" equals "trained on". A restored epoch that was complete goes on
    with the next one. (One case is not exact: with ``limit_train_batches`` below the length, a
    checkpoint from the end of an epoch resumes with the rest of that epoch's order, which the
    uninterrupted run would have skipped, for one shorter epoch; later epochs are exact again.)

    Args:
        images: all images of the split, any shape with the samples along dimension 0 (uint8 here).
        labels: the matching labels, shape (n,).
        batch_size: samples per batch on each rank.
        shuffle: a fresh seeded permutation each epoch; otherwise the stored order.
        drop_last: drop each rank's last incomplete batch and the samples that do not divide
            evenly among ranks.
        seed: seed of the shuffle.
        rank: this process's rank.
        world_size: number of processes sharing the data.
        epoch_source: called at every ``iter()``: the epoch to deliver, or None to count epochs.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch_source: Callable[[], int | None] | None = None,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(
                f"images has {len(images)} samples but labels has {len(labels)}; give one label per image."
            )
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1.")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must lie in 0..{world_size - 1} for world_size={world_size}.")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.drop_last, self.seed = batch_size, shuffle, drop_last, seed
        self.rank, self.world_size, self.epoch_source = rank, world_size, epoch_source
        self._epoch, self._delivered = 0, 0
        self._started = False  # whether an epoch has begun, so that the next iter() starts a new one
        self._resuming = False  # set by load_state_dict: the next iter() continues the stored epoch

    def _shard_size(self) -> int:
        n = len(self.labels)
        if self.drop_last:
            return n // self.world_size
        return len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        size = self._shard_size()
        return size // self.batch_size if self.drop_last else -(-size // self.batch_size)

    def epoch_indices(self, epoch: int) -> Tensor:
        """This rank's sample indices for ``epoch``, in delivery order."""
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + epoch))
        else:
            order = torch.arange(n)
        stop = self._shard_size() * self.world_size if self.drop_last else n
        return order[self.rank : stop : self.world_size]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self._resuming:  # continue the restored epoch where it stopped, or begin the next if it was complete
            if self._delivered >= len(self):
                self._epoch, self._delivered = self._epoch + 1, 0
        else:
            epoch = self.epoch_source() if self.epoch_source is not None else None
            if epoch is None:
                epoch = self._epoch + 1 if self._started else self._epoch
            self._epoch, self._delivered = epoch, 0
        self._started, self._resuming = True, False
        return self._batches(self._epoch, self._delivered)

    def _batches(self, epoch: int, start: int) -> Iterator[tuple[Tensor, Tensor]]:
        indices = self.epoch_indices(epoch).to(self.images.device)  # once an epoch, where the data is
        for number in range(start, len(self)):
            index = indices[number * self.batch_size : (number + 1) * self.batch_size]
            self._delivered = number + 1
            yield self.images.index_select(0, index), self.labels.index_select(0, index)

    def state_dict(self) -> dict[str, Any]:
        """The position: ``epoch`` and the batches of it ``delivered`` so far."""
        return {"epoch": self._epoch, "delivered": self._delivered}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue at a position from :meth:`state_dict` with the next ``iter()``."""
        self._epoch, self._delivered = int(state_dict["epoch"]), int(state_dict["delivered"])
        self._resuming = True
