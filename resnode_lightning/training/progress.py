"""The progress bar of a run resumed in the middle of an epoch."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer


class ResumedEpochProgress(Callback):
    """Gives the progress bar its epoch when a run resumes in the middle of one.

    Lightning calls ``on_train_epoch_start`` only when an epoch starts, so a run resumed from a
    step checkpoint inside an epoch shows a bar that knows neither the epoch nor its length
    (TQDM: ``Training: 41/?``). Before the first batch after such a resume, this calls the progress
    bar's own ``on_train_epoch_start``, and the bar reads ``Epoch 3: 41/50`` as it would have.
    """

    def __init__(self) -> None:
        self.pending = False

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.pending = getattr(trainer.fit_loop, "restarted_mid_epoch", False)  # Lightning 2.5 and later

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self.pending and trainer.progress_bar_callback is not None:
            trainer.progress_bar_callback.on_train_epoch_start(trainer, pl_module)
        self.pending = False
