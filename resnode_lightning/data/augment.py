"""Augmentation and normalisation of whole uint8 batches, on whatever device the batch is on.

The paper's CIFAR recipe (random crop to the image size after zero padding 4, horizontal flip,
per-channel normalisation) applied to a (B, C, H, W) batch with a handful of tensor operations
instead of per-image PIL transforms: pad once, pick every crop's rows with one ``index_select``
and its columns with one ``gather`` (the flip is a reversed column index, so it costs nothing
extra), all in uint8, and convert to float only at the end, with the normalisation fused into
one multiply and one add. ``benchmarks/input_pipeline.py`` measures it against torchvision.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional


def random_crop_flip(images: Tensor, padding: int, flip: bool, generator: torch.Generator) -> Tensor:
    """Each image shifted by a random crop of its zero-padded self, and mirrored with probability 1/2.

    Distributed, image by image, as torchvision's ``RandomCrop(size=(H, W), padding=padding)``
    followed by ``RandomHorizontalFlip()``: offsets uniform on 0..2·padding in each direction.

    Args:
        images: a batch (B, C, H, W) of any dtype (uint8 here), on any device.
        padding: zero padding on every side before cropping back to (H, W); 0 disables the crop.
        flip: mirror left-right with probability 1/2.
        generator: a CPU generator the offsets and flips are drawn from (reproducible on any device).

    Returns:
        A new batch of the same shape, dtype and device.
    """
    batch, channels, height, width = images.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator).to(images.device)
    mirrored = (torch.randint(0, 2, (batch,), generator=generator).bool() & flip).to(images.device)
    padded = functional.pad(images, (padding,) * 4)  # (B, C, H + 2p, W + 2p)
    padded_height, padded_width = height + 2 * padding, width + 2 * padding
    # rows: each image's H rows from its row offset on, picked as whole padded rows (one memcpy each)
    first_rows = torch.arange(batch * channels, device=images.device).view(batch, channels, 1) * padded_height
    rows = first_rows + offsets[0].view(batch, 1, 1) + torch.arange(height, device=images.device)
    picked = padded.reshape(-1, padded_width).index_select(0, rows.view(-1)).view(batch, channels, height, -1)
    # columns: each image's W columns from its column offset on, in reverse order if mirrored
    columns = torch.arange(width, device=images.device)
    columns = torch.where(mirrored[:, None], columns.flip(0), columns) + offsets[1][:, None]  # (B, W)
    return picked.gather(3, columns.view(batch, 1, 1, width).expand(batch, channels, height, width))


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
    scale, shift = _scale_and_shift(tuple(mean), tuple(std), images.device)
    return images.to(torch.float32).mul_(scale).add_(shift)


@functools.lru_cache(maxsize=16)
def _scale_and_shift(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[Tensor, Tensor]:
    """(1, C, 1, 1) factors with ``x · scale + shift = (x / 255 - mean) / std``, made once per device."""
    scale = torch.tensor([1 / (255 * s) for s in std], device=device).view(1, -1, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(mean, std)], device=device).view(1, -1, 1, 1)
    return scale, shift
