"""ResidualStack: N residual functions integrated by Euler or Heun, with a choice of backward."""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Sequence
from functools import partial
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .adjoint import adjoint_integrate
from .buffers import preserved_buffers, unique_buffers
from .choices import check_choice, check_count
from .schemes import SCHEMES, SchemeName
from .trajectory import integrate, reverse_integrate

GradientMode = Literal["backprop", "checkpoint", "adjoint"]
StepRule = Literal["1/depth", "1"] | float  # h = 1/N, h = 1, or h itself (a positive number)
Interpolation = Literal["constant", "linear"]

GRADIENT_MODES: tuple[str, ...] = ("backprop", "checkpoint", "adjoint")
STEP_RULES: tuple[str, ...] = ("1/depth", "1")
INTERPOLATIONS: tuple[str, ...] = ("constant", "linear")


class ResidualStack(nn.Module):
    """A residual stack x_0 ↦ x_N over N same-shape residual functions f_0 .. f_{N−1}.

    Euler: x_{n+1} = x_n + h f_n(x_n) (a ResNet); Heun: the two-stage rule of
    :class:`~resnode_lightning.numerics.schemes.Heun` (a HeunNet), whose last step uses f_{N−1}
    twice. With ``step="1/depth"`` (h = 1/N) the stack is the Euler/Heun discretisation of the
    Neural ODE dx/ds = f(x; θ(s)) on [0, 1]; ``step="1"`` is the classical ResNet rule.

    Weights are tied when the same module is used at every step (:meth:`tied`); its gradient is
    the sum over steps. Any module may be shared; sharing is read from object identity.

    Args:
        blocks: the residual functions, one per step; each maps a tensor to one of its shape.
        scheme: ``"euler"`` (order 1) or ``"heun"`` (order 2).
        step: ``"1/depth"`` for h = 1/N, ``"1"`` for h = 1, or a positive number: h itself.
        gradient: how backward works. ``"backprop"``: plain autograd, exact, memory O(N).
            ``"checkpoint"``: exact recomputation (non-reentrant ``torch.utils.checkpoint``) of
            segments of ``anchor_every`` steps (default ⌈√N⌉), memory O(N/k + k).
            ``"adjoint"``: the memory-free reverse-depth adjoint of
            :mod:`~resnode_lightning.numerics.adjoint`; approximate, memory O(1) in N.
        anchor_every: adjoint only stores the true state every k steps and restarts the
            reconstruction from it (memory O(N/k), error reset per segment; k = 1 is exact);
            checkpoint uses it as the segment length. k >= N stores the input x_0 only (adjoint)
            and makes one segment (checkpoint); k > N warns.

    ``gradient`` and ``anchor_every`` are plain attributes: they may be changed between steps.
    Under ``torch.compile`` backprop and checkpoint compile with the rest of the model; the
    adjoint runs eagerly (a graph break), with its blocks compiled if they were compiled.
    Running buffers (BatchNorm) are updated once per forward in every mode.
    """

    def __init__(
        self,
        blocks: Sequence[nn.Module],
        scheme: SchemeName = "euler",
        step: StepRule = "1/depth",
        gradient: GradientMode = "backprop",
        anchor_every: int | None = None,
    ) -> None:
        super().__init__()
        if len(blocks) < 1:
            raise ValueError("a ResidualStack needs depth >= 1 (at least one residual function), got 0.")
        self.blocks = nn.ModuleList(blocks)
        self.scheme = scheme
        self.step = step
        self.gradient = gradient
        self.anchor_every = anchor_every

    @classmethod
    def tied(cls, block: nn.Module, depth: int, **options) -> ResidualStack:
        """A stack that applies the one module ``block`` at each of ``depth`` steps."""
        return cls([block] * check_count("depth", depth, 1, "the steps of the stack"), **options)

    # -- validated settings ---------------------------------------------------------------
    @property
    def scheme(self) -> str:
        return self._scheme

    @scheme.setter
    def scheme(self, value: str) -> None:
        self._scheme = check_choice("scheme", value, tuple(SCHEMES))

    @property
    def step(self) -> str | float:
        return self._step

    @step.setter
    def step(self, value: str | float) -> None:
        positive_number = (
            isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf
        )
        if value not in STEP_RULES and not positive_number:
            raise ValueError(
                f"step={value!r} is not one of {', '.join(map(repr, STEP_RULES))} or a positive number: "
                "give '1/depth' for h = 1/N (the Neural ODE view), '1' for the classical h = 1, or h "
                "itself, e.g. 0.1."
            )
        self._step = value if isinstance(value, str) else float(value)

    @property
    def gradient(self) -> str:
        return self._gradient

    @gradient.setter
    def gradient(self, value: str) -> None:
        self._gradient = check_choice("gradient", value, GRADIENT_MODES)

    @property
    def anchor_every(self) -> int | None:
        return self._anchor_every

    @anchor_every.setter
    def anchor_every(self, value: int | None) -> None:
        if value is not None:
            check_count("anchor_every", value, 1, "the steps between stored states (None: no anchor)")
        self._anchor_every = value
        self._warn_if_anchors_exceed_depth()

    def _warn_if_anchors_exceed_depth(self) -> None:
        if self.anchor_every is not None and self.anchor_every > self.depth:
            warnings.warn(
                f"anchor_every={self.anchor_every} is larger than the stack's depth N = {self.depth}: the "
                "adjoint then stores the input x_0 only (one anchor, as anchor_every=N) and checkpointing "
                "recomputes the whole stack as one segment. Give anchor_every <= N to store more states.",
                stacklevel=3,
            )

    # -- derived quantities ---------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def h(self) -> float:
        return 1.0 / self.depth if self.step == "1/depth" else float(self.step)

    @property
    def is_tied(self) -> bool:
        return all(b is self.blocks[0] for b in self.blocks)

    def extra_repr(self) -> str:
        anchors = f", anchor_every={self.anchor_every}" if self.anchor_every else ""
        return (
            f"depth={self.depth}, scheme={self.scheme!r}, step={self.step!r}, "
            f"gradient={self.gradient!r}, tied={self.is_tied}{anchors}"
        )

    # -- forward --------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        scheme = SCHEMES[self.scheme]
        needs_graph = torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in self.parameters())
        )
        if not needs_graph or self.gradient == "backprop":
            return integrate(x, self.blocks, scheme, self.h)
        if self.gradient == "adjoint":
            return adjoint_integrate(x, self.blocks, scheme, self.h, self.anchor_every)
        return self._checkpointed(x, scheme)

    @torch.no_grad()
    def states(self, x: Tensor) -> Tensor:
        """The whole trajectory x_0, x_1, .., x_N as one (N + 1, *x.shape) tensor (no graph).

        Train-mode BatchNorm normalises with batch statistics, as in the forward pass, but its
        running statistics are left as they were: looking at the trajectory is not a step.
        """
        scheme, states = SCHEMES[self.scheme], [x]
        with preserved_buffers(unique_buffers(self.blocks)):
            for n in range(self.depth):
                states.append(integrate(states[-1], self.blocks, scheme, self.h, n, n + 1))
        return torch.stack(states)

    @torch.no_grad()
    def reconstruct_input(self, output: Tensor) -> Tensor:
        """x̃_0, the input rebuilt from the output x_N by running the reversed step rule through
        all N steps, as the adjoint's backward rebuilds it (no graph; anchors are not used).

        ‖x̃_0 − x_0‖ / ‖x_0‖ measures the reversal's accumulated error: 0 when f ≡ 0, O(1/N)
        for Euler, O(Δ/N + 1/N²) for Heun (docs/method.md). Train-mode BatchNorm normalises with
        batch statistics and its running statistics are left as they were, as in :meth:`states`;
        blocks that draw random numbers draw them afresh.
        """
        with preserved_buffers(unique_buffers(self.blocks)):
            return reverse_integrate(output, self.blocks, SCHEMES[self.scheme], self.h)

    def _checkpointed(self, x: Tensor, scheme) -> Tensor:
        segment = self.anchor_every or math.ceil(math.sqrt(self.depth))
        # Eager, the recompute must not move BatchNorm's running statistics a second time. Under
        # torch.compile the checkpoint is traced once and its buffer updates are applied once by
        # the compiled graph, which takes no context_fn but selective-checkpointing policies.
        eager = not torch.compiler.is_compiling()
        contexts = {"context_fn": partial(_recompute_preserving_buffers, unique_buffers(self.blocks))} if eager else {}
        for start in range(0, self.depth, segment):
            stop = min(start + segment, self.depth)
            x = checkpoint(integrate, x, self.blocks, scheme, self.h, start, stop, use_reentrant=False, **contexts)
        return x

    # -- loading weights ------------------------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        """Refuse a state_dict that holds different weights for the copies of one shared block:
        loading would keep the last copy and report every key matched."""
        for indices in self._shared_blocks().values():
            for key in self.blocks[indices[0]].state_dict():
                tensors = [state_dict.get(f"{prefix}blocks.{i}.{key}") for i in indices]
                if any(t is not None and not torch.equal(t, tensors[0]) for t in tensors[1:]):
                    error_msgs.append(
                        f"{prefix}blocks holds one block shared by {len(indices)} steps (a tied stack), but the "
                        f"state_dict has different values for them ('{prefix}blocks.{indices[0]}.{key}' and "
                        "others): it comes from an untied model. Build the model untied (tied=False) to load "
                        "it as it is, or convert it with resnode_lightning.models.load_weights."
                    )
                    break
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _shared_blocks(self) -> dict[int, list[int]]:
        """The step indices of every block used at more than one step, by block identity."""
        indices: dict[int, list[int]] = {}
        for i, block in enumerate(self.blocks):
            indices.setdefault(id(block), []).append(i)
        return {key: steps for key, steps in indices.items() if len(steps) > 1}

    # -- changes of weights ---------------------------------------------------------------
    def untie(self) -> ResidualStack:
        """Give every step its own copy of its function; the stack computes the same function.

        Tied weights θ_n = θ become N independent copies θ_n = θ (the paper's untying). Only
        repeated modules are copied: the first use of each keeps its parameters, so an untied
        stack is left as it is. The parameter set grows: build the optimizer afterwards.
        """
        seen: set[int] = set()
        blocks = []
        for block in self.blocks:
            blocks.append(copy.deepcopy(block) if id(block) in seen else block)
            seen.add(id(block))
        self.blocks = nn.ModuleList(blocks)
        return self

    def deepen(self, depth: int, interpolation: Interpolation = "constant") -> ResidualStack:
        """Change the depth N → M, keeping θ as a function of depth s ∈ [0, 1].

        Block i of the new stack takes the weights of old block j = ⌊i·N/M⌋ (piecewise constant
        in depth, as the paper does), or with ``interpolation="linear"`` the mix
        (1 − w) θ_j + w θ_{j+1}, w = i·N/M − j, of the two neighbours. A tied stack stays tied
        (a depth-1 stack counts as tied): call :meth:`untie` afterwards for independent copies.
        Modules shared between some blocks of an untied stack come out as independent copies.
        With h = 1/M the function changes only by the discretisation error, O(1/N) for Euler.
        With a fixed step (``step="1"`` or a number) h does not shrink: the deeper stack adds
        up more steps of the same size and computes another function (a warning says so).
        """
        check_count("depth", depth, 1, "the steps of the stack")
        check_choice("interpolation", interpolation, INTERPOLATIONS)
        if self.step != "1/depth" and depth != self.depth:
            warnings.warn(
                f"deepening a stack with step={self.step!r} from N = {self.depth} to {depth}: h stays "
                f"{self.h:g}, so the deeper stack integrates over a {depth / self.depth:g}x longer time and "
                "computes another function. Only step='1/depth' (h = 1/N) keeps the function up to the "
                "discretisation error.",
                stacklevel=2,
            )
        old = list(self.blocks)
        if self.is_tied:
            self.blocks = nn.ModuleList([old[0]] * depth)
            self._warn_if_anchors_exceed_depth()
            return self
        new = []
        for i in range(depth):
            position = i * len(old) / depth
            j = int(position)
            block = copy.deepcopy(old[j])
            w = position - j
            if interpolation == "linear" and w > 0 and j + 1 < len(old):
                mix_weights(block, old[j], old[j + 1], w)
            new.append(block)
        self.blocks = nn.ModuleList(new)
        self._warn_if_anchors_exceed_depth()
        return self


def _recompute_preserving_buffers(buffers: list[Tensor]):
    """checkpoint's contexts: the forward as it is, the recompute with buffers restored after it."""
    return contextlib.nullcontext(), preserved_buffers(buffers)


@torch.no_grad()
def mix_weights(target: nn.Module, a: nn.Module, b: nn.Module, w: float) -> None:
    """target ← (1 − w) a + w b for every floating-point parameter and buffer (same structure)."""
    for t, x, y in zip(target.state_dict().values(), a.state_dict().values(), b.state_dict().values()):
        if t.is_floating_point():
            t.copy_(torch.lerp(x, y, w))
