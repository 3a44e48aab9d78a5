"""Pre-activation ResNets whose stages are residual stacks (the paper's CIFAR and ImageNet models).

Layout (appendix C): stem → 4 stages of widths 64, 128, 256, 512 (x4 channels out of bottleneck
blocks) → BN, ReLU, global average pooling, linear. A stage of depth d is one transition block
that changes the shape, then a :class:`ResidualStack` of d − 1 same-shape blocks integrated with
step h (x_{n+1} = x_n + h f_n(x_n), h = 1/(d − 1) by default, Euler or Heun).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal, TypeVar

from torch import Tensor, nn

from ..numerics import GradientMode, ResidualStack, SchemeName, StepRule, choose
from .blocks import PreActBasicBlock, PreActBottleneck, conv1x1, conv3x3
from .freezing import Freezable
from .parts import classifier_head, residual_stack

BlockName = Literal["basic", "bottleneck"]
StemName = Literal["cifar", "imagenet"]
PresetName = Literal["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]

STAGES = 4
EXPANSION: dict[str, int] = {"basic": 1, "bottleneck": 4}


@dataclass(frozen=True)
class Preset:
    """A ResNet layout: blocks per stage (transition block included) and the kind of block."""

    depth: tuple[int, int, int, int]
    block: BlockName


PRESETS: dict[str, Preset] = {
    "resnet18": Preset((2, 2, 2, 2), "basic"),
    "resnet34": Preset((3, 4, 6, 3), "basic"),
    "resnet50": Preset((3, 4, 6, 3), "bottleneck"),
    "resnet101": Preset((3, 4, 23, 3), "bottleneck"),
    "resnet152": Preset((3, 8, 36, 3), "bottleneck"),
}

T = TypeVar("T")


def per_stage(argument: str, value: T | Sequence[T]) -> list[T]:
    """One value for every stage, or a list of exactly one value per stage."""
    if not isinstance(value, (list, tuple)):
        return [value] * STAGES
    if len(value) != STAGES:
        raise ValueError(
            f"{argument}={list(value)!r} has {len(value)} values; give one value for all {STAGES} "
            f"stages or a list of {STAGES}, one per stage."
        )
    return list(value)


def residual_function(
    block: BlockName, channels: int, zero_init_last_bn: bool, in_channels: int | None = None, stride: int = 1
) -> nn.Module:
    """f of a stage of ``channels`` channels: a pre-activation basic or bottleneck block (reading
    ``in_channels`` with ``stride`` in a transition block)."""
    if block == "basic":
        return PreActBasicBlock(channels, zero_init_last_bn, in_channels, stride)
    return PreActBottleneck(channels, EXPANSION["bottleneck"], zero_init_last_bn, in_channels, stride)


class TransitionBlock(nn.Module):
    """The first block of a stage, the one that may change the shape: x ↦ shortcut(x) + f(x).

    A classical residual block (step 1), trained with plain backprop and never inside a stack,
    since f(x) and x differ in shape. f is the stage's pre-activation block with its 3x3
    convolution strided and its first convolution reading ``in_channels``; the shortcut is
    BN(conv1x1(x)) with the same stride when the shape changes (torchvision's "downsample"),
    the identity otherwise.

    Args:
        block: ``"basic"`` or ``"bottleneck"``.
        in_channels: channels of x.
        channels: channels of the output.
        stride: spatial stride (2 halves height and width).
        zero_init_last_bn: start f's last BatchNorm scale at 0 (f ≡ 0).
    """

    def __init__(self, block: BlockName, in_channels: int, channels: int, stride: int, zero_init_last_bn: bool) -> None:
        super().__init__()
        self.residual = residual_function(block, channels, zero_init_last_bn, in_channels, stride)
        if stride == 1 and in_channels == channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                OrderedDict(conv=conv1x1(in_channels, channels, stride), norm=nn.BatchNorm2d(channels))
            )

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.residual(x)


class Stage(nn.Module):
    """x ↦ stack(transition(x)): a transition block, then a residual stack of same-shape blocks."""

    def __init__(self, transition: TransitionBlock, stack: ResidualStack) -> None:
        super().__init__()
        self.transition = transition
        self.stack = stack

    @property
    def depth(self) -> int:
        """Blocks in the stage: the transition block and the stack's N."""
        return 1 + self.stack.depth

    def forward(self, x: Tensor) -> Tensor:
        return self.stack(self.transition(x))


def cifar_stem(in_channels: int, width: int) -> nn.Sequential:
    """3x3 convolution (stride 1, no pooling), BN, ReLU: 32x32 images keep their resolution."""
    return nn.Sequential(OrderedDict(conv=conv3x3(in_channels, width), norm=nn.BatchNorm2d(width), relu=nn.ReLU()))


def imagenet_stem(in_channels: int, width: int) -> nn.Sequential:
    """7x7 stride-2 convolution, BN, ReLU, 3x3 stride-2 max-pooling: 224 → 56."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
            norm=nn.BatchNorm2d(width),
            relu=nn.ReLU(),
            pool=nn.MaxPool2d(3, stride=2, padding=1),
        )
    )


STEMS = {"cifar": cifar_stem, "imagenet": imagenet_stem}


class ResNet(Freezable):
    """A pre-activation ResNet whose stages are residual stacks, the paper's ResNet-18 to -152.

    x ↦ head(stage_4(… stage_1(stem(x)))), stage_i(x) = stack_i(transition_i(x)), and a stack of
    depth N computes x_{n+1} = x_n + h f(x_n; θ_n) (Euler) or Heun's rule, with h = 1/N by
    default: the discretisation of the Neural ODE dx/ds = f(x; θ(s)) on [0, 1]. With
    ``step="1"`` and Euler it is the classical pre-activation ResNet. Stage options are one value
    for all four stages or a list of four; the stacks are ``model.stages[i].stack`` (or
    ``model.stacks``) and can be changed later (``stack.gradient = "adjoint"``).

    Args:
        preset: the layout the other arguments start from: ``"resnet18"`` [2, 2, 2, 2] and
            ``"resnet34"`` [3, 4, 6, 3] of basic blocks, ``"resnet50"`` [3, 4, 6, 3],
            ``"resnet101"`` [3, 4, 23, 3] and ``"resnet152"`` [3, 8, 36, 3] of bottlenecks.
        depth: blocks per stage, transition block included, each >= 2 (stack depth = depth − 1),
            e.g. [4, 4, 64, 4]; None: the preset's.
        block: ``"basic"`` (two 3x3 convolutions) or ``"bottleneck"`` (1x1, 3x3, 1x1 with 4x
            as many output channels); None: the preset's.
        stem: ``"cifar"`` (3x3 convolution, full resolution) or ``"imagenet"`` (7x7 stride 2 and
            max-pooling).
        base_width: channels of the stem and of stage 1; stage i has base_width · 2^(i−1)
            (times 4 out of bottlenecks). 64 in the paper; smaller for quick tests.
        num_classes: outputs of the linear head.
        in_channels: channels of the input images.
        scheme: ``"euler"`` (a ResNet) or ``"heun"`` (a HeunNet), per stage.
        step: ``"1/depth"`` (h = 1/N), ``"1"`` (h = 1, classical) or a positive number (h
            itself), per stage.
        gradient: ``"backprop"``, ``"checkpoint"`` or ``"adjoint"`` (memory-free, approximate),
            per stage; transition blocks always use backprop.
        anchor_every: store the true state every k steps of the stack (adjoint; segment length of
            checkpointing), per stage; None: never (adjoint), ⌈√N⌉ (checkpoint).
        tied: one block used at every step of the stage's stack (θ_n = θ), per stage.
        zero_init_last_bn: start the last BatchNorm scale of every block at 0, so that every
            residual function is f ≡ 0 at initialisation (stacks are the identity).
    """

    def __init__(
        self,
        preset: PresetName = "resnet18",
        depth: int | list[int] | None = None,
        block: BlockName | None = None,
        stem: StemName = "cifar",
        base_width: int = 64,
        num_classes: int = 10,
        in_channels: int = 3,
        scheme: SchemeName | list[SchemeName] = "euler",
        step: StepRule | list[StepRule] = "1/depth",
        gradient: GradientMode | list[GradientMode] = "backprop",
        anchor_every: int | None | list[int | None] = None,
        tied: bool | list[bool] = False,
        zero_init_last_bn: bool = True,
    ) -> None:
        super().__init__()
        layout = choose("preset", preset, PRESETS)
        block = layout.block if block is None else block
        expansion = choose("block", block, EXPANSION)
        stack_depths = self.stack_depths(layout.depth if depth is None else depth)
        # one value per stage for each stack option, checked here so that a wrong length is named
        schemes = per_stage("scheme", scheme)
        steps = per_stage("step", step)
        gradients = per_stage("gradient", gradient)
        anchors = per_stage("anchor_every", anchor_every)
        tied_stages = per_stage("tied", tied)

        self.stem = choose("stem", stem, STEMS)(in_channels, base_width)
        stages = []
        stage_input = base_width
        for i, stack_depth in enumerate(stack_depths):
            channels = base_width * 2**i * expansion
            transition = TransitionBlock(block, stage_input, channels, 1 if i == 0 else 2, zero_init_last_bn)
            stack = residual_stack(
                partial(residual_function, block, channels, zero_init_last_bn),
                stack_depth,
                tied=tied_stages[i],
                scheme=schemes[i],
                step=steps[i],
                gradient=gradients[i],
                anchor_every=anchors[i],
            )
            stages.append(Stage(transition, stack))
            stage_input = channels
        self.stages = nn.ModuleList(stages)
        self.head = classifier_head(stage_input, num_classes, pre_activation=True)

    @staticmethod
    def stack_depths(depth: int | Sequence[int]) -> list[int]:
        """The stack depth N of each stage for stage depths ``depth`` (N = depth − 1)."""
        depths = per_stage("depth", depth)
        for number, stage_depth in enumerate(depths, start=1):
            is_integer = isinstance(stage_depth, int) and not isinstance(stage_depth, bool)
            if not is_integer or stage_depth < 2:
                kind = "" if is_integer else f", a {type(stage_depth).__name__},"
                raise ValueError(
                    f"stage {number} has depth {stage_depth!r}{kind} but a stage's depth counts its blocks: "
                    "one transition block followed by a residual stack of depth − 1 >= 1 blocks. Give "
                    "every stage an integer depth >= 2 (e.g. depth=[2, 2, 2, 2])."
                )
        return [stage_depth - 1 for stage_depth in depths]

    @property
    def stacks(self) -> list[ResidualStack]:
        """The residual stack of each stage, stage 1 first."""
        return [stage.stack for stage in self.stages]

    @property
    def depth(self) -> list[int]:
        """Blocks per stage, transition block included (the constructor's ``depth``)."""
        return [stage.depth for stage in self.stages]

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, H, W) images → (B, num_classes) logits."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)
