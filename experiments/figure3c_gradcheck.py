"""Figure 3c at CPU scale: the adjoint's relative gradient error per parameter vs depth, ResNet (Euler) vs
HeunNet, for trained weights: the quickstart's network (tied ResNet on the digits), deepened.

    python experiments/figure3c_gradcheck.py      # ~1 min: trains the quickstart, then `resnode gradcheck`

Writes docs/results/figure3c/gradcheck.{txt,json,png} (resnode gradcheck's outputs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from results import RESULTS

from resnode_lightning.cli.runs import RUNS, resolve_checkpoint

REPOSITORY = Path(__file__).resolve().parents[1]
WORK = REPOSITORY / ".cache" / "experiments" / "figure3c"


def resnode(*arguments: str) -> None:
    environment = {**os.environ, "WANDB_MODE": "disabled"}
    subprocess.run([sys.executable, "-m", "resnode_lightning", *arguments], cwd=WORK, env=environment, check=True)


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    resnode("fit", "--config", "quickstart.yaml", "--trainer.enable_progress_bar", "false")
    checkpoint = resolve_checkpoint(WORK / RUNS / "quickstart", "weights")  # the newest run's best.ckpt
    resnode("gradcheck", "--config", "quickstart.yaml", "--ckpt_path", str(checkpoint),
            "--depths", "[2, 4, 8, 16, 32]", "--output", str(RESULTS / "figure3c"))  # fmt: skip


if __name__ == "__main__":
    main()
