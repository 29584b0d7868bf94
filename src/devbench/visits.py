"""A cell's row of the results table (:class:`~devbench.schema.CellRow`), made from its visits (a
:class:`~devbench.schema.VisitRecord` per cells.jsonl line).

A sweep visits every cell once per round (:meth:`devbench.spec.SweepSpec.visits`) and logs each visit on its
own, with the statistics of that visit's samples. The results table has one row per cell, built here:

- A cell whose first visit was not ``ok`` (unsupported, skipped, out of memory, …) is that visit's row: it was
  not visited again.
- Otherwise the row is made from the samples of its ``ok`` visits (:func:`devbench.stats.summarize_rounds`):
  the median with every visit weighted alike however many samples it took
  (:func:`devbench.resampling.cell_median`), quartiles, mean and spread over all samples pooled, the
  median's interval from the two-level bootstrap over rounds (so it includes the drift between visits),
  ``n_rounds`` and ``between_round_rel``. ``cold_s`` is the first visit's
  (later visits find kernels loaded). A later visit that failed is named in ``reason``.
- Energy (``joules_per_call`` and its interval, devbench.energy) is pooled over the visits that measured it
  (:func:`pooled_energy`): the round is the unit from three rounds on, as for the times.
- ``incomplete`` marks a cell with fewer ``ok`` visits than the sweep planned (an interrupted run), so its
  interval is wider or missing for a reason the table can say; not a cell whose first visit was
  ``visited_once`` (devbench.runner.run_visits: it was not to be visited again).

The bootstrap is seeded from the cell's identity, so the same log always gives the same table.
"""

from __future__ import annotations

import math
import statistics
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from devbench.schema import IDENTITY, CellRow, EnergyColumns, GpuTelemetry, HostClock, VisitRecord
from devbench.stats import summarize_rounds

_SHARED = tuple(f.name for f in fields(CellRow) if f.name in {g.name for g in fields(VisitRecord)})
"""The fields a cell row takes over from its first visit before pooling (what both types have)."""


@dataclass(frozen=True)
class LoggedVisit:
    """One cells.jsonl line: a visit's record, its samples and its round."""

    record: VisitRecord
    samples: list[float]
    round: int


def latest_visits(lines: Sequence[LoggedVisit]) -> dict[tuple[Any, ...], list[LoggedVisit]]:
    """Per cell, its visits by round (a visit logged twice, e.g. measured again after a crash, keeps its last
    line), cells in the order of their first line, visits in round order."""
    by_cell: dict[tuple[Any, ...], dict[int, LoggedVisit]] = {}
    for line in lines:
        by_cell.setdefault(line.record.key(), {})[line.round] = line
    return {key: [visits[r] for r in sorted(visits)] for key, visits in by_cell.items()}


def bootstrap_seed(key: tuple[Any, ...]) -> int:
    """A seed fixed by the cell's identity (not Python's salted ``hash``): same log, same intervals."""
    return zlib.crc32(repr(key).encode("utf-8"))


def cell_row(visits: Sequence[LoggedVisit], rounds_planned: int) -> CellRow:
    """The results row of one cell from its visits (round order); see the module docstring."""
    first = visits[0].record
    shared = {name: getattr(first, name) for name in _SHARED}
    if first.status != "ok":
        return CellRow(**shared)
    ok = [v for v in visits if v.record.status == "ok" and v.samples]
    failed = [v for v in visits if v.record.status != "ok"]
    if not ok:  # an ok visit without samples cannot happen in a sweep; keep the record as it is
        return CellRow(**shared, incomplete=rounds_planned > 1)
    summary = summarize_rounds([v.samples for v in ok], seed=bootstrap_seed(first.key()))
    reasons = list(dict.fromkeys(v.record.reason for v in ok if v.record.reason))
    reasons += [f"round {v.round}: {v.record.status}: {v.record.reason}".rstrip(": ") for v in failed]
    shared.update(
        n_samples=summary.n,
        median_s=summary.median,
        q1_s=summary.q1,
        q3_s=summary.q3,
        mean_s=summary.mean,
        std_s=summary.std,
        min_s=summary.min,
        max_s=summary.max,
        ci_low_s=summary.ci_low,
        ci_high_s=summary.ci_high,
        stop_reason="budget" if any(v.record.stop_reason == "budget" for v in ok) else first.stop_reason,
        warmup_calls=sum(v.record.warmup_calls for v in ok),
        traces=max(v.record.traces for v in ok),
        reason="; ".join(reasons),
        finished_at=ok[-1].record.finished_at,
        cold_s=first.cold_s,
        unflushed_median_s=_median_of_visits([v.record.unflushed_median_s for v in ok]),
        **asdict(pooled_telemetry([v.record for v in ok])),
        **asdict(pooled_clock([v.record for v in ok])),
        **asdict(pooled_energy([v.record for v in ok])),
    )
    return CellRow(
        **shared,
        cpu_freq_moved_visits=sum(v.record.cpu_freq_moved for v in ok),
        ci_reason=summary.ci_reason,
        n_rounds=summary.n_rounds,
        between_round_rel=summary.between_round_rel,
        incomplete=len(ok) < rounds_planned and not first.visited_once,
    )


