"""What every backend shares: the protocol the runner drives, the outcome of a cell, how failures become a
row's status, the correctness check against the float64 reference, the loop that calls an op ``number``
times, and the timing of each device's first op (:class:`Initialising`, :data:`FIRST_OPS`), so that device
initialisation is a number of its own (``meta.json["init"]``) and never part of a cell's ``cold_s``.

A new backend adds device initialisation in three lines: ``initialise(device)`` returns
``FIRST_OPS.time("<framework>", device, first_op, "<what first_op does>")`` with ``first_op`` the smallest op
on the device and a wait for its result on the host (or ``FIRST_OPS.nothing_to_initialise(...)`` for the
host's own memory); ``runtime_init()`` returns the framework's start-up seconds or None; and ``run_cell``
calls ``initialise(cell.device)`` first.

A backend module (:mod:`devbench.backends.tf`, :mod:`devbench.backends.numpy`) imports this one and never
another backend. The loop itself is :func:`devbench.timer.python_loop` (re-exported here): the timer needs it
as its default block, and the timer must not import a backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from devbench.errors import first_line
from devbench.ops import CHECK_SIZE, TOLERANCE, UnsupportedCombination, relative_error
from devbench.spec import Cell, TimingPolicy
from devbench.timer import Clock, Measurement, python_loop

__all__ = [
    "FIRST_OPS",
    "Backend",
    "CellFailure",
    "CellOutcome",
    "CheckedOnce",
    "DeviceInit",
    "FirstOps",
    "Initialising",
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


class Initialising(Protocol):
    """What a backend adds so that device initialisation is its own number, not part of a ``cold_s``.

    ``initialise(device)`` runs the smallest possible op on ``device`` (a 1-element add and its copy back to
    the host) the first time it is called in this process, timed, before anything else of devbench touches that
    device: calibration, the correctness check, the first cell. A backend calls it itself at the top of
    ``run_cell``, so the order holds whoever calls first; a sweep calls it up front to record the numbers
    (:func:`devbench.backends.initialise`). Time it with :data:`FIRST_OPS`, which remembers it per process.

    ``runtime_init()`` is what the framework pays once per process before any device exists (import, context
    creation; TensorFlow initialises every device there), or None where there is no such cost or it was not
    measured. Optional for a backend: one without these methods is reported as not initialised by devbench.
    """

    def initialise(self, device: str) -> DeviceInit: ...

    def runtime_init(self) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class DeviceInit:
    """The first op a process ran on a device, timed: what :meth:`Initialising.initialise` returns."""

    device: str
    runtime: str
    """The framework (``tensorflow``, ``numpy``, ...)."""
    init_s: float | None
    """Wall seconds of the first op on the device, sync to host included; None when there is nothing to
    initialise (numpy computes on the host in this process) or the op failed (``error``)."""
    what: str
    """What was timed, in words."""
    already_initialised: bool = False
    """True when an earlier call in this process timed it: ``init_s`` is that earlier number, not re-timed."""
    error: str = ""
    """``TypeName: message`` when the first op raised (the device's cells will then fail with their own status)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FirstOps:
    """The first op per (runtime, device) of a process, timed once and remembered: a second call returns the
    first measurement flagged ``already_initialised`` (the device is warm now; timing it again would report
    a warm op as initialisation). One instance per process (:data:`FIRST_OPS`); tests make their own."""

    clock: Clock = time.perf_counter
    seen: dict[tuple[str, str], DeviceInit] = field(default_factory=dict)

    def time(self, runtime: str, device: str, first_op: Callable[[], object], what: str) -> DeviceInit:
        """Run and time ``first_op`` (which must wait for its result) unless (runtime, device) was done."""
        earlier = self.seen.get((runtime, device))
        if earlier is not None:
            return replace(earlier, already_initialised=True)
        start = self.clock()
        try:
            first_op()
        except Exception as exc:  # a device that cannot run an op: record it, the cells report their own status
            result = DeviceInit(device, runtime, None, what, error=error_reason(exc))
        else:
            result = DeviceInit(device, runtime, self.clock() - start, what)
        self.seen[(runtime, device)] = result
        return result

    def nothing_to_initialise(self, runtime: str, device: str, what: str) -> DeviceInit:
        """Record a device with no initialisation (``init_s`` None), flagged like a timed one on repeat."""
        earlier = self.seen.get((runtime, device))
        if earlier is not None:
            return replace(earlier, already_initialised=True)
        result = self.seen[(runtime, device)] = DeviceInit(device, runtime, None, what)
        return result


FIRST_OPS = FirstOps()
"""This process's first ops; every backend times its devices' first op here."""


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


class CheckedOnce:
    """The correctness check's verdicts, one per key (e.g. op, dtype, device, mode): a check runs the first
    time its key is asked for, and its failure (a :class:`CellFailure`) is raised for every cell of that key."""

    def __init__(self) -> None:
        self._verdicts: dict[tuple[str, ...], CellFailure | None] = {}

    def require(self, key: tuple[str, ...], check: Callable[[], CellFailure | None]) -> None:
        if key not in self._verdicts:
            self._verdicts[key] = check()
        failure = self._verdicts[key]
        if failure is not None:
            raise failure


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
