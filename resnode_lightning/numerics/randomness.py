"""Replaying the random numbers a residual function draws, so that a backward pass that evaluates
it again sees the forward's randomness (Dropout masks, StochasticDepth, ``torch.rand`` in a
``forward``), as ``torch.utils.checkpoint`` does.

A state is recorded only for the evaluations that really draw: the default generators' states
(the CPU's and that of the stack's device) are compared before and after each evaluation, so a
deterministic stack stores nothing. A generator the function creates itself is not seen.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .schemes import ResidualFunction


@dataclass(frozen=True)
class GeneratorStates:
    """The states of the CPU's default generator and, off the CPU, of the device's."""

    cpu: Tensor
    device: Tensor | None

    @staticmethod
    def now(device: torch.device) -> GeneratorStates:
        on_device = None if device.type == "cpu" else device_generators(device.type).get_rng_state(device)
        return GeneratorStates(torch.get_rng_state(), on_device)

    @contextmanager
    def active(self, device: torch.device) -> Iterator[None]:
        """A block in which the default generators (the CPU's and, off the CPU, ``device``'s) start
        from these states; on exit they are back to what they were on entry."""
        devices = [] if self.device is None else [device]
        with torch.random.fork_rng(devices=devices, device_type=device.type):
            torch.set_rng_state(self.cpu)
            if self.device is not None:
                device_generators(device.type).set_rng_state(self.device, device)
            yield

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, GeneratorStates)
            and torch.equal(self.cpu, other.cpu)
            and (self.device is None) == (other.device is None)
            and (self.device is None or torch.equal(self.device, other.device))
        )

    __hash__ = None  # type: ignore[assignment]  # mutable tensors inside


def device_generators(device_type: str) -> Any:
    """The module (``torch.cuda``, ``torch.mps``, ...) that holds the device's generator state,
    or an error: without it, random numbers drawn on the device could not be replayed."""
    try:
        module = torch.get_device_module(device_type)
    except RuntimeError:
        module = None
    if not hasattr(module, "get_rng_state"):
        raise RuntimeError(
            f"gradient='adjoint' replays in backward the random numbers its blocks draw, which needs the "
            f"generator state of the device, but device type {device_type!r} has none "
            f"(torch.{device_type}.get_rng_state). Use gradient='checkpoint' or 'backprop' on this device."
        )
    return module


class RandomReplay:
    """The generator states before each evaluation that drew, by key (e.g. step n and stage)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.states: dict[Hashable, GeneratorStates] = {}

    def recording(self, f: ResidualFunction, key: Hashable) -> ResidualFunction:
        """f, keeping the generator states it started from when it draws random numbers."""

        def recorded(x: Tensor) -> Tensor:
            before = GeneratorStates.now(self.device)
            k = f(x)
            if GeneratorStates.now(self.device) != before:
                self.states[key] = before
            return k

        return recorded

    def draws(self, key: Hashable) -> bool:
        return key in self.states

    def replaying(self, f: ResidualFunction, key: Hashable) -> ResidualFunction:
        """f, run from the generator states recorded under ``key`` (f itself if it drew nothing);
        the generators are restored afterwards, so a backward pass consumes no random numbers."""
        if key not in self.states:
            return f

        def replayed(x: Tensor) -> Tensor:
            with self.states[key].active(self.device):
                return f(x)

        return replayed
