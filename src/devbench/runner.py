"""SweepSpec -> Records: run every cell, smallest first; a failing cell becomes a status, never a crash.

The runner knows nothing about TensorFlow: it drives a :class:`Backend` (:mod:`devbench.backends`, a fake in
tests) and hands each finished cell to ``on_result`` at once, so the store can append it to disk before the
next cell starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from devbench.backends.base import Backend, Outcome
from devbench.schema import Record
from devbench.spec import Cell, SweepSpec, TimingPolicy
from devbench.stats import NOISY_REL_IQR, summarize
from devbench.store import utc_now


@dataclass
class CellResult:
    record: Record
    samples: list[float] = field(default_factory=list)


def measured_record(run_id: str, cell: Cell, outcome: Outcome) -> Record:
    """An ``ok`` row from a measurement: summary statistics over the per-call samples, and throughput."""
    m = outcome.measurement
    s = summarize(m.samples)
    reason = ""
    if m.stop_reason == "budget" and s.n < 2:
        reason = f"cut short by the cell time budget: {s.n} sample(s)"
    elif m.stop_reason == "budget":
        reason = f"cut short by the cell time budget after {s.n} samples (rel. IQR {s.rel_iqr:.1%})"
    reason = "; ".join(part for part in (getattr(outcome, "note", ""), reason) if part)
    return Record(
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
        iqr_s=s.iqr,
        mean_s=s.mean,
        std_s=s.std,
        min_s=s.min,
        max_s=s.max,
        ci_low_s=s.ci_low,
        ci_high_s=s.ci_high,
        rel_iqr=s.rel_iqr,
        flops=outcome.flops,
        bytes=outcome.bytes,
        gflops=outcome.flops / s.median / 1e9 if s.median > 0 else math.nan,
        gbps=outcome.bytes / s.median / 1e9 if s.median > 0 else math.nan,
        noisy=s.rel_iqr > NOISY_REL_IQR,
        unsynchronized=cell.sync == "none",
        finished_at=utc_now(),
        traces=int(getattr(outcome, "traces", 0)),
    )


def status_record(run_id: str, cell: Cell, status: str, reason: str, placed_device: str = "") -> Record:
    """A row for a cell that was not measured (or whose measurement must not be used)."""
    return Record(
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
        unsynchronized=cell.sync == "none",
        finished_at=utc_now(),
    )


def run_cell(backend: Backend, run_id: str, cell: Cell, policy: TimingPolicy, seed: int, *,
             guard: Callable[[Cell], str | None] | None = None) -> CellResult:
    """Measure one cell; any exception becomes a status row (KeyboardInterrupt and SystemExit propagate).

    ``guard`` may veto the cell before anything is allocated: its reason makes the row ``skipped``.
    """
    reason = guard(cell) if guard is not None else None
    if reason is not None:
        return CellResult(status_record(run_id, cell, "skipped", reason))
    try:
        outcome = backend.run_cell(cell, policy, seed)
    except Exception as exc:
        status, reason = backend.classify(exc)
        placed = getattr(exc, "placed_device", "")
        return CellResult(status_record(run_id, cell, status, reason, placed))
    finally:
        backend.release()
    return CellResult(measured_record(run_id, cell, outcome), list(outcome.measurement.samples))


def run_sweep(
    spec: SweepSpec,
    backend: Backend,
    run_id: str,
    *,
    on_result: Callable[[CellResult], None] | None = None,
    on_start: Callable[[Cell], None] | None = None,
    done: Collection[tuple[Any, ...]] = (),
    guard: Callable[[Cell], str | None] | None = None,
) -> list[CellResult]:
    """Run every cell of ``spec`` not already in ``done`` (a collection of ``Cell.key()``), smallest first."""
    results: list[CellResult] = []
    for cell in spec.cells():
        if cell.key() in done:
            continue
        if on_start is not None:
            on_start(cell)
        result = run_cell(backend, run_id, cell, spec.policy, spec.seed, guard=guard)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
