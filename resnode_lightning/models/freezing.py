"""Freezing named parts of a model: no gradient, and BatchNorm statistics kept as they are."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


class Freezable(nn.Module):
    """A module some of whose submodules (by dotted name, e.g. ``"stages.2"``) can be frozen.

    A frozen part has ``requires_grad=False`` on all its parameters and stays in eval mode, also
    after ``model.train()``: its BatchNorm layers normalise with their running statistics and do
    not update them. A residual stack whose parameters are all frozen takes no gradient work in
    its adjoint backward but what its input's gradient needs (none at all when nothing before it
    is trained).
    """

    def __init__(self) -> None:
        super().__init__()
        self.frozen_parts: list[str] = []

    def freeze(self, parts: Sequence[str]) -> Freezable:
        """Freeze the named submodules (in place, returns self); others are left as they are."""
        for name in parts:
            self._part(name).requires_grad_(False)
        self.frozen_parts = list(dict.fromkeys([*self.frozen_parts, *parts]))
        return self.train(self.training)

    def unfreeze(self) -> Freezable:
        """Make every frozen part trainable again and let it follow the model's mode."""
        for name in self.frozen_parts:
            self._part(name).requires_grad_(True)
        self.frozen_parts = []
        return self.train(self.training)

    def train(self, mode: bool = True) -> Freezable:
        """Set the mode of the model, then put the frozen parts back into eval mode."""
        super().train(mode)
        for name in self.frozen_parts:
            self._part(name).eval()
        return self

    def _part(self, name: str) -> nn.Module:
        try:
            return self.get_submodule(name)
        except AttributeError:
            children = ", ".join(repr(n) for n, _ in self.named_children())
            raise ValueError(
                f"{type(self).__name__} has no part {name!r} to freeze; name a submodule by its dotted "
                f"path: one of {children}, or a part of one (e.g. 'stages.2')."
            ) from None