def _median_of_visits(values: Sequence[float]) -> float:
    """The median of the visits' own medians (each visit weighing alike, like ``median_s``); NaN if none has one:
    a cache-cold cell's ``unflushed_median_s`` (devbench.timer)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(statistics.median(finite)) if finite else math.nan


def pooled_telemetry(records: Sequence[GpuTelemetry]) -> GpuTelemetry:
    """GPU state over a cell's visits: the clocks, temperature and power at the start of the first and the end
    of the last, every power-or-heat throttle reason seen, and ``throttled`` if any visit was."""
    first, last = records[0], records[-1]
    values: dict[str, Any] = {}
    for f in fields(GpuTelemetry):
        if "_start_" in f.name:
            values[f.name] = getattr(first, f.name)
        elif "_end_" in f.name:
            values[f.name] = getattr(last, f.name)
    reasons = [r for record in records for r in record.throttle_reasons.split(",") if r]
    return GpuTelemetry(**values, throttle_reasons=",".join(dict.fromkeys(reasons)),
                        throttled=any(record.throttled for record in records))


def pooled_clock(records: Sequence[HostClock]) -> HostClock:
    """The CPU clock over a cell's visits: the frequency at the start of the first and the end of the last, and
    ``cpu_freq_moved`` if any visit's moved (devbench.hostcheck.visit_clock)."""
    return HostClock(cpu_mhz_start=records[0].cpu_mhz_start, cpu_mhz_end=records[-1].cpu_mhz_end,
                     cpu_freq_moved=any(record.cpu_freq_moved for record in records))
def pooled_energy(records: Sequence[EnergyColumns]) -> EnergyColumns:
    """A cell's energy over its visits: with three or more visits that measured it, the mean of their
    ``joules_per_call`` and the t interval with the round as the unit (drift between visits included); with
    one, that visit's (its interval over its blocks); with two, their mean and the hull of their intervals.
    ``energy_disagrees`` if any visit's check did; the reasons of the visits, each once."""
    from devbench.energy import interval_over

    measured = [r for r in records if math.isfinite(r.joules_per_call)]
    reasons = "; ".join(dict.fromkeys(r.energy_reason for r in records if r.energy_reason))
    if not measured:
        return EnergyColumns(energy_reason=reasons)
    values = [r.joules_per_call for r in measured]
    if len(measured) >= 3:
        mean, low, high = interval_over(values)
    elif len(measured) == 2:
        mean = math.fsum(values) / 2.0
        low = min(r.joules_ci_low for r in measured)
        high = max(r.joules_ci_high for r in measured)
    else:
        mean, low, high = values[0], measured[0].joules_ci_low, measured[0].joules_ci_high
    checks = [r.energy_check_rel for r in measured if math.isfinite(r.energy_check_rel)]
    return EnergyColumns(joules_per_call=mean, joules_ci_low=low, joules_ci_high=high,
                         energy_check_rel=max(checks) if checks else math.nan,
                         energy_disagrees=any(r.energy_disagrees for r in measured), energy_reason=reasons)


def sample_rows(row: CellRow, visits: Sequence[LoggedVisit]) -> list[dict[str, Any]]:
    """The samples table's rows of one cell: every sample of every visit, with its round and block size."""
    ident = {name: getattr(row, name) for name in ("run_id", *IDENTITY)}
    rows: list[dict[str, Any]] = []
    for visit in visits:
        rows.extend({**ident, "round": visit.round, "sample": i, "number": visit.record.number, "per_call_s": s}
                    for i, s in enumerate(visit.samples))
    return rows
