"""The Lightning layer: the training module, its optimisation rules and the config files.

Built on :mod:`resnode_lightning.models` and :mod:`resnode_lightning.numerics` through their
public API only.
"""

from .classifier import ImageClassifier
from .gradient_monitor import GradientErrorMonitor
from .monitoring import StepCost
from .numerical_faults import NonFiniteTrainingError, SkipNonFiniteSteps
from .optimization import apply_lr_scales, parameter_groups, warmup
from .random_states import RandomStates

__all__ = [
    "GradientErrorMonitor",
    "ImageClassifier",
    "NonFiniteTrainingError",
    "RandomStates",
    "SkipNonFiniteSteps",
    "StepCost",
    "apply_lr_scales",
    "parameter_groups",
    "warmup",
]
