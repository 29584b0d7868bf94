"""A cell's row of the results table, made from its visits (one cells.jsonl line each).

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
- ``incomplete`` marks a cell with fewer ``ok`` visits than the sweep planned (an interrupted run), so its
  interval is wider or missing for a reason the table can say.

The bootstrap is seeded from the cell's identity, so the same log always gives the same table.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from devbench.schema import IDENTITY, VISITED_ONCE
from devbench.stats import summarize_rounds
from devbench.telemetry import TELEMETRY_COLUMNS


@dataclass(frozen=True)
class LoggedVisit:
    """One cells.jsonl line: a visit's record (a dict of the Record's fields), its samples and its round."""

    record: dict[str, Any]
    samples: list[float]
    round: int


def identity(record: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(record.get(name) for name in IDENTITY)


def latest_visits(lines: Sequence[LoggedVisit]) -> dict[tuple[Any, ...], list[LoggedVisit]]:
    """Per cell, its visits by round (a visit logged twice, e.g. measured again after a crash, keeps its last
    line), cells in the order of their first line, visits in round order."""
    by_cell: dict[tuple[Any, ...], dict[int, LoggedVisit]] = {}
    for line in lines:
        by_cell.setdefault(identity(line.record), {})[line.round] = line
    return {key: [visits[r] for r in sorted(visits)] for key, visits in by_cell.items()}


def bootstrap_seed(key: tuple[Any, ...]) -> int:
    """A seed fixed by the cell's identity (not Python's salted ``hash``): same log, same intervals."""
    return zlib.crc32(repr(key).encode("utf-8"))


def cell_row(visits: Sequence[LoggedVisit], rounds_planned: int) -> dict[str, Any]:
    """The results row of one cell from its visits (round order); see the module docstring."""
    first = visits[0]
    if first.record.get("status") != "ok":
        return {**first.record, "n_rounds": 0, "incomplete": False}
    ok = [v for v in visits if v.record.get("status") == "ok" and v.samples]
    failed = [v for v in visits if v.record.get("status") != "ok"]
    row = dict(first.record)
    if not ok:  # an ok visit without samples cannot happen in a sweep; keep the record as it is
        return {**row, "n_rounds": 0, "incomplete": rounds_planned > 1}
    summary = summarize_rounds([v.samples for v in ok], seed=bootstrap_seed(identity(first.record)))
    reasons = list(dict.fromkeys(str(v.record.get("reason") or "") for v in ok if v.record.get("reason")))
    reasons += [f"round {v.round}: {v.record.get('status')}: {v.record.get('reason') or ''}".rstrip(": ")
                for v in failed]
    row.update(
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
        ci_reason=summary.ci_reason,
        n_rounds=summary.n_rounds,
        between_round_rel=summary.between_round_rel,
        stop_reason="budget" if any(v.record.get("stop_reason") == "budget" for v in ok) else first.record.get(
            "stop_reason", ""),
        warmup_calls=sum(int(v.record.get("warmup_calls") or 0) for v in ok),
        traces=max(int(v.record.get("traces") or 0) for v in ok),
        reason="; ".join(reasons),
        finished_at=ok[-1].record.get("finished_at", ""),
        cold_s=first.record.get("cold_s", math.nan),
        incomplete=len(ok) < rounds_planned and VISITED_ONCE not in str(first.record.get("reason") or ""),
        **_pooled_telemetry(ok),
    )
    return row


def _pooled_telemetry(ok: Sequence[LoggedVisit]) -> dict[str, Any]:
    """GPU state over a cell's visits: the clocks, temperature and power at the start of the first and the end
    of the last, every power-or-heat throttle reason seen, and ``throttled`` if any visit was."""
    first, last = ok[0].record, ok[-1].record
    out: dict[str, Any] = {}
    for name in TELEMETRY_COLUMNS:
        if "_start_" in name:
            out[name] = first.get(name, math.nan)
        elif "_end_" in name:
            out[name] = last.get(name, math.nan)
    reasons = [r for v in ok for r in str(v.record.get("throttle_reasons") or "").split(",") if r]
    out["throttle_reasons"] = ",".join(dict.fromkeys(reasons))
    out["throttled"] = any(bool(v.record.get("throttled")) for v in ok)
    return out


def sample_rows(key_record: dict[str, Any], visits: Sequence[LoggedVisit]) -> list[dict[str, Any]]:
    """The samples table's rows of one cell: every sample of every visit, with its round and block size."""
    ident = {name: key_record.get(name) for name in ("run_id", *IDENTITY)}
    rows: list[dict[str, Any]] = []
    for visit in visits:
        number = visit.record.get("number", 0)
        rows.extend({**ident, "round": visit.round, "sample": i, "number": number, "per_call_s": s}
                    for i, s in enumerate(visit.samples))
    return rows
