"""The adjoint's gradient error over depths: a network deepened to each depth, every stack under
Euler and then Heun, each measured against backprop (the paper's Figure 3c; torch only)."""

from __future__ import annotations

import copy
import math
import statistics
from typing import Any

from torch import Tensor, nn

from ..models import deepen, named_stacks
from ..numerics import Interpolation
from .gradient_error import adjoint_gradient_errors
from .smoothness import network_smoothness

SCHEMES = ("euler", "heun")


def measure(
    network: nn.Module, inputs: Tensor, loss, depths: list[int], interpolation: Interpolation
) -> list[dict[str, Any]]:
    """One row per depth and scheme: the errors of every stack, and their median and max; and the
    smoothness in depth of the deepened weights (:mod:`.smoothness`), whose largest relative Δ is
    ``max_relative_step``."""
    rows = []
    for depth in depths:
        deep = deepen(copy.deepcopy(network), depth, interpolation)
        stacks = dict(named_stacks(deep))
        smoothness = network_smoothness(deep)
        for scheme in SCHEMES:
            for stack in stacks.values():
                stack.scheme = scheme
            errors = adjoint_gradient_errors(deep, inputs, loss, stacks)
            every = [e for error in errors.values() for e in error.relative_errors.values()]
            rows.append({
                "depth": depth, "scheme": scheme,
                "stack_depths": {name: stack.depth for name, stack in stacks.items()},
                "median": statistics.median(every) if every else math.nan, "max": max(every, default=math.nan),
                "max_relative_step": max((s.relative for s in smoothness.values()), default=0.0),
                "stacks": {
                    name: {"relative_errors": error.relative_errors, "cosine_similarity": error.cosine_similarity,
                           "reconstruction_error": error.reconstruction_error,
                           "depth_smoothness": vars(smoothness[name])}
                    for name, error in errors.items()
                },
            })  # fmt: skip
    return rows
