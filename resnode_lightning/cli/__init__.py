"""The ``resnode`` command line: the application shell over the Lightning layer."""

from .app import command, main

__all__ = ["command", "main"]
