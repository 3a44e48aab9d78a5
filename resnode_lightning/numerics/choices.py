"""Checking named choices and counts, with errors that name the argument and say what it accepts."""

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


def check_count(argument: str, value: object, minimum: int, counts: str) -> int:
    """``value`` if it is an integer >= ``minimum``, else a ValueError that says what it counts
    (a float such as 4.0 is refused: a depth is a number of blocks, not a length)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(
            f"{argument}={value!r} is a {type(value).__name__}, but it counts {counts}: give an integer "
            f">= {minimum}."
        )
    if value < minimum:
        raise ValueError(f"{argument}={value!r}, but it counts {counts}: give an integer >= {minimum}.")
    return value
