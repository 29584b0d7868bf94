"""Text, CSV and JSON renderings of a :class:`devbench.compare.Comparison` (``devbench compare``).

Reads the comparison's frozen data and computes nothing new; every number goes through
:mod:`devbench.formatting`. Times are seconds per call, ratios NEW/BASE of the geometric mean of a cell's
round medians.
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from typing import Any, Literal

from devbench.compare import CSV_COLUMNS, Comparison, has_regression
from devbench.errors import UsageError
from devbench.formatting import (
    csv_text,
    format_p_value,
    format_percent,
    format_ratio,
    format_ratio_interval,
    format_size_interval,
    format_time,
)
from devbench.stats import same_band

__all__ = ["render_comparison"]


def _str(value: Any) -> str:
    """A fingerprint value for a table cell: empty for None/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _side_lines(comparison: Comparison) -> str:
    """The header's base/new lines: every run of each side, by name."""
    lines = []
    for name, label, runs in (("base", comparison.base_label, comparison.base_runs),
                              ("new", comparison.new_label, comparison.new_runs)):
        if len(runs) > 1:
            lines.append(f"  {name} ({len(runs)} runs): {', '.join(runs)}")
        else:
            lines.append(f"  {name}:{' ' if name == 'new' else ''} {label}")
    return "\n".join(lines)


def _unit(comparison: Comparison) -> str:
    """What the cells' intervals treat as independent: rounds (one run per side) or runs."""
    window = comparison.settings.baseline_window
    if window and len(comparison.base_runs) > 1 and len(comparison.new_runs) == 1:
        return (f"rounds and runs (--baseline-window {window}: the new run as one more draw of the last "
                f"{window} base runs)")
    if len(comparison.base_runs) > 1 or len(comparison.new_runs) > 1:
        return "runs (the run is the unit; run-level offsets included)"
    return "rounds (conditional on the two runs)"


