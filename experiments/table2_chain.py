"""Table 2 at CPU scale: pretrain tied, transfer deeper and untie, fine-tune stage 3 with the adjoint.

The paper (CIFAR-10, 200 + 5 epochs on V100s): a ResNet with 4 blocks per stage, weights tied in each
stage, reaches 95.25 %; its weights transferred into an untied [4, 4, 64, 4] network keep above
94.5 %; fine-tuning stage 3 with the adjoint lifts it to 95.65 %. Here, with the shipped configs
and small overrides (base width 8, a few short epochs, stage 3 deepened to 16 blocks):

1. `resnode fit --config cifar_tied_pretrain.yaml`                       accuracy before the transfer
2. `resnode validate --config cifar_untie_finetune.yaml`                 right after it (init_from, no training)
3. `resnode fit --config cifar_untie_finetune.yaml`                      stage 3 fine-tuned with the adjoint
4. the same with `--model.network.gradient backprop`                     backprop fine-tune beside it

    python experiments/table2_chain.py         # ~5 min on 2 idle CPU cores; docs/results/table2_chain.{json,png}
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from results import best_accuracy, figure_path, timed

from resnode_lightning.cli.runs import RUNS, all_run_folders

REPOSITORY = Path(__file__).resolve().parents[1]
WORK = REPOSITORY / ".cache" / "experiments" / "table2"
PRETRAIN_EPOCHS, FINETUNE_EPOCHS, BATCHES, VAL_BATCHES = 3, 1, 40, 20
COMMON = [
    "--data.root", str(REPOSITORY / ".cache" / "cifar10-jpg"), "--trainer.limit_train_batches", str(BATCHES),
    "--trainer.limit_val_batches", str(VAL_BATCHES), "--trainer.enable_progress_bar", "false",
    "--model.network.base_width", "8",
]  # fmt: skip
DEEP = ["--model.network.depth=[4, 4, 16, 4]"]
STEPS = {
    "pretrained (tied, [4, 4, 4, 4])": ["fit", "--config", "cifar_tied_pretrain.yaml", "--trainer.max_epochs",
        str(PRETRAIN_EPOCHS), "--model.lr_scheduler.init_args.T_max", str(PRETRAIN_EPOCHS)],
    "transferred (untied, [4, 4, 16, 4])": ["validate", "--config", "cifar_untie_finetune.yaml", *DEEP],
    "fine-tuned stage 3, adjoint": ["fit", "--config", "cifar_untie_finetune.yaml", *DEEP,
        "--trainer.max_epochs", str(FINETUNE_EPOCHS)],
    "fine-tuned stage 3, backprop": ["fit", "--config", "cifar_untie_finetune.yaml", *DEEP,
        "--trainer.max_epochs", str(FINETUNE_EPOCHS), "--model.network.gradient", "backprop"],
}  # fmt: skip


def newest_run(before: set[Path]) -> Path:
    (folder,) = all_run_folders(WORK / RUNS) - before
    return folder


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "WANDB_MODE": "disabled"}
    with timed("table2_chain") as record:
        results = {}
        for what, arguments in STEPS.items():
            before = all_run_folders(WORK / RUNS)
            command = [sys.executable, "-m", "resnode_lightning", *arguments, *COMMON]
            print(f"== {what}: resnode {' '.join(arguments)}", flush=True)
            subprocess.run(command, cwd=WORK, env=environment, check=True, stdout=subprocess.DEVNULL)
            results[what] = best_accuracy(newest_run(before))
            print(f"   top-1 accuracy {results[what]:.4f}", flush=True)
        record.update(
            setting=f"base width 8; pretrain {PRETRAIN_EPOCHS} epochs, fine-tune {FINETUNE_EPOCHS} epochs, "
            f"{BATCHES} batches of 128 per epoch; accuracy on {VAL_BATCHES * 128} test images",
            accuracy=results,
        )  # fmt: skip
        figure, axis = plt.subplots(figsize=(7, 3.5))
        axis.barh(list(results)[::-1], list(results.values())[::-1], color="tab:blue")
        for y, value in enumerate(list(results.values())[::-1]):
            axis.text(value, y, f" {value:.3f}", va="center")
        axis.set(xlabel="test top-1 accuracy", title="Table 2 chain at CPU scale (CIFAR-10)", xlim=(0, 1))
        figure.tight_layout()
        figure.savefig(figure_path("table2_chain"), dpi=120)


if __name__ == "__main__":
    main()
