"""Small residual stacks and gradient helpers shared by the numerics tests."""

from __future__ import annotations

import copy

import torch
from torch import nn

from resnode_lightning.models.blocks import PreActBasicBlock
from resnode_lightning.numerics import ResidualStack
from resnode_lightning.numerics.stack import mix_weights


def tanh_block(width: int = 6) -> nn.Module:
    """A smooth residual function f(x) = W2 tanh(W1 x + b1) + b2."""
    return nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))


def conv_block(channels: int = 4, zero_init_last_bn: bool = False) -> nn.Module:
    return PreActBasicBlock(channels, zero_init_last_bn=zero_init_last_bn)


def random_blocks(make, depth: int, seed: int = 0) -> list[nn.Module]:
    torch.manual_seed(seed)
    return [make() for _ in range(depth)]


def smooth_blocks(make, depth: int, seed: int = 0) -> list[nn.Module]:
    """θ_i = (1 − s_i) A + s_i B, s_i = i/(N − 1): weights Lipschitz in depth."""
    torch.manual_seed(seed)
    a, b = make(), make()
    blocks = []
    for i in range(depth):
        block = copy.deepcopy(a)
        mix_weights(block, a, b, i / max(depth - 1, 1))
        blocks.append(block)
    return blocks


def stack_of(blocks, **options) -> ResidualStack:
    return ResidualStack(blocks, **options).double()


def gradients(stack: nn.Module, x: torch.Tensor, gradient: str, **options):
    """Output, input gradient and parameter gradients of loss = mean(out²) on a copy of the stack."""
    stack = copy.deepcopy(stack)
    stack.gradient = gradient
    for name, value in options.items():
        setattr(stack, name, value)
    x = x.detach().clone().requires_grad_(True)
    out = stack(x)
    (out**2).mean().backward()
    return out.detach(), x.grad, [p.grad for p in stack.parameters()], stack


def relative_error(grads, reference) -> float:
    """‖g − g*‖ / ‖g*‖ over all tensors together."""
    g = torch.cat([t.flatten() for t in grads])
    r = torch.cat([t.flatten() for t in reference])
    return ((g - r).norm() / r.norm()).item()


def parameter_error(stack, x, **options) -> float:
    _, _, reference, _ = gradients(stack, x, "backprop")
    _, _, approx, _ = gradients(stack, x, "adjoint", **options)
    return relative_error(approx, reference)
