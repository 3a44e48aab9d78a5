"""Residual functions f(x; θ) for images: the paper's pre-activation blocks (appendix C).

Each maps (B, C, H, W) to (B, C, H, W), so it can sit inside a ResidualStack, which adds the
skip connection and the step h: x + h f(x).
"""

from __future__ import annotations

from torch import Tensor, nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class PreActBasicBlock(nn.Module):
    """f(x) = bn2(conv2(relu(bn1(conv1(relu(x)))))), two 3x3 convolutions of ``channels``.

    Args:
        channels: output channels (and input channels, unless ``in_channels`` says otherwise).
        zero_init_last_bn: start with bn2's scale at 0, so that f ≡ 0 and the stack is the
            identity at initialisation (the adjoint is then exact).
        in_channels: input channels when they differ (the first block of a stage); None: same.
        stride: stride of conv1 (2 halves the resolution, in a stage's first block).
    """

    def __init__(
        self, channels: int, zero_init_last_bn: bool = False, in_channels: int | None = None, stride: int = 1
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels or channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        if zero_init_last_bn:
            nn.init.zeros_(self.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(self.relu(x))))))


class PreActBottleneck(nn.Module):
    """f(x) = bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(relu(x))))))))): 1x1 down to
    ``channels // expansion``, 3x3, 1x1 back up to ``channels``.

    Args:
        channels: output channels (4x the stage width in a ResNet-50), and input channels unless
            ``in_channels`` says otherwise.
        expansion: ratio of ``channels`` to the inner width.
        zero_init_last_bn: start with bn3's scale at 0 (f ≡ 0 at initialisation).
        in_channels: input channels when they differ (the first block of a stage); None: same.
        stride: stride of the 3x3 convolution (torchvision's "ResNet v1.5" placement).
    """

    def __init__(
        self,
        channels: int,
        expansion: int = 4,
        zero_init_last_bn: bool = False,
        in_channels: int | None = None,
        stride: int = 1,
    ) -> None:
        super().__init__()
        if channels % expansion:
            raise ValueError(f"channels={channels} must be a multiple of expansion={expansion}.")
        width = channels // expansion
        self.conv1 = conv1x1(in_channels or channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, channels)
        self.bn3 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        if zero_init_last_bn:
            nn.init.zeros_(self.bn3.weight)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1(self.relu(x)))
        out = self.bn2(self.conv2(self.relu(out)))
        return self.bn3(self.conv3(self.relu(out)))
