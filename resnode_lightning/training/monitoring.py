"""What each training step costs, logged beside the loss: its wall time and its peak memory."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


def cpu_peak_reset() -> bool:
    """Reset the process's resident-set high-water mark (Linux); False where that is not allowed."""
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def cpu_resident_peak() -> int:
    """The process's resident-set high-water mark in bytes (VmHWM; Linux)."""
    for line in STATUS.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class StepCost(Callback):
    """Logs ``system/step_seconds`` (wall time of a training step: data transfer, forward, backward,
    optimizer) and ``system/peak_memory_mib`` (the step's peak: the CUDA allocator's on a GPU; the
    process's resident-set high-water mark on CPU, which also counts what the process held before
    the step), so that users see what the adjoint saves and costs.

    Args:
        every_n_steps: log every n-th step (the others are not measured).
    """

    def __init__(self, every_n_steps: int = 1) -> None:
        self.every_n_steps = every_n_steps
        self.started: float | None = None

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        self.started = None
        if trainer.global_step % self.every_n_steps:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        else:
            cpu_peak_reset()
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if self.started is None:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
            peak = torch.cuda.max_memory_allocated(pl_module.device)
        else:
            peak = cpu_resident_peak()
        pl_module.log("system/step_seconds", time.perf_counter() - self.started)
        pl_module.log("system/peak_memory_mib", peak / 2**20)
