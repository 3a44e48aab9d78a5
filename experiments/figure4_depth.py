"""Figure 4 at CPU scale: the simple ResNet at depth 2 .. 64, Euler/Heun x backprop/adjoint, on real CIFAR-10.

The paper (90 epochs on V100s): the adjoint fails at small depth and joins backprop at large depth;
Heun with the adjoint at least as good as Euler with it; test error falls with depth. Here each of
the 24 runs of the shipped sweep `sweeps/figure4.yaml` trains for EPOCHS epochs of BATCHES batches
of 256 images (a random part of the training set per epoch) at a constant learning rate 0.1,
scaled by the depth N for the stack's parameters as the paper's code trained it
(`--model.scale_stack_lr_by_depth true`: with h = 1/N each block moves by 1/N of its update, so
without it deeper networks learn more slowly), once per seed in SEEDS. Each run is evaluated on
the first VAL_BATCHES batches of the test set after each epoch (its best epoch counts): a CPU-scale
version, far from the paper's accuracies. GradientErrorMonitor measures, every MONITOR_EVERY steps
on 16 images of the batch, how far the adjoint runs' gradients are from exact ones: the error
their training met. Test errors are compared seed by seed (the same seed gives backprop and the
adjoint the same initialisation and batches).

    python experiments/figure4_depth.py run [SEED ...]   # one sweep per seed (default all), resumable;
                                                         # ~50 min a seed alone on 2 cores
    python experiments/figure4_depth.py plot             # docs/results/figure4_depth.{json,png}

Two seeds at once use the 2 cores better than one (1.6x the runs per hour measured here):
`OMP_NUM_THREADS=1 python experiments/figure4_depth.py run 0 & OMP_NUM_THREADS=1 ... run 1`.
Runs go to .cache/experiments/figure4/<EPOCHS>x<BATCHES>_lr_x_depth/seed<S>/ (ignored); the CIFAR-10
JPEGs are read from .cache/cifar10-jpg (`make .cache/cifar10-jpg` unpacks the shared copy).
"""

from __future__ import annotations

import json
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from results import RESULTS, best_accuracy, figure_path, monitored_errors, timed
from sweep_runs import CIFAR, WORK, finished_runs, run_sweep, sweep_wall_seconds

EPOCHS, BATCHES, VAL_BATCHES, MONITOR_EVERY = 6, 50, 20, 25
SEEDS = [0, 1, 2]
HERE = WORK / "figure4" / f"{EPOCHS}x{BATCHES}_lr_x_depth"
CPU_SCALE = [
    "--data.root", str(CIFAR), "--trainer.max_epochs", str(EPOCHS),
    "--trainer.limit_train_batches", str(BATCHES), "--trainer.limit_val_batches", str(VAL_BATCHES),
    "--model.lr_scheduler", "null", "--trainer.enable_progress_bar", "false", "--checkpoint.save_last", "false",
    "--trainer.callbacks+=resnode_lightning.training.GradientErrorMonitor",
    "--trainer.callbacks.every_n_steps", str(MONITOR_EVERY), "--trainer.callbacks.samples", "16",
    "--model.scale_stack_lr_by_depth", "true",
]  # fmt: skip
CURVES = [
    ("euler", "adjoint", "r--"), ("euler", "backprop", "r-"), ("heun", "adjoint", "b--"), ("heun", "backprop", "b-")
]  # fmt: skip
NAMES = {"euler": "ResNet", "heun": "HeunNet"}


def seeded(seed: int) -> list[str]:
    return [*CPU_SCALE, "--seed_everything", str(seed)]


def run(seeds: list[int]) -> None:
    """The sweep once per seed, each in a folder of its own (so that two seeds can run at once)."""
    for seed in seeds:
        run_sweep("figure4", seeded(seed), HERE / f"seed{seed}")


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max of a cell's values over its seeds."""
    return {
        "mean": round(statistics.fmean(values), 4),
        "std": round(statistics.stdev(values), 4) if len(values) > 1 else None,
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "seeds": len(values),
    }


def paired(cells: dict, minuend: tuple[str, str], subtrahend: tuple[str, str], depth: int) -> dict | None:
    """The test error of ``minuend`` less that of ``subtrahend`` (scheme, gradient) at one depth, seed by
    seed (same seed: same initialisation and batches), with its spread over the seeds both finished."""
    first, second = cells.get((*minuend, depth), {}), cells.get((*subtrahend, depth), {})
    seeds = sorted(first.keys() & second.keys())
    if not seeds:
        return None
    differences = [first[seed]["test_error"] - second[seed]["test_error"] for seed in seeds]
    return {"per_seed": [round(d, 4) for d in differences], **spread(differences)}


