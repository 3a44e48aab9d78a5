"""scikit-learn's 8x8 handwritten digits: a real data set that needs no download."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits

from .constants import DIGITS_MEAN, DIGITS_STD
from .in_memory import InMemoryDataModule, Split, seeded_split


class DigitsDataModule(InMemoryDataModule):
    """The 1,797 8x8 grey-level digits that ship with scikit-learn (``load_digits``): 10 classes, 1 channel.

    Pixel values 0..16 are stored as uint8 ``round(v · 255 / 16)`` and normalised like every other
    data set here (``DIGITS_MEAN``/``DIGITS_STD`` are on the [0, 1] scale). A seeded fraction of
    the samples is held out for validation; there is no separate test set, so **the test and
    predict splits are the validation split**. Works offline: the quickstart's default.

    Args:
        batch_size: samples per batch over all processes together (the global batch; each of W
            processes takes batch_size / W).
        val_split: fraction held out for validation (and test), strictly between 0 and 1.
        augment: random shifts by up to one pixel while training (no flips: a mirrored digit is
            another symbol).
        seed: seed of the split, the training shuffle and the augmentation.
    """

    num_classes = 10
    in_channels = 1

    def __init__(self, batch_size: int = 64, val_split: float = 0.2, augment: bool = False, seed: int = 0) -> None:
        if not 0 < val_split < 1:
            raise ValueError(
                f"val_split={val_split} must lie strictly between 0 and 1: the digits have no separate test set."
            )
        super().__init__(batch_size, mean=DIGITS_MEAN, std=DIGITS_STD, crop_padding=1 if augment else 0, seed=seed)
        self.val_split = val_split

    def load_splits(self) -> tuple[dict[str, Split], list[str]]:
        """All digits as uint8 (N, 1, 8, 8), split into train and val (= test)."""
        digits = load_digits()
        pixels = torch.from_numpy(digits.images).mul(255 / 16).round().to(torch.uint8).unsqueeze(1)
        everything = Split(pixels.contiguous(), torch.from_numpy(digits.target).long())
        kept, held_out = seeded_split(len(everything.labels), self.val_split, self.seed)
        validation = everything.subset(held_out)
        return {"train": everything.subset(kept), "val": validation, "test": validation}, [str(d) for d in range(10)]
