"""Figure 3a at CPU scale: a ResNet whose weights are tied within each stage, accuracy against blocks per
stage, with the step h = 1/N against the classical h = 1, on real CIFAR-10.

The paper (200 epochs on V100s): with h = 1/N, accuracy rises with the number of blocks per stage
although the parameter count stays the same (a deeper tied stage is a finer ODE solver); with h = 1
it does not. Here each of the 10 runs of the shipped sweep `sweeps/figure3a.yaml` (resnet18
layout, d = 2 .. 32 blocks per stage: a transition block, then a stack of N = d - 1 tied steps, so
h = 1/N and h = 1 are the same network at d = 2) has base width BASE_WIDTH instead of 64 and trains
for EPOCHS epochs of BATCHES batches of 128 at a constant learning rate 0.1; accuracy is the best
after an epoch on the first VAL_BATCHES test batches. A CPU-scale version, far from the paper's
accuracies.

    python experiments/figure3a_tied_stages.py run    # the sweep, resumable; ~15 min alone on 2 cores
    python experiments/figure3a_tied_stages.py plot   # docs/results/figure3a_tied_stages.{json,png}
    python experiments/figure3a_tied_stages.py batchnorm   # each run's best checkpoint evaluated with BatchNorm's
                                                           # running statistics and with each batch's own (~2 min)
"""

from __future__ import annotations

import copy
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from results import best_accuracy, figure_path, timed
from sweep_runs import CIFAR, WORK, finished_runs, run_sweep, sweep_wall_seconds

BASE_WIDTH, EPOCHS, BATCHES, VAL_BATCHES = 8, 3, 40, 20
CPU_SCALE = [
    "--data.root", str(CIFAR), "--model.network.base_width", str(BASE_WIDTH), "--trainer.max_epochs", str(EPOCHS),
    "--trainer.limit_train_batches", str(BATCHES), "--trainer.limit_val_batches", str(VAL_BATCHES),
    "--model.lr_scheduler", "null", "--trainer.enable_progress_bar", "false", "--checkpoint.save_last", "false",
]  # fmt: skip
HERE = WORK / "figure3a" / f"width{BASE_WIDTH}_{EPOCHS}x{BATCHES}"


def run() -> None:
    run_sweep("figure3a", CPU_SCALE, HERE)


def plot() -> None:
    with timed("figure3a_tied_stages") as record:
        results = sorted(
            ({"blocks_per_stage": int(swept["depth"]), "step": "1/N" if swept["step"] == "1/depth" else swept["step"],
              "test_accuracy": round(best_accuracy(folder), 4)}
             for swept, folder in finished_runs("figure3a", CPU_SCALE, HERE)),
            key=lambda r: (r["step"], r["blocks_per_stage"]),
        )  # fmt: skip
        record["setting"] = (
            f"resnet18 layout, tied stages, base width {BASE_WIDTH}; {EPOCHS} epochs x {BATCHES} batches of 128, "
            f"lr 0.1; accuracy on {VAL_BATCHES * 128} test images"
        )
        record["sweep_wall_seconds"] = sweep_wall_seconds("figure3a", HERE)
        record["runs"] = results
        figure, axis = plt.subplots(figsize=(6, 4))
        for step, style in [("1/N", "b-"), ("1", "r--")]:
            points = sorted((r["blocks_per_stage"], r["test_accuracy"]) for r in results if r["step"] == step)
            if points:
                axis.semilogx(*zip(*points), style, marker="o", base=2, label=f"h = {step}")
        axis.set(xlabel="blocks per stage d (a transition block + N = d - 1 tied steps)", ylabel="test accuracy",
                 title=f"Figure 3a at CPU scale ({EPOCHS} short epochs)")  # fmt: skip
        axis.legend()
        figure.tight_layout()
        figure.savefig(figure_path("figure3a_tied_stages"), dpi=120)


def batchnorm() -> None:
    """Evaluate each run's best checkpoint on the same test images twice: with BatchNorm's running
    statistics (evaluation mode, as validation does) and with each batch's own statistics (training
    mode, nothing updated). A gap says how much of a low accuracy the running statistics cause."""
    import torch

    from resnode_lightning.data import CIFAR10DataModule
    from resnode_lightning.models import ResNet, load_weights
    from resnode_lightning.training.weights import read_network_weights

    torch.set_grad_enabled(False)
    data = CIFAR10DataModule(root=str(CIFAR), batch_size=128)
    data.prepare_data()
    data.setup("validate")
    loader = zip(range(VAL_BATCHES), data.val_dataloader())
    batches = [data.transform_batch(batch, training=False) for _, batch in loader]
    with timed("figure3a_batchnorm") as record:
        record["setting"] = f"best checkpoint of each Figure 3a run, {VAL_BATCHES * 128} test images"
        record["runs"] = []
        for swept, folder in sorted(finished_runs("figure3a", CPU_SCALE, HERE), key=lambda r: int(r[0]["depth"])):
            network = ResNet(preset="resnet18", depth=int(swept["depth"]), stem="cifar", base_width=BASE_WIDTH,
                             num_classes=10, tied=True, step=swept["step"])  # fmt: skip
            load_weights(network, read_network_weights(folder / "checkpoints" / "best.ckpt"))
            accuracy = {}
            for statistics in ("running", "batch"):
                model = copy.deepcopy(network).train(statistics == "batch")
                right = sum((model(x).argmax(1) == y).sum().item() for x, y in batches)
                accuracy[statistics] = round(right / sum(len(y) for _, y in batches), 4)
            step = "1/N" if swept["step"] == "1/depth" else swept["step"]
            record["runs"].append({"blocks_per_stage": int(swept["depth"]), "step": step, **{
                f"accuracy_{k}_statistics": v for k, v in accuracy.items()}})  # fmt: skip
            print(f"d = {swept['depth']:>2}, h = {step:>3}: running statistics {accuracy['running']:.3f}, "
                  f"batch statistics {accuracy['batch']:.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    {"run": run, "plot": plot, "batchnorm": batchnorm}[sys.argv[1] if len(sys.argv) > 1 else "run"]()