def plot() -> None:
    with timed("figure4_depth") as record:
        cells: dict[tuple[str, str, int], dict[int, dict]] = {}
        for seed in SEEDS:
            for swept, folder in finished_runs("figure4", seeded(seed), HERE / f"seed{seed}"):
                errors = [float(f"{median:.3g}") for _, median, _ in monitored_errors(folder, "stack")]
                key = (swept["scheme"], swept["gradient"], int(swept["depth"]))
                cells.setdefault(key, {})[seed] = {
                    "test_error": round(1 - best_accuracy(folder), 4),
                    "gradient_error_per_check": errors,
                    "final_gradient_error": errors[-1] if errors else None,
                }
        depths = sorted({depth for _, _, depth in cells})
        record["setting"] = (
            f"{EPOCHS} epochs x {BATCHES} batches of 256, lr 0.1 and N x 0.1 for the stack's parameters "
            f"(scale_stack_lr_by_depth), seeds {SEEDS}; best test error over the epochs on {VAL_BATCHES * 256} "
            f"test images; adjoint's gradient error (median relative error over the stack's parameter tensors) "
            f"on 16 images every {MONITOR_EVERY} steps"
        )
        record["sweep_wall_seconds"] = {seed: sweep_wall_seconds("figure4", HERE / f"seed{seed}") for seed in SEEDS}
        record["cells"] = [
            {
                "scheme": scheme, "gradient": gradient, "depth": depth,
                "test_error": spread([run["test_error"] for run in runs.values()]),
                "final_gradient_error": {
                    seed: run["final_gradient_error"]
                    for seed, run in runs.items()
                    if run["final_gradient_error"] is not None
                },
                "runs": runs,
            }
            for (scheme, gradient, depth), runs in sorted(cells.items())
        ]  # fmt: skip
        record["adjoint_minus_backprop"] = {
            scheme: {depth: paired(cells, (scheme, "adjoint"), (scheme, "backprop"), depth) for depth in depths}
            for scheme in NAMES
        }
        record["heun_minus_euler_with_the_adjoint"] = {
            depth: paired(cells, ("heun", "adjoint"), ("euler", "adjoint"), depth) for depth in depths
        }
        figure, (error, gradient_error) = plt.subplots(1, 2, figsize=(11, 4))
        for scheme, gradient, style in CURVES:
            curve = [(depth, cells[scheme, gradient, depth]) for depth in depths if (scheme, gradient, depth) in cells]
            if not curve:
                continue
            x = [depth for depth, _ in curve]
            values = [spread([run["test_error"] for run in runs.values()]) for _, runs in curve]
            label = f"{NAMES[scheme]} + {gradient}"
            error.errorbar(x, [v["mean"] for v in values], yerr=[v["std"] or 0 for v in values], fmt=style,
                           marker="o", capsize=3, label=label)  # fmt: skip
            if gradient == "adjoint":
                finals = [[run["final_gradient_error"] for run in runs.values()] for _, runs in curve]
                middle = [statistics.median(f) for f in finals]
                bounds = [[m - min(f) for m, f in zip(middle, finals)], [max(f) - m for m, f in zip(middle, finals)]]
                gradient_error.errorbar(x, middle, yerr=bounds, fmt=style, marker="o", capsize=3, label=label)
        seeds = f"{len(SEEDS)} seeds"
        error.set(xlabel="depth N", ylabel=f"test error (mean ± std, {seeds})",
                  title=f"Figure 4 at CPU scale ({EPOCHS} short epochs, lr x N in the stack)")  # fmt: skip
        error.set_xscale("log", base=2)
        gradient_error.set(xlabel="depth N", ylabel=f"relative gradient error ({seeds}: median, min-max)",
                           title="the adjoint's gradient error at the last check")  # fmt: skip
        gradient_error.set_xscale("log", base=2)
        gradient_error.set_yscale("log")
        error.legend()
        gradient_error.legend()
        figure.tight_layout()
        figure.savefig(figure_path("figure4_depth"), dpi=120)


def table() -> None:
    """Print results.md's table from docs/results/figure4_depth.json: test error mean ± std (seeds), the
    paired differences, and the adjoint's final gradient error (median over the seeds)."""
    record = json.loads((RESULTS / "figure4_depth.json").read_text())
    depths = sorted({cell["depth"] for cell in record["cells"]})
    cells = {(c["scheme"], c["gradient"], c["depth"]): c for c in record["cells"]}
    print("| depth N | " + " | ".join(map(str, depths)) + " |")
    print("|---" * (len(depths) + 1) + "|")
    for scheme, gradient, _ in CURVES:
        row = [cells.get((scheme, gradient, depth)) for depth in depths]
        shown = [f"{100 * c['test_error']['mean']:.1f} ± {100 * (c['test_error']['std'] or 0):.1f} % "
                 f"({c['test_error']['seeds']})" if c else "" for c in row]  # fmt: skip
        print(f"| {NAMES[scheme]}, {gradient} | " + " | ".join(shown) + " |")
    differences = {f"{NAMES[s]}: adjoint − backprop": record["adjoint_minus_backprop"][s] for s in NAMES}
    differences["adjoint: HeunNet − ResNet"] = record["heun_minus_euler_with_the_adjoint"]
    for name, by_depth in differences.items():
        shown = [by_depth.get(str(depth)) for depth in depths]
        print(f"| {name} | " + " | ".join(
            f"{100 * d['mean']:+.1f} ± {100 * (d['std'] or 0):.1f} ({sum(x > 0 for x in d['per_seed'])}/{d['seeds']})"
            if d else "" for d in shown) + " |")  # fmt: skip
    for scheme in NAMES:
        finals = [cells.get((scheme, "adjoint", depth), {}).get("final_gradient_error", {}) for depth in depths]
        shown = [f"{statistics.median(f.values()):.2g}" if f else "" for f in finals]
        print(f"| {NAMES[scheme]} adjoint's gradient error at the end | " + " | ".join(shown) + " |")


if __name__ == "__main__":
    if sys.argv[1:2] in (["plot"], ["table"]):
        {"plot": plot, "table": table}[sys.argv[1]]()
    elif sys.argv[1:2] == ["run"]:
        run([int(seed) for seed in sys.argv[2:]] or SEEDS)
    else:
        raise SystemExit(f"usage: {sys.argv[0]} run [SEED ...] | plot | table")
