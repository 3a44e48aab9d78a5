"""Augmentation and normalisation of whole uint8 batches, on whatever device the batch is on.

The paper's CIFAR recipe (random crop to the image size after zero padding 4, horizontal flip,
per-channel normalisation) applied to a (B, C, H, W) batch with a handful of tensor operations
instead of per-image PIL transforms: pad once, gather every crop with one ``torch.gather`` over
precomputed flat indices (the flip is a reversed column index, so it costs nothing extra), and
convert to float only at the end, with the normalisation fused into one multiply and one add.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional


def random_crop_flip(images: Tensor, padding: int, flip: bool, generator: torch.Generator) -> Tensor:
    """Each image shifted by a random crop of its zero-padded self, and mirrored with probability 1/2.

    Equals, image by image, torchvision's ``RandomCrop(size=(H, W), padding=padding)`` followed by
    ``RandomHorizontalFlip()``: offsets are uniform on 0..2·padding in each direction.

    Args:
        images: a batch (B, C, H, W) of any dtype (uint8 here), on any device.
        padding: zero padding on every side before cropping back to (H, W); 0 disables the crop.
        flip: mirror left-right with probability 1/2.
        generator: a CPU generator the offsets and flips are drawn from (reproducible on any device).

    Returns:
        A new batch of the same shape, dtype and device.
    """
    batch, channels, height, width = images.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator)
    mirrored = torch.randint(0, 2, (batch,), generator=generator).bool() & flip
    offsets, mirrored = offsets.to(images.device), mirrored.to(images.device)
    padded_width = width + 2 * padding
    columns = torch.arange(width, device=images.device)
    columns = torch.where(mirrored[:, None], columns.flip(0), columns) + offsets[1][:, None]  # (B, W)
    rows = torch.arange(height, device=images.device) + offsets[0][:, None]  # (B, H)
    flat_index = (rows[:, :, None] * padded_width + columns[:, None, :]).view(batch, 1, height * width)
    padded = functional.pad(images, (padding,) * 4) if padding else images
    flat = padded.reshape(batch, channels, -1)
    return flat.gather(2, flat_index.expand(-1, channels, -1)).view(batch, channels, height, width)


def normalise(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(images / 255 - mean) / std`` per channel, as float32: one conversion, one multiply, one add.

    Args:
        images: uint8 pixels (B, C, H, W), 0..255.
        mean: per-channel mean on the [0, 1] scale.
        std: per-channel standard deviation on the [0, 1] scale.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"normalise expects uint8 images (0..255), got {images.dtype}.")
    channels = images.shape[1]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean and std have {len(mean)} and {len(std)} values for {channels} image channels.")
    scale = torch.tensor([1 / (255 * s) for s in std], device=images.device).view(1, channels, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(mean, std)], device=images.device).view(1, channels, 1, 1)
    return images.to(torch.float32).mul_(scale).add_(shift)
