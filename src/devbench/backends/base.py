"""What every backend shares: the protocol the runner drives, the outcome of a cell, how failures become a
row's status, the correctness check against the float64 reference, and the loop that calls an op ``number``
times.

A backend module (:mod:`devbench.backends.tf`, :mod:`devbench.backends.numpy`) imports this one and never
another backend. The loop itself is :func:`devbench.timer.python_loop` (re-exported here): the timer needs it
as its default block, and the timer must not import a backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from devbench.errors import first_line
from devbench.ops import CHECK_SIZE, TOLERANCE, UnsupportedCombination, relative_error
from devbench.spec import Cell, TimingPolicy
from devbench.timer import Measurement, python_loop

__all__ = [
    "Backend",
    "CellFailure",
    "CellOutcome",
    "Outcome",
    "UnsupportedCombination",
    "check_against_reference",
    "classify_common",
    "error_reason",
    "python_loop",
]


class Outcome(Protocol):
    """What a backend returns for a measured cell (:class:`CellOutcome`, or a test's stand-in)."""

    @property
    def placed_device(self) -> str: ...
    @property
    def flops(self) -> float: ...
    @property
    def bytes(self) -> float: ...
    @property
    def measurement(self) -> Any: ...


class Backend(Protocol):
    """What the runner drives: measure a cell, turn its exception into (status, reason), clean up after it."""

    def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int) -> Outcome: ...

    def classify(self, exc: BaseException) -> tuple[str, str]: ...

    def release(self) -> None: ...


class CellFailure(Exception):
    """A cell that ran but must not be reported as ``ok`` (placement or correctness check failed)."""

    def __init__(self, status: str, reason: str, placed_device: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.placed_device = placed_device


@dataclass
class CellOutcome:
    measurement: Measurement[Any]
    placed_device: str
    flops: float
    """FLOPs per call."""
    bytes: float
    """Minimum bytes moved per call."""
    traces: int = 0
    """How many times the timed compiled function was traced over the whole cell (0 in eager mode and for numpy).
    The cold call traces once; a larger count means retracing, and ``note`` says it happened while timing."""
    note: str = ""
    """A remark for the row's ``reason`` on an ``ok`` cell."""


# ---------------------------------------------------------------------------------------------------------
# Errors -> status


def error_reason(exc: BaseException) -> str:
    """``TypeName: first line of the message`` (the type alone when the message is empty)."""
    message = first_line(getattr(exc, "message", None) or str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def classify_common(exc: BaseException) -> tuple[str, str] | None:
    """(status, reason) for the failures every backend shares, None for the framework's own errors.

    A failed check keeps its status (``wrong``, ``fallback``), an op without a version at this dtype is
    ``unsupported``, a host allocation that failed is ``oom``.
    """
    if isinstance(exc, CellFailure):
        return exc.status, exc.reason
    if isinstance(exc, UnsupportedCombination):
        return "unsupported", first_line(str(exc)) or type(exc).__name__
    if isinstance(exc, MemoryError):
        return "oom", error_reason(exc)
    return None


def classify(exc: BaseException) -> tuple[str, str]:
    """(status, reason) with no framework errors known: the shared ones, else ``error``."""
    return classify_common(exc) or ("error", error_reason(exc))


# ---------------------------------------------------------------------------------------------------------
# Correctness


def check_against_reference(got: Sequence[np.ndarray], expected: Sequence[np.ndarray], dtype: str,
                            who: str = "") -> CellFailure | None:
    """A ``wrong`` failure when an output leaf is off its float64 reference by more than ``dtype`` allows.

    ``got`` and ``expected`` are the leaves of one call at n = :data:`devbench.ops.CHECK_SIZE`; the error is
    relative (max|out - ref| / max|ref|, see :func:`devbench.ops.relative_error`); ``who`` prefixes the
    reason (e.g. ``numpy``) where the device alone would not say which implementation was wrong.
    """
    if len(got) != len(expected):
        return CellFailure("wrong", f"{len(got)} outputs where the reference has {len(expected)}")
    tolerance = TOLERANCE[dtype]
    for i, (out, ref) in enumerate(zip(got, expected, strict=True)):
        err = relative_error(np.asarray(out, dtype=np.float64), ref)
        if not err <= tolerance:
            prefix = f"{who} output" if who else "output"
            return CellFailure(
                "wrong",
                f"{prefix} {i} at n={CHECK_SIZE} is off the numpy float64 reference by {err:.3g} "
                f"(relative; {dtype} allows {tolerance:g})",
            )
    return None
