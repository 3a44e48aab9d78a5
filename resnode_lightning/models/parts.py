"""Pieces the image models share: building a residual stack, the classifier head."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from torch import nn

from ..numerics import GradientMode, ResidualStack, SchemeName, StepRule


def residual_stack(
    make_block: Callable[[], nn.Module],
    depth: int,
    tied: bool = False,
    scheme: SchemeName = "euler",
    step: StepRule = "1/depth",
    gradient: GradientMode = "backprop",
    anchor_every: int | None = None,
) -> ResidualStack:
    """A ResidualStack of ``depth`` fresh blocks, or of one block used at every step when tied
    (θ_n = θ).

    ``scheme``, ``step``, ``gradient`` and ``anchor_every`` are :class:`ResidualStack`'s, passed
    on as they are; their meaning and defaults are its.
    """
    blocks = [make_block()] * depth if tied else [make_block() for _ in range(depth)]
    return ResidualStack(blocks, scheme=scheme, step=step, gradient=gradient, anchor_every=anchor_every)


def classifier_head(channels: int, num_classes: int, pre_activation: bool) -> nn.Sequential:
    """Global average pooling and a linear layer: (B, C, H, W) → (B, num_classes) logits.

    With ``pre_activation`` a BatchNorm and a ReLU come first: a pre-activation network's residual
    stream is never normalised or rectified by its blocks, so its head has to do it.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if pre_activation:
        layers["norm"] = nn.BatchNorm2d(channels)
        layers["relu"] = nn.ReLU()
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["fc"] = nn.Linear(channels, num_classes)
    return nn.Sequential(layers)
