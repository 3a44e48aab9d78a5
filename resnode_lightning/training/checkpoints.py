"""Finding the checkpoint a user means: a file, or the run folder that ``resnode fit`` wrote."""

from __future__ import annotations

from pathlib import Path


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file that ``path`` names.

    A file is itself. A run folder is searched for its checkpoints: ``runs/<config>`` (all its
    runs) or ``runs/<config>/<version>`` (one run); the newest run's ``best.ckpt`` is taken, or its
    ``last.ckpt`` when it has no best one.

    Raises:
        FileNotFoundError: nothing is at ``path``, or the folder holds no checkpoint.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(
            f"init_from: {str(path)!r} does not exist. Give a checkpoint file (e.g. "
            "runs/<config>/version_0/checkpoints/best.ckpt), a state dict saved by torch.save, or the "
            "run folder of an earlier `resnode fit` (e.g. runs/<config>)."
        )
    found = [p for name in ("best.ckpt", "last.ckpt") for p in path.rglob(name)]
    if not found:
        raise FileNotFoundError(
            f"init_from: the folder {str(path)!r} holds no best.ckpt or last.ckpt. Did the run that "
            "should have written them finish an epoch? Give the checkpoint file itself otherwise."
        )
    newest_run = max(found, key=lambda p: p.parent.stat().st_mtime).parent
    return next(p for name in ("best.ckpt", "last.ckpt") if (p := newest_run / name).is_file())
