"""Argument types shared by the small commands beside the LightningCLI (`resnode sweep`, `resnode gradcheck`)."""

from __future__ import annotations

import argparse


def positive(text: str) -> int:
    """A whole number >= 1, or argparse's error naming the value."""
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return number
