"""The 1-D ResNet of the paper's Figure 1: a deep scalar ResNet and its trajectories.

The flow of a 1-D Neural ODE dx/ds = f(x, s) is increasing in x: trajectories never cross, so
it cannot map x to −x. A ResNet x_{n+1} = x_n + h f_n(x_n) can, with a step that is not order
preserving (h f_n' < −1 somewhere): learning x ↦ x gives smooth, non-crossing trajectories,
learning x ↦ −x gives crossing ones, and that network is no discretisation of an ODE.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..numerics import ResidualStack, StepRule


def scalar_residual(width: int) -> nn.Module:
    """f(x; θ) = Σ_j u_j tanh(w_j x + b_j) + c on a batch of scalars, (B, 1) → (B, 1)."""
    return nn.Sequential(nn.Linear(1, width), nn.Tanh(), nn.Linear(width, 1))


class ScalarResNet(nn.Module):
    """x ↦ x_N with x_{n+1} = x_n + h f(x_n; θ_n), x a scalar and f a one-hidden-layer tanh net.

    Args:
        depth: N, the number of layers (300 in the paper's Figure 1).
        width: hidden units of each residual function.
        step: ``"1/depth"`` (h = 1/N), ``"1"`` (h = 1) or a positive number (h itself).
    """

    def __init__(self, depth: int = 300, width: int = 4, step: StepRule = "1/depth") -> None:
        super().__init__()
        self.stack = ResidualStack([scalar_residual(width) for _ in range(depth)], step=step)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 1) → (B, 1)."""
        return self.stack(x)

    def trajectory(self, x: Tensor) -> Tensor:
        """The states x_0 .. x_N of a batch of inputs (B, 1), as a (N + 1, B) tensor."""
        return self.stack.states(x)[..., 0]


def fit_scalar_map(
    model: ScalarResNet,
    target: Callable[[Tensor], Tensor],
    inputs: Tensor,
    learning_rate: float = 0.01,
    steps: int = 500,
) -> float:
    """Fit x_N ≈ target(x) on the (B, 1) ``inputs`` by ``steps`` Adam steps on the mean squared
    error; returns the loss of the last step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = (model(inputs) - target(inputs)).square().mean()
        loss.backward()
        optimizer.step()
    return loss.item()


def trajectories_cross(trajectory: Tensor) -> bool:
    """Whether two of the B trajectories in a (N + 1, B) tensor swap order (or meet) at some layer,
    which the flow of a 1-D ODE never does."""
    ordered = trajectory[:, trajectory[0].argsort()]
    return bool((ordered.diff(dim=1) <= 0).any())
