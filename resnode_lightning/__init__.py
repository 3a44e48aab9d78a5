"""resnode_lightning: ResNets as discretised Neural ODEs, with a memory-free adjoint backward."""

from importlib.metadata import PackageNotFoundError, version

from .numerics import Euler, Heun, ResidualStack

try:
    __version__ = version("resnode_lightning")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["Euler", "Heun", "ResidualStack", "__version__"]
