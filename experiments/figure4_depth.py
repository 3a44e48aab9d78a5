"""Figure 4 at CPU scale: the simple ResNet at depth 2 .. 64, Euler/Heun x backprop/adjoint, on real CIFAR-10.

The paper (90 epochs on V100s): the adjoint fails at small depth and joins backprop at large depth;
Heun with the adjoint at least as good as Euler with it. Here each of the 24 runs of the shipped
sweep `sweeps/figure4.yaml` trains for EPOCHS epochs of BATCHES batches of 256 images (a random
part of the training set per epoch) at a constant learning rate 0.1, and is evaluated on the first
VAL_BATCHES batches of the test set after each epoch (its best epoch counts): a CPU-scale version, far from the paper's
accuracies. GradientErrorMonitor measures, every MONITOR_EVERY steps on 16 images of the batch,
how far the adjoint runs' gradients are from exact ones: the error their training met.

    python experiments/figure4_depth.py run    # the sweep, resumable; ~50 min alone on 2 cores
    python experiments/figure4_depth.py plot   # docs/results/figure4_depth.{json,png} from the finished runs

Runs go to .cache/experiments/figure4/<EPOCHS>x<BATCHES>/ (ignored); the CIFAR-10 JPEGs are read from
.cache/cifar10-jpg (`make .cache/cifar10-jpg` unpacks the shared copy).
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from results import best_accuracy, figure_path, monitored_errors, timed
from sweep_runs import CIFAR, WORK, finished_runs, run_sweep, sweep_wall_seconds

EPOCHS, BATCHES, VAL_BATCHES, MONITOR_EVERY = 6, 50, 20, 25
HERE = WORK / "figure4" / f"{EPOCHS}x{BATCHES}"
CPU_SCALE = [
    "--data.root", str(CIFAR), "--trainer.max_epochs", str(EPOCHS),
    "--trainer.limit_train_batches", str(BATCHES), "--trainer.limit_val_batches", str(VAL_BATCHES),
    "--model.lr_scheduler", "null", "--trainer.enable_progress_bar", "false", "--checkpoint.save_last", "false",
    "--trainer.callbacks+=resnode_lightning.training.GradientErrorMonitor",
    "--trainer.callbacks.every_n_steps", str(MONITOR_EVERY), "--trainer.callbacks.samples", "16",
]  # fmt: skip
CURVES = [
    ("euler", "adjoint", "r--"), ("euler", "backprop", "r-"), ("heun", "adjoint", "b--"), ("heun", "backprop", "b-")
]  # fmt: skip
NAMES = {"euler": "ResNet", "heun": "HeunNet"}


def run() -> None:
    run_sweep("figure4", CPU_SCALE, HERE)


def plot() -> None:
    with timed("figure4_depth") as record:
        results = []
        for swept, folder in finished_runs("figure4", CPU_SCALE, HERE):
            errors = [float(f"{median:.3g}") for _, median, _ in monitored_errors(folder, "stack")]
            results.append({
                "depth": int(swept["depth"]), "scheme": swept["scheme"], "gradient": swept["gradient"],
                "test_error": round(1 - best_accuracy(folder), 4),
                "gradient_error_per_check": errors,
                "final_gradient_error": errors[-1] if errors else None,
            })  # fmt: skip
        results.sort(key=lambda r: (r["scheme"], r["gradient"], r["depth"]))
        record["setting"] = (
            f"{EPOCHS} epochs x {BATCHES} batches of 256, lr 0.1, error on {VAL_BATCHES * 256} test images; "
            f"adjoint's gradient error (median relative error over the stack's parameter tensors) on 16 images "
            f"every {MONITOR_EVERY} steps"
        )
        record["sweep_wall_seconds"] = sweep_wall_seconds("figure4", HERE)
        record["runs"] = results
        figure, (error, gradient_error) = plt.subplots(1, 2, figsize=(11, 4))
        for scheme, gradient, style in CURVES:
            curve = sorted((r for r in results if (r["scheme"], r["gradient"]) == (scheme, gradient)),
                           key=lambda r: r["depth"])  # fmt: skip
            if not curve:
                continue
            depths = [r["depth"] for r in curve]
            label = f"{NAMES[scheme]} + {gradient}"
            error.semilogx(depths, [r["test_error"] for r in curve], style, marker="o", base=2, label=label)
            if gradient == "adjoint":
                gradient_error.plot(depths, [r["final_gradient_error"] for r in curve], style, marker="o", label=label)
        error.set(xlabel="depth N", ylabel="test error", title=f"Figure 4 at CPU scale ({EPOCHS} short epochs)")
        gradient_error.set(xlabel="depth N", ylabel="median relative gradient error",
                           title="the adjoint's gradient error at the last check")  # fmt: skip
        gradient_error.set_xscale("log", base=2)
        gradient_error.set_yscale("log")
        error.legend()
        gradient_error.legend()
        figure.tight_layout()
        figure.savefig(figure_path("figure4_depth"), dpi=120)


if __name__ == "__main__":
    {"run": run, "plot": plot}[sys.argv[1] if len(sys.argv) > 1 else "run"]()
