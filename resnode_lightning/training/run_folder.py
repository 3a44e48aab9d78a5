"""One folder per run: ``runs/<name>/version_<k>/`` holds its config, checkpoints and every logger's files."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

RUNS = "runs"
"""Where runs go by default (below the working directory): ``runs/<name>/version_<k>``."""
RUN_FOLDER_VARIABLE = "RESNODE_RUN_FOLDER"
"""Set by a run for the processes it launches (DDP ranks), so that all of them name the same folder."""
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID")


def launched_rank() -> int:
    """This process's rank as its launcher (Lightning, torchrun, SLURM) set it; 0 when none did."""
    return max(int(os.environ.get(name, "0") or 0) for name in RANK_VARIABLES)


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
    versions = [int(m.group(1)) for p in parent.glob("version_*") if (m := re.fullmatch(r"version_(\d+)", p.name))]
    version = max(versions, default=-1) + 1
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
    folder = parent / f"version_{version}"
    os.environ[RUN_FOLDER_VARIABLE] = str(folder)
    return folder


def check_free_space(folder: Path, needed_bytes: int) -> None:
    """Refuse to start when the disk holding ``folder`` has less free space than ``needed_bytes``."""
    free = shutil.disk_usage(folder if folder.exists() else folder.parent).free
    if free < needed_bytes:
        raise OSError(
            f"the disk holding {str(folder)!r} has {free / 2**20:.0f} MiB free, but this run's checkpoints "
            f"need about {needed_bytes / 2**20:.0f} MiB: free some space, or give another folder with "
            "--trainer.default_root_dir."
        )
