"""What every backend shares: the protocol the runner drives, the outcome of a cell, how failures become a
row's status, the correctness check against the float64 reference, the loop that calls an op ``number``
times, and the timing of each device's first op (:class:`Initialising`, :data:`FIRST_OPS`), so that device
initialisation is a number of its own (``meta.json["init"]``) and never part of a cell's ``cold_s``.

The skeleton of a cell exists once, here: :meth:`FrameworkBackend.run_cell` checks the mode and dtype,
initialises the device, runs the correctness check once per key, builds the op on the device, dispatches it,
checks where its output landed, measures it (:func:`devbench.timer.measure`) and returns the
:class:`CellOutcome`. A framework's backend is a subclass holding only what differs between frameworks, its
hooks: ``build`` (the op on the device), ``dispatch`` (the callables the timer drives, per mode and sync),
``placed`` (where each output leaf is), ``host_leaves`` (the output on the host, for the check), ``SYNCS``,
``scope`` (TensorFlow's device scope), ``begin``/``done`` (what ``release`` will have to clean), ``initialise``
(the first op on a device, timed through :data:`FIRST_OPS`), ``copier`` (the calibration's copy probe),
``flusher`` (what evicts a device's caches for a cache-cold cell: the host's by default), ``classify`` and
``release``.

A backend module (:mod:`devbench.backends.tf`, :mod:`devbench.backends.numpy`, ...) imports this one and never
another backend. The loop itself is :func:`devbench.timer.python_loop` (re-exported here): the timer needs it
as its default block, and the timer must not import a backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar, Protocol

import numpy as np

from devbench.cache import Flush, host_flush
from devbench.energy import EnergyProbe
from devbench.errors import first_line
from devbench.frameworks import FRAMEWORKS, Framework, framework_for, is_host
from devbench.frameworks.base import FULL_SYNC, NO_SYNC, SCALAR_SYNC
from devbench.ops import CHECK_SIZE, ITEMSIZE, TOLERANCE, OpDef, UnsupportedCombination, op_named, relative_error
from devbench.schema import EnergyColumns
from devbench.spec import Cell, TimingPolicy
from devbench.timer import Clock, Measurement, measure, python_loop

__all__ = [
    "FIRST_OPS",
    "Backend",
    "Built",
    "CellFailure",
    "CellOutcome",
    "CheckedOnce",
    "DeviceInit",
    "Dispatch",
    "FirstOps",
    "FrameworkBackend",
    "Initialising",
    "Outcome",
    "Timed",
    "UnsupportedCombination",
    "check_against_reference",
    "classify_common",
    "error_reason",
    "placement_failure",
    "python_loop",
    "require_mode",
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
    @property
    def traces(self) -> int: ...
    @property
    def note(self) -> str: ...


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
    energy: EnergyColumns | None = None
    """Joules per call, measured after the timed blocks when ``run_cell`` was given an energy probe."""


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


# ---------------------------------------------------------------------------------------------------------
# Modes and placement: the same rules for every framework


def require_mode(framework: Framework, mode: str) -> None:
    """UnsupportedCombination for a mode ``framework`` does not have (``jit`` on TF, ``xla`` on torch); a framework
    without modes of its own (the numpy baseline) runs any."""
    if framework.modes and mode not in framework.modes:
        raise UnsupportedCombination(
            f"mode {mode!r} does not exist on {framework.label} (it has {', '.join(framework.modes)})")


def _memory_of(device: str) -> str:
    """Which memory a device's data lives in: one host memory for every CPU device, its own for the others."""
    return "host" if is_host(device) else device


def placement_failure(requested: str, leaves: Sequence[tuple[str, str]]) -> CellFailure | None:
    """A ``fallback`` failure unless every output leaf is on ``requested``, in name and in memory.

    ``leaves`` holds each output leaf's canonical (``device``, ``memory``): for TensorFlow its ``device`` and
    ``backing_device``, for a framework without the distinction the device twice. Some TF kernels registered
    for a GPU keep their data in host memory (int32 ``add`` and ``reduce_sum``, and int32 results of a
    tf.function): ``device`` then says GPU:0 while ``backing_device`` says CPU:0, and the work ran on the host.
    Such a cell is reported as a fallback too. Every host device is the same host memory, so a CPU:1 tensor
    backed by CPU:0 (what TF does with int32 function results) is where it was asked to be.
    """
    devices = sorted({device for device, _ in leaves})
    if devices != [requested]:
        return CellFailure("fallback", f"output placed on {', '.join(devices)}, not on the requested {requested}",
                           ", ".join(devices))
    backing = sorted({memory for _, memory in leaves if _memory_of(memory) != _memory_of(requested)})
    if backing:
        where = ", ".join(backing)
        return CellFailure(
            "fallback",
            f"output is on {requested} in name but its memory is on {where} (a host-memory kernel): "
            "the work ran there",
            where,
        )
    return None


