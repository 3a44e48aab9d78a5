"""``resnode sweep FILE``: the runs of a W&B sweep file, here, one after another, without W&B's server.

The file is the one ``wandb sweep FILE`` takes (:mod:`.sweep_files` reads it). Before anything
runs, resnode parses every run's command line as it would run it, so a misspelt parameter stops
the sweep, not its seventh run. Each run is a resnode process like any other (its own run folder,
its own loggers), grouped under the sweep's name in W&B (``WANDB_RUN_GROUP``).

A run dies with its sweep: it runs in a process group of its own, and SIGTERM, SIGINT (Ctrl-C) or
SIGHUP to the sweep is sent on to it as SIGTERM, so that it stops after its current step with a
resumable checkpoint (a second signal kills it, SIGKILL); the sweep waits for it, records it as
stopped and exits with 128 + the signal's number (143 for SIGTERM).

``runs/sweeps/<name>.json`` records each run's command line, its status (``running``, then
``finished``, ``stopped`` for an exit status 128 + n, ``failed`` for another), its exit status, its
run folder, and while it runs its pid and the sweep's. Started again, a sweep skips the finished
runs, continues a stopped ``fit`` in its own run folder (``--ckpt_path <run folder>``) where it
saved a checkpoint, and runs the others again. ``runs/sweeps/<name>.lock`` holds the pid of the
sweep of that name that runs: a second one is refused while it lives, and so is a sweep whose
earlier run still runs (its sweep was killed with SIGKILL).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from jsonargparse.typing import PositiveInt

from ..files import atomic_write_text
from .config_files import resolve_config, shipped_configs
from .runs import RUN_FOLDER_REPORT_VARIABLE, RUNS, checkpoint_in
from .suggestions import closest_key
from .sweep_files import SweepFileError, command_line, expand, read_sweep

RESNODE = [sys.executable, "-m", "resnode_lightning"]
"""The program every run starts: this interpreter's resnode, however the sweep file spells it."""
STATE_FOLDER = Path(RUNS) / "sweeps"
STOPPING_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))
FOLDER_POLL_SECONDS = 1.0
"""How often the sweep looks for the run folder of the run it waits for (recorded as soon as it appears)."""


class SweepBusyError(ValueError):
    """The sweep, or a run of it, is running already."""


def sweep(
    file: str,
    dry_run: bool = False,
    count: PositiveInt | None = None,
    extra: list[str] | None = None,
    parse: Callable[[list[str]], Any] | None = None,
) -> int:
    """Run the runs of a W&B sweep file here, one after another, skipping the runs that finished
    before and continuing the stopped ones (`wandb sweep FILE` and `wandb agent ID` run the same
    file with a network). Every run's command line is parsed by resnode before the first starts.

    Args:
        file: a sweep file (method: grid), or the name of a shipped one (sweeps/figure4.yaml;
            `resnode configs`).
        dry_run: check and print the runs' command lines, and run nothing.
        count: at most this many runs.
        extra: words given to every run before the swept flags (after --, e.g. -- --config
            presets/debug.yaml --data.root /data/cifar10).
        parse: the resnode command line's parser, called with a run's words (the shell passes its
            own, so that this module need not import it); None: the runs are not checked first.

    Returns:
        the exit status: 0; 1 when a run failed or stopped; 128 + n when signal n stopped the sweep.

    Raises:
        ValueError: a sweep file it refuses, a command line resnode refuses, or a sweep of that
            name that runs already (the shell reports it in one line, status 2).
    """
    path = find_sweep_file(file)
    sweep_file = read_sweep(path)
    runs = expand(sweep_file, count)
    commands = [command_line(sweep_file, run, extra or []) for run in runs]
    if parse is not None:
        check_command_lines(commands, runs, command_line(sweep_file, {}, extra or []), str(path), parse)
    if dry_run:
        print("\n".join(map(shlex.join, commands)))
        return 0
    with sweep_lock(sweep_file.get("name") or path.stem) as name:
        return run_sweep(name, commands)


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


# -- checking the command lines: resnode parses each, runs none --------------------------------------
def check_command_lines(
    commands: list[list[str]], runs: list[dict[str, Any]], base: list[str], where: str, parse: Callable
) -> None:
    """Parse every command line as resnode would run it, in this process, running nothing.

    Raises:
        SweepFileError: resnode refuses a command line: its error, the run's values, and for a
            parameter that is no option of resnode the closest one (found in ``base``'s config,
            the command line without the parameters).
    """
    for number, (command, run) in enumerate(zip(commands, runs), 1):
        status, _, error = parse_only(command, parse)
        if status:
            values = ", ".join(f"{name}={value}" for name, value in run.items())
            raise SweepFileError(
                f"{where}: resnode refuses run {number} of {len(commands)} ({values or shlex.join(command)}): "
                f"{error}{unknown_parameter(run, base, parse)}"
            )