def _render_table(comparison: Comparison, width: int) -> str:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(file=io.StringIO(), record=True, width=width, color_system=None,
                      force_terminal=False, highlight=False, soft_wrap=False)
    s = comparison.settings
    low, high = same_band(s.threshold)
    console.print(f"devbench compare\n{_side_lines(comparison)}\n"
                  f"  ratio = new/base of the geometric mean of round medians (>1 slower); same band "
                  f"[{format_ratio(low)}, {format_ratio(high)}] (threshold {format_percent(s.threshold)})\n"
                  f"  {format_percent(s.confidence)} CI: Welch t over {_unit(comparison)}; verdict from the CI "
                  "alone\n"
                  f"  gate (--fail-on-regression): p = P(slower by more than {format_percent(s.threshold)}), "
                  f"{s.gate_method} over {comparison.n_judged} cells at alpha {s.alpha:g}")
    for warning in comparison.warnings:
        console.print(f"  WARNING: {warning}")

    if comparison.fingerprint:
        fp = Table(title="Machine differences", box=box.SIMPLE, title_justify="left")
        for col in ("field", "base", "new"):
            fp.add_column(col)
        for diff in comparison.fingerprint:
            fp.add_row(diff.field, _str(diff.base) or "(none)", _str(diff.new) or "(none)")
        console.print(fp)
    else:
        console.print("\nMachine differences: none in the compared fingerprint fields")

    cells = Table(title="Cells", box=box.SIMPLE, title_justify="left")
    for col, justify in (("op", "left"), ("size", "right"), ("dtype", "left"), ("device", "left"),
                         ("mode", "left"), ("rounds", "right"), ("base median", "right"),
                         ("new median", "right"), ("ratio [CI]", "right"), ("p", "right"), ("p adj", "right"),
                         ("verdict", "left"), ("notes", "left")):
        cells.add_column(col, justify=justify)  # type: ignore[arg-type]
    for c in comparison.cells:
        k = c.key
        verdict = c.verdict.upper() if c.verdict == "slower" else c.verdict
        cells.add_row(k.op, str(k.size), k.dtype, k.device, k.mode, f"{c.n_rounds_base}/{c.n_rounds_new}",
                      format_time(c.base_median_s), format_time(c.new_median_s),
                      format_ratio_interval(c.ratio, c.ci_low, c.ci_high), format_p_value(c.p_value),
                      format_p_value(c.p_adjusted), verdict + (" (gate)" if c.gate_fails else ""),
                      "; ".join(c.notes))
    if comparison.cells:
        console.print(cells)
    else:
        console.print("\nCells: none measured ok in both runs")

    geo = Table(title="Geometric-mean ratio", box=box.SIMPLE, title_justify="left")
    for col in ("group", "cells", "ratio [CI]", "note"):
        geo.add_column(col)
    for g in (*comparison.geomeans, comparison.overall):
        geo.add_row(g.label, str(g.n_cells), format_ratio_interval(g.ratio, g.ci_low, g.ci_high), g.note)
    console.print(geo)

    if comparison.crossovers is not None:
        if comparison.crossovers:
            cx = Table(title="Crossover sizes", box=box.SIMPLE, title_justify="left")
            for col in ("op", "dtype", "mode", "devices", "base [bracket]", "new [bracket]", "moved",
                        "notes"):
                cx.add_column(col)
            for x in comparison.crossovers:
                notes = "; ".join(f"{side}: {note}" for side, note in (("base", x.base_note),
                                                                        ("new", x.new_note)) if note)
                cx.add_row(x.op, x.dtype, x.mode, f"{x.device_a} vs {x.device_b}",
                           format_size_interval(x.base_size, x.base_low, x.base_high),
                           format_size_interval(x.new_size, x.new_low, x.new_high),
                           format_ratio(x.moved), notes)
            console.print(cx)
        else:
            console.print("\nCrossover sizes: none in either run")

    changed = [p for p in comparison.not_compared if p.changed]
    if changed:
        nc = Table(title="Not compared: status changed", box=box.SIMPLE, title_justify="left")
        for col in ("op", "size", "dtype", "device", "mode", "base", "new", "reason"):
            nc.add_column(col)
        for p in changed:
            k = p.key
            nc.add_row(k.op, str(k.size), k.dtype, k.device, k.mode, p.base_status, p.new_status,
                       p.new_reason or p.base_reason)
        console.print(nc)
    unchanged = Counter(p.base_status for p in comparison.not_compared if not p.changed)
    if unchanged:
        console.print("Not compared, same non-ok status in both runs: "
                      + ", ".join(f"{status} {n}" for status, n in sorted(unchanged.items())))

    for title, lone_cells in (("Only in base", comparison.only_in_base),
                              ("Only in new", comparison.only_in_new)):
        if not lone_cells:
            continue
        t = Table(title=f"{title} ({len(lone_cells)})", box=box.SIMPLE, title_justify="left")
        for col in ("op", "size", "dtype", "device", "mode", "sync", "status"):
            t.add_column(col)
        for lone_cell in lone_cells:
            k = lone_cell.key
            t.add_row(k.op, str(k.size), k.dtype, k.device, k.mode, lone_cell.sync, lone_cell.status)
        console.print(t)

    counts = comparison.counts()
    console.print(
        f"{len(comparison.cells)} cells compared: "
        + ", ".join(f"{n} {v}" for v, n in counts.items())
        + f"; {len(comparison.not_compared)} not compared, {len(comparison.only_in_base)} only in base, "
        f"{len(comparison.only_in_new)} only in new"
        + (f"; REGRESSION: the gate fails on {len(comparison.regressions)}" if has_regression(comparison)
           else "; the gate passes")
        + (f"; {len(comparison.slower_not_significant)} slower but not significant after {s.gate_method}"
           if comparison.slower_not_significant else "")
    )
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def _csv_field(value: Any) -> Any:
    """Floats in full precision (repr), empty when missing; everything else as it is."""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return value


def _render_csv(comparison: Comparison) -> str:
    rows = []
    for cell in comparison.cells:
        data = {**cell.as_dict(), "notes": "; ".join(cell.notes)}
        rows.append([_csv_field(data[c]) for c in CSV_COLUMNS])
    return csv_text(CSV_COLUMNS, rows)


def render_comparison(comparison: Comparison, fmt: Literal["table", "csv", "json"] = "table", *,
                      width: int = 160) -> str:
    """The comparison as text.

    table: fingerprint differences first, then one row per cell (op, size, dtype, device, mode, base
        median, new median, ratio [CI], p, adjusted p, verdict, notes), geometric means, crossovers (when given), cells
        not compared, cells in one run only, and a summary line; ``width`` is the line width in characters.
    csv: one row per compared cell, columns ``CSV_COLUMNS``; floats in full precision, empty when missing.
    json: ``Comparison.to_dict()``: everything, with null for missing numbers (never NaN).
    """
    if fmt == "table":
        return _render_table(comparison, width)
    if fmt == "csv":
        return _render_csv(comparison)
    if fmt == "json":
        return json.dumps(comparison.to_dict(), indent=2, allow_nan=False) + "\n"  # to_dict is JSON-safe already
    raise UsageError(f"unknown format {fmt!r}; allowed: table, csv, json")
