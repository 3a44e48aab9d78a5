"""Checking a named choice, with an error that names the argument and lists what it accepts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")


def choose(argument: str, value: str, table: Mapping[str, T]) -> T:
    """``table[value]``, or a ValueError that names the argument and lists the choices."""
    if value not in table:
        raise ValueError(f"{argument}={value!r} is not one of {', '.join(map(repr, table))}.")
    return table[value]


def check_choice(argument: str, value: str, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``, else the error of :func:`choose`."""
    choose(argument, value, dict.fromkeys(choices))
    return value
