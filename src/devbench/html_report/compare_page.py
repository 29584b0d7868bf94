"""The compare page: one HTML file for ``devbench compare BASE NEW --html FILE``.

It renders a ``compare.Comparison`` and computes nothing new: per cell the ratio NEW/BASE of the median time
per call with its bootstrap interval, the p-value and the verdict, sorted by change (the largest slow-down
first, the largest speed-up last, cells without a ratio at the end), with a text filter (plain JavaScript:
every word typed must occur in the row); the ratio chart; geometric means; both runs' crossovers; what
differs between the machines; the cells that could not be compared.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from devbench.errors import UsageError
from devbench.formatting import format_size, format_time
from devbench.html_report import charts as ch
from devbench.html_report.page import FILTER, Charts, esc, facts, page, table
from devbench.store import prepare_output_dir, write_atomic

if TYPE_CHECKING:
    from devbench.compare import CellComparison, Comparison

MAX_CHART_CELLS = 200
"""The ratio chart shows at most this many cells (the most changed); the table always holds every cell."""


def sorted_by_change(cells: tuple[CellComparison, ...] | list[CellComparison]) -> list[CellComparison]:
    """Largest ratio (slow-down) first, smallest (speed-up) last, cells without a finite ratio at the end;
    ties in reading order, so the page is the same every time."""
    return sorted(cells, key=lambda c: (not math.isfinite(c.ratio), -c.ratio if math.isfinite(c.ratio) else 0.0,
                                        c.key.sort_key))


def _number(value: float, fmt: str) -> str:
    return format(value, fmt) if math.isfinite(value) else "–"


def _interval(low: float, high: float) -> str:
    return f"{_number(low, '.3g')}–{_number(high, '.3g')}" if math.isfinite(low) or math.isfinite(high) else "–"


def _cells_section(comparison: Comparison, charts: Charts) -> str:
    cells = sorted_by_change(comparison.cells)
    head = '<section id="cells" aria-labelledby="cells-h"><h2 id="cells-h">Cells, sorted by change</h2>'
    if not cells:
        return head + "<p>No cell was measured ok in both runs.</p></section>"
    rows = [
        [c.key.op, str(c.key.size), c.key.dtype, c.key.device, c.key.mode, format_time(c.base_median_s),
         format_time(c.new_median_s), _number(c.ratio, ".3g"), _interval(c.ci_low, c.ci_high),
         f"{c.change:+.1%}" if math.isfinite(c.ratio) else "–", _number(c.p_value, ".2g"), c.verdict,
         "; ".join(c.notes)]
        for c in cells
    ]
    filter_box = (
        '<label class="filter" for="cell-filter">Filter cells (every word must match: op, size, dtype, device, '
        'mode, verdict, notes): <input type="search" id="cell-filter" autocomplete="off" '
        'aria-describedby="cell-filter-count"></label>'
        '<p id="cell-filter-count" class="note" aria-live="polite"></p>'
    )
    body = table(
        f"Ratio NEW/BASE of the median time per call per cell, largest slow-down first ({len(rows)} cells)",
        ["op", "n", "dtype", "device", "mode", "base median", "new median", "ratio", "CI", "change", "p",
         "verdict", "notes"],
        rows, table_id="compare-cells", row_classes=[c.verdict for c in cells],
    )
    chosen = [c for c in cells if math.isfinite(c.ratio)]
    note = ""
    if len(chosen) > MAX_CHART_CELLS:
        chosen = sorted_by_change(sorted(chosen, key=lambda c: -abs(math.log(c.ratio)) if c.ratio > 0 else 0.0)
                                  [:MAX_CHART_CELLS])
        note = f" The chart shows the {MAX_CHART_CELLS} most changed cells; the table has all {len(cells)}."
    chart = ""
    if chosen:
        chart = charts.embed(
            ch.compare_chart(chosen, [c.key.label() for c in chosen], threshold=comparison.settings.threshold),
            "Dot plot: ratio NEW/BASE of the time per call (geometric mean of round medians) per cell with its "
            "confidence interval, coloured by verdict, on a log axis; the line marks 1 (no change).",
            f"Error bars: Welch t CI of the ratio; grey band: the same band, ±{comparison.settings.threshold:.0%} "
            "on a log scale. "
            "Click a verdict in the legend to hide it." + note,
        )
    return head + filter_box + body + chart + "</section>"


def _summary(comparison: Comparison) -> str:
    s = comparison.settings
    counts = comparison.counts()
    overall = comparison.overall
    items = [
        ("base", comparison.base_label),
        ("new", comparison.new_label),
        *(("warning", w) for w in comparison.warnings),
        ("cells compared", f"{len(comparison.cells)} (" + ", ".join(f"{n} {v}" for v, n in counts.items()) + ")"),
        ("regression (gate)", f"yes: {len(comparison.regressions)} cell(s) slower and significant after "
                              f"{s.gate_method} at alpha {s.alpha:g}" if comparison.regressions else "no"),
        ("overall geometric mean", f"{_number(overall.ratio, '.3g')} (CI {_interval(overall.ci_low, overall.ci_high)})"
                                   + (f"; {overall.note}" if overall.note else "")),
        ("settings", f"threshold {s.threshold:.0%}, gate {s.gate_method} at alpha {s.alpha:g}, "
                     f"confidence {s.confidence:.0%}"),
    ]
    return '<section id="summary" aria-labelledby="summary-h"><h2 id="summary-h">Summary</h2>' + facts(items) + \
        "<p>The interval of each ratio is a Welch t interval of the log round medians, the round (one run per " \
        "side) or the run (several) the unit, so drift between visits widens it. A cell is <em>slower</em> " \
        "when its whole interval lies above 1 + threshold, <em>faster</em> when it lies below 1/(1 + " \
        "threshold), <em>same</em> when it lies within that band, " \
        "<em>uncertain</em> otherwise (or with too few rounds). p: one-sided p-value of “slower by more than " \
        "the threshold”; the gate corrects it for the number of cells.</p></section>"


def _fingerprint_section(comparison: Comparison) -> str:
    head = '<section id="fingerprint" aria-labelledby="fingerprint-h"><h2 id="fingerprint-h">Machines</h2>'
    if not comparison.fingerprint:
        return head + "<p>The two fingerprints agree on every field compared.</p></section>"
    rows = [[d.field, "–" if d.base is None else str(d.base), "–" if d.new is None else str(d.new)]
            for d in comparison.fingerprint]
    return head + table("Fingerprint fields that differ", ["field", "base", "new"], rows) + "</section>"


def _geomean_section(comparison: Comparison) -> str:
    rows = [[g.label, str(g.n_cells), _number(g.ratio, ".3g"), _interval(g.ci_low, g.ci_high), g.note]
            for g in (*comparison.geomeans, comparison.overall)]
    return '<section id="geomeans" aria-labelledby="geomeans-h"><h2 id="geomeans-h">Geometric means</h2>' + table(
        "Geometric mean of the ratios per op and dtype, and overall", ["group", "cells", "ratio", "CI", "note"],
        rows) + "</section>"


def _crossover_section(comparison: Comparison) -> str:
    if comparison.crossovers is None:
        return ""

    def where(size: float, low: float, high: float) -> str:
        return "–" if not math.isfinite(size) else f"n≈{format_size(size)} ({format_size(low)}–{format_size(high)})"

    rows = [[f"{c.op} {c.dtype} {c.mode}", f"{c.device_a} vs {c.device_b}", where(c.base_size, c.base_low,
             c.base_high), where(c.new_size, c.new_low, c.new_high), _number(c.moved, ".3g"), c.base_note,
             c.new_note] for c in comparison.crossovers]
    return '<section id="crossovers" aria-labelledby="crossovers-h"><h2 id="crossovers-h">Crossovers</h2>' + table(
        "Crossover sizes in both runs", ["op dtype mode", "pair", "base", "new", "new / base", "base note",
                                         "new note"], rows) + "</section>"


def _left_out_section(comparison: Comparison) -> str:
    parts = []
    if comparison.not_compared:
        parts.append(table(
            f"In both runs but not ok in both ({len(comparison.not_compared)})",
            ["cell", "base status", "new status", "base reason", "new reason"],
            [[p.key.label(), p.base_status, p.new_status, p.base_reason, p.new_reason]
             for p in comparison.not_compared]))
    for side, lone in (("base", comparison.only_in_base), ("new", comparison.only_in_new)):
        if lone:
            parts.append(table(f"Only in {side} ({len(lone)})", ["cell", "sync", "status", "reason"],
                               [[c.key.label(), c.sync, c.status, c.reason] for c in lone]))
    if not parts:
        return ""
    return '<section id="left-out" aria-labelledby="left-out-h"><h2 id="left-out-h">Cells not compared</h2>' + \
        "".join(parts) + "</section>"


def render_compare_html(comparison: Comparison) -> str:
    """The compare page as text."""
    charts = Charts()
    title = f"devbench compare: {comparison.new_label} vs {comparison.base_label}"
    body = "".join([
        f"<header><h1>{esc(title)}</h1></header><main>",
        _summary(comparison),
        _cells_section(comparison, charts),
        _geomean_section(comparison),
        _crossover_section(comparison),
        _fingerprint_section(comparison),
        _left_out_section(comparison),
        "</main>",
    ])
    return page(title, body, charts, extra_script=FILTER if comparison.cells else "")


def write_compare_html(comparison: Comparison, path: Path) -> Path:
    """Write the compare page to ``path`` (atomically, parents created) and return it. A directory at
    ``path``, or a parent that cannot be created or written, is a UsageError."""
    if path.is_dir():
        raise UsageError(f"--html {str(path)!r} is a directory; give a file name such as compare.html")
    prepare_output_dir(path.parent)
    write_atomic(path, render_compare_html(comparison).encode("utf-8"))
    return path
