"""The linear ResNet of the paper's section 3.2: deep matrix factorisation, and its limit in depth.

With f(x; θ) = θx (θ a d×d matrix) and h = 1/N, a stack of depth N maps x to Π^N x with

    Π^N = (I + θ_{N−1}/N) ⋯ (I + θ_0/N).

Fitting data (x_k, y_k) is the deep matrix factorisation problem (paper eq. 5)

    min_θ L(θ) = ‖Π^N − B‖²_Σ = Tr((Π^N − B) Σ (Π^N − B)^T),

Σ the covariance of the inputs, B the least-squares map. Each gradient ∇_{θ_n} L is O(1/N), so the
paper trains by the rescaled gradient flow dθ_n/dt = −N ∇_{θ_n} L. Under its Assumption 1 (small
initial loss ℓ^N(0) < ε and small initial weights ‖θ_n(0)‖ ≤ 1/4), with weights Lipschitz in
depth at t = 0 (‖θ_{n+1}(0) − θ_n(0)‖ ≤ C/N, e.g. all equal), the weights stay Lipschitz in depth,
‖θ_{n+1}(t) − θ_n(t)‖ = O(1/N) for all t (Prop. 2), and s ↦ θ_{⌊Ns⌋}(t) converges uniformly as
N → ∞, at rate 1/N, to a Lipschitz limit θ(s, t) (Th. 1; the paper's Figure 2): the ResNet
converges to a Neural ODE.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..numerics import ResidualStack


class LinearResidual(nn.Module):
    """f(x; θ) = θx on a batch of row vectors, (B, d) → (B, d); θ starts at 0."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.theta.T


class LinearResNet(nn.Module):
    """x ↦ Π^N x, a residual stack of N linear residual functions θ_n x with h = 1/N (Euler).

    All θ_n start at 0, a constant initialisation (Lipschitz in depth, ‖θ_n(0)‖ = 0 ≤ 1/4):
    Assumption 1 then only asks for a small initial loss ‖I − B‖²_Σ, a target B near I.

    Args:
        dim: d, the dimension of the inputs and of the matrices θ_n.
        depth: N, the number of residual layers.
    """

    def __init__(self, dim: int, depth: int) -> None:
        super().__init__()
        self.dim = dim
        self.stack = ResidualStack([LinearResidual(dim) for _ in range(depth)])

    @property
    def weights(self) -> Tensor:
        """θ_0 .. θ_{N−1} as one (N, d, d) tensor."""
        return torch.stack([block.theta for block in self.stack.blocks])

    def product(self) -> Tensor:
        """Π^N = (I + θ_{N−1}/N) ⋯ (I + θ_0/N), the matrix the network applies."""
        theta = self.stack.blocks[0].theta
        identity = torch.eye(self.dim, dtype=theta.dtype, device=theta.device)
        return self.stack(identity).T  # rows of the output are (Π^N e_i)^T

    def forward(self, x: Tensor) -> Tensor:
        """(B, d) → (B, d): each row x ↦ Π^N x."""
        return self.stack(x)


def factorisation_loss(product: Tensor, target: Tensor, covariance: Tensor | None = None) -> Tensor:
    """L = ‖Π − B‖²_Σ = Tr((Π − B) Σ (Π − B)^T) (Σ = I when ``covariance`` is None)."""
    error = product - target
    if covariance is None:
        return (error * error).sum()
    return torch.trace(error @ covariance @ error.T)


def train_by_gradient_flow(
    model: LinearResNet,
    target: Tensor,
    covariance: Tensor | None = None,
    learning_rate: float = 0.1,
    steps: int = 1000,
) -> Tensor:
    """Train by the rescaled gradient flow dθ_n/dt = −N ∇_{θ_n} L, discretised by explicit steps

        θ_n ← θ_n − η N ∇_{θ_n} L,    L = ‖Π^N − B‖²_Σ,

    for ``steps`` steps of size η (flow time t = η·steps, the same for every N). Returns the
    trained weights θ_0 .. θ_{N−1} as a detached (N, d, d) tensor; the model is trained in place.

    Args:
        model: the linear ResNet, of depth N.
        target: B, the (d, d) matrix to factorise.
        covariance: Σ, the (d, d) covariance of the inputs; None for the identity.
        learning_rate: η, the step of the gradient flow's time.
        steps: number of steps.
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate * model.stack.depth)
    for _ in range(steps):
        optimizer.zero_grad()
        factorisation_loss(model.product(), target, covariance).backward()
        optimizer.step()
    return model.weights.detach()


def weights_in_depth(weights: Tensor, points: int) -> Tensor:
    """Sample s ↦ θ_{⌊Ns⌋} at s = 0, 1/points, .., (points − 1)/points: (points, d, d).

    Puts weights of networks of different depths on one grid of s ∈ [0, 1) to compare them
    (the paper's sup_s ‖Ψ_N(s) − Ψ(s)‖ of Figure 2 with the deepest network as Ψ).
    """
    depth = len(weights)
    return weights[[i * depth // points for i in range(points)]]
