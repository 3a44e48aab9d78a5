"""The Lightning layer: the training module, its optimisation rules and the config files.

Built on :mod:`resnode_lightning.models` and :mod:`resnode_lightning.numerics` through their
public API only.
"""

from .classifier import ImageClassifier
from .gradient_monitor import GradientErrorMonitor
from .monitoring import StepCost
from .optimization import apply_lr_scales, parameter_groups, warmup

__all__ = ["GradientErrorMonitor", "ImageClassifier", "StepCost", "apply_lr_scales", "parameter_groups", "warmup"]
