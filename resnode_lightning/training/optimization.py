"""Optimizers and learning-rate schedules built from YAML: parameter groups by rule, warm-up.

The optimizer and the scheduler are injected as callables (``OptimizerCallable``,
``LRSchedulerCallable``), so a config names any ``torch.optim`` class by ``class_path``; this
module only decides which parameters go into which group and stacks a linear warm-up in front.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..models import named_stacks


def parameter_groups(
    network: nn.Module, no_weight_decay_on_norms_and_biases: bool = False, scale_stack_lr_by_depth: bool = False
) -> list[dict[str, Any]]:
    """The trainable parameters of ``network`` split into optimizer parameter groups by two rules.

    - ``no_weight_decay_on_norms_and_biases``: tensors of at most one dimension (biases, the
      scales and shifts of normalisation layers) get ``weight_decay = 0``.
    - ``scale_stack_lr_by_depth``: the parameters of a residual stack of depth N get the learning
      rate N · lr (``lr_scale = N``; applied by :func:`apply_lr_scales`). With h = 1/N the gradient
      of each θ_n is O(1/N), so this keeps the per-step change of θ_n independent of the depth
      (the ``--adaptive`` option of the paper's code). Tied blocks count once per stack.

    Frozen parameters (``requires_grad=False``) are left out. With both rules off there is one
    group holding every trainable parameter; with several, each is named by :func:`group_name`.
    """
    stack_depth = {id(parameter): stack.depth for _, stack in named_stacks(network) for parameter in stack.parameters()}
    groups: dict[tuple[bool, int], list[nn.Parameter]] = {}
    for parameter in dict.fromkeys(network.parameters()):  # unique, in order: tied weights once
        if not parameter.requires_grad:
            continue
        decays = not (no_weight_decay_on_norms_and_biases and parameter.ndim <= 1)
        lr_scale = stack_depth.get(id(parameter), 1) if scale_stack_lr_by_depth else 1
        groups.setdefault((decays, lr_scale), []).append(parameter)
    named = len(groups) > 1  # LearningRateMonitor logs train/lr/<name> for each
    return [
        {
            "params": params,
            "lr_scale": lr_scale,
            **({} if decays else {"weight_decay": 0.0}),
            **({"name": group_name(decays, lr_scale)} if named else {}),
        }
        for (decays, lr_scale), params in groups.items()
    ]


def group_name(decays: bool, lr_scale: int) -> str:
    """``lr_x8``, ``no_decay``, ``lr_x8_no_decay`` or ``rest``: what sets a group apart."""
    return "_".join([*([f"lr_x{lr_scale}"] if lr_scale != 1 else []), *([] if decays else ["no_decay"])]) or "rest"


def apply_lr_scales(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Multiply each group's learning rate by its ``lr_scale`` (in place, returns the optimizer).

    Call it before a scheduler is built on the optimizer: schedulers take each group's current
    learning rate as its base, so the scale then holds through the whole schedule.
    """
    for group in optimizer.param_groups:
        group["lr"] *= group.get("lr_scale", 1)
    return optimizer


def warmup(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LinearLR:
    """Linear warm-up over the first ``steps`` optimizer steps, from lr/steps up to lr.

    A chainable scheduler: stepped every optimizer step beside an epoch-wise schedule (cosine,
    multi-step), the learning rate is the product of both factors.
    """
    return torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=1 / steps, end_factor=1.0, total_iters=max(steps - 1, 1)
    )
