"""The paper's "simple ResNet" (its Figure 4): heavy downsampling, then one deep residual stack."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from ..numerics import GradientMode, ResidualStack, SchemeName, StepRule, check_count
from .blocks import PreActBasicBlock
from .freezing import Freezable
from .parts import classifier_head, residual_stack


class SimpleResNet(Freezable):
    """5x5 stride-3 convolution to ``width`` channels, BN, ReLU, a residual stack of N
    pre-activation basic blocks, global average pooling, linear.

    The convolution takes 32x32 CIFAR images to 10x10. Every block starts with its last
    BatchNorm scale at 0 (f ≡ 0): the stack is the identity at initialisation, where the adjoint
    is exact. The stack computes x_{n+1} = x_n + h f(x_n; θ_n) (or Heun's rule), h = 1/N by
    default; the paper trains it with backprop or the adjoint for N = 2 .. 64. Its one stack is
    stage 1 for :func:`~.transfer.train_only`.

    Args:
        depth: N, the number of residual blocks (steps of the stack).
        width: channels of the stack (16 in the paper).
        num_classes: outputs of the linear head.
        in_channels: channels of the input images.
        scheme: ``"euler"`` (a ResNet) or ``"heun"`` (a HeunNet).
        step: ``"1/depth"`` (h = 1/N), ``"1"`` (h = 1, classical) or a positive number (h itself).
        gradient: ``"backprop"``, ``"checkpoint"`` or ``"adjoint"`` (memory-free, approximate).
        anchor_every: store the true state every k steps (adjoint; segment length of checkpointing).
        tied: one block used at every step (θ_n = θ).
    """

    def __init__(
        self,
        depth: int = 16,
        width: int = 16,
        num_classes: int = 10,
        in_channels: int = 3,
        scheme: SchemeName = "euler",
        step: StepRule = "1/depth",
        gradient: GradientMode = "backprop",
        anchor_every: int | None = None,
        tied: bool = False,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_channels, width, 5, stride=3, padding=1, bias=False),
                norm=nn.BatchNorm2d(width),
                relu=nn.ReLU(),
            )
        )
        (stack_depth,) = self.stack_depths(depth)
        self.stack = residual_stack(
            lambda: PreActBasicBlock(width, zero_init_last_bn=True),
            stack_depth,
            tied=tied,
            scheme=scheme,
            step=step,
            gradient=gradient,
            anchor_every=anchor_every,
        )
        self.head = classifier_head(width, num_classes, pre_activation=False)

    @staticmethod
    def stack_depths(depth: int) -> list[int]:
        """The depth of the one stack: N = ``depth``."""
        return [check_count("depth", depth, 1, "the blocks of the residual stack (N)")]

    @property
    def stacks(self) -> list[ResidualStack]:
        """The model's one residual stack, in a list like :attr:`ResNet.stacks`."""
        return [self.stack]

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, 32, 32) images → (B, num_classes) logits."""
        return self.head(self.stack(self.stem(x)))
