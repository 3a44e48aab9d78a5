"""Diagnostics of the adjoint: its gradient error against exact gradients, measured on a model.

:mod:`.gradient_error` measures (torch only); the ``GradientErrorMonitor`` callback
(:mod:`resnode_lightning.training.gradient_monitor`) measures during training and can fall back
to exact gradients; ``resnode gradcheck`` measures a config's network over depths (the paper's
Figure 3c, :mod:`.depth_sweep`); :mod:`.smoothness` measures how smooth a stack's weights are in
depth, which the Heun adjoint's accuracy rests on.
"""

from .gradient_error import StackGradientError, adjoint_gradient_errors, cosine_similarity, relative_error
from .smoothness import DepthSmoothness, depth_smoothness, network_smoothness

__all__ = [
    "DepthSmoothness",
    "StackGradientError",
    "adjoint_gradient_errors",
    "cosine_similarity",
    "depth_smoothness",
    "network_smoothness",
    "relative_error",
]
