"""The memory-free adjoint backward of a residual stack (docs/method.md; paper eq. 6, 7 and 9).

Forward: run the stack without building a graph and keep only the output x_N (and, with
``anchor_every=k``, the true states x_0, x_k, x_2k, ...). Backward: walk the stack in reverse
depth, rebuilding each state with the reversed step rule, then take the vector-Jacobian product
of the step at the rebuilt state:

    a_N = dL/dx_N,  x̃_N = x_N
    for n = N−1 .. 0:
        x̃_n = reverse(x̃_{n+1})                       (or the stored x_n at an anchor)
        x_{n+1}' = step(x̃_n)  recomputed with autograd on
        dL/dθ += [∂_θ x_{n+1}']^T a_{n+1},   a_n = [∂_x x_{n+1}']^T a_{n+1}

The vector-Jacobian product is taken stage by stage from the scheme's Butcher tableau
(``_step_vjp``): each evaluation f_i(y_i) gets its own graph, and the linear combination
x_{n+1} = x_n + h Σ_i b_i k_i is neither recomputed nor differentiated, only its transpose applied.

!!! warning
    The gradients are approximate: x̃_n differs from x_n by the reversal's accumulated error,
    O(1/N) for Euler and O(Δ/N + 1/N²) for Heun, Δ = max ‖θ_{n+1} − θ_n‖ (Prop. 3-6). They are
    exact when f ≡ 0 and with ``anchor_every=1``. At small depth, or from scratch, they can be
    too wrong to train on (the paper's Fig. 3b): compare with ``gradient="backprop"`` first.

Guarantees:
- Activation memory: one step's graph at a time, so it does not grow with N (plus ⌈N/k⌉
  stored states with anchors). Parameter gradients are accumulated into one buffer each.
- Compute: per step one rebuild evaluation (Euler; two for Heun) plus the recompute and its VJP.
  The rebuild reuses the recompute of the step above whenever it evaluates the same function at
  the same point: f_{n+1}(x̃_{n+1}) for Heun, and f(x̃_{n+1}) when f_n is f_{n+1} (tied Euler),
  unless either evaluation drew random numbers.
- Every unique parameter is an input of the autograd Function and receives its gradient as an
  output (no nested ``.backward()``): DDP's reducer sees them like any other gradient. Tied
  weights get the sum over all steps. Frozen parameters get no gradient and no VJP work; the
  sweep stops at the lowest step that still has something to differentiate.
- Running buffers (BatchNorm statistics) come out of backward as the forward left them; train
  mode BatchNorm normalises the rebuilt states with their own batch statistics, and every
  module keeps its mode. Under autocast the rebuild replays the forward's autocast state while
  the residual stream keeps its own dtype.
- Randomness (Dropout, StochasticDepth, ``torch.rand`` in a block's ``forward``): each
  evaluation that draws from the default CPU or device generator has its generator state
  recorded in the forward and replayed in the rebuild and the recompute, as
  ``torch.utils.checkpoint`` does, so the backward differentiates the function the forward
  computed (``anchor_every=1`` stays exact) and consumes no random numbers. Evaluations that
  draw nothing record nothing.

torch.compile: a compiled model breaks its graph at an adjoint stack and runs the stack eagerly
(this Function's forward and backward are Python loops over the blocks). Compile the residual
functions themselves instead (``block.compile()`` for each block, before or after building the
stack): their forward, rebuild and recompute evaluations then all run compiled.

Refused, with an error that names the fix (``gradient="backprop"`` or ``"checkpoint"``):
- a second derivative (``create_graph=True``, e.g. a gradient penalty): the rebuild is not
  differentiable, and with a loss linear in x_N the penalty would otherwise vanish silently;
- weights changed in place between forward and backward (e.g. ``optimizer.step()`` first):
  every parameter is saved for backward, so autograd's version check raises as for backprop;
- a step whose graph reaches a tensor that requires grad but is neither the stack's input nor
  a parameter of its blocks (a parameter passed in from outside, or held by a module the block
  does not register): it would get no gradient. Checked at every recompute (so not in frozen
  steps below the lowest trainable one, which backward skips when the input needs no gradient);
- a device type without generator state (``torch.<device>.get_rng_state``): random numbers drawn
  there could not be replayed.

Why the rebuilt states' own batch statistics, not the forward's replayed: measured by
``benchmarks/batchnorm_statistics.py`` (untied Euler, pre-activation blocks, float64, relative
error of all parameter gradients against backprop, median of 3 seeds), rebuilding is never worse:

    N                       4        8        16       32       64
    random  rebuilt      1.02e-1  5.08e-2  2.76e-2  1.48e-2  8.81e-3
            replayed     1.11e-1  5.19e-2  2.84e-2  1.50e-2  8.88e-3
    smooth  rebuilt      1.27e-1  7.67e-2  4.79e-2  3.13e-2  2.09e-2
            replayed     1.61e-1  8.64e-2  5.08e-2  3.12e-2  2.06e-2

Rebuilding also keeps f a function of its input alone, which the reuse of evaluations above
needs (a replayed evaluation would carry the statistics of another step).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .buffers import preserved_buffers, unique_buffers
from .randomness import RandomReplay
from .schemes import Euler, Heun, ResidualFunction
from .trajectory import second_stage_index, step_functions


@dataclass(frozen=True)
class AdjointRun:
    """What the backward needs to know about the stack, fixed at forward time."""

    blocks: tuple[nn.Module, ...]
    scheme: type[Euler] | type[Heun]
    h: float
    anchor_every: int | None

    def is_anchor(self, n: int) -> bool:
        return self.anchor_every is not None and n % self.anchor_every == 0

    def stage_parameters(self, n: int, trainable: set[int]) -> list[list[Tensor]]:
        """For each stage of step n, the trainable parameters of the block that stage evaluates."""
        indices = [second_stage_index(n, len(self.blocks)) if stage.next else n for stage in self.scheme.stages]
        return [[p for p in self.blocks[i].parameters() if id(p) in trainable] for i in indices]


def _autocast_state(device_type: str) -> tuple[str, bool, torch.dtype]:
    return device_type, torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)


class AdjointIntegration(torch.autograd.Function):
    """x_0 ↦ x_N through the stack, with the reverse-depth adjoint as its backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, run: AdjointRun, *params: Tensor) -> Tensor:
        replay = RandomReplay(x.device)
        anchors = []
        for n in range(len(run.blocks)):
            if run.is_anchor(n):
                anchors.append(x)
            f, f_next = step_functions(run.blocks, n)
            x, _ = run.scheme.step(x, run.h, replay.recording(f, (n, 0)), replay.recording(f_next, (n, 1)))
        # Every parameter of the blocks is saved, so that autograd's version counters refuse
        # weights changed in place before backward, as they do for backprop.
        ctx.save_for_backward(x, *anchors, *unique_parameters(run.blocks))
        ctx.anchor_count = len(anchors)
        ctx.run = run
        ctx.params = params
        ctx.replay = replay
        ctx.autocast = _autocast_state(x.device.type)
        return x

    @staticmethod
    def backward(ctx: Any, a: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():
            raise RuntimeError(
                "a second derivative (create_graph=True, e.g. a gradient penalty) was asked through a "
                "ResidualStack with gradient='adjoint', whose backward rebuilds activations and is not "
                "itself differentiable. Use gradient='backprop' or gradient='checkpoint' for this stack."
            )
        run: AdjointRun = ctx.run
        replay: RandomReplay = ctx.replay
        x, *stored = ctx.saved_tensors[: 1 + ctx.anchor_count]
        anchors = dict(zip(range(0, len(run.blocks), run.anchor_every or 1), stored))
        need_input = ctx.needs_input_grad[0]
        trainable = {id(p) for p, need in zip(ctx.params, ctx.needs_input_grad[2:]) if need}
        step_params = [run.stage_parameters(n, trainable) for n in range(len(run.blocks))]
        # Below the lowest step with a trainable parameter there is nothing to differentiate.
        stop = 0 if need_input else next((n for n, ps in enumerate(step_params) if any(ps)), len(step_params))

        grads: dict[int, Tensor] = {}
        cached: tuple[nn.Module, Tensor] | None = None  # f_{n+1}(x̃_{n+1}) from the recompute above
        device_type, autocast_on, autocast_dtype = ctx.autocast
        with preserved_buffers(unique_buffers(run.blocks)), torch.autocast(
            device_type, dtype=autocast_dtype, enabled=autocast_on
        ):
            for n in reversed(range(stop, len(run.blocks))):
                f, f_next = step_functions(run.blocks, n)
                f, f_next = replay.replaying(f, (n, 0)), replay.replaying(f_next, (n, 1))
                if n in anchors:
                    x = anchors[n]
                else:
                    first = _first_reverse_evaluation(run, replay, n, x, f, f_next, cached)
                    x = run.scheme.reverse(x, run.h, f, f_next, first)
                with torch.enable_grad():
                    a, k = _step_vjp(run, n, x, (f, f_next), a, step_params[n], need_input or n > stop, grads)
                cached = None if replay.draws((n, 0)) else (run.blocks[n], k)
        return (a if need_input else None, None, *(grads.get(id(p)) for p in ctx.params))


def _step_vjp(
    run: AdjointRun,
    n: int,
    x: Tensor,
    functions: tuple[ResidualFunction, ResidualFunction],
    a: Tensor,
    stage_params: list[list[Tensor]],
    need_state: bool,
    grads: dict[int, Tensor],
) -> tuple[Tensor | None, Tensor]:
    """The vector-Jacobian product of step n at the rebuilt state x, stage by stage from the
    scheme's Butcher tableau (stage inputs y_i = x + h Σ_j a_ij k_j, k_i = f_i(y_i)):

        k̄_i = h b_i a_{n+1} + h Σ_{j>i} a_ji ȳ_j,   (ȳ_i, θ̄_i) = [∂ f_i(y_i)]^T k̄_i,
        a_n = a_{n+1} + Σ_i ȳ_i

    which is autograd through x_{n+1} = x + h Σ_i b_i k_i without recomputing that combination
    or differentiating it. Adds θ̄_i into ``grads`` (out of place: autograd may hand one tensor to
    several parameters). Returns a_n (None unless ``need_state``) and k_0 = f_n(x), detached."""
    stages = run.scheme.stages
    inputs: list[Tensor] = []
    outputs: list[Tensor] = []
    for i, stage in enumerate(stages):
        y = x
        for k_j, a_ij in zip(outputs, stage.a):
            y = y.add(k_j.detach(), alpha=run.h * a_ij)
        # ȳ_i is needed for a_n, and for the parameters of the stages before i (through k̄_j, j < i).
        y = y.detach().requires_grad_(need_state or any(stage_params[:i]))
        inputs.append(y)
        outputs.append(functions[1 if stage.next else 0](y))
    y_bars: list[Tensor | None] = [None] * len(stages)
    weighted: dict[float, Tensor] = {}  # h b a_{n+1}, once per distinct weight b (Heun: ½, ½)
    for i in reversed(range(len(stages))):
        y, k, params = inputs[i], outputs[i], stage_params[i]
        if not k.requires_grad:  # nothing here depends on what is differentiated
            continue
        wrt = ([y] if y.requires_grad else []) + params
        _refuse_foreign_leaves(k, wrt, run, n)  # also where wrt is empty: k then requires grad from outside
        if not wrt:
            continue
        if stages[i].b not in weighted:
            weighted[stages[i].b] = a * (run.h * stages[i].b)
        k_bar = weighted[stages[i].b]
        for j in range(i + 1, len(stages)):
            if y_bars[j] is not None and stages[j].a[i]:
                k_bar = k_bar.add(y_bars[j], alpha=run.h * stages[j].a[i])
        vjp = torch.autograd.grad(k, wrt, k_bar.to(k.dtype), allow_unused=True)
        if y.requires_grad:
            y_bars[i], vjp = vjp[0], vjp[1:]
        for p, g in zip(params, vjp):
            if g is None:  # a parameter the block holds but does not use, as in backprop
                continue
            grads[id(p)] = grads[id(p)] + g if id(p) in grads else g
    a_n = None
    if need_state:
        a_n = a
        for y_bar in y_bars:
            if y_bar is not None:
                a_n = a_n + y_bar
    return a_n, outputs[0].detach()


def _first_reverse_evaluation(
    run: AdjointRun,
    replay: RandomReplay,
    n: int,
    x_next: Tensor,
    f: ResidualFunction,
    f_next: ResidualFunction,
    cached: tuple[nn.Module, Tensor] | None,
) -> Tensor:
    """The reversal of step n starts by evaluating one function at x̃_{n+1}: f_{n+1} for Heun,
    f_n for Euler. Reuse the recompute of step n+1 when that is the same function at the same
    point, with no random numbers drawn by either (they would be different draws)."""
    stage = 1 if run.scheme.reversal_evaluates_next else 0
    index = second_stage_index(n, len(run.blocks)) if stage else n
    if cached is not None and cached[0] is run.blocks[index] and not replay.draws((n, stage)):
        return cached[1]
    return (f_next if stage else f)(x_next)


def _refuse_foreign_leaves(x_next: Tensor, inputs: list[Tensor], run: AdjointRun, n: int) -> None:
    """Refuse a step whose graph reaches a tensor that requires grad but is none of the step's
    inputs (its state and its blocks' parameters): the adjoint would give it no gradient."""
    known = {id(t) for t in inputs}
    seen = set()
    nodes = [x_next.grad_fn]
    while nodes:
        node = nodes.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        leaf = getattr(node, "variable", None)  # AccumulateGrad: a tensor autograd gives a gradient
        if leaf is not None and id(leaf) not in known:
            raise RuntimeError(
                f"step {n} of a ResidualStack with gradient='adjoint' ({type(run.blocks[n]).__name__} blocks) "
                f"uses a tensor of shape {tuple(leaf.shape)} that requires grad but is not a parameter of "
                "the step's blocks: a parameter passed in from outside, or owned by a module the block "
                "does not register. The adjoint differentiates only the stack's input and its blocks' "
                "parameters, so that tensor would get no gradient. Register it in the block (as an "
                "nn.Parameter or a submodule), or use gradient='backprop' or 'checkpoint' for this stack."
            )
        nodes.extend(next_node for next_node, _ in node.next_functions)


def unique_parameters(blocks: Sequence[nn.Module]) -> list[Tensor]:
    """Every parameter of the blocks once, shared (tied) blocks included only once."""
    return list(dict.fromkeys(p for b in blocks for p in b.parameters()))


@torch.compiler.disable  # the rebuild is Python control flow on autograd: it runs eagerly
def adjoint_integrate(
    x: Tensor,
    blocks: Sequence[nn.Module],
    scheme: type[Euler] | type[Heun],
    h: float,
    anchor_every: int | None = None,
) -> Tensor:
    """Integrate the stack with the memory-free adjoint as backward (see the module docstring)."""
    params = tuple(p for p in unique_parameters(blocks) if p.requires_grad)
    run = AdjointRun(tuple(blocks), scheme, h, anchor_every)
    return AdjointIntegration.apply(x, run, *params)
