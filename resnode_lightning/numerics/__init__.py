"""The numerics of residual stacks: step rules, stacks and the adjoint. Imports torch only."""

from .adjoint import adjoint_integrate
from .buffers import preserved_buffers, unique_buffers
from .choices import check_choice, check_count, choose
from .randomness import GeneratorStates
from .schemes import SCHEMES, Euler, Heun, SchemeName
from .stack import GRADIENT_MODES, GradientMode, Interpolation, ResidualStack, StepRule

__all__ = [
    "GRADIENT_MODES",
    "SCHEMES",
    "Euler",
    "GeneratorStates",
    "GradientMode",
    "Heun",
    "Interpolation",
    "ResidualStack",
    "SchemeName",
    "StepRule",
    "adjoint_integrate",
    "check_choice",
    "check_count",
    "choose",
    "preserved_buffers",
    "unique_buffers",
]
