"""Lightning data modules: in-memory uint8 splits or image folders, normalised on the training device."""

from .batches import TensorBatches
from .cifar import CIFAR10DataModule, CIFAR100DataModule
from .digits import DigitsDataModule
from .imagenet import ImageNetDataModule

__all__ = ["CIFAR10DataModule", "CIFAR100DataModule", "DigitsDataModule", "ImageNetDataModule", "TensorBatches"]
