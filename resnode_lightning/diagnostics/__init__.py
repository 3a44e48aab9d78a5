"""Diagnostics of the adjoint: its gradient error against exact gradients, measured on a model.

:mod:`.gradient_error` measures (torch only); the ``GradientErrorMonitor`` callback
(:mod:`resnode_lightning.training.gradient_monitor`) measures during training and can fall back
to exact gradients; ``resnode gradcheck`` (:mod:`.gradcheck`) measures a config's network over
depths, the paper's Figure 3c.
"""

from .gradient_error import StackGradientError, adjoint_gradient_errors, cosine_similarity, relative_error

__all__ = ["StackGradientError", "adjoint_gradient_errors", "cosine_similarity", "relative_error"]
