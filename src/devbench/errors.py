"""The one user-facing error type.

    DevbenchError
     └── UsageError      bad input from the user: the CLI prints one line and exits 2

Everything else raised inside devbench is a bug and keeps its traceback. Per-cell failures during a sweep
(unsupported dtype, out of memory, wrong result) are not exceptions at this level: the runner turns them
into a row's ``status`` and the sweep goes on.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DevbenchError(Exception):
    """Base class of devbench's own errors."""


class UsageError(DevbenchError):
    """A bad value given by the user. Its message is one line that names the value and what is allowed."""


def did_you_mean(value: str, allowed: Iterable[str]) -> str:
    """Return ' (did you mean X?)' for a near miss of ``value`` in ``allowed``, else ''."""
    close = difflib.get_close_matches(value.lower(), [a.lower() for a in allowed], n=1, cutoff=0.6)
    if not close:
        return ""
    original = {a.lower(): a for a in allowed}
    return f" (did you mean {original[close[0]]!r}?)"


def choose(kind: str, value: str, allowed: Iterable[str]) -> str:
    """Validate ``value`` against ``allowed`` (case-insensitive); return the canonical spelling.

    Raises UsageError naming the value, the near miss if any, and every allowed value.
    """
    allowed = list(allowed)
    for a in allowed:
        if a.lower() == value.strip().lower():
            return a
    raise UsageError(
        f"unknown {kind} {value!r}{did_you_mean(value.strip(), allowed)}; allowed: {', '.join(allowed)}"
    )


def choose_list(kind: str, text: str, allowed: Iterable[str]) -> tuple[str, ...]:
    """Parse a comma-separated list of choices, keeping order and dropping repeats."""
    allowed = list(allowed)
    items = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise UsageError(f"empty {kind} in {text!r}; give a comma-separated list of: {', '.join(allowed)}")
    chosen = [choose(kind, item, allowed) for item in items]
    return tuple(dict.fromkeys(chosen))


def first_line(text: str, limit: int = 300) -> str:
    """The first non-blank line of ``text``, stripped and cut to ``limit`` characters: a reason for one table cell.

    Framework errors carry pages of context (TF appends the whole op stack); a row keeps the line that names
    what went wrong.
    """
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return line[:limit]
