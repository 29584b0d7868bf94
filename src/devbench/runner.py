"""SweepSpec -> visit records: visit every cell round after round; a failing cell becomes a status, never a
crash.

The runner knows nothing about TensorFlow: it drives a :class:`Backend` (devbench.backends; a fake in tests)
and hands each finished visit to ``on_result`` at once, so the session can append it to disk before the next
visit starts. A cell's row in the results table is made from all its visits (devbench.store).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from devbench import hostcheck, telemetry
from devbench.backends.base import Backend, Outcome
from devbench.energy import EnergyProbe
from devbench.formatting import utc_now
from devbench.schema import VisitRecord, with_derived
from devbench.spec import Cell, SweepSpec, TimingPolicy, Visit
from devbench.stats import summarize


@dataclass
class CellResult:
    """One finished visit of a cell: its record (statistics over this visit's samples) and samples."""

    record: VisitRecord
    samples: list[float] = field(default_factory=list)
    round: int = 1
    process: int = 0
    """The worker process that made the visit (``devbench sweep --processes``: 1, 2, …; devbench.workers), 0
    for a visit made in the sweep's own process."""


def measured_record(run_id: str, cell: Cell, outcome: Outcome) -> VisitRecord:
    """An ``ok`` visit record from a measurement: summary statistics over the per-call samples, and throughput."""
    m = outcome.measurement
    s = summarize(m.samples)
    reason = ""
    if m.stop_reason == "budget" and s.n < 2:
        reason = f"cut short by the cell time budget: {s.n} sample(s)"
    elif m.stop_reason == "budget":
        reason = f"cut short by the cell time budget after {s.n} samples (rel. IQR {s.rel_iqr:.1%})"
    reason = "; ".join(part for part in (outcome.note, reason) if part)
    record = VisitRecord(
        run_id=run_id,
        op=cell.op,
        size=cell.size,
        dtype=cell.dtype,
        device=cell.device,
        mode=cell.mode,
        sync=cell.sync,
        status="ok",
        reason=reason,
        placed_device=outcome.placed_device,
        n_samples=s.n,
        number=m.number,
        warmup_calls=m.warmup_calls,
        stop_reason=m.stop_reason,
        cold_s=m.cold_s,
        median_s=s.median,
        q1_s=s.q1,
        q3_s=s.q3,
        mean_s=s.mean,
        std_s=s.std,
        min_s=s.min,
        max_s=s.max,
        ci_low_s=s.ci_low,
        ci_high_s=s.ci_high,
        flops=outcome.flops,
        bytes=outcome.bytes,
        finished_at=utc_now(),
        traces=outcome.traces,
        flush_bytes=m.flush_bytes,
        unflushed_median_s=statistics.median(m.unflushed_samples) if m.unflushed_samples else math.nan,
    )
    return with_derived(record)


def status_record(run_id: str, cell: Cell, status: str, reason: str, placed_device: str = "") -> VisitRecord:
    """The record of a visit that measured nothing (or whose measurement must not be used)."""
    return with_derived(VisitRecord(
        run_id=run_id,
        op=cell.op,
        size=cell.size,
        dtype=cell.dtype,
        device=cell.device,
        mode=cell.mode,
        sync=cell.sync,
        status=status,
        reason=reason,
        placed_device=placed_device,
        finished_at=utc_now(),
    ))


def run_cell(backend: Backend, run_id: str, cell: Cell, policy: TimingPolicy, seed: int, *,
             guard: Callable[[Cell], str | None] | None = None, round_: int = 1,
             cpu_clock: Callable[[], float] = hostcheck.current_cpu_mhz,
             energy: EnergyProbe | None = None) -> CellResult:
    """Measure one visit of a cell; any exception becomes a status row (KeyboardInterrupt and SystemExit
    propagate).

    ``guard`` may veto the cell before anything is allocated: its reason makes the row ``skipped``. Only the
    first visit's cold call is the cell's ``cold_s``: a later visit's first call finds kernels loaded and
    functions traced, so it is not a cold call (it is part of that visit's warm-up). ``cpu_clock`` samples
    the CPU frequency (MHz, NaN where it cannot be read) at the visit's start and end, as the GPU telemetry.
    ``energy``: measure joules per call where the device has a meter (devbench.energy), else record why not.
    """
    reason = guard(cell) if guard is not None else None
    if reason is not None:
        return CellResult(status_record(run_id, cell, "skipped", reason), round=round_)
    gpu = telemetry.nvml_index(cell.device)
    start = telemetry.snapshot(gpu) if gpu is not None else None  # outside the timed blocks
    no_energy = energy.reason_for(cell.device) if energy is not None else ""
    with_energy = {"energy": energy} if energy is not None and not no_energy else {}
    mhz_start = cpu_clock()
    try:
        outcome = backend.run_cell(cell, policy, seed, **with_energy)
        mhz_end = cpu_clock()
        end = telemetry.snapshot(gpu) if gpu is not None else None
    except Exception as exc:
        status, reason = backend.classify(exc)
        placed = getattr(exc, "placed_device", "")
        return CellResult(status_record(run_id, cell, status, reason, placed), round=round_)
    finally:
        backend.release()
    record = measured_record(run_id, cell, outcome)
    if round_ > 1:
        record.cold_s = math.nan
    if start is not None and end is not None:
        record = replace(record, **asdict(telemetry.visit_telemetry(start, end)))
    record = replace(record, **asdict(hostcheck.visit_clock(mhz_start, mhz_end)))
    joules = getattr(outcome, "energy", None)
    if joules is not None:
        record = replace(record, **asdict(joules))
    record.energy_reason = record.energy_reason or no_energy
    return CellResult(record, list(outcome.measurement.samples), round=round_)


VISITED_ONCE_FACTOR = 2.0
"""A first visit over this many times the cell's budget makes the cell ``visited_once`` (:func:`run_visits`)."""
VISITED_ONCE_MIN_S = 5.0
"""...and at least this many seconds: a visit of a small cell always costs some set-up over a short budget, and
visiting it once for that would depend on how loaded the machine is; the cells this is for take 8-10 s."""


def run_visits(
    visits: Sequence[Visit],
    backend: Backend,
    run_id: str,
    policy: TimingPolicy,
    seed: int,
    *,
    on_result: Callable[[CellResult], None] | None = None,
    on_start: Callable[[Cell], None] | None = None,
    done: Collection[tuple[Any, ...]] = (),
    settled: Collection[tuple[Any, ...]] = (),
    guard: Callable[[Cell], str | None] | None = None,
    cell_budget: float | None = None,
    new_process: bool = False,
    cpu_clock: Callable[[], float] = hostcheck.current_cpu_mhz,
    energy: EnergyProbe | None = None,
) -> list[CellResult]:
    """Make every visit not already ``done`` (``Visit.key()``), in order, each under ``policy`` (the policy of
    one visit: :meth:`TimingPolicy.per_visit`).

    A later round's visit finds the cell's kernels loaded and its functions traced, so its first call is a
    warm-up call (:meth:`TimingPolicy.later_visit`). Not in a ``new_process`` (a worker of ``--processes``,
    devbench.workers) that has not run the cell yet: there the first call pays the cold costs again, so the
    cell's first visit in this process times it apart from the samples, as a first round does (its
    ``cold_s`` is still NaN: the cell's cold call is its first visit's).

    A cell is visited again only while all its visits were ``ok``: once one was not (unsupported, skipped,
    out of memory, …) its later visits would fail the same way, so the cell is settled (``settled`` holds the
    keys of cells settled before this call). A cell whose first visit took more than
    :data:`VISITED_ONCE_FACTOR` times ``cell_budget`` (its whole time budget, seconds) and more than
    :data:`VISITED_ONCE_MIN_S` is settled too: its record is ``visited_once`` and its reason says why. Making
    its inputs and its calls costs more than the budget, so every further visit would multiply the sweep's time
    (a 1×4096×4096×16 conv2d's inputs take seconds to make). ``cpu_clock``, ``energy``: see :func:`run_cell`.
    """
    results: list[CellResult] = []
    stopped = set(settled)
    ran_here: set[tuple[Any, ...]] = set()  # cells visited by this call (in a new_process: calls no longer cold)
    for visit in visits:
        cell = visit.cell
        if visit.key() in done or cell.key() in stopped:
            continue
        if on_start is not None:
            on_start(cell)
        cold_here = visit.round == 1 or (new_process and cell.key() not in ran_here)
        visit_policy = policy if cold_here else policy.later_visit()
        started = time.monotonic()
        result = run_cell(backend, run_id, cell, visit_policy, seed, guard=guard, round_=visit.round,
                          cpu_clock=cpu_clock, energy=energy)
        took = time.monotonic() - started
        ran_here.add(cell.key())
        if result.record.status != "ok":
            stopped.add(cell.key())
        elif (visit.round == 1 and cell_budget is not None
              and took > max(VISITED_ONCE_FACTOR * cell_budget, VISITED_ONCE_MIN_S)):
            stopped.add(cell.key())
            note = (f"visited once: its first visit took {took:.3g} s, over {VISITED_ONCE_FACTOR:g}× the cell's "
                    f"{cell_budget:g} s budget")
            result.record.visited_once = True
            result.record.reason = "; ".join(part for part in (result.record.reason, note) if part)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def run_sweep(
    spec: SweepSpec,
    backend: Backend,
    run_id: str,
    *,
    on_result: Callable[[CellResult], None] | None = None,
    on_start: Callable[[Cell], None] | None = None,
    done: Collection[tuple[Any, ...]] = (),
    settled: Collection[tuple[Any, ...]] = (),
    guard: Callable[[Cell], str | None] | None = None,
) -> list[CellResult]:
    """Make every visit of ``spec`` (:meth:`SweepSpec.visits`) not already ``done``; see :func:`run_visits`."""
    return run_visits(spec.visits(), backend, run_id, spec.policy.per_visit(spec.rounds), spec.seed,
                      on_result=on_result, on_start=on_start, done=done, settled=settled, guard=guard)
