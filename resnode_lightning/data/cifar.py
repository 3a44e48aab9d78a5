"""CIFAR-10 and CIFAR-100, held in memory as uint8 and augmented batch-wise on the training device."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torchvision import datasets

from .constants import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD
from .image_folder import check_image_tree, decode_image_folder
from .in_memory import InMemoryDataModule, Split, seeded_split


def mixed(split: Split) -> Split:
    """The split in one fixed pseudo-random order (seed 0, whatever the run's seed)."""
    order = torch.randperm(len(split.labels), generator=torch.Generator().manual_seed(0))
    return split.subset(order)


class CIFAR10DataModule(InMemoryDataModule):
    """CIFAR-10 with the paper's recipe: random crop 32 after zero padding 4, horizontal flip, normalisation.

    The data is found under ``root`` in one of three forms, checked in this order:

    1. torchvision's layout, ``root/cifar-10-batches-py`` (read by ``torchvision.datasets.CIFAR10``);
    2. with ``download: true``, torchvision downloads it there in :meth:`prepare_data`;
    3. a class-per-folder image tree ``root/train/<class>/*.png`` and ``root/test/<class>/*.png``
       (``root`` may also be the folder that holds ``cifar10-jpg/``), decoded once into a uint8
       tensor per split and cached in ``cache_dir`` (see
       :func:`~.image_folder.decode_image_folder`), so later runs start in seconds. Both splits
       must hold the same class folders, none empty, and images of one size
       (:func:`~.image_folder.check_image_tree`): :meth:`check_data` refuses anything else.

    Batches are uint8 until Lightning has moved them to the device; there they are augmented
    (training only) and normalised (:class:`~.image_datamodule.ImageDataModule`). With
    ``val_split = 0`` validation runs on the test split, as the paper reports; otherwise a seeded
    fraction of the training images is held out for it.

    Args:
        root: the folder that holds the data (see above). Nothing is written to the working directory.
        download: download torchvision's copy into ``root`` if it is not there yet (needs a network).
        batch_size: images per batch over all processes together (the global batch; each of W
            processes takes batch_size / W).
        val_split: fraction of the training images held out for validation; 0 validates on the test split.
        augment: random crop with padding 4 and horizontal flip while training.
        seed: seed of the hold-out, the training shuffle and the augmentation.
        cache_dir: where an image tree's decoded splits are cached; None: ``$RESNODE_CACHE_DIR``, else
            the per-user cache folder (``~/.cache/resnode_lightning``). Falls back to a temporary folder,
            with a warning, when it is not writable. Never the data folder unless it is named here.
    """

    num_classes = 10
    in_channels = 3
    name = "CIFAR-10"
    dataset_class: type[datasets.CIFAR10] = datasets.CIFAR10
    torchvision_folder = "cifar-10-batches-py"
    image_tree_folder = "cifar10-jpg"
    normalisation = (CIFAR10_MEAN, CIFAR10_STD)

    def __init__(
        self,
        root: str,
        download: bool = False,
        batch_size: int = 128,
        val_split: float = 0.0,
        augment: bool = True,
        seed: int = 0,
        cache_dir: str | None = None,
    ) -> None:
        if not 0 <= val_split < 1:
            raise ValueError(f"val_split={val_split} must lie in [0, 1): the fraction of training images held out.")
        mean, std = self.normalisation
        super().__init__(batch_size, mean=mean, std=std, crop_padding=4 if augment else 0, flip=augment, seed=seed)
        self.root, self.download, self.val_split = Path(root).expanduser(), download, val_split
        self.cache_dir = cache_dir

    def check_data(self) -> None:
        """The data is under ``root`` (unless it is to be downloaded); an image tree passes :meth:`checked_classes`."""
        if self.download:
            return
        kind, where = self.source()
        if kind == "image tree":
            self.checked_classes(where)

    def checked_classes(self, tree: Path) -> list[str]:
        """The class names of the image tree at ``tree``, after checking that it can be decoded into
        this data set's splits: :func:`~.image_folder.check_image_tree` and ``num_classes`` class folders."""
        classes = check_image_tree(tree / "train", tree / "test")
        if len(classes) != self.num_classes:
            raise ValueError(
                f"{tree / 'train'} has {len(classes)} class folders but {self.name} has "
                f"{self.num_classes}: point root at a {self.name} image tree."
            )
        return classes

    def source(self) -> tuple[Literal["torchvision", "image tree"], Path]:
        """Which form the data under ``root`` has, and where; a FileNotFoundError that explains how to get it."""
        if (self.root / self.torchvision_folder).is_dir():
            return "torchvision", self.root
        for tree in (self.root, self.root / self.image_tree_folder):
            if (tree / "train").is_dir() and (tree / "test").is_dir():
                return "image tree", tree
        raise FileNotFoundError(
            f"No {self.name} data under {self.root}: looked for torchvision's {self.root / self.torchvision_folder} "
            f"and for an image tree {self.root}/train/<class>/<image> with {self.root}/test/<class>/<image> "
            f"(or the same under {self.root / self.image_tree_folder}). Set download: true (--data.download=true) "
            f"to download {self.name} into root, or point root at a folder with one of these layouts."
        )

    def prepare_data(self) -> None:
        """Download (``download: true``) or decode an image tree into its cache; once, before the processes set up."""
        if self.download:
            for train in (True, False):
                self.dataset_class(str(self.root), train=train, download=True)
        kind, where = self.source()
        if kind == "image tree":
            self.checked_classes(where)
            for split in ("train", "test"):
                decode_image_folder(where / split, self.cache_dir)

    def load_splits(self) -> tuple[dict[str, Split], list[str]]:
        """The training images (less the validation hold-out) and the test images, uint8 (N, 3, 32, 32)."""
        kind, where = self.source()
        if kind == "torchvision":
            loaded = {train: self.dataset_class(str(where), train=train, download=False) for train in (True, False)}
            train, test = (
                Split.from_channels_last(torch.from_numpy(loaded[t].data), torch.tensor(loaded[t].targets))
                for t in (True, False)
            )
            classes = list(loaded[True].classes)
        else:
            classes = self.checked_classes(where)
            decoded = {split: decode_image_folder(where / split, self.cache_dir) for split in ("train", "test")}
            # an image tree lists its images class by class: put them in one fixed mixed order, as
            # CIFAR's own files are, so that any prefix of a split (limit_val_batches) has every class
            train, test = (mixed(decoded[split].split) for split in ("train", "test"))
        if self.val_split == 0:
            return {"train": train, "val": test, "test": test}, classes
        kept, held_out = seeded_split(len(train.labels), self.val_split, self.seed)
        return {"train": train.subset(kept), "val": train.subset(held_out), "test": test}, classes


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100: as :class:`CIFAR10DataModule`, with 100 classes, its own normalisation constants and
    torchvision's ``root/cifar-100-python`` layout (or an image tree, ``root`` or ``root/cifar100-jpg``)."""

    num_classes = 100
    name = "CIFAR-100"
    dataset_class = datasets.CIFAR100
    torchvision_folder = "cifar-100-python"
    image_tree_folder = "cifar100-jpg"
    normalisation = (CIFAR100_MEAN, CIFAR100_STD)
