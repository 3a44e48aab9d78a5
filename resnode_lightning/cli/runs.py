"""The run layout, known here and nowhere else: ``runs/<name>/version_<k>/`` holds a run's
``config.yaml``, ``checkpoints/{best,last}.ckpt`` and every logger's files; and the one resolver
that turns "a file, a run folder, or ``last``" into a checkpoint file for every command."""

from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Literal

from ..files import atomic_write_text

RUNS = "runs"
"""Where runs go by default (below the working directory): ``runs/<name>/version_<k>``."""
CHECKPOINTS = "checkpoints"
BEST, LAST = "best.ckpt", "last.ckpt"
CONFIG = "config.yaml"
SLURM_CHECKPOINTS = "hpc_ckpt_*.ckpt"
"""What Lightning's SLURM auto-requeue saves into the run folder before the job is requeued."""
RUN_FOLDER_VARIABLE = "RESNODE_RUN_FOLDER"
"""Set by a run for the processes it launches (DDP ranks), so that all of them name the same folder."""
RUN_FOLDER_REPORT_VARIABLE = "RESNODE_RUN_FOLDER_REPORT"
"""Set by whoever starts a run and wants to know its run folder (``resnode sweep``): the path of a
file that the run's rank 0 writes its folder into, as soon as it has one."""
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID")
VERSION = re.compile(r"version_(\d+)")

Purpose = Literal["resume", "weights"]
"""What a checkpoint is wanted for: ``"resume"`` a run (its ``last.ckpt``), or its ``"weights"``
(its ``best.ckpt``, else ``last.ckpt``)."""


def launched_rank() -> int:
    """This process's rank as its launcher (Lightning, torchrun, SLURM) set it; 0 when none did."""
    return max(int(os.environ.get(name, "0") or 0) for name in RANK_VARIABLES)


def versions(parent: Path) -> list[Path]:
    """The run folders ``parent/version_<k>``, by k (the newest last)."""
    found = [(int(m.group(1)), p) for p in parent.glob("version_*") if (m := VERSION.fullmatch(p.name)) and p.is_dir()]
    return [path for _, path in sorted(found)]


def all_run_folders(root: str | Path = RUNS) -> set[Path]:
    """Every run folder below ``root`` (``root/<name>/version_<k>``)."""
    return {path for parent in Path(root).glob("*") for path in versions(parent)}


def run_folder_of(checkpoint: str | Path) -> Path | None:
    """The run folder a checkpoint file lies in (``.../<name>/version_<k>/checkpoints/x.ckpt``), or None."""
    path = Path(checkpoint)
    if path.parent.name == CHECKPOINTS and VERSION.fullmatch(path.parent.parent.name):
        return path.parent.parent
    if path.match(SLURM_CHECKPOINTS) and VERSION.fullmatch(path.parent.name):
        return path.parent
    return None


def new_run_folder(root: str | Path, name: str) -> Path:
    """Create and return ``root/name/version_<k>``, the lowest k not taken, atomically: two runs
    started at the same time in one folder get two folders.

    Only rank 0 creates it. A process that DDP launched from another one finds its launcher's
    folder in the environment; other ranks name the next free folder without creating it (what
    they name does not matter: only rank 0 writes, and Lightning broadcasts rank 0's folders).

    Raises:
        OSError: the folder cannot be created (a file in the way, no permission, disk full), with
            the path and the fix.
    """
    inherited = os.environ.get(RUN_FOLDER_VARIABLE)
    if inherited and int(os.environ.get("LOCAL_RANK", "0")) > 0:
        return Path(inherited)
    parent = Path(root) / name
    taken = versions(parent)
    version = int(VERSION.fullmatch(taken[-1].name).group(1)) + 1 if taken else 0
    while launched_rank() == 0:
        folder = parent / f"version_{version}"
        try:
            folder.mkdir(parents=True)
            break
        except FileExistsError:  # another run took it first
            version += 1
        except OSError as error:
            raise OSError(
                f"cannot create the run folder {str(folder)!r} ({error.strerror or error}): give a writable "
                "folder with --trainer.default_root_dir (runs go into <it>/<config name>/version_<k>)."
            ) from error
    return announce(parent / f"version_{version}")


def continue_run_folder(folder: Path) -> Path:
    """A resumed run's folder: its own (the launched DDP ranks are told so, as for a new one)."""
    return announce(folder)


