"""What the adjoint's per-step safety check costs: a training step of a stack with the check that
refuses tensors the adjoint cannot differentiate (a walk over each recompute's graph) over the same
step with the check replaced by nothing.

A ResidualStack of N pre-activation basic blocks (16 channels, 10x10 maps, batch 128, Euler,
gradient="adjoint"), steps with and without the check taking turns in one process so that both
see the same machine (which goes first alternates); the ratio is the median of the per-pair
ratios. Writes nothing; prints one line. Run it alone on the machine.

Usage: python benchmarks/adjoint_check_cost.py [--depth 128] [--pairs 12]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import resnode_lightning.numerics.adjoint as adjoint
from resnode_lightning.models.blocks import PreActBasicBlock
from resnode_lightning.numerics import ResidualStack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=12)
    args = parser.parse_args()
    torch.manual_seed(0)
    stack = ResidualStack([PreActBasicBlock(16) for _ in range(args.depth)], scheme="euler", gradient="adjoint")
    x = torch.randn(128, 16, 10, 10, requires_grad=True)
    check = adjoint._refuse_foreign_leaves

    def step(checked: bool) -> float:
        adjoint._refuse_foreign_leaves = check if checked else (lambda *_: None)
        started = time.perf_counter()
        stack(x).square().mean().backward()
        return time.perf_counter() - started

    step(True)  # warm-up
    pairs = []
    for i in range(args.pairs):  # which one goes first alternates
        first, second = step(i % 2 == 0), step(i % 2 == 1)
        pairs.append((first, second) if i % 2 == 0 else (second, first))
    adjoint._refuse_foreign_leaves = check
    with_check, without = zip(*pairs)
    print(
        f"N = {args.depth}: step with the check {statistics.median(with_check):.3f} s, without "
        f"{statistics.median(without):.3f} s; ratio {statistics.median(a / b for a, b in pairs):.3f}"
    )


if __name__ == "__main__":
    main()
