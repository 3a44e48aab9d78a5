"""Fixtures shared by the test files: small data written on the fly, the real data where a test needs it."""

import os
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest
from image_trees import CIFAR_IMAGES_PER_SPLIT, write_image_tree

REAL_CIFAR_VARIABLE = "RESNODE_CIFAR10_TAR"
"""The environment variable naming the real CIFAR-10 as JPEGs, ``cifar10-jpg.tar.gz`` (shared/data/README.md)."""

REAL_CIFAR_BESIDE_REPOSITORY = Path(__file__).resolve().parents[1].parent / "shared/data/cifar10-jpg.tar.gz"
"""Where the real CIFAR-10 JPEGs are looked for when the environment variable is not set."""


@pytest.fixture
def in_empty_folder(tmp_path, monkeypatch) -> Path:
    """Run the command line from an empty folder, as `resnode` with no other argument."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["resnode"])
    return tmp_path


@pytest.fixture(autouse=True)
def wandb_disabled(monkeypatch):
    """W&B loggers of the shipped configs do nothing in tests (test_tracking.py runs them offline)."""
    monkeypatch.setenv("WANDB_MODE", "disabled")


@pytest.fixture(autouse=True)
def cache_in_the_session_folder(tmp_path_factory, monkeypatch):
    """Decoded images are cached in the session's temporary folder, never in the user's ~/.cache."""
    monkeypatch.setenv("RESNODE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "resnode-cache"))


@pytest.fixture(scope="session")
def cifar_jpg_root(tmp_path_factory) -> Path:
    """A small CIFAR-10 image tree: ``train/<class>/`` and ``test/<class>/`` hold 20 and 10 JPEGs (32x32 RGB)
    of each of the 10 classes, generated (:func:`image_trees.write_image_tree`), learnable and the same in every run.

    Read-only by convention: it is shared by the whole session; copy it before changing it.
    """
    return write_image_tree(tmp_path_factory.mktemp("cifar10-jpg"))


@pytest.fixture(scope="session")
def real_cifar_jpg_root(tmp_path_factory) -> Path:
    """As :func:`cifar_jpg_root`, from the real CIFAR-10: the first 20 and 10 JPEGs of each class of
    ``$RESNODE_CIFAR10_TAR`` (default: ``shared/data/cifar10-jpg.tar.gz`` beside the repository).

    Skips the test, saying how to provide the data, where there is none. Read-only by convention.
    """
    archive_path = Path(os.environ.get(REAL_CIFAR_VARIABLE) or REAL_CIFAR_BESIDE_REPOSITORY).expanduser()
    if not archive_path.is_file():
        pytest.skip(
            f"needs the real CIFAR-10 JPEGs, and there is no {archive_path}: set {REAL_CIFAR_VARIABLE} to the path "
            f"of cifar10-jpg.tar.gz (shared/data/README.md), or put it at {REAL_CIFAR_BESIDE_REPOSITORY}"
        )
    root = tmp_path_factory.mktemp("real-cifar10-jpg")
    taken: Counter[tuple[str, str]] = Counter()
    with tarfile.open(archive_path, "r|gz") as archive:  # one pass over the stream
        for member in archive:
            parts = Path(member.name).parts  # cifar10-jpg/<split>/<class>/<image>
            if not member.isfile() or len(parts) != 4 or parts[1] not in CIFAR_IMAGES_PER_SPLIT:
                continue
            split, label = parts[1], parts[2]
            if taken[split, label] < CIFAR_IMAGES_PER_SPLIT[split]:
                taken[split, label] += 1
                target = root.joinpath(*parts[1:])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.extractfile(member).read())
    return root
