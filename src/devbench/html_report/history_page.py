"""The history page: one HTML file for ``devbench history RUN... --html FILE``, in the report's style.

It renders a :class:`devbench.history.History` and computes nothing new: the runs in order, the steps found
(with size, interval, first run after and the fingerprint change), the crossovers that moved, a chart per
(op, dtype, mode, device) of each size's median relative to its median over the runs (with the runs'
intervals and the steps marked), the series as a filterable table, the crossovers per run and the winners.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from devbench.errors import UsageError
from devbench.formatting import format_size, format_time
from devbench.history import CELL_KEY, HISTORY_EXPLANATION, STEP_HEADERS, History, step_summary
from devbench.html_report.page import FILTER, Charts, esc, facts, page, table
from devbench.plots.common import PALETTE
from devbench.selection import GROUP
from devbench.store import prepare_output_dir, write_atomic

__all__ = ["render_history_html", "write_history_html"]


def _series_chart(history: History, key: tuple[str, ...], group: Any) -> Any:
    import plotly.graph_objects as go  # type: ignore[import-untyped]

    fig = go.Figure()
    sizes = sorted({int(s) for s in group["size"]})
    for i, size in enumerate(sizes):
        series = group[group["size"] == size].sort_values("run")
        median = series["median_s"].to_numpy(dtype=float)
        ref = float(np.median(median))
        y = median / ref
        upper = np.nan_to_num(series["ci_high_s"].to_numpy(dtype=float) / ref - y, nan=0.0)
        lower = np.nan_to_num(y - series["ci_low_s"].to_numpy(dtype=float) / ref, nan=0.0)
        text = [f"n={size} run {int(r)}: {format_time(m)}" for r, m in zip(series["run"], median, strict=True)]
        fig.add_trace(go.Scatter(
            x=series["run"].tolist(), y=y.tolist(), mode="lines+markers", name=f"n={size}", text=text,
            hoverinfo="text", line={"color": PALETTE[i % len(PALETTE)]},
            error_y={"type": "data", "symmetric": False, "array": upper.tolist(), "arrayminus": lower.tolist()}))
    steps = history.steps
    shapes = []
    if len(steps):
        mine = steps[(steps["op"] == key[0]) & (steps["dtype"] == key[1]) & (steps["mode"] == key[2])
                     & (steps["device"] == key[3])]
        shapes = [{"type": "line", "x0": float(r) - 0.5, "x1": float(r) - 0.5, "y0": 0, "y1": 1, "yref": "paper",
                   "line": {"color": "#C00000", "dash": "dash", "width": 1}} for r in sorted(set(mine["run"]))]
    fig.update_layout(
        title={"text": f"{' '.join(key)}: median / its median over the runs", "font": {"size": 14}},
        template="plotly_white", hovermode="closest", shapes=shapes, margin={"l": 70, "r": 20, "t": 60, "b": 50},
        xaxis={"title": "run", "tickvals": [h.position for h in history.runs],
               "ticktext": [str(h.position) for h in history.runs]},
        yaxis={"title": "relative median", "type": "log"})
    return fig


def _runs_section(history: History) -> str:
    rows = [[str(h.position), h.run_id, h.label, h.started_at] for h in history.runs]
    return ('<section id="runs" aria-labelledby="runs-h"><h2 id="runs-h">Runs in order</h2>'
            + table(f"{len(rows)} runs of {history.machine}, ordered by {history.key}",
                    ["run", "run id", history.key, "started at"], rows) + "</section>")


def _steps_section(history: History) -> str:
    head = '<section id="steps" aria-labelledby="steps-h"><h2 id="steps-h">Steps</h2>'
    if not len(history.steps):
        return head + "<p>No step in any cell's median.</p></section>"
    rows = [[f"{r['op']} {r['dtype']} {r['mode']} {r['device']} n={r['size']}", f"{r['run']}: {r['label']}",
             f"{r['ratio']:.3g}× [{r['ci_low']:.3g}–{r['ci_high']:.3g}]",
             f"{format_time(r['before_median_s'])} → {format_time(r['after_median_s'])}",
             f"{r['runs_before']} | {r['runs_after']}", r["attribution"] or "–"]
            for r in history.steps.to_dict("records")]
    by_run = "<ul>" + "".join(f"<li>{esc(line)}</li>" for line in step_summary(history)) + "</ul>"
    return head + by_run + table(f"Steps in the medians ({len(rows)})", STEP_HEADERS, rows,
                        row_classes=["slower" if r > 1 else "faster" for r in history.steps["ratio"]]) + "</section>"


def _moves_section(history: History) -> str:
    head = '<section id="moves" aria-labelledby="moves-h"><h2 id="moves-h">Crossovers that moved</h2>'
    if not len(history.moves):
        return head + "<p>No decisive crossover moved out of its previous range.</p></section>"
    return head + "<ul>" + "".join(f"<li>{esc(s)}</li>" for s in history.moves["sentence"]) + "</ul></section>"


def _series_section(history: History, charts: Charts) -> str:
    head = '<section id="series" aria-labelledby="series-h"><h2 id="series-h">Medians per run</h2>'
    if history.cells.empty:
        return head + "<p>No ok cell in these runs.</p></section>"
    parts = []
    for key, group in history.cells.groupby([*GROUP, "device"], sort=True):
        label = " ".join(str(k) for k in key)
        parts.append(charts.embed(_series_chart(history, tuple(str(k) for k in key), group),
                                  f"Line chart: {label}, each size's median per run relative to its median over "
                                  "the runs, with 95 % intervals; dashed lines mark steps.",
                                  "Error bars: each run's 95 % interval of the median; dashed: a step (first run "
                                  "after it to the right)."))
    rows = []
    marks = {(tuple(str(r[c]) for c in CELL_KEY), int(r["run"])) for r in history.steps.to_dict("records")}
    for r in history.cells.to_dict("records"):
        interval = (f"{format_time(r['ci_low_s'])}–{format_time(r['ci_high_s'])}"
                    if math.isfinite(float(r["ci_low_s"])) else "–")
        step = (tuple(str(r[c]) for c in CELL_KEY), int(r["run"])) in marks
        rows.append([r["op"], str(r["size"]), r["dtype"], r["device"], r["mode"], str(r["run"]), r["run_id"],
                     format_time(r["median_s"]), interval, "step" if step else ""])
    filter_box = (
        '<label class="filter" for="cell-filter">Filter rows (every word must match): <input type="search" '
        'id="cell-filter" autocomplete="off" aria-describedby="cell-filter-count"></label>'
        '<p id="cell-filter-count" class="note" aria-live="polite"></p>')
    body = table("Each cell's median per run with its 95 % interval", ["op", "n", "dtype", "device", "mode", "run",
                                                                       "run id", "median", "CI", "step"],
                 rows, table_id="compare-cells")
    return head + "".join(parts) + filter_box + body + "</section>"


def _crossover_section(history: History) -> str:
    head = '<section id="crossovers" aria-labelledby="crossovers-h"><h2 id="crossovers-h">Crossovers per run</h2>'
    if history.crossovers.empty:
        return head + "<p>No pair of devices.</p></section>"
    rows = []
    for r in history.crossovers.to_dict("records"):
        where = ("–" if not math.isfinite(float(r["crossover_size"])) else
                 f"n≈{format_size(r['crossover_size'])} ({format_size(r['low'])}–{format_size(r['high'])})")
        rows.append([str(r["run"]), f"{r['op']} {r['dtype']} {r['mode']}", f"{r['device_a']} vs {r['device_b']}",
                     where, "decisive" if r["decisive"] else "", str(r["faster_above"] or ""), str(r["note"])])
    winners = [[str(r["run"]), f"{r['op']} {r['dtype']} {r['mode']}", str(r["size"]), str(r["device"]),
                format_time(r["median_s"])] for r in history.winners.to_dict("records")]
    return (head + table("Crossings in each run (range: the two decisive sizes, or the block within noise)",
                         ["run", "op dtype mode", "pair", "where", "decisive", "faster above", "note"], rows)
            + table("Fastest device per size in each run", ["run", "op dtype mode", "n", "fastest", "median"],
                    winners) + "</section>")


def render_history_html(history: History) -> str:
    """The history page as text."""
    charts = Charts()
    title = f"devbench history: {history.machine}"
    summary = facts([("machine", history.machine), ("runs", f"{len(history.runs)}, ordered by {history.key}"),
                     ("steps", str(len(history.steps))), ("crossovers that moved", str(len(history.moves)))])
    body = "".join([
        f"<header><h1>{esc(title)}</h1></header><main>",
        f'<section id="summary" aria-labelledby="summary-h"><h2 id="summary-h">Summary</h2>{summary}'
        f"<p>{esc(HISTORY_EXPLANATION)}</p></section>",
        _steps_section(history),
        _moves_section(history),
        _series_section(history, charts),
        _crossover_section(history),
        _runs_section(history),
        "</main>",
    ])
    return page(title, body, charts, extra_script=FILTER if not history.cells.empty else "")


def write_history_html(history: History, path: Path) -> Path:
    """Write the history page to ``path`` (atomically, parents created) and return it."""
    if path.is_dir():
        raise UsageError(f"--html {str(path)!r} is a directory; give a file name such as history.html")
    prepare_output_dir(path.parent)
    write_atomic(path, render_history_html(history).encode("utf-8"))
    return path
