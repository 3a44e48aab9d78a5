"""Running a sequence of residual functions through a step rule: x_0 → x_N.

Shared by every gradient mode of a stack (plain autograd, checkpointing, and the adjoint's own
forward pass and rebuild), so that all of them compute the same function.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from torch import Tensor, nn

from .schemes import Euler, Heun, ResidualFunction


def evaluate(block: nn.Module, index: int, x: Tensor) -> Tensor:
    """f_index(x), refusing a residual function that changes the shape of its input."""
    k = block(x)
    if k.shape != x.shape:
        raise ValueError(
            f"residual function {index} ({type(block).__name__}) maps a tensor of shape "
            f"{tuple(x.shape)} to one of shape {tuple(k.shape)}; a residual stack needs f(x) with "
            "the shape of x. Put layers that change the shape (strided or widening blocks) "
            "outside the stack, e.g. as a transition block in front of it."
        )
    return k


def second_stage_index(n: int, depth: int) -> int:
    """Index of the function a two-stage rule evaluates last in step n: n + 1, closed at N − 1."""
    return min(n + 1, depth - 1)


def step_functions(blocks: Sequence[nn.Module], n: int) -> tuple[ResidualFunction, ResidualFunction]:
    """The (shape-checked) functions f_n and f_{n+1} that step n sees."""
    m = second_stage_index(n, len(blocks))
    return partial(evaluate, blocks[n], n), partial(evaluate, blocks[m], m)


def integrate(
    x: Tensor,
    blocks: Sequence[nn.Module],
    scheme: type[Euler] | type[Heun],
    h: float,
    start: int = 0,
    stop: int | None = None,
) -> Tensor:
    """Apply steps start .. stop−1 of the stack to x (all N steps by default)."""
    for n in range(start, len(blocks) if stop is None else stop):
        x, _ = scheme.step(x, h, *step_functions(blocks, n))
    return x


def reverse_integrate(
    x: Tensor,
    blocks: Sequence[nn.Module],
    scheme: type[Euler] | type[Heun],
    h: float,
    start: int = 0,
    stop: int | None = None,
) -> Tensor:
    """Apply the reversals of steps stop−1 .. start to x̃_stop (all N by default: x_N → x̃_0).

    The adjoint's rebuild (``scheme.reverse``) without its anchors and its reuse of evaluations:
    x̃_n = x̃_{n+1} − h f_n(x̃_{n+1}) for Euler, paper eq. 9 for Heun.
    """
    for n in reversed(range(start, len(blocks) if stop is None else stop)):
        f, f_next = step_functions(blocks, n)
        first = (f_next if scheme.reversal_evaluates_next else f)(x)
        x = scheme.reverse(x, h, f, f_next, first)
    return x
