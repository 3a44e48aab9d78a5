"""Figure 3b's open question at CPU scale: does ResNet-101 trained from scratch with the adjoint in stage 3
(23 blocks: a transition block and a stack of 22) fail, once BatchNorm is handled right?

The paper (ImageNet, V100s) shows it failing, but its code ran the blocks in eval mode inside the
backward pass, a wrong BatchNorm Jacobian (75-86 % gradient error from that alone, measured in
shared/research/reference-bench.md). Here, on real CIFAR-10, the shipped `cifar_resnet101.yaml`
(bottleneck blocks [3, 4, 23, 3], h = 1/N) with base width BASE_WIDTH instead of 64 trains for
EPOCHS epochs of BATCHES batches of 128 at a constant learning rate 0.1, five ways:

- backprop everywhere (the baseline);
- the adjoint in stage 3, backprop elsewhere;
- the adjoint in stage 3 with anchors every ANCHOR_EVERY steps (stored activations that the reverse
  pass restarts from, so its reconstruction error builds up over ANCHOR_EVERY steps, not 22);
- backprop, and the adjoint in stage 3, with residuals that do not start at zero
  (`zero_init_last_bn: false`, as torchvision's ResNets by default): the shipped config zeroes
  each block's last BatchNorm, where the adjoint starts exact.

Beside the accuracy (first VAL_BATCHES test batches, after each epoch), GradientErrorMonitor measures
the adjoint's gradient error in stage 3 against exact gradients every MONITOR_EVERY steps, on 16
images of the batch: the error the training actually met.

    python experiments/figure3b_stage3_adjoint.py   # ~12 min alone on 2 cores; resumable (finished runs are kept)

Writes docs/results/figure3b_stage3_adjoint.{json,png}.

The run that can fail is the one whose residuals do not start at zero: its gradient error is 3-5 %
from the start. `long` trains it, and backprop beside it, LONG_EPOCHS epochs (4x the steps) for
each of LONG_SEEDS, so that the error has time to compound:

    python experiments/figure3b_stage3_adjoint.py long   # ~50 min alone on 2 cores; resumable

Writes docs/results/figure3b_nonzero_long.{json,png}.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from results import figure_path, monitored_errors, timed, validation_curve
from sweep_runs import CIFAR, WORK

from resnode_lightning.cli.runs import RUNS as RUNS_FOLDER
from resnode_lightning.cli.runs import versions

BASE_WIDTH, EPOCHS, BATCHES, VAL_BATCHES, ANCHOR_EVERY, MONITOR_EVERY = 8, 3, 50, 20, 4, 10
LONG_EPOCHS, LONG_SEEDS, LONG_MONITOR_EVERY = 12, [0, 1], 25
STAGE3 = "stages.2.stack"
COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:gray", "tab:red"]
HERE = WORK / "figure3b" / f"width{BASE_WIDTH}_{EPOCHS}x{BATCHES}_val{VAL_BATCHES}_every{MONITOR_EVERY}"
LONG_HERE = WORK / "figure3b" / f"width{BASE_WIDTH}_{LONG_EPOCHS}x{BATCHES}_val{VAL_BATCHES}_every{LONG_MONITOR_EVERY}"


def common(epochs: int) -> list[str]:
    return [
        "fit", "--config", "cifar_resnet101.yaml", "--data.root", str(CIFAR),
        "--model.network.base_width", str(BASE_WIDTH), "--trainer.max_epochs", str(epochs),
        "--trainer.limit_train_batches", str(BATCHES), "--trainer.limit_val_batches", str(VAL_BATCHES),
        "--model.lr_scheduler", "null", "--trainer.enable_progress_bar", "false", "--checkpoint.save_last", "false",
    ]  # fmt: skip


def adjoint_in_stage3(monitor_every: int) -> list[str]:
    return [
        "--model.network.gradient=[backprop, backprop, adjoint, backprop]",
        "--trainer.callbacks+=resnode_lightning.training.GradientErrorMonitor",
        "--trainer.callbacks.every_n_steps", str(monitor_every), "--trainer.callbacks.samples", "16",
    ]  # fmt: skip


ADJOINT_IN_STAGE3 = adjoint_in_stage3(MONITOR_EVERY)
NONZERO_RESIDUALS = ["--model.network.zero_init_last_bn", "false"]
RUNS = {
    "backprop": [],
    "adjoint in stage 3": ADJOINT_IN_STAGE3,
    f"adjoint in stage 3, anchors every {ANCHOR_EVERY}": [
        *ADJOINT_IN_STAGE3, f"--model.network.anchor_every=[null, null, {ANCHOR_EVERY}, null]"
    ],
    "backprop, residuals not zero at start": NONZERO_RESIDUALS,
    "adjoint in stage 3, residuals not zero at start": [*ADJOINT_IN_STAGE3, *NONZERO_RESIDUALS],
}  # fmt: skip
LONG_RUNS = {
    f"{name}, seed {seed}": [*arguments, *NONZERO_RESIDUALS, "--seed_everything", str(seed)]
    for seed in LONG_SEEDS
    for name, arguments in [("backprop", []), ("adjoint in stage 3", adjoint_in_stage3(LONG_MONITOR_EVERY))]
}


def train(name: str, arguments: list[str], here: Path = HERE, epochs: int = EPOCHS) -> Path:
    """Run one variant in a folder of its own for these settings, unless a finished run is there (a run
    stopped midway is trained again); its run folder."""
    work = here / name.replace(" ", "_").replace(",", "")
    runs = set(versions(work / RUNS_FOLDER / "cifar_resnet101"))
    finished = [folder for folder in runs if len(validation_curve(folder)) == epochs]
    if finished:
        print(f"== {name}: finished before ({finished[0]})", flush=True)
        return finished[0]
    work.mkdir(parents=True, exist_ok=True)
    print(f"== {name}", flush=True)
    command = [sys.executable, "-m", "resnode_lightning", *common(epochs), *arguments]
    subprocess.run(command, cwd=work, env={**os.environ, "WANDB_MODE": "disabled"}, check=True)
    (folder,) = set(versions(work / RUNS_FOLDER / "cifar_resnet101")) - runs
    return folder


def run_seconds(folder: Path) -> int:
    """How long a run took: from its config's writing (start) to its metrics' last writing (end)."""
    return round((folder / "metrics.csv").stat().st_mtime - (folder / "config.yaml").stat().st_mtime)


def report(record: dict, folders: dict[str, Path], title: str, styles: dict[str, tuple[str, str]], name: str) -> None:
    """Each run's accuracy per epoch, time and stage-3 gradient error into ``record``, and the figure
    docs/results/<name>.png: accuracy by epoch, and the error by step (where it is not 0: log scale)."""
    record["runs"] = {
        run: {
            "accuracy_per_epoch": validation_curve(folder),
            "run_seconds": run_seconds(folder),
            "stage3_gradient_error": monitored_errors(folder, STAGE3),
        }
        for run, folder in folders.items()
    }
    figure, (accuracy, error) = plt.subplots(1, 2, figsize=(11, 4))
    for run, measured in record["runs"].items():
        color, style = styles[run]
        curve = measured["accuracy_per_epoch"]
        accuracy.plot(range(1, len(curve) + 1), curve, style, marker="o", color=color, label=run)
        shown = [(step, median) for step, median, _ in measured["stage3_gradient_error"] if median > 0]
        if shown:
            error.semilogy(*zip(*shown), style, marker=".", color=color, label=run)
    accuracy.set(xlabel="epoch", ylabel="test accuracy", title=title)
    error.set(xlabel="training step", ylabel="median relative gradient error",
              title="the adjoint's error in stage 3 during training")  # fmt: skip
    accuracy.legend()
    error.legend()
    figure.tight_layout()
    figure.savefig(figure_path(name), dpi=120)


def main() -> None:
    with timed("figure3b_stage3_adjoint") as record:
        folders = {name: train(name, arguments) for name, arguments in RUNS.items()}
        record["setting"] = (
            f"cifar_resnet101.yaml (bottleneck [3, 4, 23, 3], h = 1/N), base width {BASE_WIDTH}, from scratch; "
            f"{EPOCHS} epochs x {BATCHES} batches of 128, lr 0.1; accuracy on {VAL_BATCHES * 128} test images; "
            f"stage-3 gradient error on 16 images every {MONITOR_EVERY} steps"
        )
        styles = {name: (color, "-") for name, color in zip(RUNS, COLORS)}
        title = f"ResNet-101 (base width {BASE_WIDTH}) from scratch, CIFAR-10"
        report(record, folders, title, styles, "figure3b_stage3_adjoint")


def long() -> None:
    with timed("figure3b_nonzero_long") as record:
        folders = {name: train(name, arguments, LONG_HERE, LONG_EPOCHS) for name, arguments in LONG_RUNS.items()}
        record["setting"] = (
            f"cifar_resnet101.yaml, base width {BASE_WIDTH}, residuals not zero at start (zero_init_last_bn false), "
            f"from scratch; {LONG_EPOCHS} epochs x {BATCHES} batches of 128, lr 0.1, seeds {LONG_SEEDS}; accuracy "
            f"on {VAL_BATCHES * 128} test images; stage-3 gradient error on 16 images every {LONG_MONITOR_EVERY} steps"
        )
        styles = {
            name: (COLORS[LONG_SEEDS.index(int(name.rsplit(" ", 1)[1]))], "--" if name.startswith("adjoint") else "-")
            for name in LONG_RUNS
        }
        title = f"ResNet-101 (width {BASE_WIDTH}), residuals not zero at start, CIFAR-10"
        report(record, folders, title, styles, "figure3b_nonzero_long")
        record["adjoint_minus_backprop"] = {
            f"seed {seed}": {
                what: round(pick(record["runs"][f"adjoint in stage 3, seed {seed}"]["accuracy_per_epoch"])
                            - pick(record["runs"][f"backprop, seed {seed}"]["accuracy_per_epoch"]), 4)
                for what, pick in [("last_accuracy", lambda curve: curve[-1]), ("best_accuracy", max)]
            }
            for seed in LONG_SEEDS
        }  # fmt: skip


if __name__ == "__main__":
    long() if sys.argv[1:2] == ["long"] else main()
