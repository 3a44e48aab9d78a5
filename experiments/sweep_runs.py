"""Reproductions that are shipped sweeps run at CPU scale: run the sweep here (resumable), then read the
runs it finished. The sweep's state is `runs/sweeps/<name>.json` under the experiment's folder; the time
its runs took is added up in `<name>_wall_seconds.txt` beside it (a resumed sweep adds its part)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
WORK = REPOSITORY / ".cache" / "experiments"
CIFAR = REPOSITORY / ".cache" / "cifar10-jpg"


def run_sweep(name: str, extra: list[str], work: Path = WORK) -> None:
    """`resnode sweep sweeps/<name>.yaml -- <extra>` in ``work``, W&B off; adds its wall time to the total
    (also when it is stopped with Ctrl-C).

    Ctrl-C reaches the sweep too, which stops its run with a checkpoint: this waits for it, so that
    the state it records is whole (a second Ctrl-C kills the run).

    Raises:
        SystemExit: with the sweep's exit status, when a run failed or stopped, or the sweep was stopped.
    """
    work.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "resnode_lightning", "sweep", f"sweeps/{name}.yaml", "--", *extra]
    started = time.perf_counter()
    try:
        with subprocess.Popen(command, cwd=work, env={**os.environ, "WANDB_MODE": "disabled"}) as sweep:
            try:
                status = sweep.wait()
            except KeyboardInterrupt:
                status = sweep.wait()
    finally:
        total = work / f"{name}_wall_seconds.txt"
        spent = time.perf_counter() - started + (float(total.read_text()) if total.is_file() else 0.0)
        total.write_text(f"{spent:.1f}\n")
    if status:
        raise SystemExit(status)


def sweep_wall_seconds(name: str, work: Path = WORK) -> float | None:
    """The seconds the sweep's runs took here, all its resumptions together (None: not recorded)."""
    total = work / f"{name}_wall_seconds.txt"
    return round(float(total.read_text()), 1) if total.is_file() else None


def finished_runs(name: str, extra: list[str], work: Path = WORK) -> list[tuple[dict[str, str], Path]]:
    """The runs the sweep finished with these ``extra`` words (runs of other settings in the same state
    file are left out): each as ({short name: value} of its command line's --key=value words, e.g.
    {"depth": "8"}, run folder); none when the sweep has not started there."""
    path = work / "runs" / "sweeps" / f"{name}.json"
    if not path.is_file():
        return []
    state = json.loads(path.read_text())
    runs = []
    for line, run in state.items():
        if run.get("status") == "finished" and run.get("run_folder") and shlex.join(extra) in line:
            options = (word.removeprefix("--").split("=", 1) for word in shlex.split(line) if "=" in word)
            runs.append(({key.rsplit(".", 1)[-1]: value for key, value in options}, work / run["run_folder"]))
    return runs
