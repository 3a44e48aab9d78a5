"""Small image trees written on the fly, in the layout the data modules read: ``<split>/<class>/<image>``.

Each class has its own colour and stripe direction, each image its own stripe phase and pixel
noise, so a small network can learn the classes and no two images are equal. Everything is
drawn from generators seeded by (seed, split, class): the same call writes the same files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
"""CIFAR-10's class names; sorted, so that ImageFolder's labels equal CIFAR-10's."""

CIFAR_IMAGES_PER_SPLIT = {"train": 20, "test": 10}


def class_image(label: int, classes: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One (size, size, 3) uint8 image of class ``label``: the class's colour, striped in the class's direction.

    The colours go round the hue circle (about CIFAR's mean brightness, 0.5); the stripes turn by
    180° / ``classes`` from one class to the next; the phase and the noise are the image's own.
    """
    hue = 2 * np.pi * label / classes
    colour = 0.48 + 0.18 * np.cos(hue + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]))
    angle = np.pi * label / classes
    rows, columns = np.mgrid[0:size, 0:size] / size
    stripes = np.sin(2 * np.pi * 3 * (rows * np.cos(angle) + columns * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
    pixels = colour + 0.15 * stripes[..., None] + rng.normal(0, 0.06, (size, size, 3))
    return (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)


def write_image_tree(
    root: Path,
    classes: Sequence[str] = CIFAR10_CLASSES,
    images_per_split: Mapping[str, int] = CIFAR_IMAGES_PER_SPLIT,
    size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``root/<split>/<class>/NNNN.jpg``: ``images_per_split[split]`` RGB JPEGs of ``size`` x ``size`` per class.

    The defaults give a small CIFAR-10 in the layout of ``cifar10-jpg`` (20 training and 10 test
    images per class, 32x32), written in about a tenth of a second. Returns ``root``.
    """
    for split_number, (split, count) in enumerate(images_per_split.items()):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([seed, split_number, label])
            for number in range(count):
                image = Image.fromarray(class_image(label, len(classes), size, rng))
                image.save(folder / f"{number:04d}.jpg", quality=90)
    return root
