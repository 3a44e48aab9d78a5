"""The numerics of residual stacks: step rules, stacks and the adjoint. Imports torch only."""

from .adjoint import adjoint_integrate
from .schemes import SCHEMES, Euler, Heun
from .stack import GRADIENT_MODES, ResidualStack

__all__ = ["GRADIENT_MODES", "SCHEMES", "Euler", "Heun", "ResidualStack", "adjoint_integrate"]
