"""A scheduler's signals: every one leaves a resumable run and a non-zero exit status.

SLURM and most schedulers send SIGTERM before they stop a job (preemption, time limit); SLURM
sends SIGUSR1 (``--signal=USR1@90``) where a job asked for a warning. Lightning turns SIGTERM
into a stop of the loops (and, under SLURM with auto-requeue, SIGUSR1 into a checkpoint and a
requeue, which is left to it). Here a SIGUSR1 that Lightning does not handle is made a SIGTERM,
the training stops after its current step with a checkpoint
(:class:`~resnode_lightning.training.interruption.CheckpointOnSignal`), and the process exits with
128 + the signal's number, as a shell reports a process killed by it.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import Any

from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException


class TrainingStarted(Callback):
    """Tells the recorder that training runs: from the first step on, a signal stops the run with a
    checkpoint; before it (setup, data, the sanity check) it stops the process at once. A signal that
    came in between is acted on here."""

    def __init__(self, recorder: SignalRecorder) -> None:
        self.recorder = recorder

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.recorder.trainer_running = True
        if self.recorder.received is not None:
            raise SIGTERMException()


class SignalRecorder:
    """Remembers the first stopping signal this process received.

    Before the trainer runs (parsing, building, loading data) there is nothing to save: the
    process exits at once. Once :attr:`trainer_running` is set, SIGTERM's handler records and
    returns, and Lightning's own handler, which it composes with the one it finds, stops the
    loops. SIGUSR1, outside a SLURM job that requeues with it, is recorded and sent on to this
    process as SIGTERM.
    """

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self.trainer_running = False
        self.stop_hint = ""
        self.previous: dict[int, Any] = {}
        self.depth = 0
        self.training_started = TrainingStarted(self)

    def install(self) -> None:
        """Handle SIGTERM (and SIGUSR1 outside SLURM) from now on, afresh; :meth:`uninstall` puts
        the previous handlers back (a Python caller's process is left as it was). Nested calls (a
        command run from within another, as a sweep checks its runs) keep the outer installation."""
        self.depth += 1
        if self.depth > 1:
            return
        depth = self.depth
        self.__init__()
        self.depth = depth
        handlers = {signal.SIGTERM: self.on_sigterm}
        if hasattr(signal, "SIGUSR1") and not SLURMEnvironment.detect():
            handlers[signal.SIGUSR1] = self.on_sigusr1
        for number, handler in handlers.items():
            self.previous[number] = signal.signal(number, handler)

    def uninstall(self) -> None:
        self.depth -= 1
        if self.depth > 0:
            return
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous = {}

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.received = self.received or signal.Signals(signum)
        if not self.trainer_running:
            sys.stderr.write(f"Stopped by {self.received.name} before training started: nothing to save.\n")
            raise SystemExit(self.exit_status)

    def on_sigusr1(self, signum: int, frame: FrameType | None) -> None:
        self.received = self.received or signal.Signals(signum)
        os.kill(os.getpid(), signal.SIGTERM)

    @property
    def exit_status(self) -> int:
        """128 + the signal's number (143 for SIGTERM)."""
        return 128 + int(self.received or signal.SIGTERM)
