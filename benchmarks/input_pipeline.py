"""Images per second of our CIFAR training batches against torchvision's per-image transforms.

Both sides produce the same thing, augmented (random crop 32 with zero padding 4, horizontal flip)
and normalised float32 batches of 128 CIFAR-10 training images on the CPU, from the same uint8
pixels (the full training set, decoded once into CIFAR10DataModule's cache):

- ours: ``CIFAR10DataModule``'s training batches (one gather per batch from the in-memory uint8
  tensor) through ``transform_batch``, the batched augmentation and normalisation that runs in
  ``on_after_batch_transfer``, in the main process on one torch thread by default (``--threads``):
  a conservative comparison, as it leaves the second core idle; intra-op threads gain little on
  these small operations and lose much when the cores are shared with other work;
- torchvision: ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip()``, ``ToTensor()``,
  ``Normalize`` on a PIL image per sample, made from the same arrays as
  ``torchvision.datasets.CIFAR10.__getitem__`` does, in a DataLoader with 2 workers.

They take turns over several rounds; the median rate of each is reported with their ratio
(target: ours at least 10x faster). Run it alone on the machine:

    python benchmarks/input_pipeline.py --root <folder with cifar10-jpg/ or its train/ and test/>
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from resnode_lightning.data import CIFAR10DataModule
from resnode_lightning.data.constants import CIFAR10_MEAN, CIFAR10_STD

BATCH_SIZE = 128
TARGET_RATIO = 10.0


class PILImages(Dataset):
    """(N, 32, 32, 3) uint8 arrays served as torchvision's CIFAR10 serves them: PIL image, then transform."""

    def __init__(self, pixels: np.ndarray, labels: list[int], transform: transforms.Compose) -> None:
        self.pixels, self.labels, self.transform = pixels, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.pixels[index])), self.labels[index]


def images_per_second(batches, count: int, prepare=lambda batch: batch, warm_up: int = 8) -> float:
    """Rate of ``count`` batches taken from the iterator ``batches`` after ``warm_up`` untimed ones.

    The warm-up also drains the batches DataLoader workers prefetched while the other side ran.
    """
    for _ in range(warm_up):
        prepare(next(batches))
    start = time.perf_counter()
    for _ in range(count):
        images, _ = prepare(next(batches))
    return count * len(images) / (time.perf_counter() - start)


def endless(loader):
    while True:
        yield from loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root", default=str(Path(__file__).resolve().parents[1] / ".cache" / "cifar10-jpg"), help="CIFAR-10 root"
    )
    parser.add_argument("--batches", type=int, default=100, help="timed batches per side and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, the two sides taking turns")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for ours (default: 1)")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    load_before = os.getloadavg()[0]

    data = CIFAR10DataModule(root=arguments.root, batch_size=BATCH_SIZE)
    start = time.perf_counter()
    data.prepare_data()
    data.setup("fit")
    train = data.splits["train"]
    print(f"{len(train.labels)} training images from {arguments.root} ready in {time.perf_counter() - start:.1f} s")

    ours = endless(data.train_dataloader())
    per_image = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
        ]
    )
    pixels = train.images.permute(0, 2, 3, 1).contiguous().numpy()
    theirs_loader = DataLoader(
        PILImages(pixels, train.labels.tolist(), per_image),
        batch_size=BATCH_SIZE,
        shuffle=True,
        drop_last=True,
        num_workers=2,
        persistent_workers=True,
    )
    theirs = endless(theirs_loader)

    ours_rates, theirs_rates = [], []
    for _ in range(arguments.rounds):
        time.sleep(1)  # let torchvision's workers finish the batches they prefetch after each of its rounds
        ours_rates.append(
            images_per_second(ours, arguments.batches, lambda batch: data.transform_batch(batch, training=True))
        )
        theirs_rates.append(images_per_second(theirs, arguments.batches))
    ours_rate, theirs_rate = statistics.median(ours_rates), statistics.median(theirs_rates)
    ratio = ours_rate / theirs_rate

    print(
        f"torch {torch.__version__}, ours on {torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs, "
        f"1-minute load average {load_before:.1f} before the run (other work distorts the figures)"
    )
    print(f"{arguments.rounds} rounds of {arguments.batches} batches of {BATCH_SIZE}; median images/s (all rounds)")
    print(f"  ours (batched, in memory)      {ours_rate:10,.0f}   ({', '.join(f'{r:,.0f}' for r in ours_rates)})")
    print(f"  torchvision (2 workers)        {theirs_rate:10,.0f}   ({', '.join(f'{r:,.0f}' for r in theirs_rates)})")
    print(f"  ratio {ratio:.1f}x, target >= {TARGET_RATIO:.0f}x: {'met' if ratio >= TARGET_RATIO else 'MISSED'}")


if __name__ == "__main__":
    main()
