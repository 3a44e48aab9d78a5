"""Diagnostics of the adjoint: its gradient error measured beside exact gradients, during training
(GradientErrorMonitor, with its fallback to exact gradients) and over depths (resnode gradcheck)."""

from __future__ import annotations

import torch
from stacks import conv_block, gradients, random_blocks, relative_error, stack_of
from torch import nn

from resnode_lightning.diagnostics import adjoint_gradient_errors
from resnode_lightning.models import named_stacks
from resnode_lightning.numerics import ResidualStack


def images(batch: int = 8, channels: int = 4, size: int = 5) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def mean_square(output: torch.Tensor) -> torch.Tensor:
    return (output**2).mean()


class DropoutBlock(nn.Module):
    """A pre-activation block with Dropout inside: it draws random numbers at every evaluation."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.block, self.dropout = conv_block(channels), nn.Dropout(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.block(x))


def network(depth: int = 3, zero_residuals: bool = False, dropout: bool = False) -> nn.Module:
    """conv → BatchNorm → adjoint stack → BatchNorm → pool → linear, in float64."""
    torch.manual_seed(0)
    make = DropoutBlock if dropout else (lambda: conv_block(zero_init_last_bn=zero_residuals))
    return nn.Sequential(
        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4),
        ResidualStack([make() for _ in range(depth)], gradient="adjoint"),
        nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
    ).double()  # fmt: skip


def test_a_lone_stack_has_the_error_of_its_adjoint_gradients_against_backprop():
    stack = stack_of(random_blocks(conv_block, 3), gradient="adjoint")
    x = images()
    (error,) = adjoint_gradient_errors(stack, x, mean_square, {"stack": stack}).values()
    _, _, exact, _ = gradients(stack, x, "backprop")
    _, _, adjoint, _ = gradients(stack, x, "adjoint")
    names = [name for name, _ in stack.named_parameters()]
    for name, g, r in zip(names, adjoint, exact):
        assert abs(error.relative_errors[name] - relative_error([g], [r])) < 1e-9 * max(1, error.relative_errors[name])
    assert error.median > 1e-3 and error.max >= error.median and error.cosine_similarity < 1
    assert abs(error.reconstruction_error - ((stack.reconstruct_input(stack(x)) - x).norm() / x.norm()).item()) < 1e-12


def test_the_adjoint_of_zero_residuals_measures_exact():
    model = network(zero_residuals=True)
    (error,) = adjoint_gradient_errors(model, images(), lambda out: out.logsumexp(1).mean(),
                                       dict(named_stacks(model))).values()  # fmt: skip
    assert error.max < 1e-10 and error.reconstruction_error == 0 and abs(error.cosine_similarity - 1) < 1e-12


def test_measuring_moves_no_statistic_no_gradient_no_random_state_no_mode():
    model = network(dropout=True).train()
    model[0].eval()  # a part in eval mode stays in eval mode
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    state = {name: t.clone() for name, t in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    generator = torch.get_rng_state()
    errors = adjoint_gradient_errors(model, images(), lambda out: out.logsumexp(1).mean(), dict(named_stacks(model)))
    assert errors["2"].median > 0
    assert all(torch.equal(t, state[name]) for name, t in model.state_dict().items())
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), generator)
    assert [m.training for m in model.modules()] == modes and model[2].gradient == "adjoint"


def test_dropout_draws_the_same_masks_in_the_exact_and_the_adjoint_pass():
    """With anchors at every step the adjoint is exact, masks included: the measured error is 0."""
    model = network(dropout=True).train()
    model[2].anchor_every = 1
    (error,) = adjoint_gradient_errors(model, images(), lambda out: out.logsumexp(1).mean(),
                                       dict(named_stacks(model))).values()  # fmt: skip
    assert error.max < 1e-10
