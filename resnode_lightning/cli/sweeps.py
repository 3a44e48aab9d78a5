"""``resnode sweep FILE``: the runs of a W&B sweep file, here, one after another, without W&B's server.

The file is the one ``wandb sweep FILE`` takes (:mod:`.sweep_files` reads it). Each run is a
``resnode`` process like any other (its own run folder, its own loggers), grouped under the
sweep's name in W&B (``WANDB_RUN_GROUP``). ``runs/sweeps/<name>.json`` records each run's command
line, whether its process finished (exit code 0) and its run folder, so that a sweep killed halfway
continues where it stopped when started again; a failed run is tried again then too.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from jsonargparse.typing import PositiveInt

from .config_files import resolve_config, shipped_configs
from .runs import RUNS
from .sweep_files import command_line, expand, read_sweep

STATE_FOLDER = Path(RUNS) / "sweeps"
AGAIN = {"failed": " (failed before)", "running": " (started before, did not finish)"}
"""What the progress line says of a run that runs again."""


def sweep(file: str, dry_run: bool = False, count: PositiveInt | None = None, extra: list[str] | None = None) -> int:
    """Run the runs of a W&B sweep file here, one after another, skipping the runs that finished
    before (`wandb sweep FILE` and `wandb agent ID` run the same file with a network).

    Args:
        file: a sweep file, or the name of a shipped one (sweeps/figure4.yaml; `resnode configs`).
        dry_run: print the runs' command lines and run nothing.
        count: at most this many runs.
        extra: words given to every run before the swept flags (after --, e.g. -- --config
            presets/debug.yaml --data.root /data/cifar10).

    Returns:
        the exit status: 0, or 1 when a run failed.

    Raises:
        ValueError: a sweep file it refuses (the shell reports it in one line, status 2).
    """
    path = find_sweep_file(file)
    sweep_file = read_sweep(path)
    commands = [command_line(sweep_file, run, extra or []) for run in expand(sweep_file, count, 0)]
    if dry_run:
        print("\n".join(map(shlex.join, commands)))
        return 0
    return 1 if run_sweep(sweep_file.get("name") or path.stem, commands) else 0


def find_sweep_file(value: str) -> Path:
    """The sweep file ``value`` names: a path, or a shipped sweep (``sweeps/figure4.yaml``).

    Raises:
        ValueError: neither, with the shipped sweeps.
    """
    try:
        path = Path(resolve_config(value))
    except ValueError:
        path = None
    if path is None or not path.is_file():
        sweeps = ", ".join(name for name in shipped_configs() if name.startswith("sweeps/"))
        raise ValueError(
            f"{value!r}: no such file, and no shipped sweep has that name. Give the path of a W&B sweep file, "
            f"or one of the shipped sweeps: {sweeps}."
        )
    return path


def run_sweep(name: str, commands: list[list[str]]) -> list[str]:
    """Run each command line not finished before (by ``runs/sweeps/<name>.json``), in order, in a
    process of its own; return the ones that failed. A failed run does not stop the sweep."""
    state_file = STATE_FOLDER / f"{name}.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    environment = {**os.environ, "WANDB_RUN_GROUP": name}
    failed, skipped = [], 0
    for number, command in enumerate(commands, 1):
        line = shlex.join(command)
        before = state.get(line, {})
        progress = f"[sweep {name}: run {number} of {len(commands)}]"
        if before.get("status") == "finished":
            print(f"{progress} finished before ({before.get('run_folder')}): {line}", flush=True)
            skipped += 1
            continue
        note = AGAIN.get(before.get("status"), "")
        print(f"{progress}{note} {line}", flush=True)
        folders = run_folders()
        state[line] = {"status": "running"}
        write_state(state_file, state)
        try:
            exit_code = subprocess.call(executable(command), env=environment)
        except KeyboardInterrupt:
            raise SystemExit(f"\nSweep {name} stopped during run {number}; start it again to continue.") from None
        new_folders = sorted(map(str, run_folders() - folders))
        state[line] = {
            "status": "finished" if exit_code == 0 else "failed",
            "exit_code": exit_code,
            "run_folder": new_folders[0] if len(new_folders) == 1 else None,
        }
        write_state(state_file, state)
        if exit_code:
            failed.append(line)
            print(f"{progress} failed with exit code {exit_code}; the sweep goes on.", flush=True)
    ran = len(commands) - skipped
    print(
        f"\nSweep {name}: {ran} run{'s' * (ran != 1)} here, {skipped} finished before, {len(failed)} failed"
        + "".join(f"\n  failed: {line}" for line in failed)
        + f"\nState: {state_file}" + (" (start the sweep again to retry the failed runs)" if failed else "")
    )  # fmt: skip
    return failed


def run_folders() -> set[Path]:
    """The run folders ``resnode`` has made under ``runs/`` (a run's is the one that appears while it runs)."""
    return set(Path(RUNS).glob("*/version_*"))


def executable(command: list[str]) -> list[str]:
    """``resnode ...`` as this interpreter's ``python -m resnode_lightning ...``; other programs as they are."""
    return [sys.executable, "-m", "resnode_lightning", *command[1:]] if command[:1] == ["resnode"] else command


def write_state(path: Path, state: dict) -> None:
    """Write the sweep's state whole or not at all (a killed sweep leaves the previous one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(partial, path)
