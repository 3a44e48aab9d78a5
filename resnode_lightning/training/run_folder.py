"""One folder per run: ``runs/<name>/version_<k>/`` holds its config, checkpoints and every logger's files."""

from __future__ import annotations

import os
import re
from pathlib import Path

RUN_FOLDER_VARIABLE = "RESNODE_RUN_FOLDER"
"""Set by a run for the processes it launches (DDP ranks), so that all of them name the same folder."""


def new_run_folder(root: str | Path, name: str) -> Path:
    """``root/name/version_<k>`` with k one more than the largest version there (0 for the first).

    Nothing is created here: rank 0 creates the folder when it first writes. A process that DDP
    launched from another one (``LOCAL_RANK`` > 0) takes its launcher's folder, which it finds in
    the environment, instead of choosing the next free one.
    """
    inherited = os.environ.get(RUN_FOLDER_VARIABLE)
    if inherited and int(os.environ.get("LOCAL_RANK", "0")) > 0:
        return Path(inherited)
    parent = Path(root) / name
    versions = [int(m.group(1)) for p in parent.glob("version_*") if (m := re.fullmatch(r"version_(\d+)", p.name))]
    folder = parent / f"version_{max(versions, default=-1) + 1}"
    os.environ[RUN_FOLDER_VARIABLE] = str(folder)
    return folder
