"""Class-per-folder image trees (``<split>/<class>/<image>``): listing, checking, decoding into one cached tensor."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS
from tqdm.auto import tqdm

from ..files import atomic_write
from .in_memory import Split

CACHE_DIR_VARIABLE = "RESNODE_CACHE_DIR"
"""The environment variable that chooses where decoded images are cached (a data module's ``cache_dir`` wins)."""

DECODER = f"open_rgb: RGB uint8 (N, 3, H, W) by Pillow {PIL.__version__}"
"""What made a cache's pixels; part of its file name, so that another decoder (a Pillow with another
libjpeg decodes JPEGs slightly differently) never reads a cache it did not write."""

CACHE_DIR_ADVICE = f"Set data.cache_dir (--data.cache_dir) or {CACHE_DIR_VARIABLE} to a writable folder."


def class_folders(folder: Path) -> list[str]:
    """The sorted names of the class folders in ``folder`` (hidden folders such as ``.ipynb_checkpoints`` skipped).

    Raises FileNotFoundError naming ``folder`` if it is missing or has no class folders.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"The image folder {folder} does not exist.")
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"The image folder {folder} has no class folders ({folder}/<class>/<image>).")
    return classes


def same_class_folders(train: Path, test: Path) -> list[str]:
    """The class names of ``train``, after checking that ``test`` has exactly the same class folders.

    Labels are numbered by sorted folder name, so a renamed, missing or extra folder in one split
    would silently give its images other classes' labels: a ValueError names the differing folders.
    """
    train_classes, test_classes = class_folders(train), class_folders(test)
    if train_classes != test_classes:
        differences = [
            f"only in {folder}: {', '.join(sorted(set(classes) - set(others)))}"
            for folder, classes, others in ((train, train_classes, test_classes), (test, test_classes, train_classes))
            if set(classes) - set(others)
        ]
        raise ValueError(
            f"The class folders of {test} differ from those of {train} ({'; '.join(differences)}). Labels are "
            f"numbered by sorted folder name, so both splits must hold the same class folders: rename, add or "
            f"remove folders until they match."
        )
    return train_classes


def has_images(folder: Path) -> bool:
    """Whether ``folder`` holds at least one image file; stops at the first (cheap on huge folders)."""
    with os.scandir(folder) as entries:
        return any(entry.is_file() and entry.name.lower().endswith(IMG_EXTENSIONS) for entry in entries)


def empty_class_folder(folder: Path) -> ValueError:
    """The error for a class folder without images: its class would exist with no sample."""
    return ValueError(
        f"The class folder {folder} holds no images ({', '.join(IMG_EXTENSIONS)}): add its images, or remove "
        f"the folder from every split (each class folder is a class, numbered in sorted order)."
    )


def list_image_folder(folder: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """The sorted class names (subfolders) and every image as (path relative to ``folder``, class index).

    Classes are numbered in sorted order, as ``torchvision.datasets.ImageFolder`` does; images are
    files with one of its extensions, sorted by path. Raises FileNotFoundError naming ``folder``
    if it is missing, has no class folders or no images, and ValueError naming a class folder
    without images.
    """
    classes = class_folders(folder)
    images = [
        (f"{name}/{file}", index)
        for index, name in enumerate(classes)
        for file in sorted(os.listdir(folder / name))
        if file.lower().endswith(IMG_EXTENSIONS)
    ]
    if not images:
        raise FileNotFoundError(f"The class folders of {folder} hold no images ({', '.join(IMG_EXTENSIONS)}).")
    found = {index for _, index in images}
    for index, name in enumerate(classes):
        if index not in found:
            raise empty_class_folder(folder / name)
    return classes, images


def check_image_tree(train: Path, test: Path) -> list[str]:
    """The class names of a tree held in memory, after the checks decoding it would otherwise fail or pass silently.

    Every class folder holds images (:func:`list_image_folder`), both splits have the same class
    folders (:func:`same_class_folders`) and one image size (compared on the first image of each,
    from its header only; :func:`decode_image_folder` checks every image against its split's
    first). Costs two directory listings and two image headers.
    """
    firsts = {folder: folder / list_image_folder(folder)[1][0][0] for folder in (train, test)}
    classes = same_class_folders(train, test)
    sizes = {folder: image_size(first) for folder, first in firsts.items()}
    if sizes[train] != sizes[test]:
        (train_width, train_height), (test_width, test_height) = sizes[train], sizes[test]
        raise ValueError(
            f"The images of {test} are {test_width}x{test_height} ({firsts[test]}) but those of {train} are "
            f"{train_width}x{train_height} ({firsts[train]}): a data set held in memory has one image size. "
            f"Resize the images of {test} to {train_width}x{train_height}."
        )
    return classes


@contextlib.contextmanager
def named_if_corrupt(path: str | Path) -> Iterator[None]:
    """Turn PIL's errors on an undecodable file into a ValueError that names the file and the fix."""
    try:
        yield
    except (OSError, SyntaxError, ValueError) as error:  # PIL signals corrupt files with all three
        raise ValueError(f"Cannot decode the image {path}: {error}. Replace or delete the file.") from error


def open_rgb(path: str | Path) -> Image.Image:
    """The image at ``path`` as RGB, or a ValueError that names the file if it cannot be decoded."""
    with named_if_corrupt(path), Image.open(path) as image:
        return image.convert("RGB")


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the image at ``path``, read from its header without decoding the pixels."""
    with named_if_corrupt(path), Image.open(path) as image:
        return image.size


@dataclass
class DecodedFolder:
    """A whole image folder as one uint8 (N, 3, H, W) tensor with its labels and class names."""

    split: Split
    classes: list[str]


def resolve_cache_dir(chosen: str | Path | None = None) -> Path:
    """Where decoded images are cached: ``chosen`` (a data module's ``cache_dir``), else ``$RESNODE_CACHE_DIR``,
    else the per-user cache folder ``$XDG_CACHE_HOME/resnode_lightning`` (``~/.cache/resnode_lightning``).

    Never the data folder unless chosen: on clusters it is often shared or read-only.
    """
    for choice in (chosen, os.environ.get(CACHE_DIR_VARIABLE)):
        if choice:
            return Path(choice).expanduser()
    user_caches = os.environ.get("XDG_CACHE_HOME")
    return (Path(user_caches) if user_caches else Path.home() / ".cache") / "resnode_lightning"


def temporary_cache_dir() -> Path:
    """The fallback when the cache folder is not writable: this user's folder in the system's temporary folder."""
    user = f"-{os.getuid()}" if hasattr(os, "getuid") else ""
    return Path(tempfile.gettempdir()) / f"resnode_lightning{user}"


def cache_file(folder: Path, directory: Path) -> Path:
    """The cache of ``folder`` in ``directory``, e.g. ``cifar10-jpg-train-<hash>.pt``.

    The hash covers the resolved path of ``folder`` and :data:`DECODER`, so two data folders (two
    copies of CIFAR, CIFAR-10 and CIFAR-100) or two decoders never share a cache file.
    """
    folder = folder.resolve()
    digest = hashlib.sha256(f"{folder}\n{DECODER}".encode()).hexdigest()[:16]
    return directory / f"{folder.parent.name}-{folder.name}-{digest}.pt"


@functools.cache
def writable_cache_dir(chosen: Path) -> Path | None:
    """``chosen`` if this process can create files in it, else :func:`temporary_cache_dir`, else None (no cache).

    Probed once per process and folder, so that a fallback is announced in one warning, not one per split.
    """
    problems: dict[Path, str] = {}
    for candidate in (chosen, temporary_cache_dir()):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=candidate):
                pass
        except OSError as error:
            problems[candidate] = error.strerror or str(error)
            continue
        if problems:
            rank_zero_warn(
                f"Cannot write the cache of decoded images in {chosen} ({problems[chosen]}); caching them in "
                f"{candidate} instead. {CACHE_DIR_ADVICE}"
            )
        return candidate
    where = "; ".join(f"{folder}: {problem}" for folder, problem in problems.items())
    rank_zero_warn(
        f"Cannot write the cache of decoded images ({where}): the images will be decoded again at every start. "
        f"{CACHE_DIR_ADVICE}"
    )
    return None


def decode_image_folder(folder: Path, cache_dir: str | Path | None = None) -> DecodedFolder:
    """Every image of ``folder`` (``<class>/<image>``, all of one size), decoded once and cached.

    The cache is :func:`cache_file` in :func:`resolve_cache_dir` of ``cache_dir`` (or in
    :func:`temporary_cache_dir` if that is not writable), written atomically and loaded with
    ``weights_only=True``; nothing is written into the data folder. It is keyed by the number and
    the names of the images: adding, removing or renaming an image decodes the folder again;
    editing an image's pixels in place does not (delete the cache file to force it).
    """
    classes, images = list_image_folder(folder)
    key = hashlib.sha256("\n".join(path for path, _ in images).encode()).hexdigest()
    key = f"{len(images)}-{key}"
    chosen = resolve_cache_dir(cache_dir)
    for directory in (chosen, temporary_cache_dir()):
        cached = _load(cache_file(folder, directory), key)
        if cached is not None:
            return cached
    decoded = DecodedFolder(_decode(folder, images), classes)
    _store(decoded, key, folder, chosen)
    return decoded


def _load(path: Path, key: str) -> DecodedFolder | None:
    if not path.is_file():
        return None
    stored = torch.load(path, weights_only=True)
    if stored["key"] != key:
        return None
    return DecodedFolder(Split(stored["images"], stored["labels"]), stored["classes"])


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


def _store(decoded: DecodedFolder, key: str, folder: Path, chosen: Path) -> None:
    directory = writable_cache_dir(chosen)
    if directory is None:
        return
    path = cache_file(folder, directory)
    content = {"key": key, "images": decoded.split.images, "labels": decoded.split.labels, "classes": decoded.classes}
    try:
        _save_atomically(content, path)
    except OSError as error:  # e.g. a full disk: the run goes on, only the next start decodes again
        rank_zero_warn(f"Cannot write the cache of decoded images {path} ({error}); the next start decodes again.")
        return
    rank_zero_info(f"Decoded {len(decoded.split.labels)} images of {folder} into {path}.")


def _save_atomically(content: dict, path: Path) -> None:
    """:func:`~resnode_lightning.files.atomic_write` of ``torch.save(content)``, readable by whoever
    shares a cache_dir: readers never see half a file."""
    atomic_write(path, lambda file: torch.save(content, file), mode=0o644)
