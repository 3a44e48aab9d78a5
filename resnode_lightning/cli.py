"""The ``resnode`` command. For now it reports its version; the LightningCLI comes next."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from . import __version__


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="resnode",
        description="ResNets as discretised Neural ODEs, trained with a memory-free adjoint.",
    )
    parser.add_argument("--version", action="version", version=f"resnode_lightning {__version__}")
    parser.parse_args(args)
    parser.print_help()
