"""Lightning data modules: in-memory uint8 splits or image folders, normalised on the training device."""

from .batches import TensorBatches
from .digits import DigitsDataModule

__all__ = ["DigitsDataModule", "TensorBatches"]
