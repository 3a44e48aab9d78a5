"""What `resnode fit` costs beyond the arithmetic: data pipeline and framework overhead of an epoch.

Three ways to run the same training steps of the paper's simple ResNet (depth 8, Heun, backprop,
16 channels, batch 256, SGD with momentum) on real CIFAR-10 training images, each in a fresh
process, taking turns over several rounds (this 2-core VM varies by ±25 % between processes):

- ``resnode``: ``resnode fit --config cifar_backprop.yaml`` with depth 8, one epoch of ``--steps``
  batches, no validation: the real pipeline (cached uint8 tensor, batched crop/flip/normalise in
  ``on_after_batch_transfer``), the LightningModule, its metrics and its progress bar. Timed by
  Lightning's ``Timer`` callback (the train stage, from its start to its end);
- ``bare``: the same number of steps in a plain PyTorch loop over pre-made normalised tensors (no
  augmentation, no framework): the floor;
- ``paper``: the reference code's way, torchvision's per-image transforms (RandomCrop(32, 4),
  RandomHorizontalFlip, ToTensor, Normalize on PIL images, as ``torchvision.datasets.CIFAR10``
  serves them) in a DataLoader with 2 worker processes feeding a plain loop.

Prints the median time of each and the ratios resnode/bare (target <= 1.1: data and framework
overhead together at most 10 %) and resnode/paper (target < 1), and writes
benchmarks/results/fit_overhead.json.

Usage: python benchmarks/fit_overhead.py [--root .cache/cifar10-jpg] [--steps 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
WAYS = ("resnode", "bare", "paper")
BATCH = 256
DEPTH = 8


def network():
    from resnode_lightning.models import SimpleResNet

    return SimpleResNet(depth=DEPTH, width=16, num_classes=10, scheme="heun", gradient="backprop")


def sgd(parameters):
    import torch

    return torch.optim.SGD(parameters, lr=0.1, momentum=0.9, weight_decay=5e-4)


def training_images(root: str, count: int):
    """The first ``count`` training images (uint8, N x 3 x 32 x 32) and labels, from the decoded cache."""
    from resnode_lightning.data import CIFAR10DataModule

    data = CIFAR10DataModule(root=root, batch_size=BATCH)
    data.setup("fit")
    split = data.splits["train"]
    return split.images[:count], split.labels[:count]


def plain_loop(batches, steps: int) -> float:
    """Seconds for ``steps`` SGD steps of the simple ResNet over ``batches`` (an iterable)."""
    import torch

    model = network()
    optimizer = sgd(model.parameters())
    start = time.perf_counter()
    for _, (images, labels) in zip(range(steps), batches):
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    return time.perf_counter() - start


def time_resnode(root: str, steps: int) -> float:
    from lightning.pytorch.callbacks import Timer

    from resnode_lightning.cli import main

    cli = main([
        "fit", "--config", "cifar_backprop.yaml", "--model.network.depth", str(DEPTH), "--data.root", root,
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", str(steps), "--trainer.limit_val_batches", "0",
        "--trainer.logger", "false", "--checkpoint.save_last", "false", "--checkpoint.save_top_k", "0",
        "--trainer.enable_model_summary", "false", "--trainer.callbacks+=Timer", "--trainer.callbacks.interval=step",
        "--trainer.default_root_dir", tempfile.mkdtemp(prefix="resnode-fit-overhead-"),
    ])  # fmt: skip
    (timer,) = [c for c in cli.trainer.callbacks if isinstance(c, Timer)]
    return timer.time_elapsed("train")


def time_bare(root: str, steps: int) -> float:
    from resnode_lightning.data.constants import CIFAR10_MEAN, CIFAR10_STD

    images, labels = training_images(root, steps * BATCH)
    mean = images.new_tensor(CIFAR10_MEAN, dtype=float).view(1, 3, 1, 1).float()
    std = images.new_tensor(CIFAR10_STD, dtype=float).view(1, 3, 1, 1).float()
    inputs = ((images.float() / 255 - mean) / std).contiguous()
    return plain_loop(((inputs[i : i + BATCH], labels[i : i + BATCH]) for i in range(0, len(inputs), BATCH)), steps)


def time_paper(root: str, steps: int) -> float:
    import torch
    from PIL import Image
    from torchvision import transforms

    from resnode_lightning.data.constants import CIFAR10_MEAN, CIFAR10_STD

    images, labels = training_images(root, steps * BATCH)
    arrays = images.permute(0, 2, 3, 1).contiguous().numpy()  # H x W x C, as torchvision's CIFAR10.data
    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
    ])  # fmt: skip

    class PerImage(torch.utils.data.Dataset):
        def __len__(self):
            return len(arrays)

        def __getitem__(self, index):
            return transform(Image.fromarray(arrays[index])), int(labels[index])

    loader = torch.utils.data.DataLoader(PerImage(), batch_size=BATCH, shuffle=True, num_workers=2)
    return plain_loop(loader, steps)


def worker(way: str, root: str, steps: int) -> None:
    seconds = {"resnode": time_resnode, "bare": time_bare, "paper": time_paper}[way](root, steps)
    print(json.dumps({"way": way, "seconds": seconds}))


def measure(way: str, root: str, steps: int) -> float:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", way, "--root", root, "--steps", str(steps)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{way} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".cache/cifar10-jpg", help="CIFAR-10 (any layout the data module reads)")
    parser.add_argument("--steps", type=int, default=60, help="training steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per way")
    parser.add_argument("--worker", choices=WAYS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.root, args.steps)
    if not Path(args.root).is_dir():
        sys.exit(f"--root {args.root!r} is not a folder: unpack ../shared/data/cifar10-jpg.tar.gz into .cache/ first.")
    measure("bare", args.root, 1)  # decode and cache the images once, outside the timings
    times: dict[str, list[float]] = {way: [] for way in WAYS}
    for round_ in range(args.rounds):
        for way in WAYS:
            times[way].append(measure(way, args.root, args.steps))
            print(f"round {round_ + 1}/{args.rounds} {way:8s} {times[way][-1]:6.2f} s", flush=True)
    median = {way: statistics.median(values) for way, values in times.items()}
    overhead, against_paper = median["resnode"] / median["bare"], median["resnode"] / median["paper"]
    print(f"\n{args.steps} steps of the simple ResNet (depth {DEPTH}, Heun, backprop, batch {BATCH}), median seconds:")
    for way in WAYS:
        print(f"  {way:8s} {median[way]:7.2f} s  ({args.steps * BATCH / median[way]:7.0f} images/s)")
    print(f"resnode / bare  = {overhead:.3f}  (target <= 1.10: {'met' if overhead <= 1.10 else 'MISSED'})")
    print(f"resnode / paper = {against_paper:.3f}  (target < 1: {'met' if against_paper < 1 else 'MISSED'})")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fit_overhead.json").write_text(
        json.dumps(
            {
                "steps": args.steps,
                "batch": BATCH,
                "times": times,
                "median": median,
                "resnode_over_bare": overhead,
                "resnode_over_paper": against_paper,
            },
            indent=2,
        )  # fmt: skip
    )


if __name__ == "__main__":
    main()
