"""The quickstart's closing lines: validation accuracy pretrained, right after the transfer, and fine-tuned.

`make quickstart` runs it after its three commands, in the folder they ran in (their runs are in ./runs):

    resnode fit --config quickstart.yaml                # runs/quickstart/version_<i>
    resnode validate --config quickstart_finetune.yaml  # runs/quickstart_finetune/version_<j>, no checkpoints
    resnode fit --config quickstart_finetune.yaml       # runs/quickstart_finetune/version_<k>, k > j
    python experiments/quickstart_summary.py

Each accuracy is the best validation top-1 of its run, the one the run's "Done." line reports.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from results import best_accuracy

RUNS = Path("runs")


def version(folder: Path) -> int:
    """k of ``runs/<name>/version_<k>``."""
    return int(folder.name.removeprefix("version_"))


def versions(name: str) -> list[Path]:
    """The run folders ``runs/<name>/version_<k>``, newest (highest k) first."""
    return sorted((RUNS / name).glob("version_*"), key=version, reverse=True)


def trained(folder: Path) -> bool:
    """Whether ``fit`` made the run (it has checkpoints; ``validate`` writes none)."""
    return (folder / "checkpoints").is_dir()


def depth(folder: Path) -> list[int]:
    """The blocks per stage of the network the run ran (from its config.yaml)."""
    config = yaml.safe_load((folder / "config.yaml").read_text())
    return config["model"]["network"]["init_args"]["depth"]


def main() -> int:
    pretrained = next((folder for folder in versions("quickstart") if trained(folder)), None)
    finetune_runs = versions("quickstart_finetune")
    finetuned = next((folder for folder in finetune_runs if trained(folder)), None)
    # the transfer measured before this fine-tune: the newest validate run older than it
    earlier = [folder for folder in finetune_runs if finetuned and version(folder) < version(finetuned)]
    transferred = next((folder for folder in earlier if not trained(folder)), None)
    if not (pretrained and finetuned and transferred):
        print(
            f"error: no complete quickstart in {RUNS.resolve()}: it needs a run of `resnode fit --config "
            "quickstart.yaml`, then `resnode validate --config quickstart_finetune.yaml`, then `resnode fit "
            "--config quickstart_finetune.yaml` (`make quickstart` runs all three, then this).",
            file=sys.stderr,
        )
        return 1
    before, after, tuned = (best_accuracy(folder) for folder in (pretrained, transferred, finetuned))
    print(
        f"\nQuickstart (validation top-1 on the digits): pretrained, tied {depth(pretrained)} {100 * before:.1f} % → "
        f"untied and deepened to {depth(transferred)} {100 * after:.1f} % → stage 3 fine-tuned with the adjoint "
        f"{100 * tuned:.1f} % ({100 * (tuned - after):+.1f} points)\n"
        f"Runs: {pretrained}, {transferred} (validate), {finetuned}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