def parse_only(command: list[str], parse: Callable) -> tuple[int, str, str]:
    """``resnode <command> --print_config`` in this process: (exit status, the config it prints, its
    error in one line). Nothing is built or run: the config is printed as soon as it is parsed."""
    printed, written, status = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(written), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the runs will say theirs
        try:
            parse([*command[1:], "--print_config"])
        except SystemExit as stop:
            status = stop.code or 0
    error = written.getvalue()
    error = error[error.find("error: ") :].removeprefix("error: ") if "error: " in error else error
    lines = [line.strip() for line in error.splitlines() if line.strip() and "--help" not in line]
    return status, printed.getvalue(), " ".join(lines) or f"exit status {status}"


def unknown_parameter(run: dict[str, Any], base: list[str], parse: Callable) -> str:
    """``; parameter 'x' is no option of resnode (did you mean 'y'?)`` for the first of the run's
    parameters that is not a key of ``base``'s config, or ``""``."""
    status, printed, _ = parse_only(base, parse)
    if status:
        return ""
    known = {key.replace(".init_args", "") for key in dotted_keys(yaml.safe_load(printed))}
    for name in run:
        key = name.replace(".init_args", "").rstrip("+")
        if not any(option == key or option.startswith(f"{key}.") for option in known):
            close = closest_key(key, known)
            return f"; parameter {name!r} is no option of resnode{f' (did you mean {close!r}?)' if close else ''}"
    return ""


