"""Figure 4 at CPU scale: the simple ResNet at depth 2 .. 64, Euler/Heun x backprop/adjoint, on real CIFAR-10.

The paper (90 epochs on V100s): the adjoint fails at small depth and joins backprop at large depth;
Heun with the adjoint at least as good as Euler with it. Here each of the 24 runs of the shipped
sweep `sweeps/figure4.yaml` trains for EPOCHS epochs of BATCHES batches of 256 images (a random
tenth of the training set per epoch) at a constant learning rate 0.1, and is evaluated on the first
VAL_BATCHES batches of the test set: a CPU-scale version, far from the paper's accuracies.

    python experiments/figure4_depth.py run    # the sweep, resumable (runs/sweeps/figure4.json); ~15-25 min
    python experiments/figure4_depth.py plot   # docs/results/figure4_depth.{json,png} from the finished runs

Runs go to .cache/experiments/runs/ (ignored); the CIFAR-10 JPEGs are read from .cache/cifar10-jpg
(`make .cache/cifar10-jpg` unpacks the shared copy).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from results import figure_path, timed

REPOSITORY = Path(__file__).resolve().parents[1]
WORK = REPOSITORY / ".cache" / "experiments"
EPOCHS, BATCHES, VAL_BATCHES = 3, 30, 20
CPU_SCALE = [
    "--data.root", str(REPOSITORY / ".cache" / "cifar10-jpg"), "--trainer.max_epochs", str(EPOCHS),
    "--trainer.limit_train_batches", str(BATCHES), "--trainer.limit_val_batches", str(VAL_BATCHES),
    "--model.lr_scheduler", "null", "--trainer.enable_progress_bar", "false", "--checkpoint.save_last", "false",
]  # fmt: skip


def run() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "resnode_lightning", "sweep", "sweeps/figure4.yaml", "--", *CPU_SCALE]
    subprocess.run(command, cwd=WORK, check=False, env={**os.environ, "WANDB_MODE": "disabled"})


def best_accuracy(folder: Path) -> float:
    rows = [row for row in csv.DictReader((folder / "metrics.csv").open()) if row.get("val/acc1")]
    return max(float(row["val/acc1"]) for row in rows)


def plot() -> None:
    state = json.loads((WORK / "runs" / "sweeps" / "figure4.json").read_text())
    with timed("figure4_depth") as record:
        results = []
        for line, run_state in state.items():
            if run_state.get("status") != "finished" or not run_state.get("run_folder"):
                continue
            options = dict(
                part.removeprefix("--").split("=", 1) for part in line.split() if part.startswith("--model.network.")
            )
            results.append({
                "depth": int(options["model.network.depth"]), "scheme": options["model.network.scheme"],
                "gradient": options["model.network.gradient"],
                "test_error": 1 - best_accuracy(WORK / run_state["run_folder"]),
            })  # fmt: skip
        record["setting"] = f"{EPOCHS} epochs x {BATCHES} batches of 256, lr 0.1, {VAL_BATCHES * 256} test images"
        record["runs"] = sorted(results, key=lambda r: (r["scheme"], r["gradient"], r["depth"]))
        figure, axis = plt.subplots(figsize=(6, 4))
        for scheme, gradient, style in [("euler", "adjoint", "r--"), ("euler", "backprop", "r-"),
                                        ("heun", "adjoint", "b--"), ("heun", "backprop", "b-")]:  # fmt: skip
            points = sorted(
                (r["depth"], r["test_error"]) for r in results if (r["scheme"], r["gradient"]) == (scheme, gradient)
            )
            if points:
                axis.semilogx(
                    *zip(*points),
                    style,
                    marker="o",
                    base=2,
                    label=f"{'ResNet' if scheme == 'euler' else 'HeunNet'} + {gradient}",
                )
        axis.set(xlabel="depth N", ylabel="test error", title=f"Figure 4 at CPU scale ({EPOCHS} short epochs)")
        axis.legend()
        figure.tight_layout()
        figure.savefig(figure_path("figure4_depth"), dpi=120)


if __name__ == "__main__":
    {"run": run, "plot": plot}[sys.argv[1] if len(sys.argv) > 1 else "run"]()
