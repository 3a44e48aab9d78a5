"""Optimizer steps with a non-finite loss or gradient are skipped; too many in a row stop training."""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from ..models import named_stacks


class NonFiniteTrainingError(RuntimeError):
    """Training stopped: too many consecutive steps had a non-finite loss or gradient."""


class SkipNonFiniteSteps(Callback):
    """Skips every optimizer step whose loss or gradients hold a NaN or an infinity, so that the
    value never reaches the weights or the optimizer's state, and stops training after
    ``stop_after`` such steps in a row.

    The check runs when the gradients are final (``on_before_optimizer_step``: after backward,
    the gradient all-reduce of DDP and the loss scaler's unscaling; before clipping), on the loss
    of every micro-batch that contributed and on every gradient of the optimizer's parameters, a
    NaN born inside the adjoint's backward included. To skip, it sets every gradient to None:
    ``torch.optim`` optimizers leave a parameter without a gradient alone (no update, no
    momentum, no weight decay, no step count), unlike a zero gradient. The module's buffers are
    put back as they were before the step's first forward pass, so that BatchNorm's running
    statistics do not keep the bad batch's (possibly non-finite) ones. The skipped step still
    counts as a step (the global step and a per-step schedule advance, its batch is consumed),
    as for a step the loss scaler skips.

    ``train/skipped_steps`` logs the total so far and a warning names each skipped step. With a
    loss scaler (``16-mixed``) a gradient overflow is skipped by the scaler, which also lowers
    its scale; the step is counted here once, as any skipped step. Under DDP the gradients are
    already averaged over ranks, so a non-finite one on any rank is non-finite on all of them;
    the loss is not, so the verdict is reduced over ranks (any rank bad: every rank skips) and
    all ranks take the same decision.

    The error that stops training names the step, whether the loss was finite, and the last
    parameter, in the module's order, with a non-finite gradient, with its residual stack:
    backward runs from the loss towards the input, so that is where the value was born (a value
    born in a block's backward reaches that block's parameters and every parameter before it).

    Args:
        stop_after: stop with :class:`NonFiniteTrainingError` after this many consecutive skipped
            steps; 0 never stops (every bad step is still skipped).
    """

    def __init__(self, stop_after: int = 5) -> None:
        if stop_after < 0:
            raise ValueError(f"stop_after={stop_after} must be 0 (never stop) or a number of steps >= 1.")
        self.stop_after = stop_after
        self.skipped = 0  # skipped steps so far in the run
        self.consecutive = 0  # skipped steps in a row up to now
        self.loss_finite: Tensor | bool = True  # of the micro-batches since the last optimizer step
        self.buffers: list[Tensor] | None = None  # the module's buffers before the step's first micro-batch

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self.buffers is None:
            self.buffers = [buffer.detach().clone() for buffer in pl_module.buffers()]

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: Tensor) -> None:
        self.loss_finite = torch.isfinite(loss.detach()).all() & self.loss_finite  # no sync until the step

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        gradients = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        finite = self.loss_finite
        if gradients:  # the largest |g|: NaN if any entry is NaN, inf if any is infinite
            finite = finite & torch.isfinite(torch.nn.utils.get_total_norm(gradients, math.inf))
        loss_finite, self.loss_finite = self.loss_finite, True
        buffers, self.buffers = self.buffers, None
        bad = trainer.strategy.reduce_boolean_decision(not bool(finite), all=False)  # the one sync per step
        if not bad:
            self.consecutive = 0
        else:
            self.skip(trainer, pl_module, optimizer, bool(loss_finite))
            for buffer, saved in zip(pl_module.buffers(), buffers or [], strict=bool(buffers)):
                buffer.copy_(saved)
        pl_module.log("train/skipped_steps", float(self.skipped))

    def skip(self, trainer: Trainer, pl_module: LightningModule, optimizer, loss_finite: bool) -> None:
        """Count the bad step, stop if it is one too many in a row, or warn and drop the gradients."""
        self.skipped += 1
        self.consecutive += 1
        where = describe_non_finite(pl_module, loss_finite)
        if self.stop_after and self.consecutive >= self.stop_after:
            raise NonFiniteTrainingError(
                f"Training stopped at step {trainer.global_step}: {self.consecutive} consecutive steps had a "
                f"non-finite loss or gradient (skip_non_finite.stop_after={self.stop_after}); at this step {where}. "
                "Lower the learning rate, add warm-up or gradient clipping, check the data, or set "
                "skip_non_finite.stop_after to 0 to go on skipping."
            )
        rank_zero_warn(
            f"Skipped step {trainer.global_step} (epoch {trainer.current_epoch}): {where}. The weights and the "
            "optimizer state are unchanged."
        )
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                parameter.grad = None

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "consecutive": self.consecutive}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped, self.consecutive = state_dict["skipped"], state_dict["consecutive"]


def describe_non_finite(module: torch.nn.Module, loss_finite: bool) -> str:
    """Where the non-finite values are: the loss, and the last parameter (in the module's order)
    with a non-finite gradient, with the residual stack holding it."""
    loss = "the loss was finite" if loss_finite else "the loss was not finite"
    bad = [
        name
        for name, parameter in module.named_parameters()
        if parameter.grad is not None and not torch.isfinite(parameter.grad).all()
    ]
    if not bad:
        return f"{loss} and every gradient was finite"
    stack = next((name for name, _ in named_stacks(module) if bad[-1].startswith(f"{name}.")), None)
    place = f"in stack {stack}, parameter {bad[-1]}" if stack else f"in parameter {bad[-1]} (outside the stacks)"
    return (
        f"{loss}; the non-finite gradients start {place}, the last of {len(bad)} parameters with one "
        "(backward runs from the loss towards the input)"
    )