def dotted_keys(value: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted key of a nested mapping, inner ones and leaves (``trainer``, ``trainer.max_epochs``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{prefix}{key}"
            yield from dotted_keys(item, f"{prefix}{key}.")


# -- running ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def sweep_lock(name: str) -> Iterator[str]:
    """Hold ``runs/sweeps/<name>.lock`` while the sweep runs; the file holds this process's pid.

    The lock is the kernel's (``flock``): a sweep that dies, even by SIGKILL, leaves it to the
    next one, and two sweeps starting at once cannot both take it.

    Raises:
        SweepBusyError: a living sweep holds it, with its pid.
    """
    import fcntl  # POSIX, as the process groups and signals of the runs are

    path = STATE_FOLDER / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            raise SweepBusyError(
                f"sweep {name} is running already (pid {holder}, {path}): wait for it to end, or stop it "
                f"(kill {holder}: its run stops with a checkpoint, and starting the sweep again continues it)."
            ) from None
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield name


def run_sweep(name: str, commands: list[list[str]]) -> int:
    """Run each command line not finished before (by ``runs/sweeps/<name>.json``), in order, each in
    a process of its own; a failed or stopped run does not stop the sweep, a signal to the sweep
    does. Returns the sweep's exit status.

    Raises:
        SweepBusyError: a run an earlier sweep started still runs.
    """
    state = SweepState(name)
    refuse_if_a_run_still_runs(name, state.entries)
    environment = {**os.environ, "WANDB_RUN_GROUP": name}
    not_finished, skipped, started = [], 0, 0
    with StopSignals() as stop:
        for number, command in enumerate(commands, 1):
            if stop.received:
                break
            line = shlex.join(command)
            before = state.entries.get(line, {})
            progress = f"[sweep {name}: run {number} of {len(commands)}]"
            if before.get("status") == "finished":
                print(f"{progress} finished before ({before.get('run_folder')}): {line}", flush=True)
                skipped += 1
                continue
            resumed = stopped_run_folder(command, before)
            print(f"{progress}{again(before, resumed)} {line}", flush=True)
            entry = run_one(command, resumed, stop, environment, functools.partial(state.record, line))
            started += 1
            if entry["status"] != "finished":
                not_finished.append(f"{entry['status']}: {line}")
                if not stop.received:
                    print(
                        f"{progress} {entry['status']} with exit status {entry['exit_code']}; the sweep goes on.",
                        flush=True,
                    )
    ended = f"stopped by {stop.received.name}" if stop.received else "done"
    print(
        f"\nSweep {name} {ended}: {started} run{'s' * (started != 1)} here, {skipped} finished before, "
        f"{len(not_finished)} not finished" + "".join(f"\n  {line}" for line in not_finished)
        + f"\nState: {state.path}" + (" (start the sweep again to continue)" if not_finished else ""),
        flush=True,
    )  # fmt: skip
    if stop.received:
        return 128 + int(stop.received)
    return 1 if not_finished else 0


class SweepState:
    """``runs/sweeps/<name>.json``: ``{command line: entry}``, written whole after each change."""

    def __init__(self, name: str) -> None:
        self.path = STATE_FOLDER / f"{name}.json"
        self.entries: dict[str, dict[str, Any]] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def record(self, line: str, entry: dict[str, Any]) -> None:
        self.entries[line] = entry
        atomic_write_text(self.path, json.dumps(self.entries, indent=1) + "\n")


def refuse_if_a_run_still_runs(name: str, state: dict[str, dict[str, Any]]) -> None:
    """Raises SweepBusyError where a run recorded as running has a living process: its sweep died
    (SIGKILL) and left it, and a second copy must not start beside it."""
    for line, entry in state.items():
        pid = entry.get("pid")
        if entry.get("status") == "running" and pid and is_alive(pid):
            raise SweepBusyError(
                f"sweep {name}: a run of an earlier sweep (pid {entry.get('sweep_pid')}, gone) still runs as pid "
                f"{pid}: {line}. Wait for it to end, or stop it (kill {pid}: it saves a checkpoint), then start "
                "the sweep again."
            )


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        return True
    return True


def stopped_run_folder(command: list[str], before: dict[str, Any]) -> Path | None:
    """The run folder a stopped ``fit`` continues in: the one it made, where it saved a
    resumable checkpoint (a run recorded as running was stopped with its sweep)."""
    folder = before.get("run_folder")
    stopped = before.get("status") in ("stopped", "running")
    if stopped and command[1:2] == ["fit"] and folder and checkpoint_in(Path(folder), "resume"):
        return Path(folder)
    return None


def again(before: dict[str, Any], resumed: Path | None) -> str:
    """What the progress line says of a run that ran before and did not finish."""
    if resumed is not None:
        return f" (stopped before: continues in {resumed})"
    status = before.get("status")
    return f" ({'stopped' if status == 'running' else status} before: runs again)" if status else ""


def run_one(
    command: list[str],
    resumed: Path | None,
    stop: StopSignals,
    environment: dict[str, str],
    record: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Run one command line to its end (``--ckpt_path resumed`` continues a stopped run), recording
    its pid and, as soon as the run reports it (:data:`.runs.RUN_FOLDER_REPORT_VARIABLE`), its run
    folder; return its final entry."""
    resume = ["--ckpt_path", str(resumed)] if resumed else []
    with tempfile.TemporaryDirectory(prefix="resnode-sweep-") as scratch:
        report = Path(scratch) / "run_folder"
        child = stop.start([*RESNODE, *command[1:], *resume], {**environment, RUN_FOLDER_REPORT_VARIABLE: str(report)})
        entry = {
            "status": "running",
            "pid": child.pid,
            "sweep_pid": os.getpid(),
            "run_folder": str(resumed) if resumed else None,
        }
        try:
            record(entry)
            while True:
                try:
                    returncode = child.wait(timeout=FOLDER_POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    if entry["run_folder"] is None and report.is_file():
                        entry["run_folder"] = report.read_text()
                        record(entry)
        finally:
            stop.ended(child)
        reported = report.read_text() if report.is_file() else None
    status = 128 - returncode if returncode < 0 else returncode  # killed by signal n: 128 + n, as a shell says
    entry = {
        "status": "finished" if status == 0 else "stopped" if status > 128 else "failed",
        "exit_code": status,
        "run_folder": reported or entry["run_folder"],
    }
    record(entry)
    return entry


class StopSignals:
    """While entered, SIGTERM, SIGINT and SIGHUP stop the sweep: the run in progress gets SIGTERM
    (its whole process group; SIGKILL at a second signal), no further run starts, and
    :attr:`received` says which signal came first."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self.child: subprocess.Popen | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        self.previous = {number: signal.signal(number, self.on_signal) for number in STOPPING_SIGNALS}
        return self

    def __exit__(self, *exception) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        first = self.received is None
        self.received = self.received or signal.Signals(signum)
        if self.child is not None:
            self.send(signal.SIGTERM if first else signal.SIGKILL)

    def start(self, argv: list[str], environment: dict[str, str]) -> subprocess.Popen:
        """Start a run in a session (and process group) of its own: a terminal's Ctrl-C reaches the
        sweep alone, which stops the run as it stops for a scheduler."""
        self.child = subprocess.Popen(argv, env=environment, start_new_session=True)
        if self.received:  # a signal came while it started
            self.send(signal.SIGTERM)
        return self.child

    def ended(self, child: subprocess.Popen) -> None:
        """After the run's process ended; or, where the sweep leaves early by an error, end it first."""
        if child.poll() is None:
            self.send(signal.SIGTERM)
            child.wait()
        self.child = None

    def send(self, number: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.child.pid, number)
