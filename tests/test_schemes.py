"""The step rules are the Euler and Heun methods of orders 1 and 2 on [0, 1]."""

import math

import pytest
import torch
from torch import nn

from resnode_lightning.numerics import SCHEMES, ResidualStack


def linear_ode_error(scheme: str, depth: int) -> float:
    """Max error of a tied stack f(x) = Ax against the exact flow x_0 expm(A)^T of dx/ds = Ax."""
    torch.manual_seed(0)
    a = torch.randn(4, 4, dtype=torch.float64) / 2
    f = nn.Linear(4, 4, bias=False).double()
    with torch.no_grad():
        f.weight.copy_(a)
    x0 = torch.randn(3, 4, dtype=torch.float64)
    with torch.no_grad():
        out = ResidualStack.tied(f, depth, scheme=scheme)(x0)
    return (out - x0 @ torch.linalg.matrix_exp(a).T).abs().max().item()


@pytest.mark.parametrize(("scheme", "order"), [("euler", 1), ("heun", 2)])
def test_error_falls_by_two_to_the_order_when_depth_doubles(scheme, order):
    errors = [linear_ode_error(scheme, n) for n in (16, 32, 64)]
    for coarse, fine in zip(errors, errors[1:]):
        assert math.log2(coarse / fine) == pytest.approx(order, abs=0.15)


def test_heun_covers_the_whole_interval():
    """f ≡ 1 integrates to x_N − x_0 = 1 at every depth (the last step is closed with f_{N−1})."""

    class One(nn.Module):
        def forward(self, x):
            return torch.ones_like(x)

    for depth in (1, 2, 5):
        stack = ResidualStack([One() for _ in range(depth)], scheme="heun")
        assert stack(torch.zeros(2)).tolist() == pytest.approx([1.0, 1.0])


def test_classical_step_is_plain_resnet():
    torch.manual_seed(0)
    blocks = [nn.Linear(3, 3) for _ in range(4)]
    x = torch.randn(2, 3)
    expected = x
    for b in blocks:
        expected = expected + b(expected)
    assert torch.allclose(ResidualStack(blocks, step="1")(x), expected)


@pytest.mark.parametrize("name", ["euler", "heun"])
def test_each_step_rule_is_its_butcher_tableau(name):
    """x_{n+1} = x_n + h Σ_i b_i k_i with k_i = f(x_n + h Σ_j a_ij k_j): the tableau the adjoint
    differentiates stage by stage is the step the forward pass takes."""
    torch.manual_seed(0)
    scheme = SCHEMES[name]
    f, f_next = nn.Linear(4, 4).double(), nn.Linear(4, 4).double()
    x, h = torch.randn(3, 4, dtype=torch.float64), 0.3
    with torch.no_grad():
        ks: list[torch.Tensor] = []
        for stage in scheme.stages:
            y = x + h * sum((a * k for a, k in zip(stage.a, ks)), torch.zeros_like(x))
            ks.append((f_next if stage.next else f)(y))
        from_tableau = x + h * sum(stage.b * k for stage, k in zip(scheme.stages, ks))
        stepped, first = scheme.step(x, h, f, f_next)
    torch.testing.assert_close(stepped, from_tableau)
    torch.testing.assert_close(first, ks[0])
