"""Guards that decide, before a cell allocates anything, whether it may run at all.

A guard returns ``None`` (go ahead) or the reason the cell is ``skipped``. Skipping with a reason is always
better than what happens otherwise: the kernel's OOM killer ends the whole sweep (a 8192² conv2d on a 24 GiB
machine needs ~44 GiB, most of it oneDNN's im2col workspace), and a single 8192² float64 ``dense_step`` call
on two cores takes minutes before the cell's time budget can even be consulted.

Guards also *learn*: ``observe(record)`` is fed every finished cell (and, on resume, every cell already in the
log). The memory guard remembers where a series ran out of memory; the time guard predicts a cell's single
call from the largest size measured so far in its series (same op, dtype, device, mode, sync) scaled by the
FLOPs ratio, and also estimates how long each cell will take, for the plan and the progress ETA.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from devbench.devices import is_host_device
from devbench.formatting import format_duration
from devbench.ops import ITEMSIZE, known_op, op_named
from devbench.schema import VisitRecord
from devbench.spec import Cell, TimingPolicy
from devbench.variants import parse_op_name

Guard = Callable[[Cell], "str | None"]

DEFAULT_MAX_CALL_TIME = 60.0
"""Seconds one call of an op may be predicted to take before its cell is skipped (``--max-call-time``). A cell
pays at least a cold call, two warm-up calls and one sample, so a 60 s call costs four minutes or more."""

CELL_OVERHEAD_S = 0.5
"""Rough seconds every cell costs besides its calls: building inputs, the correctness check, and releasing
memory afterwards (Keras ``clear_session`` plus ``gc.collect`` take about 0.5 s on a 2-core machine)."""

Series = tuple[str, str, str, str, str]
"""(op, dtype, device, mode, sync): cells whose times scale with size alone."""


def series_of(item: Cell | VisitRecord) -> Series:
    return (item.op, item.dtype, item.device, item.mode, item.sync)

HOST_HEADROOM = 0.85
"""Use at most this fraction of the host's available memory: the OS, TF's own pools and fragmentation
need the rest."""

DEVICE_HEADROOM = 0.9


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


def estimated_bytes(cell: Cell) -> float:
    """Peak bytes a cell holds at once on its device (inputs, outputs, temporaries), from the op registry.

    Host-side staging of the inputs (float64 random data, converted on the way) is added for every device,
    since inputs are generated in host memory first: two n×n inputs for a square op; for a shaped op (whose
    inputs are not n×n: ``matmul[m=*,k=256,n=64]``) its traffic in float64, inputs and output at its shape.
    """
    op = op_named(cell.op)
    staging = op.bytes(cell.size, 8) if parse_op_name(cell.op).shaped else 2.0 * cell.size * cell.size * 8
    return op.working_set(cell.size, ITEMSIZE[cell.dtype]) + staging


class MemoryGuard:
    """Skips a cell whose estimated working set exceeds free host memory (host devices of every framework and
    numpy) or free device memory (an accelerator, as its framework reports it).

    ``host_available`` and ``device_free`` are injectable so the logic is testable without filling memory.
    Once a series ran out of memory (status ``oom``: TF raised ResourceExhaustedError despite the estimate),
    its larger sizes are skipped too: they need more of what was already missing.
    """

    def __init__(
        self,
        host_available: Callable[[], int] | None = None,
        device_free: Callable[[str], int | None] | None = None,
    ) -> None:
        self.host_available = host_available or (lambda: int(psutil.virtual_memory().available))
        self.device_free = device_free or _device_free
        self.oom_at: dict[Series, int] = {}
        """Smallest size at which each series ran out of memory."""

    def observe(self, record: VisitRecord) -> None:
        if record.status == "oom":
            key = series_of(record)
            self.oom_at[key] = min(record.size, self.oom_at.get(key, record.size))

    def __call__(self, cell: Cell) -> str | None:
        oom_size = self.oom_at.get(series_of(cell))
        if oom_size is not None and cell.size > oom_size:
            return (f"memory guard: {cell.op} already ran out of memory at n={oom_size} on {cell.device}; "
                    f"n={cell.size} needs more")
        need = estimated_bytes(cell)
        on_host = is_host_device(cell.device)
        if not on_host:
            free = self.device_free(cell.device)
            if free is not None and need > DEVICE_HEADROOM * free:
                return (f"memory guard: needs about {_gib(need)} on {cell.device}, "
                        f"{_gib(free)} free there")
        available = self.host_available()
        host_need = need if on_host else 2.0 * cell.size * cell.size * 8
        if host_need > HOST_HEADROOM * available:
            return f"memory guard: needs about {_gib(host_need)} of host memory, {_gib(available)} available"
        return None


def _device_free(device: str) -> int | None:
    """Free memory of an accelerator, asked of its own framework (devices.free_memory_bytes routes by name)."""
    from devbench.devices import free_memory_bytes

    return free_memory_bytes(device)


def combine(*guards: Guard) -> Guard:
    """The first guard that objects decides."""

    def guard(cell: Cell) -> str | None:
        for g in guards:
            reason = g(cell)
            if reason is not None:
                return reason
        return None

    return guard


@dataclass(frozen=True)
class Prediction:
    """A predicted single-call time (seconds) and what it was scaled from."""

    seconds: float
    from_size: int
    from_median_s: float
    flops_ratio: float

    def explain(self) -> str:
        return (f"predicted {format_duration(self.seconds)} per call, from n={self.from_size} "
                f"({format_duration(self.from_median_s)}) scaled by FLOPs x{self.flops_ratio:.3g}")


class TimeGuard:
    """Skips a cell whose single call is predicted to take longer than ``max_call_time`` seconds.

    The prediction scales the median per-call time of the largest size measured so far in the cell's series
    (same op, dtype, device, mode, sync) by the ratio of FLOPs per call (``ops.OPS[op].flops``). Sweeps run
    smallest first, so the reference is usually the size just below, and small sizes (dominated by fixed
    dispatch overhead, which over-predicts) are soon replaced by larger ones. A series with nothing measured
    yet is never skipped: there is nothing to predict from.

    The same predictions give :meth:`estimate_cell_seconds`, the rough wall time of a whole cell, used for
    the plan shown before a sweep starts and for the progress ETA.
    """

    def __init__(self, max_call_time: float = DEFAULT_MAX_CALL_TIME, policy: TimingPolicy | None = None,
                 overhead_s: float = CELL_OVERHEAD_S) -> None:
        if not max_call_time > 0:
            raise ValueError(f"max_call_time must be positive seconds, got {max_call_time!r}")
        self.max_call_time = max_call_time
        self.policy = policy if policy is not None else TimingPolicy()
        self.overhead_s = overhead_s
        self.reference: dict[Series, tuple[int, float]] = {}
        """Per series: the largest measured size and its median seconds per call."""

    def observe(self, record: VisitRecord) -> None:
        """Learn from a finished cell: an ``ok`` one with a positive median becomes its series' reference
        when it is the largest size measured so far."""
        median = record.median_s
        if record.status != "ok" or not (isinstance(median, float) and math.isfinite(median) and median > 0):
            return
        key = series_of(record)
        current = self.reference.get(key)
        if current is None or record.size >= current[0]:
            self.reference[key] = (record.size, median)

    def predict(self, cell: Cell) -> Prediction | None:
        """Predicted seconds per call of ``cell``, or None when nothing of its series was measured yet."""
        ref = self.reference.get(series_of(cell))
        op = op_named(cell.op) if known_op(cell.op) else None
        if ref is None or op is None:
            return None
        size, median = ref
        ratio = op.flops(cell.size) / op.flops(size)
        return Prediction(seconds=median * ratio, from_size=size, from_median_s=median, flops_ratio=ratio)

    def __call__(self, cell: Cell) -> str | None:
        prediction = self.predict(cell)
        if prediction is None or prediction.seconds <= self.max_call_time:
            return None
        return (f"time guard: {prediction.explain()}, over --max-call-time {format_duration(self.max_call_time)}")

    def estimate_cell_seconds(self, cell: Cell) -> float:
        """Rough wall time of one cell (seconds): 0 for a cell this guard will skip; otherwise the fixed
        ``overhead_s``, its cold call, and the warm-up and samples, which share ``max_cell_time`` but always
        include at least two warm-up calls and one sample. A cell with no prediction counts a zero call."""
        prediction = self.predict(cell)
        call = 0.0 if prediction is None else prediction.seconds
        if call > self.max_call_time:
            return 0.0
        policy = self.policy
        floor = policy.min_warmup_calls * call + max(policy.min_block_time, call)
        return self.overhead_s + call + max(policy.max_cell_time, floor)
