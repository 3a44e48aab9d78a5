"""A tiny in-memory data module and trainer settings shared by the Lightning-layer tests."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule, Trainer
from torch.utils.data import DataLoader, TensorDataset


class RandomImages(LightningDataModule):
    """Random 8x8 images whose class is the sign pattern of two pixels: learnable, 4 classes."""

    def __init__(self, samples: int = 64, batch_size: int = 16, num_classes: int = 4, channels: int = 3) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(samples, channels, 8, 8, generator=generator)
        self.labels = ((self.images[:, 0, 0, 0] > 0).long() * 2 + (self.images[:, 0, 7, 7] > 0).long()) % num_classes
        self.batch_size = batch_size
        self.num_classes = num_classes

    def loader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.images, self.labels), batch_size=self.batch_size)

    train_dataloader = val_dataloader = test_dataloader = loader


def trainer(root, **options) -> Trainer:
    """A quiet CPU trainer writing into ``root``."""
    settings = dict(
        default_root_dir=root, accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip
    return Trainer(**{**settings, **options})
