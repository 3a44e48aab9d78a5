"""torch.compile: checkpointed stacks compile; under the adjoint a compiled model runs the stack
eagerly, and residual functions compiled themselves run compiled in its forward, rebuild and
recompute. Backend aot_eager: AOTAutograd's tracing and partitioning (where checkpointing and
buffer updates are decided) without inductor's minutes of C++ compilation on this machine."""

import copy

import pytest
import torch
from stacks import random_blocks, relative_error, stack_of
from torch import nn


def bn_block() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 6))


def one_step(stack: nn.Module, compiled: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Input and parameter gradients of loss = sum(out²), and the buffers after the step."""
    stack = copy.deepcopy(stack)
    model = torch.compile(stack, backend="aot_eager") if compiled else stack
    x = torch.randn(8, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    model(x).square().sum().backward()
    return [x.grad, *(p.grad for p in stack.parameters())], [b.clone() for b in stack.buffers()]


@pytest.fixture
def stack() -> nn.Module:
    torch._dynamo.reset()
    return stack_of(random_blocks(bn_block, 3))


@pytest.mark.slow
def test_a_compiled_checkpointed_stack_has_the_gradients_and_running_statistics_of_backprop(stack):
    reference_grads, reference_buffers = one_step(stack, compiled=False)
    stack.gradient = "checkpoint"
    grads, buffers = one_step(stack, compiled=True)
    assert relative_error(grads, reference_grads) < 1e-12
    assert all(torch.equal(b, r) for b, r in zip(buffers, reference_buffers))


@pytest.mark.slow
def test_a_compiled_model_runs_the_adjoint_eagerly_with_the_same_gradients(stack):
    stack.gradient = "adjoint"
    eager_grads, eager_buffers = one_step(stack, compiled=False)
    grads, buffers = one_step(stack, compiled=True)
    assert all(torch.equal(g, r) for g, r in zip(grads, eager_grads))
    assert all(torch.equal(b, r) for b, r in zip(buffers, eager_buffers))


def test_compiled_residual_functions_run_compiled_in_the_adjoints_forward_rebuild_and_recompute(stack):
    """A counting backend: every evaluation of f goes through the compiled code, without grad in
    the forward and the rebuild, with grad in the recompute; the gradients are the eager ones."""
    stack.gradient = "adjoint"
    eager_grads, _ = one_step(stack, compiled=False)
    grad_modes = []

    def counting_backend(graph_module, example_inputs):
        def run(*args):
            grad_modes.append(torch.is_grad_enabled())
            return graph_module.forward(*args)

        return run

    for block in stack.blocks:
        block.compile(backend=counting_backend)
    x = torch.randn(8, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    out = stack(x)
    assert grad_modes == [False] * 3
    grad_modes.clear()
    out.square().sum().backward()
    assert grad_modes == [False, True] * 3  # per step, from the top: rebuild, then recompute
    assert all(torch.equal(p.grad, g) for p, g in zip([x, *stack.parameters()], eager_grads))
