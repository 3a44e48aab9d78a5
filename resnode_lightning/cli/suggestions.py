"""'Did you mean ...?' for misspelt config keys, flags, sweep file keys and macros: one helper for all."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

UNKNOWN_KEY = re.compile(
    r"unrecognized arguments: --([A-Za-z_][\w.]*)|does not accept options? '([\w.]+)'|Key '([\w.]+)'"
)


def closest(word: str, known: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The known word most like ``word`` (difflib's ratio at least ``cutoff``), or None."""
    match = difflib.get_close_matches(str(word), list(known), n=1, cutoff=cutoff)
    return match[0] if match else None


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`` (did you mean 'values'?)`` for the known word closest to ``word``, or ``""`` when none is close."""
    match = closest(word, known)
    return f" (did you mean {match!r}?)" if match else ""


def closest_key(unknown: str, known: Iterable[str]) -> str | None:
    """The known dotted key closest to ``unknown``: its longest prefix that is close to a known key,
    with the rest of ``unknown`` appended (``model.netwrok.depth`` → ``model.network.depth``)."""
    known = list(known)
    parts = unknown.split(".")
    for end in range(len(parts), 0, -1):
        match = closest(".".join(parts[:end]), known, cutoff=0.8)
        if match:
            return ".".join([match, *parts[end:]])
    return None


def with_suggestion(message: str, known: Iterable[str]) -> str:
    """``message`` followed by a suggestion for the first unknown key it names, when one is close."""
    found = UNKNOWN_KEY.search(message)
    if not found:
        return message
    unknown = next(group for group in found.groups() if group)
    suggestion = closest_key(unknown, known)
    if suggestion is None or suggestion == unknown:
        return message
    return f"{message}\nDid you mean '{suggestion}'?"