def announce(folder: Path) -> Path:
    """Tell the processes this run launches (DDP ranks) its folder, and at rank 0 whoever started it
    and asked (:data:`RUN_FOLDER_REPORT_VARIABLE`); return it."""
    os.environ[RUN_FOLDER_VARIABLE] = str(folder)
    report = os.environ.get(RUN_FOLDER_REPORT_VARIABLE)
    if report and launched_rank() == 0:
        try:
            atomic_write_text(report, str(folder))
        except OSError as error:  # whoever asked has gone: the run goes on
            warnings.warn(f"could not report the run folder to {report}: {error}", stacklevel=2)
    return folder


def checkpoint_in(folder: Path, purpose: Purpose) -> Path | None:
    """The checkpoint of one run folder for ``purpose``, or None. To resume: ``last.ckpt``, or the
    ``hpc_ckpt_<n>.ckpt`` that Lightning's SLURM auto-requeue saved into the run folder when that
    one is newer (the only place where file times decide: both are the same run's)."""
    if purpose == "resume":
        candidates = [p for p in (folder / CHECKPOINTS / LAST, *folder.glob(SLURM_CHECKPOINTS)) if p.is_file()]
        return max(candidates, key=lambda path: path.stat().st_mtime_ns, default=None)
    return next((path for name in (BEST, LAST) if (path := folder / CHECKPOINTS / name).is_file()), None)


def resolve_checkpoint(
    value: str | Path, purpose: Purpose, runs_of_config: Path | None = None, option: str = ""
) -> Path:
    """The checkpoint file that ``value`` names, for every command that takes one.

    - a file: itself;
    - a run folder, ``runs/<name>/version_<k>``: its ``last.ckpt`` to resume, its ``best.ckpt``
      (else ``last.ckpt``) for its weights;
    - the folder of a config's runs, ``runs/<name>``: the same, in its newest run that has one
      (the highest k, not the newest file time);
    - ``last``: as ``runs_of_config``, the folder of this config's runs.

    Raises:
        FileNotFoundError: nothing is there, or no run holds the checkpoint wanted; the message
            names ``option`` (``--ckpt_path``, ``init_from``), what was looked for, and the fix.
    """
    where = f"{option}: " if option else ""
    wanted = LAST if purpose == "resume" else f"{BEST} or {LAST}"
    if str(value) == "last":
        if runs_of_config is None:
            raise FileNotFoundError(f"{where}'last' needs a config: give --config, or the checkpoint's path.")
        folder = runs_of_config
    else:
        folder = Path(value)
        if folder.is_file():
            return folder
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{where}{str(value)!r} does not exist. Give a checkpoint file (e.g. "
                f"runs/<config>/version_0/{CHECKPOINTS}/{BEST}), a run folder (runs/<config>/version_0), "
                "the folder of a config's runs (runs/<config>), or 'last'."
            )
    if VERSION.fullmatch(folder.name):
        runs = [folder]
    elif folder.name == CHECKPOINTS and VERSION.fullmatch(folder.parent.name):
        runs = [folder.parent]
    else:
        runs = versions(folder)
    for run in reversed(runs):
        if (found := checkpoint_in(run, purpose)) is not None:
            return found
    raise FileNotFoundError(
        f"{where}no run in {str(folder)!r} has a {CHECKPOINTS}/{wanted}"
        + (f" (runs: {', '.join(r.name for r in runs)})" if runs else " (it holds no run folder version_<k>)")
        + ". Did the run that should have written it finish a step? Give the checkpoint file itself otherwise."
    )


def saved_config(folder: str | Path) -> Path | None:
    """The ``config.yaml`` a run folder saved, or None when ``folder`` is not a run folder."""
    path = Path(folder) / CONFIG
    return path if VERSION.fullmatch(Path(folder).name) and path.is_file() else None


def run_of_config(config: str | Path) -> Path | None:
    """The run folder whose saved config ``config`` is, or None."""
    path = Path(config)
    return path.parent if path.name == CONFIG and saved_config(path.parent) == path else None


def check_free_space(folder: Path, needed_bytes: int) -> None:
    """Refuse to start when the disk holding ``folder`` has less free space than ``needed_bytes``."""
    existing = next(path for path in (folder, *folder.parents) if path.exists())  # other ranks may not have it yet
    free = shutil.disk_usage(existing).free
    if free < needed_bytes:
        raise OSError(
            f"the disk holding {str(folder)!r} has {free / 2**20:.0f} MiB free, but this run's checkpoints "
            f"need about {needed_bytes / 2**20:.0f} MiB: free some space, or give another folder with "
            "--trainer.default_root_dir."
        )
