"""Class-per-folder image trees (``<split>/<class>/<image>``): listing, opening, and decoding into one cached tensor."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS
from tqdm.auto import tqdm

from .in_memory import Split

CACHE_FOLDER = ".resnode_cache"
"""Decoded splits are cached in this folder next to the split folders."""


def user_cache_dir() -> Path:
    """Where caches go when the data folder is not writable: ``$XDG_CACHE_HOME/resnode_lightning`` (~/.cache)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "resnode_lightning"


def list_image_folder(folder: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """The sorted class names (subfolders) and every image as (path relative to ``folder``, class index).

    Classes are numbered in sorted order, as ``torchvision.datasets.ImageFolder`` does; images are
    files with one of its extensions, sorted by path. Raises FileNotFoundError naming ``folder``
    if it is missing, has no class folders or no images.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"The image folder {folder} does not exist.")
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"The image folder {folder} has no class folders ({folder}/<class>/<image>).")
    images = [
        (f"{name}/{file}", index)
        for index, name in enumerate(classes)
        for file in sorted(os.listdir(folder / name))
        if file.lower().endswith(IMG_EXTENSIONS)
    ]
    if not images:
        raise FileNotFoundError(f"The class folders of {folder} hold no images ({', '.join(IMG_EXTENSIONS)}).")
    return classes, images


def open_rgb(path: str | Path) -> Image.Image:
    """The image at ``path`` as RGB, or a ValueError that names the file if it cannot be decoded."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:  # PIL signals corrupt files with all three
        raise ValueError(f"Cannot decode the image {path}: {error}. Replace or delete the file.") from error


@dataclass
class DecodedFolder:
    """A whole image folder as one uint8 (N, 3, H, W) tensor with its labels and class names."""

    split: Split
    classes: list[str]


def decode_image_folder(folder: Path) -> DecodedFolder:
    """Every image of ``folder`` (``<class>/<image>``, all of one size), decoded once and cached.

    The cache is ``<folder's parent>/.resnode_cache/<folder name>.pt`` (or the same name under
    :func:`user_cache_dir` if the data folder is not writable), written atomically and loaded
    with ``weights_only=True``. It is keyed by the number and the names of the images: adding,
    removing or renaming an image decodes the folder again; editing an image's pixels in place
    does not (delete the cache folder to force it).
    """
    classes, images = list_image_folder(folder)
    key = hashlib.sha256("\n".join(path for path, _ in images).encode()).hexdigest()
    key = f"{len(images)}-{key}"
    for cache in cache_files(folder):
        if cache.is_file():
            stored = torch.load(cache, weights_only=True)
            if stored["key"] == key:
                return DecodedFolder(Split(stored["images"], stored["labels"]), stored["classes"])
    decoded = DecodedFolder(_decode(folder, images), classes)
    _store(decoded, key, folder)
    return decoded


def cache_files(folder: Path) -> list[Path]:
    """Where the cache of ``folder`` may be: next to the data first, then in the user cache directory."""
    folder = folder.resolve()
    by_location = hashlib.sha256(str(folder.parent).encode()).hexdigest()[:16]
    return [
        folder.parent / CACHE_FOLDER / f"{folder.name}.pt",
        user_cache_dir() / by_location / f"{folder.name}.pt",
    ]


def _decode(folder: Path, images: list[tuple[str, int]]) -> Split:
    first = np.asarray(open_rgb(folder / images[0][0]))
    pixels = np.empty((len(images), *first.shape), dtype=np.uint8)  # (N, H, W, 3), as PIL returns them
    progress = tqdm(images, desc=f"Decoding {folder}", unit="image", disable=len(images) < 5000)
    for number, (path, _) in enumerate(progress):
        image = np.asarray(open_rgb(folder / path))
        if image.shape != first.shape:
            raise ValueError(
                f"The image {folder / path} is {image.shape[1]}x{image.shape[0]} but {folder / images[0][0]} is "
                f"{first.shape[1]}x{first.shape[0]}: every image of {folder} must have the same size."
            )
        pixels[number] = image
    return Split.from_channels_last(torch.from_numpy(pixels), torch.tensor([label for _, label in images]))


def _store(decoded: DecodedFolder, key: str, folder: Path) -> None:
    content = {"key": key, "images": decoded.split.images, "labels": decoded.split.labels, "classes": decoded.classes}
    beside_data, in_user_cache = cache_files(folder)
    try:
        _save_atomically(content, beside_data)
        written = beside_data
    except OSError as error:
        rank_zero_warn(
            f"Cannot write the decoded images next to the data ({beside_data}: {error}); "
            f"caching them in {in_user_cache} instead."
        )
        _save_atomically(content, in_user_cache)
        written = in_user_cache
    rank_zero_info(f"Decoded {len(decoded.split.labels)} images of {folder} into {written}.")


def _save_atomically(content: dict, path: Path) -> None:
    """Write to a temporary file beside ``path``, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)  # a unique name even for processes of several machines sharing the folder
    try:
        os.chmod(temporary, 0o644)  # readable by everyone who reads the data (mkstemp makes it private)
        torch.save(content, temporary)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
