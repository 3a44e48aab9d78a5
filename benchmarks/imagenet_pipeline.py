"""Is ImageNet's input pipeline the bottleneck of a ResNet-101 step on this machine's CPUs?

Side by side in one run: images/s that ``ImageNetDataModule``'s DataLoader workers deliver (JPEG
decoding, 224 random resized crops, flips; uint8 batches) from a generated tree of ImageNet-sized
JPEGs (500x375, noisy so that they compress as photos do), and images/s of one ResNet-101 training
step on 224x224 batches (``imagenet_resnet101.yaml``'s network, forward, backward, SGD). The
pipeline keeps up when its rate is above the step's; on a GPU the step is some 100x faster and the
device check measures the GPU decoding path instead (benchmarks/device_check.py).

Usage: python benchmarks/imagenet_pipeline.py [--workers 2] [--batch 8] [--steps 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy
import torch
from PIL import Image


def jpeg_tree(root: Path, classes: int = 4, per_class: int = 48, side: int = 500) -> Path:
    """``root/train/class<k>/<i>.JPEG``: noisy side x 3/4 side images (500x375 as ImageNet's), which
    compress as photos do, not as flat colour."""
    generator = numpy.random.default_rng(0)
    for label in range(classes):
        folder = root / "train" / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            pixels = generator.integers(0, 256, (side * 3 // 4, side, 3), dtype=numpy.uint8)
            Image.fromarray(pixels).save(folder / f"{index}.JPEG", quality=90)
    return root


def pipeline_rate(root: Path, workers: int, batch: int) -> float:
    """Images/s out of the training loader, after its first batch (the workers' start)."""
    from resnode_lightning.data import ImageNetDataModule

    data = ImageNetDataModule(root=str(root), num_classes=4, batch_size=batch, num_workers=workers, val_dir="train")
    data.setup("fit")
    images, began = 0, None
    for pixels, _ in data.train_dataloader():
        if began is None:
            began = time.perf_counter()
            continue
        images += len(pixels)
    return images / (time.perf_counter() - began)


def step_rate(batch: int, steps: int) -> float:
    """Images/s of ResNet-101 training steps at 224x224 (median step after a warm-up)."""
    from resnode_lightning.models import ResNet

    torch.manual_seed(0)
    network = ResNet("resnet101", stem="imagenet", num_classes=1000).train()  # as imagenet_resnet101.yaml
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9)
    images, labels = torch.randn(batch, 3, 224, 224), torch.randint(0, 1000, (batch,))
    seconds = []
    for step in range(steps + 1):
        began = time.perf_counter()
        torch.nn.functional.cross_entropy(network(images), labels).backward()
        optimizer.step()
        optimizer.zero_grad()
        if step:
            seconds.append(time.perf_counter() - began)
    return batch / statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imagenet-like-") as folder:
        root = jpeg_tree(Path(folder))
        pipeline = pipeline_rate(root, args.workers, args.batch)
    step = step_rate(args.batch, args.steps)
    verdict = "keeps up" if pipeline > step else "is the BOTTLENECK"
    print(f"ImageNet input pipeline, {args.workers} workers: {pipeline:.0f} images/s (500x375 JPEGs, 224 crops)")
    print(f"ResNet-101 training step on this CPU, batch {args.batch}: {step:.1f} images/s")
    print(f"pipeline / step: {pipeline / step:.0f}x: the pipeline {verdict}")


if __name__ == "__main__":
    main()
