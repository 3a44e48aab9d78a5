"""Unit costs of one residual step on this machine, and the adjoint/backprop time ratios they allow.

With c one evaluation of f without a graph, c' one with a graph, and u its vector-Jacobian
product, one training step costs per residual step:

    backprop             c' + u                       (Heun: twice that)
    adjoint, Euler       c (forward) + c (rebuild) + c' + u
    adjoint, tied Euler  c + c' + u                   (the recompute of step n rebuilds step n-1)
    adjoint, Heun        2c + c (rebuild, one evaluation reused) + 2(c' + u)

so the ratios to backprop cannot go below these floors, whatever the implementation. The
textbook values c = c', u = 2c give 5/3, 4/3 and 3/2. Measured here on the blocks of
``step_cost.py`` (16-channel pre-activation basic blocks, 10x10 maps, batch 128), steps of
the three kinds alternating in one process. Usage: python benchmarks/unit_costs.py
"""

from __future__ import annotations

import statistics
import time

import torch
from step_cost import build, train_step


def main(depth: int = 32, repeats: int = 9) -> None:
    stack, x = build(depth, "euler", False, "backprop", "cpu")
    blocks, h = list(stack.blocks), stack.h
    cotangent = torch.randn_like(x)

    def evaluate_without_graph():
        with torch.no_grad():
            for block in blocks:
                x.add(block(x), alpha=h)

    def evaluate_with_graph():
        for block in blocks:
            state = x.detach().requires_grad_(True)
            state.add(block(state), alpha=h)

    def evaluate_and_differentiate():
        for block in blocks:
            state = x.detach().requires_grad_(True)
            out = state.add(block(state), alpha=h)
            torch.autograd.grad(out, [state, *block.parameters()], cotangent)

    def backprop_step():
        train_step(stack, x)

    kinds = {"c": evaluate_without_graph, "c'": evaluate_with_graph, "c'+u": evaluate_and_differentiate,
             "backprop step": backprop_step}
    for run in kinds.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(repeats):
        for name, run in kinds.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) / depth)
    ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    c, step = ms["c"], ms["c'+u"]
    print(f"per residual step, median of {repeats} (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in ms.items()))
    print(f"floor, Euler untied adjoint / backprop: {(2 * c + step) / step:.2f}")
    print(f"floor, Euler tied adjoint / backprop:   {(c + step) / step:.2f}")
    print(f"floor, Heun adjoint / backprop:         {(3 * c + 2 * step) / (2 * step):.2f}")


if __name__ == "__main__":
    main()
