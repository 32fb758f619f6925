"""Did-you-mean suggestions for unknown names (objectives, tasks, keys, presets, judges, ...)."""

from __future__ import annotations

import difflib
from typing import Iterable


def closest(name: str, choices: Iterable[str], cutoff: float = 0.5) -> str | None:
    """The choice most like ``name``, or None when none is close enough."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=cutoff)
    return close[0] if close else None


def suggest(name: str, choices: Iterable[str], cutoff: float = 0.5) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string when none is close."""
    match = closest(name, choices, cutoff)
    return f" (did you mean '{match}'?)" if match else ""
