"""Watching the adjoint's gradient error while training, and falling back to exact gradients."""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.nn import functional as F

from ..diagnostics import adjoint_gradient_errors
from ..models import named_stacks
from ..numerics import ResidualStack, check_count

Fallback = Literal["checkpoint", "backprop"]
MEASURES = ("median_relative_error", "max_relative_error", "cosine_similarity", "reconstruction_error")


class GradientErrorMonitor(Callback):
    """Every ``every_n_steps`` training steps, measures how far each adjoint stack's gradients are
    from exact ones on the first ``samples`` samples of the step's batch, before the step runs
    (:func:`~resnode_lightning.diagnostics.adjoint_gradient_errors`), and logs per stack, under
    ``gradcheck/<stack name>/``:

    - ``median_relative_error``, ``max_relative_error``: over the stack's parameter tensors, of
      ‖g − g*‖ / ‖g*‖, g the adjoint's gradient and g* backprop's (the same stack, same batch,
      same gradient of the loss at the stack's output);
    - ``cosine_similarity``: ⟨g, g*⟩ / (‖g‖ ‖g*‖) over all the stack's parameters together;
    - ``reconstruction_error``: ‖x̃_0 − x_0‖ / ‖x_0‖ of the input the reversed steps rebuild.

    The step itself is not disturbed: BatchNorm statistics, ``.grad``, the CPU and device random
    generators, train/eval modes and gradient modes are as they were. Under DDP the measures are
    averaged over the ranks (each measures its own slice), so every rank logs and decides alike.
    The stacks are the network's (``pl_module.network``, or the module itself) and so are their
    names (``stages.2.stack``). The loss is ``pl_module.loss(outputs, labels)`` where the module
    has one (:class:`~.classifier.ImageClassifier`), else the cross-entropy; batches are
    (inputs, labels). Its cost: one forward and backward of the slice plus one adjoint pass of
    each stack on it, every ``every_n_steps`` steps (``benchmarks/gradient_monitor_cost.py``).

    With ``fallback_threshold``, a stack whose median relative error is above it at ``patience``
    checks in a row switches to exact gradients (``gradient=fallback``) for the rest of the run;
    the switch is printed and logged (``gradcheck/<stack name>/fallback``: 1, and 0 on switching
    back). With ``switch_back_below``, such a stack is still measured (under the adjoint, for the
    measure only) and goes back to the adjoint once its median error is below that value. Switches
    are kept in checkpoints and applied again when a run resumes.

    Args:
        every_n_steps: measure at every n-th optimizer step (global step 0, n, 2n, ...).
        samples: how many samples of the batch to measure on (the first ones).
        fallback_threshold: median relative error above which a stack falls back to exact
            gradients; None: measure and log only.
        patience: consecutive checks above the threshold before the fallback.
        fallback: the exact gradient mode to switch to, ``"checkpoint"`` (memory O(√N)) or
            ``"backprop"`` (memory O(N)).
        switch_back_below: median relative error below which a fallen-back stack returns to
            the adjoint; None: never (the fallback lasts for the rest of the run).
    """

    def __init__(
        self,
        every_n_steps: int = 50,
        samples: int = 16,
        fallback_threshold: float | None = None,
        patience: int = 3,
        fallback: Fallback = "checkpoint",
        switch_back_below: float | None = None,
    ) -> None:
        self.every_n_steps = check_count("every_n_steps", every_n_steps, 1, "the training steps between checks")
        self.samples = check_count("samples", samples, 1, "the samples of the batch measured")
        self.patience = check_count("patience", patience, 1, "the checks in a row above fallback_threshold")
        if fallback not in ("checkpoint", "backprop"):
            raise ValueError(
                f"fallback={fallback!r} is not an exact gradient mode: give 'checkpoint' (recomputes, memory "
                "O(√N)) or 'backprop' (stores every activation)."
            )
        if switch_back_below is not None and (fallback_threshold is None or switch_back_below >= fallback_threshold):
            raise ValueError(
                f"switch_back_below={switch_back_below} needs a fallback_threshold above it (got "
                f"{fallback_threshold}): a stack falls back above fallback_threshold and returns below "
                "switch_back_below. Give fallback_threshold > switch_back_below, or switch_back_below: null."
            )
        self.fallback_threshold = fallback_threshold
        self.fallback = fallback
        self.switch_back_below = switch_back_below
        self.above: dict[str, int] = {}  # consecutive checks above the threshold, by stack
        self.switched: set[str] = set()  # stacks this callback moved to exact gradients
        self.last_metrics: dict[str, float] = {}
        self._checked_step: int | None = None

    # -- which stacks ---------------------------------------------------------------------
    @staticmethod
    def network(pl_module: LightningModule) -> nn.Module:
        return getattr(pl_module, "network", pl_module)

    def measured_stacks(self, pl_module: LightningModule) -> dict[str, ResidualStack]:
        """The stacks running the adjoint, and those switched away from it while they may return."""
        return {
            name: stack
            for name, stack in named_stacks(self.network(pl_module))
            if stack.gradient == "adjoint" or (name in self.switched and self.switch_back_below is not None)
        }

    # -- hooks ----------------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A resumed run: the stacks that had fallen back use exact gradients again."""
        stacks = dict(named_stacks(self.network(pl_module)))
        for name in self.switched:
            if name in stacks:
                stacks[name].gradient = self.fallback

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if step % self.every_n_steps or step == self._checked_step:  # once per step under accumulation
            return
        self._checked_step = step
        stacks = self.measured_stacks(pl_module)
        if not stacks:
            return
        inputs, labels = batch[0][: self.samples], batch[1][: self.samples]
        loss = getattr(pl_module, "loss", F.cross_entropy)
        with trainer.precision_plugin.train_step_context():
            errors = adjoint_gradient_errors(
                self.network(pl_module), inputs, lambda outputs: loss(outputs, labels), stacks
            )
        if not errors:
            return
        names = list(errors)
        measured = torch.tensor(
            [[errors[n].median, errors[n].max, errors[n].cosine_similarity, errors[n].reconstruction_error]
             for n in names],
            dtype=torch.float32, device=pl_module.device,  # float32: every backend reduces it
        )  # fmt: skip
        measured = trainer.strategy.reduce(measured, reduce_op="mean").cpu()
        metrics = {
            f"gradcheck/{name}/{measure}": value
            for name, row in zip(names, measured.tolist())
            for measure, value in zip(MEASURES, row)
        }
        for name, median in zip(names, measured[:, 0].tolist()):
            metrics.update(self.decide(name, stacks[name], median, step))
        self.last_metrics = metrics
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    # -- the fallback ---------------------------------------------------------------------
    def decide(self, name: str, stack: ResidualStack, median: float, step: int) -> dict[str, float]:
        """Switch ``stack`` to exact gradients, or back to the adjoint, by its median error
        (the same on every rank); returns the metric of a switch, if one happened."""
        if self.fallback_threshold is None:
            return {}
        if name in self.switched:
            if median < self.switch_back_below:
                stack.gradient = "adjoint"
                self.switched.discard(name)
                self.above[name] = 0
                rank_zero_info(
                    f"GradientErrorMonitor: {name} returns to gradient='adjoint' at step {step}: median relative "
                    f"gradient error {median:.3g} < switch_back_below={self.switch_back_below}."
                )
                return {f"gradcheck/{name}/fallback": 0.0}
            return {}
        self.above[name] = self.above.get(name, 0) + 1 if median > self.fallback_threshold else 0
        if self.above[name] < self.patience:
            return {}
        stack.gradient = self.fallback
        self.switched.add(name)
        rank_zero_info(
            f"GradientErrorMonitor: {name} switches from the adjoint to gradient={self.fallback!r} at step {step}: "
            f"median relative gradient error {median:.3g} > fallback_threshold={self.fallback_threshold} at "
            f"{self.patience} check(s) in a row."
        )
        return {f"gradcheck/{name}/fallback": 1.0}

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"switched": sorted(self.switched), "above": dict(self.above)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.switched = set(state_dict.get("switched", []))
        self.above = dict(state_dict.get("above", {}))