# ---------------------------------------------------------------------------------------------------------
# The one run_cell and the hooks it calls


@dataclass
class Built:
    """An op built on a device: ``fn(*args)`` computes; ``reference()`` gives one float64 array per output leaf,
    computed by the op's numpy implementation from the very values the device holds (after rounding to the
    dtype), so only the computation's own error is measured. ``state`` keeps framework state (a Keras model, a
    torch module) alive while the op is used."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    reference: Callable[[], list[np.ndarray]]
    state: Any = None


def _no_traces() -> int:
    return 0


@dataclass
class Dispatch:
    """How a cell's op is called: ``call()`` once, ``block(number)`` back to back (the timer's block)."""

    call: Callable[[], Any]
    block: Callable[[int], Any]
    traces: Callable[[], int] = _no_traces
    """How many times the compiled function being timed was traced (compiled) so far; 0 where nothing is."""


@dataclass
class Timed:
    """What :meth:`FrameworkBackend.run_cell` hands its ``after`` callback, inside the device scope, once the cell
    is measured: the op's one call and the cell's sync (pytest-benchmark's rounds time these)."""

    call: Callable[[], Any]
    sync: Callable[[Any], None]
    measurement: Measurement[Any]


class FrameworkBackend:
    """A framework's backend: :meth:`run_cell`, the skeleton every framework shares, calling the hooks below.

    A subclass names its framework (``FRAMEWORK``, a key of devbench.frameworks), its sync table (``SYNCS``, the
    framework's sync names -> functions) and implements ``build``, ``dispatch``, ``placed``, ``host_leaves``,
    ``initialise`` and ``copier``; ``scope``, ``begin``, ``done``, ``note``, ``check_key``, ``flusher``, ``classify``
    and ``release`` have defaults. Remembers which check keys passed the numpy reference check.
    """

    FRAMEWORK: ClassVar[str] = ""
    SYNCS: ClassVar[Mapping[str, Callable[[Any], None]]] = {}
    RETRACED: ClassVar[str] = ""
    """The ``note`` for an ``ok`` cell whose function was traced again while timing (``{n}``: how often)."""
    WHO: ClassVar[str] = ""
    """Prefix of a failed check's reason, where the device alone would not say which implementation was wrong."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock
        self._checked = CheckedOnce()

    @property
    def framework(self) -> Framework:
        return FRAMEWORKS[self.FRAMEWORK]

    # --- hooks ---------------------------------------------------------------------------------------------

    def build(self, op: OpDef, n: int, dtype: str, seed: int, device: str) -> Built:
        """``op`` at size ``n`` and ``dtype`` on ``device``, from its seeded host inputs (inside :meth:`scope`)."""
        raise NotImplementedError

    def dispatch(self, built: Built, mode: str, sync: str, device: str) -> Dispatch:
        """The callables the timer drives for ``built`` in ``mode`` (sync ``transfer`` copies in and out per call)."""
        raise NotImplementedError

    def placed(self, output: Any) -> list[tuple[str, str]]:
        """Canonical (``device``, ``memory``) of each output leaf, for :func:`placement_failure`."""
        raise NotImplementedError

    def host_leaves(self, output: Any) -> list[np.ndarray]:
        """Every output leaf copied to the host, in float64, for the correctness check."""
        raise NotImplementedError

    def initialise(self, device: str) -> DeviceInit:
        """Time the first op of this process on ``device`` (see :class:`Initialising`)."""
        raise NotImplementedError

    def runtime_init(self) -> dict[str, Any] | None:
        return None

    def flusher(self, device: str) -> Flush:
        """What evicts ``device``'s caches before each timed call of a cache-cold cell (made inside
        :meth:`scope`; it returns once its buffer is written). The host's flush for a host device; an
        accelerator's backend overrides this with a device buffer of twice its L2, and one that does not has
        no cache-cold cells there (``unsupported``)."""
        if is_host(device):
            return host_flush()
        raise UnsupportedCombination(f"cache-cold cells on {device}: the {self.framework.label} backend has no "
                                     "flush of that device's cache")

    def copier(self, device: str, elements: int) -> Callable[[], Any]:
        """A call that copies a float32 array of ``elements`` on ``device`` into another buffer (the calibration's
        bandwidth probe; made and called inside :meth:`scope`, waited for with the scalar sync)."""
        raise NotImplementedError

    @contextmanager
    def scope(self, device: str) -> Iterator[None]:
        """Where ops are made and run for ``device`` (TensorFlow's device scope); nothing by default."""
        del device
        yield

    def begin(self, cell: Cell) -> None:
        """Called before anything of ``cell`` runs: note what :meth:`release` will have to clean; raise
        UnsupportedCombination for what this framework refuses beyond the mode (torch.compile next to TF)."""

    def done(self, cell: Cell, built: Built) -> None:
        """Called after ``cell`` was measured (not after a failure)."""

    def note(self, cell: Cell, retraced: int) -> str:
        """The remark for an ``ok`` row's ``reason``: retracing while timing, where it happened."""
        del cell
        return self.RETRACED.format(n=retraced) if retraced and self.RETRACED else ""

    def check_key(self, cell: Cell) -> tuple[str, ...]:
        """What one correctness check covers: by default (op, dtype, device, mode)."""
        return cell.op, cell.dtype, cell.device, cell.mode

    @staticmethod
    def classify(exc: BaseException) -> tuple[str, str]:
        return classify(exc)

    def release(self) -> None:
        """Drop what a cell left behind; nothing by default."""

    # --- the skeleton --------------------------------------------------------------------------------------

    def check_correctness(self, cell: Cell, seed: int) -> None:
        """Compare the op in the cell's mode at n = CHECK_SIZE with its numpy float64 reference, once per key."""
        def check() -> CellFailure | None:
            with self.scope(cell.device):
                built = self.build(op_named(cell.op), CHECK_SIZE, cell.dtype, seed, cell.device)
                output = self.dispatch(built, cell.mode, SCALAR_SYNC, cell.device).call()
                got = self.host_leaves(output)
            return check_against_reference(got, built.reference(), cell.dtype, who=self.WHO)

        self._checked.require(self.check_key(cell), check)

    def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int, *,
                 after: Callable[[Timed], None] | None = None, energy: EnergyProbe | None = None) -> CellOutcome:
        """Measure ``cell``: every framework's cell runs through here (``after``: see :class:`Timed`; ``energy``:
        measure joules per call after the timed blocks, devbench.energy)."""
        framework = framework_for(cell.device)
        if framework.key != self.FRAMEWORK:
            raise ValueError(f"the {self.framework.label} backend runs {self.framework.label} devices, "
                             f"not {cell.device}")
        require_mode(framework, cell.mode)
        # The device's first op is timed on its own, so that no cold_s (nor the check) pays its initialisation.
        self.initialise(cell.device)
        self.begin(cell)
        op = op_named(cell.op)
        op.require_dtype(cell.dtype)
        self.check_correctness(cell, seed)
        placed: list[str] = []
        traces_after_cold: list[int] = []
        with self.scope(cell.device):
            built = self.build(op, cell.size, cell.dtype, seed, cell.device)
            dispatch = self.dispatch(built, cell.mode, cell.sync, cell.device)

            def check(output: Any) -> None:
                traces_after_cold.append(dispatch.traces())
                leaves = self.placed(output)
                placed.extend(sorted({device for device, _ in leaves}))
                failure = placement_failure(cell.device, leaves)
                if failure is not None:
                    raise failure

            sync = self.SYNCS[cell.sync]
            kwargs: dict[str, Any] = {"check": check, "block": dispatch.block}
            flush = self.flusher(cell.device) if op.cache == "cold" else None
            if flush is not None:
                kwargs["flush"] = flush
            if cell.sync == NO_SYNC:
                kwargs["drain"] = self.SYNCS[FULL_SYNC]
            if self.clock is not None:
                kwargs["clock"] = self.clock
            measurement = measure(dispatch.call, sync, policy, **kwargs)
            measurement.output = None  # do not keep device memory alive through the result
            joules = None if energy is None else energy.measure(  # after the timed blocks, never inside them
                cell.device, dispatch.block, kwargs.get("drain", sync), measurement.samples, policy.max_cell_time)
            measurement.flush_bytes = flush.bytes if flush is not None else 0
            if after is not None:
                after(Timed(dispatch.call, sync, measurement))
        self.done(cell, built)
        traces = dispatch.traces()
        retraced = traces - traces_after_cold[0] if traces_after_cold else 0
        return CellOutcome(
            measurement=measurement,
            placed_device=placed[0] if placed else "",
            flops=op.flops(cell.size),
            bytes=op.bytes(cell.size, ITEMSIZE[cell.dtype]),
            traces=traces,
            note=self.note(cell, retraced),
            energy=joules,
        )

    def measure_copy(self, device: str, n_bytes: int, policy: TimingPolicy) -> float:
        """Best seconds to copy a float32 array of ``n_bytes`` on ``device`` (the calibration's bandwidth probe)."""
        self.initialise(device)  # the device's first op is timed on its own, never inside a probe
        sync = self.SYNCS[SCALAR_SYNC]
        with self.scope(device):
            copy = self.copier(device, n_bytes // 4)
            kwargs: dict[str, Any] = {} if self.clock is None else {"clock": self.clock}
            m = measure(copy, sync, policy, **kwargs)
        m.output = None
        return float(min(m.samples))
