"""Which batch statistics should a train-mode BatchNorm use when the adjoint rebuilds a step?

Two candidates for the reconstruction and the recompute of f_n inside the adjoint's backward:

- rebuilt: normalise with the statistics of the batch it is given (the rebuilt activations),
  which is what ``resnode_lightning`` does: f is then one deterministic function of its input;
- replayed: normalise with the statistics the forward pass saw at that block, kept as values
  while the Jacobian still goes through the batch mean and variance (straight-through):
  mean = m(x̃) + (m_forward − m(x̃)).detach(), and the same for the variance.

Measured on untied Euler stacks of pre-activation basic blocks in float64 (each block is called
once in the forward pass, so "the statistics the forward saw" is unambiguous), as the relative
error ‖g − g*‖/‖g*‖ of all parameter gradients against plain backprop, for random weights and
weights smooth in depth. Usage: python benchmarks/batchnorm_statistics.py
"""

from __future__ import annotations

import copy
import statistics

import torch
from torch import nn

from resnode_lightning.models.blocks import PreActBasicBlock
from resnode_lightning.numerics import ResidualStack
from resnode_lightning.numerics.stack import mix_weights


class ReplayableBatchNorm2d(nn.BatchNorm2d):
    """Train-mode BatchNorm2d that records its batch statistics, or replays the recorded ones."""

    replay = False
    recorded: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean((0, 2, 3))
        var = x.var((0, 2, 3), unbiased=False)
        if self.replay:
            mean = mean + (self.recorded[0] - mean).detach()
            var = var + (self.recorded[1] - var).detach()
        else:
            self.recorded = mean.detach(), var.detach()
        shape = (1, -1, 1, 1)
        normalised = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return normalised * self.weight.view(shape) + self.bias.view(shape)


def block(channels: int) -> PreActBasicBlock:
    b = PreActBasicBlock(channels)
    for name in ("bn1", "bn2"):
        bn = ReplayableBatchNorm2d(channels)
        bn.load_state_dict(getattr(b, name).state_dict())
        setattr(b, name, bn)
    return b


def blocks(depth: int, weights: str, channels: int, seed: int) -> list[nn.Module]:
    torch.manual_seed(seed)
    if weights == "random":
        return [block(channels) for _ in range(depth)]
    a, b = block(channels), block(channels)
    out = []
    for i in range(depth):
        c = copy.deepcopy(a)
        mix_weights(c, a, b, i / max(depth - 1, 1))
        out.append(c)
    return out


def parameter_gradients(stack: ResidualStack, x: torch.Tensor, gradient: str, replay: bool) -> torch.Tensor:
    stack = copy.deepcopy(stack)
    stack.gradient = gradient
    out = stack(x)
    for m in stack.modules():
        if isinstance(m, ReplayableBatchNorm2d):
            m.replay = replay
    (out**2).mean().backward()
    return torch.cat([p.grad.flatten() for p in stack.parameters()])


def main() -> None:
    depths, seeds, channels = (4, 8, 16, 32, 64), range(3), 8
    print("relative error of parameter gradients vs backprop, median over 3 seeds (float64)")
    print(f"{'weights':8} {'N':>4} {'rebuilt':>10} {'replayed':>10} {'replayed/rebuilt':>17}")
    for weights in ("random", "smooth"):
        for depth in depths:
            errors = {"rebuilt": [], "replayed": []}
            for seed in seeds:
                stack = ResidualStack(blocks(depth, weights, channels, seed)).double()
                x = torch.randn(32, channels, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
                reference = parameter_gradients(stack, x, "backprop", replay=False)
                for name, replay in (("rebuilt", False), ("replayed", True)):
                    g = parameter_gradients(stack, x, "adjoint", replay=replay)
                    errors[name].append(((g - reference).norm() / reference.norm()).item())
            rebuilt, replayed = (statistics.median(errors[k]) for k in ("rebuilt", "replayed"))
            print(f"{weights:8} {depth:>4} {rebuilt:10.2e} {replayed:10.2e} {replayed / rebuilt:17.2f}")


if __name__ == "__main__":
    main()
