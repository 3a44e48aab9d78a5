"""How smooth a residual stack's weights are in depth (torch only).

The Heun adjoint's reversal error is O(h³) plus O(h² ‖θ_{n+1} − θ_n‖) per step: it beats Euler's
when consecutive blocks have close weights. The paper proves that training makes them so,
Δ_N = max_n ‖θ_{n+1} − θ_n‖ → 0 as N grows, for linear ResNets only. This measures Δ_N on any
stack, so that it can be read off a trained convolutional network (``resnode gradcheck`` prints it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..models import named_stacks
from ..numerics import ResidualStack


@dataclass(frozen=True)
class DepthSmoothness:
    """Δ = max_n ‖θ_{n+1} − θ_n‖ over consecutive blocks of one stack, θ_n all the parameters of
    block n as one vector; ``relative`` is Δ / max_n ‖θ_n‖ (0 for a tied or one-block stack), and
    ``mean_step`` the mean of ‖θ_{n+1} − θ_n‖."""

    max_step: float
    relative: float
    mean_step: float


def block_vector(block: nn.Module) -> Tensor:
    """θ_n: every parameter of a block, flattened into one float64 vector."""
    return torch.cat([p.detach().reshape(-1).double() for p in block.parameters()])


def depth_smoothness(stack: ResidualStack) -> DepthSmoothness:
    """Δ of one stack (:class:`DepthSmoothness`)."""
    if stack.depth < 2 or stack.is_tied or not any(True for _ in stack.blocks[0].parameters()):
        return DepthSmoothness(0.0, 0.0, 0.0)
    thetas = torch.stack([block_vector(block) for block in stack.blocks])
    steps = (thetas[1:] - thetas[:-1]).norm(dim=1)
    largest = thetas.norm(dim=1).max().item()
    return DepthSmoothness(steps.max().item(), steps.max().item() / largest if largest else 0.0, steps.mean().item())


def network_smoothness(network: nn.Module) -> dict[str, DepthSmoothness]:
    """:func:`depth_smoothness` of every residual stack of a network, by its dotted name."""
    return {name: depth_smoothness(stack) for name, stack in named_stacks(network)}
