"""Step rules of a residual stack: one explicit ODE step and its reversal, written once.

A residual stack of depth N integrates dx/ds = f(x; θ(s)) on s ∈ [0, 1] (or [0, N] with the
classical step h = 1) with N steps. Step n, from x_n to x_{n+1}, sees the residual function
f_n = f(·; θ_n) and, for two-stage rules, f_{n+1}. The forward pass, the memory-free adjoint
and the checkpointed path all call the functions below, so the rules live in one place.

Each rule returns, besides x_{n+1}, its first evaluation k = f_n(x_n): the adjoint reuses it to
rebuild the previous state when the next reversal needs exactly that evaluation.

Each rule also states its Butcher tableau (``stages``): the adjoint differentiates a step stage by
stage from it, without differentiating the combination x_{n+1} = x_n + h Σ_i b_i k_i.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

ResidualFunction = Callable[[Tensor], Tensor]
SchemeName = Literal["euler", "heun"]


@dataclass(frozen=True)
class Stage:
    """Stage i of an explicit Runge-Kutta step, one row of its Butcher tableau:

    k_i = f(x_n + h Σ_{j<i} a_j k_j)   with f = f_{n+1} if ``next`` else f_n
    x_{n+1} = x_n + h Σ_i b_i k_i
    """

    next: bool
    a: tuple[float, ...]
    b: float


class Euler:
    """Explicit Euler: order 1, one evaluation of f per step (a ResNet).

    step:     x_{n+1} = x_n + h f_n(x_n)
    reversal: x̃_n = x̃_{n+1} − h f_n(x̃_{n+1})          (docs/method.md, paper eq. 6)

    The reversal is exact only where f_n is constant along the step; its local error is
    O(h² Lip(f)), which adds up to the O(1/N) gradient error of the adjoint (Prop. 3-4).
    """

    name = "euler"
    order = 1
    # The reversal's one evaluation is f_n(x̃_{n+1}): it uses the step's own function.
    reversal_evaluates_next = False
    stages = (Stage(next=False, a=(), b=1.0),)

    @staticmethod
    def step(x: Tensor, h: float, f: ResidualFunction, f_next: ResidualFunction) -> tuple[Tensor, Tensor]:
        k = f(x)
        return x.add(k, alpha=h), k

    @staticmethod
    def reverse(
        x_next: Tensor, h: float, f: ResidualFunction, f_next: ResidualFunction, first: Tensor
    ) -> Tensor:
        """Rebuild x_n from x_{n+1}; ``first`` is f_n(x_{n+1})."""
        return x_next.add(first, alpha=-h)


class Heun:
    """Heun's method (explicit trapezoid): order 2, two evaluations of f per step (a HeunNet).

    step:     y_n = x_n + h f_n(x_n)
              x_{n+1} = x_n + h/2 [f_n(x_n) + f_{n+1}(y_n)]      (paper eq. 8)
    reversal: ỹ_n = x̃_{n+1} − h f_{n+1}(x̃_{n+1})
              x̃_n = x̃_{n+1} − h/2 [f_{n+1}(x̃_{n+1}) + f_n(ỹ_n)]  (paper eq. 9)

    The last step has no θ_N: it is closed with θ_{N−1}, i.e. f_N := f_{N−1}. The stack then
    takes N full steps and covers all of [0, 1]; with tied weights every step is the textbook
    Heun step, so the global error is O(h²). (The reference code instead takes N−1 steps and
    stops at s = (N−1)/N.) The reversal's local error is O(h³) plus O(h² ‖θ_{n+1} − θ_n‖): it
    beats Euler's when the weights vary smoothly in depth (Prop. 5-6).
    """

    name = "heun"
    order = 2
    # The reversal starts with f_{n+1}(x̃_{n+1}), the first evaluation of step n+1.
    reversal_evaluates_next = True
    stages = (Stage(next=False, a=(), b=0.5), Stage(next=True, a=(1.0,), b=0.5))

    @staticmethod
    def step(x: Tensor, h: float, f: ResidualFunction, f_next: ResidualFunction) -> tuple[Tensor, Tensor]:
        k1 = f(x)
        k2 = f_next(x.add(k1, alpha=h))
        return x.add(k1 + k2, alpha=h / 2), k1

    @staticmethod
    def reverse(
        x_next: Tensor, h: float, f: ResidualFunction, f_next: ResidualFunction, first: Tensor
    ) -> Tensor:
        """Rebuild x_n from x_{n+1}; ``first`` is f_{n+1}(x_{n+1})."""
        y = x_next.add(first, alpha=-h)
        return x_next.add(first + f(y), alpha=-h / 2)


SCHEMES: dict[str, type[Euler] | type[Heun]] = {"euler": Euler, "heun": Heun}
