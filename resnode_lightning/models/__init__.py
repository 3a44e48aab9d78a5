"""Models built on residual stacks, and the weight workflow (untie, deepen, transfer, freeze).

No Lightning here: everything is a plain ``nn.Module`` or a function of one.
"""

from .blocks import PreActBasicBlock, PreActBottleneck
from .freezing import Freezable
from .linear import LinearResidual, LinearResNet, factorisation_loss, train_by_gradient_flow, weights_in_depth
from .resnet import PRESETS, Preset, ResNet, Stage, TransitionBlock
from .scalar import ScalarResNet, fit_scalar_map, trajectories_cross
from .simple import SimpleResNet
from .transfer import deepen, load_weights, named_stacks, train_only, untie

__all__ = [
    "PRESETS",
    "Freezable",
    "LinearResNet",
    "LinearResidual",
    "PreActBasicBlock",
    "PreActBottleneck",
    "Preset",
    "ResNet",
    "ScalarResNet",
    "SimpleResNet",
    "Stage",
    "TransitionBlock",
    "deepen",
    "factorisation_loss",
    "fit_scalar_map",
    "load_weights",
    "named_stacks",
    "train_by_gradient_flow",
    "train_only",
    "trajectories_cross",
    "untie",
    "weights_in_depth",
]
