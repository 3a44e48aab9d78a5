"""ImageNet (or any class-per-folder image set too large for memory): decoded per image in worker
processes, or in batches on the training device (``decode: device``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms import v2

from .constants import IMAGENET_MEAN, IMAGENET_STD
from .image_datamodule import ImageDataModule, batch_per_process, check_whole_number
from .image_folder import class_folders, empty_class_folder, has_images, open_rgb, same_class_folders


class ClassFolders(ImageFolder):
    """``ImageFolder`` with this package's notion of a class folder (:func:`~.image_folder.class_folders`:
    hidden folders are not classes), so that its labels are the ones :meth:`ImageNetDataModule.check_data` checked."""

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        """The sorted class folder names of ``directory`` and their labels."""
        classes = class_folders(Path(directory))
        return classes, {name: label for label, name in enumerate(classes)}


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
    split** (ImageNet's test labels are not public). Images may have any size (every one is cropped
    to ``image_size``); a corrupt one stops the loader with a ValueError naming the file.

    With ``decode: device`` the workers only read each file's bytes, and the batch is decoded on the
    training device before transfer (``torchvision.io.decode_jpeg`` on a list: nvJPEG on a GPU),
    then cropped there with the same transforms: a GPU that eats thousands of images per second
    needs no dozen CPU workers to decode them. On a CPU trainer the same path decodes on the CPU
    (the tests use it); images that are not JPEG are decoded one by one on the CPU. A corrupt file
    then stops the run with torchvision's error, which does not name the file.

    Args:
        root: the folder holding the training and validation folders.
        num_classes: the number of class folders; checked against both folders in :meth:`check_data`.
        image_size: side of the square crops.
        batch_size: images per batch over all processes together (the global batch; each of W
            processes takes batch_size / W).
        num_workers: DataLoader worker processes per training process (persistent across epochs).
        train_dir: name of the training folder under ``root``.
        val_dir: name of the validation folder under ``root`` (``test`` for a CIFAR-style tree).
        seed: seed of the training shuffle in a single process (under DDP the sampler's seed rules).
        decode: ``workers`` (decode and crop in the DataLoader workers, the default) or ``device``
            (decode and crop each batch on the training device).
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
        decode: Literal["workers", "device"] = "workers",
    ) -> None:
        for field, value, minimum in (
            ("num_classes", num_classes, 1),
            ("image_size", image_size, 1),
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
        ):
            check_whole_number(field, value, minimum)
        super().__init__(mean=IMAGENET_MEAN, std=IMAGENET_STD, seed=seed)
        self.root, self.num_classes, self.image_size = Path(root).expanduser(), num_classes, image_size
        if decode not in ("workers", "device"):
            raise ValueError(f"data.decode must be 'workers' or 'device', got {decode!r}: set it in the data section.")
        self.batch_size, self.num_workers, self.decode = batch_size, num_workers, decode
        self.train_dir, self.val_dir = train_dir, val_dir
        self.datasets: dict[str, ImageFolder] = {}

    def check_data(self) -> None:
        """Both class-per-folder trees exist under ``root``, with the same ``num_classes`` class folders, none empty.

        Cheap even on ImageNet: two folder listings and one look into each class folder, stopping at its first image.
        """
        folders = [self.root / self.train_dir, self.root / self.val_dir]
        for folder in folders:
            try:
                class_folders(folder)
            except FileNotFoundError as error:  # no folder, or no class folders in it
                raise FileNotFoundError(self.missing(folder, error)) from error
        classes = same_class_folders(*folders)
        if len(classes) != self.num_classes:
            raise ValueError(
                f"{folders[0]} has {len(classes)} class folders but num_classes={self.num_classes}: "
                f"set num_classes: {len(classes)} or point root at the full data set."
            )
        for folder in folders:
            for name in classes:
                if not has_images(folder / name):
                    raise empty_class_folder(folder / name)

    def missing(self, folder: Path, reason: object) -> str:
        """What is wrong with ``folder`` and how to get the data."""
        return (
            f"No images under {folder} ({reason}). {type(self).__name__} reads {self.root}/{self.train_dir}/"
            f"<class>/<image> and {self.root}/{self.val_dir}/<class>/<image>; there is no download: get "
            f"ImageNet from image-net.org, sort its validation images into class folders, and point root "
            f"at the folder that holds both (or set train_dir and val_dir)."
        )

    def _image_folder(self, name: str, transform: v2.Transform) -> ImageFolder:
        if self.decode == "device":  # the workers read bytes; the transforms run on the device, per batch
            return ClassFolders(str(self.root / name), loader=read_bytes)
        return ClassFolders(str(self.root / name), transform=transform, loader=open_rgb)

    def setup(self, stage: str) -> None:
        """Check the folders (:meth:`check_data`) and list them, once."""
        super().setup(stage)
        if self.datasets:
            return
        self.check_data()
        train = self._image_folder(
            self.train_dir,
            v2.Compose([v2.RandomResizedCrop(self.image_size), v2.RandomHorizontalFlip(), v2.PILToTensor()]),
        )
        resize = int(self.image_size * 256 / 224)
        val = self._image_folder(
            self.val_dir, v2.Compose([v2.Resize(resize), v2.CenterCrop(self.image_size), v2.PILToTensor()])
        )
        self.datasets, self.classes = {"train": train, "val": val}, train.classes
        self.device_crops = {
            True: v2.Compose([v2.RandomResizedCrop(self.image_size), v2.RandomHorizontalFlip()]),
            False: v2.Compose([v2.Resize(resize), v2.CenterCrop(self.image_size)]),
        }

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """With ``decode: device``: the batch's JPEG bytes decoded and cropped on the training device."""
        if self.decode != "device":
            return batch
        files, labels = batch
        training = self.trainer is not None and self.trainer.training
        return self.decode_batch(files, training), labels

    def decode_batch(self, files: list[bytes], training: bool) -> Tensor:
        """uint8 (B, 3, image_size, image_size) on :attr:`device` from the encoded files of a batch."""
        device = self.device
        files = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in files]
        try:
            images = decode_jpeg(files, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:  # one file is no JPEG (ImageNet holds a few PNGs and CMYK JPEGs): one by one
            images = [decode_image(data, mode=ImageReadMode.RGB).to(device) for data in files]
        crop = self.device_crops[training]
        return torch.stack([crop(image) for image in images])

    def _loader(self, split: str, training: bool) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its loaders are requested.")
        on_gpu = self.device.type == "cuda"
        return DataLoader(
            self.datasets[split],
            collate_fn=encoded_files if self.decode == "device" else None,
            batch_size=batch_per_process(self.batch_size, self.world_size),
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


def read_bytes(path: str) -> bytes:
    """A file's bytes: what a worker sends (plain bytes cross the process boundary by pickling, where
    many small tensors would each need a shared-memory file descriptor)."""
    return Path(path).read_bytes()


def encoded_files(samples: list[tuple[bytes, int]]) -> tuple[list[bytes], Tensor]:
    """A batch of (file bytes, label) samples as the list of the files (they differ in length) and the labels."""
    return [data for data, _ in samples], torch.tensor([label for _, label in samples])
