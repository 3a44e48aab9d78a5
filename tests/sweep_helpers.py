"""Test-only pieces for tests/test_sweeps.py, importable by the runs of a sweep that have this
folder on PYTHONPATH (``--trainer.callbacks+=sweep_helpers.StopTheSweepOnce``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from lightning.pytorch import Callback


class StopTheSweepOnce(Callback):
    """Sends SIGTERM to the process that started this run (its sweep) once optimizer step ``step``
    is done, as a scheduler stopping the sweep's job would; once only: ``marker``, a file in the
    working folder, records it, so that the run continued later trains to its end."""

    def __init__(self, step: int = 1, marker: str = "sweep_stopped") -> None:
        self.step, self.marker = step, Path(marker)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and not self.marker.exists():
            self.marker.write_text(f"{os.getpid()}\n")
            os.kill(os.getppid(), signal.SIGTERM)
