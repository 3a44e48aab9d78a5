"""Stopping a run on a scheduler's signal with a checkpoint it can resume from."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException


class CheckpointOnSignal(Callback):
    """When the trainer has received SIGTERM, stop after the current training step and save
    ``<dirpath>/last.ckpt`` there, in the same hook where step checkpoints are saved, so that
    ``--ckpt_path`` resumes at the next step exactly as from a step checkpoint.

    Lightning alone stops the loops without saving anything, and its exception is a SystemExit
    with status 0. Under DDP, Lightning raises on every rank at once (rank 0's signal is
    broadcast); the checkpoint is then written from :meth:`on_exception`, on every rank together.
    The process's exit status is the shell's business (:mod:`resnode_lightning.cli.signals`).

    Args:
        dirpath: the run's checkpoint folder.
    """

    def __init__(self, dirpath: str | Path) -> None:
        self.path = Path(dirpath) / "last.ckpt"
        self.saved_at_step: int | None = None

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if trainer.received_sigterm and trainer.world_size == 1:
            self.save(trainer)
            raise SIGTERMException()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and self.saved_at_step != trainer.global_step:
            self.save(trainer)

    def save(self, trainer: Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # everything a resume needs
        self.saved_at_step = trainer.global_step
