"""ImageNet (or any class-per-folder image set too large for memory): decoded per image in worker processes."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from .constants import IMAGENET_MEAN, IMAGENET_STD
from .image_datamodule import ImageDataModule
from .image_folder import open_rgb


class ImageNetDataModule(ImageDataModule):
    """ImageNet from ``root/train/<class>/<image>`` and ``root/val/<class>/<image>``, read by ``ImageFolder``.

    There is no download: ImageNet's licence requires fetching it from image-net.org; the
    validation images must be sorted into class folders as the training images are (the layout
    of Lightning's and torchvision's ImageNet examples). Training images get
    ``RandomResizedCrop(image_size)`` and a horizontal flip, validation images
    ``Resize(image_size · 256/224)`` and ``CenterCrop(image_size)``, each decoded and cropped in a
    DataLoader worker and delivered as uint8; they are normalised on the device after transfer,
    by the same mechanism as CIFAR (:class:`~.image_datamodule.ImageDataModule`). Under DDP
    Lightning gives each loader a DistributedSampler. **Test and predict use the validation
    split** (ImageNet's test labels are not public).

    Args:
        root: the folder holding the training and validation folders.
        num_classes: the number of class folders; checked against ``root/train`` in ``setup``.
        image_size: side of the square crops.
        batch_size: images per batch on each process.
        num_workers: DataLoader worker processes per training process (persistent across epochs).
        train_dir: name of the training folder under ``root``.
        val_dir: name of the validation folder under ``root`` (``test`` for a CIFAR-style tree).
        seed: seed of the training shuffle in a single process (under DDP the sampler's seed rules).
    """

    in_channels = 3

    def __init__(
        self,
        root: str,
        num_classes: int = 1000,
        image_size: int = 224,
        batch_size: int = 256,
        num_workers: int = 8,
        train_dir: str = "train",
        val_dir: str = "val",
        seed: int = 0,
    ) -> None:
        super().__init__(mean=IMAGENET_MEAN, std=IMAGENET_STD, seed=seed)
        self.root, self.num_classes, self.image_size = Path(root).expanduser(), num_classes, image_size
        self.batch_size, self.num_workers = batch_size, num_workers
        self.train_dir, self.val_dir = train_dir, val_dir
        self.datasets: dict[str, ImageFolder] = {}

    def check_data(self) -> None:
        """Both class-per-folder trees exist under ``root``."""
        for name in (self.train_dir, self.val_dir):
            if not (self.root / name).is_dir():
                raise FileNotFoundError(self.missing(self.root / name, "no such folder"))

    def missing(self, folder: Path, reason: object) -> str:
        """What is wrong with ``folder`` and how to get the data."""
        return (
            f"No images under {folder} ({reason}). {type(self).__name__} reads {self.root}/{self.train_dir}/"
            f"<class>/<image> and {self.root}/{self.val_dir}/<class>/<image>; there is no download: get "
            f"ImageNet from image-net.org, sort its validation images into class folders, and point root "
            f"at the folder that holds both (or set train_dir and val_dir)."
        )

    def _image_folder(self, name: str, transform: v2.Transform) -> ImageFolder:
        folder = self.root / name
        try:
            return ImageFolder(str(folder), transform=transform, loader=open_rgb)
        except FileNotFoundError as error:  # no folder, no class folders, or no images in them
            raise FileNotFoundError(self.missing(folder, error)) from error

    def setup(self, stage: str) -> None:
        """List both folders (once) and check their classes against ``num_classes``."""
        super().setup(stage)
        if self.datasets:
            return
        train = self._image_folder(
            self.train_dir,
            v2.Compose([v2.RandomResizedCrop(self.image_size), v2.RandomHorizontalFlip(), v2.PILToTensor()]),
        )
        resize = int(self.image_size * 256 / 224)
        val = self._image_folder(
            self.val_dir, v2.Compose([v2.Resize(resize), v2.CenterCrop(self.image_size), v2.PILToTensor()])
        )
        if len(train.classes) != self.num_classes:
            raise ValueError(
                f"{self.root / self.train_dir} has {len(train.classes)} class folders but num_classes="
                f"{self.num_classes}: set num_classes: {len(train.classes)} or point root at the full data set."
            )
        if val.classes != train.classes:
            raise ValueError(
                f"The class folders of {self.root / self.val_dir} differ from those of {self.root / self.train_dir}: "
                f"both must hold the same classes."
            )
        self.datasets, self.classes = {"train": train, "val": val}, train.classes

    def _loader(self, split: str, training: bool) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its loaders are requested.")
        on_gpu = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=training,
            drop_last=training,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=on_gpu,
            generator=torch.Generator().manual_seed(self.seed) if training else None,
        )

    def train_dataloader(self) -> DataLoader:
        """Random resized crops and flips, shuffled."""
        return self._loader("train", training=True)

    def val_dataloader(self) -> DataLoader:
        """Centre crops of the validation images."""
        return self._loader("val", training=False)

    def test_dataloader(self) -> DataLoader:
        """The validation split."""
        return self._loader("val", training=False)

    def predict_dataloader(self) -> DataLoader:
        """The validation split."""
        return self._loader("val", training=False)
