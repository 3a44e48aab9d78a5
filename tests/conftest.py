"""Fixtures shared by the test files: real data, small."""

import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest

CIFAR_JPG_TAR = Path(__file__).resolve().parents[1].parent / "shared/data/cifar10-jpg.tar.gz"
"""The real CIFAR-10 as JPEGs (shared/data/README.md), beside the repository in every checkout and in CI."""

IMAGES_PER_CLASS = {"train": 20, "test": 10}


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


@pytest.fixture(scope="session")
def cifar_jpg_root(tmp_path_factory) -> Path:
    """A folder whose ``train/<class>/`` and ``test/<class>/`` hold the first 20 and 10 CIFAR-10 JPEGs of each class.

    Read-only by convention: it is shared by the whole session; copy it before changing it.
    """
    if not CIFAR_JPG_TAR.is_file():
        raise FileNotFoundError(f"The tests need {CIFAR_JPG_TAR} (the shared data folder beside the repository).")
    root = tmp_path_factory.mktemp("cifar10-jpg")
    taken: Counter[tuple[str, str]] = Counter()
    with tarfile.open(CIFAR_JPG_TAR, "r|gz") as archive:  # one pass over the stream
        for member in archive:
            parts = Path(member.name).parts  # cifar10-jpg/<split>/<class>/<image>
            if not member.isfile() or len(parts) != 4 or parts[1] not in IMAGES_PER_CLASS:
                continue
            split, label = parts[1], parts[2]
            if taken[split, label] < IMAGES_PER_CLASS[split]:
                taken[split, label] += 1
                target = root.joinpath(*parts[1:])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.extractfile(member).read())
    return root
