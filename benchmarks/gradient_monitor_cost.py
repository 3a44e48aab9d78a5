"""What the GradientErrorMonitor costs: training time with it over training time without it.

The paper's simple ResNet (16 channels, depth ``--depth``, Euler, the adjoint) trains ``--steps``
steps of batch ``--batch`` on random 32x32 images with ``resnode``'s LightningModule, once without
the monitor and once with it (``every_n_steps=--every``, ``samples=--samples``), taking turns in
one process over ``--rounds`` rounds (the order swapped every round), so that both see the same
machine. Each time is Lightning's ``Timer`` of the train stage; the ratio reported is the median
of the per-round ratios. Target: at most 1.05 at every_n_steps = 50 (the monitor costs one forward
and backward of the slice plus one adjoint pass of each stack on it, every 50 steps). Writes
benchmarks/results/gradient_monitor_cost.json.

Usage: python benchmarks/gradient_monitor_cost.py [--steps 100] [--every 50] [--rounds 3] [--depth 32]
(tiny, to check that it runs: --steps 4 --every 2 --rounds 1 --depth 2 --batch 16)
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import tempfile
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.callbacks import Timer
from torch.utils.data import TensorDataset

from resnode_lightning.models import SimpleResNet
from resnode_lightning.training import GradientErrorMonitor, ImageClassifier

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 1.05


def train_seconds(options: argparse.Namespace, monitored: bool) -> float:
    """Seconds of the train stage for ``options.steps`` steps, with or without the monitor."""
    torch.manual_seed(0)
    network = SimpleResNet(depth=options.depth, width=16, num_classes=10, gradient="adjoint")
    model = ImageClassifier(network, num_classes=10, optimizer=functools.partial(torch.optim.SGD, lr=0.01))
    images = torch.randn(options.steps * options.batch, 3, 32, 32)
    labels = torch.randint(10, (len(images),))
    data = LightningDataModule.from_datasets(train_dataset=TensorDataset(images, labels), batch_size=options.batch)
    timer = Timer(interval="step")
    callbacks = [timer]
    if monitored:
        callbacks.append(GradientErrorMonitor(every_n_steps=options.every, samples=options.samples))
    trainer = Trainer(
        default_root_dir=tempfile.mkdtemp(prefix="resnode-monitor-cost-"), accelerator=options.device, devices=1,
        max_steps=options.steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
    )  # fmt: skip
    trainer.fit(model, data)
    return timer.time_elapsed("train")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps per run (default 100: 2 checks)")
    parser.add_argument("--every", type=int, default=50, help="the monitor's every_n_steps (default 50)")
    parser.add_argument("--samples", type=int, default=16, help="the monitor's samples (default 16)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each kind, taking turns (default 3)")
    parser.add_argument("--depth", type=int, default=32, help="N of the simple ResNet's stack (default 32)")
    parser.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--device", default="cpu", help="Lightning accelerator: cpu or gpu (default cpu)")
    options = parser.parse_args()

    train_seconds(argparse.Namespace(**{**vars(options), "steps": 2}), monitored=True)  # warm-up
    times: dict[str, list[float]] = {"without": [], "with": []}
    for round_number in range(options.rounds):
        order = (False, True) if round_number % 2 == 0 else (True, False)
        for monitored in order:
            times["with" if monitored else "without"].append(train_seconds(options, monitored))
    ratios = [a / b for a, b in zip(times["with"], times["without"])]
    ratio = statistics.median(ratios)
    without, with_monitor = statistics.median(times["without"]), statistics.median(times["with"])
    print(
        f"GradientErrorMonitor(every_n_steps={options.every}, samples={options.samples}) on a simple ResNet of depth "
        f"{options.depth} (adjoint), batch {options.batch}, {options.steps} steps, {options.rounds} round(s):\n"
        f"  train time without {without:.2f} s, with {with_monitor:.2f} s"
        f"\n  ratio with/without {ratio:.3f} (per round {', '.join(f'{r:.3f}' for r in ratios)}); target <= {TARGET}: "
        f"{'met' if ratio <= TARGET else 'missed'}"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gradient_monitor_cost.json").write_text(
        json.dumps({"options": vars(options), "seconds": times, "ratios": ratios, "ratio": ratio}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
