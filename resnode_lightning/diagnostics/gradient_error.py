"""How wrong the adjoint's gradients are, stack by stack, against exact ones on the same batch.

For a model and a batch, one backprop pass of the whole model (every measured stack switched to
``gradient="backprop"``) gives the exact parameter gradients g* = dL/dθ of each stack, and the
exact gradient of the loss with respect to the stack's output, a_N = dL/dx_N. Then each stack
alone runs again under the adjoint, from its recorded input x_0, and its vector-Jacobian product
with that same a_N gives the adjoint's gradients g. The error of each stack is therefore its own:
it does not include the error other adjoint stacks would pass on through a_N.

Nothing the training step uses moves: running buffers (BatchNorm statistics) come back as they
were, no ``.grad`` is written (``torch.autograd.grad``), the default random generators end as they
started, and modules keep their train/eval mode and stacks their gradient mode. Train-mode
BatchNorm normalises with the batch's statistics, as in a training step. Each stack's adjoint
pass starts from the generator states its backprop pass started from, so Dropout draws the
same masks in both.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..numerics import GeneratorStates, ResidualStack, preserved_buffers, unique_buffers


@dataclass(frozen=True)
class StackGradientError:
    """The adjoint's error on one stack.

    Attributes:
        relative_errors: per trainable parameter tensor (by its name in the stack),
            ‖g − g*‖ / ‖g*‖ (0 where both are zero, inf where only g* is).
        cosine_similarity: ⟨g, g*⟩ / (‖g‖ ‖g*‖) over all the stack's parameters together (1 when
            both are zero).
        reconstruction_error: ‖x̃_0 − x_0‖ / ‖x_0‖ of the input rebuilt from the output by the
            reversed steps (:meth:`ResidualStack.reconstruct_input`; anchors not used).
    """

    relative_errors: dict[str, float]
    cosine_similarity: float
    reconstruction_error: float

    @property
    def median(self) -> float:
        """The median over parameter tensors of the relative error."""
        return statistics.median(self.relative_errors.values())

    @property
    def max(self) -> float:
        """The largest relative error of a parameter tensor."""
        return max(self.relative_errors.values())


def relative_error(approximate: Tensor, exact: Tensor) -> float:
    """‖g − g*‖ / ‖g*‖ in float64 (0 where both are zero, inf where only g* is)."""
    difference = (approximate.double() - exact.double()).norm().item()
    reference = exact.double().norm().item()
    if reference == 0:
        return 0.0 if difference == 0 else math.inf
    return difference / reference


def cosine_similarity(approximate: list[Tensor], exact: list[Tensor]) -> float:
    """⟨g, g*⟩ / (‖g‖ ‖g*‖) over all tensors together, in float64 (1 when both are zero)."""
    g = torch.cat([t.double().flatten() for t in approximate])
    r = torch.cat([t.double().flatten() for t in exact])
    norms = (g.norm() * r.norm()).item()
    if norms == 0:
        return 1.0 if torch.equal(g, r) else 0.0
    return (g @ r).item() / norms


def trainable_parameters(stack: ResidualStack) -> dict[str, Tensor]:
    """The stack's parameters that require grad, by name (a tied block's once)."""
    return {name: p for name, p in stack.named_parameters() if p.requires_grad}


@dataclass
class StackRecord:
    """What the backprop pass recorded about one stack: its input, its output and the generator
    states it started from."""

    inputs: Tensor | None = None
    output: Tensor | None = None
    generators: GeneratorStates | None = None


@contextmanager
def recorded(stacks: Mapping[str, ResidualStack]) -> Iterator[dict[str, StackRecord]]:
    """Forward hooks that record each stack's input, output and starting generator states."""
    records = {name: StackRecord() for name in stacks}
    handles = []
    for name, stack in stacks.items():

        def before(module, args, record=records[name]):
            record.generators = GeneratorStates.now(args[0].device)

        def after(module, args, output, record=records[name]):
            record.inputs, record.output = args[0].detach(), output

        handles += [stack.register_forward_pre_hook(before), stack.register_forward_hook(after)]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def gradient_modes(stacks: Mapping[str, ResidualStack], mode: str) -> Iterator[None]:
    """Every stack under ``mode`` inside the block; their own modes again afterwards."""
    saved = {name: stack.gradient for name, stack in stacks.items()}
    try:
        for stack in stacks.values():
            stack.gradient = mode
        yield
    finally:
        for name, stack in stacks.items():
            stack.gradient = saved[name]


def adjoint_gradient_errors(
    model: nn.Module, inputs: Tensor, loss: Callable[[Tensor], Tensor], stacks: Mapping[str, ResidualStack]
) -> dict[str, StackGradientError]:
    """The adjoint's gradient error on each of ``stacks`` (stacks of ``model``, by name) for the
    loss ``loss(model(inputs))`` (see the module docstring for what is compared and what is kept).

    Stacks without a trainable parameter, or whose output the loss does not reach, are left out.
    """
    stacks = {name: stack for name, stack in stacks.items() if trainable_parameters(stack)}
    if not stacks:
        return {}
    device = inputs.device
    with preserved_buffers(unique_buffers([model])), GeneratorStates.now(device).active(device):
        with recorded(stacks) as records, gradient_modes(stacks, "backprop"), torch.enable_grad():
            value = loss(model(inputs))
            reached = {name: r for name, r in records.items() if r.output is not None and r.output.requires_grad}
            parameters = [list(trainable_parameters(stacks[name]).values()) for name in reached]
            outputs = [r.output for r in reached.values()]
            flat = [p for group in parameters for p in group]
            found = torch.autograd.grad(value, outputs + flat, allow_unused=True)
        cotangents = dict(zip(reached, found[: len(outputs)]))
        exact, position = {}, len(outputs)
        for name, group in zip(reached, parameters):
            exact[name] = found[position : position + len(group)]
            position += len(group)

        errors = {}
        for name, record in reached.items():
            if cotangents[name] is None:
                continue
            stack = stacks[name]
            with gradient_modes({name: stack}, "adjoint"), record.generators.active(device), torch.enable_grad():
                output = stack(record.inputs)
                named = trainable_parameters(stack)
                approximate = torch.autograd.grad(output, list(named.values()), cotangents[name], allow_unused=True)
                rebuilt = stack.reconstruct_input(output.detach())
            pairs = {
                key: (g if g is not None else torch.zeros_like(p), r if r is not None else torch.zeros_like(p))
                for (key, p), g, r in zip(named.items(), approximate, exact[name])
            }
            errors[name] = StackGradientError(
                relative_errors={key: relative_error(g, r) for key, (g, r) in pairs.items()},
                cosine_similarity=cosine_similarity(*zip(*pairs.values())),
                reconstruction_error=relative_error(rebuilt, record.inputs),
            )
    return errors
