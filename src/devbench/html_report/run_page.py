"""RUN_DIR/report.html: the run's answer (crossovers, fastest device per cell), one interactive chart pair
per (op, dtype, mode), every reason to doubt a number, the machine and its calibrated limits, in one file.

Reading order: summary, crossover table, energy per call (devbench.energy), overview heatmap with the winners
table, one section per (op, dtype, mode) (its crossover sentences, the crossover chart with its speed-up panel,
the throughput chart, and a folded table of the numbers behind both), warnings, machine, calibration.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from devbench.analysis import (
    CROSSOVER_HEADERS,
    GROUP,
    REFERENCE_DEVICE,
    contender_name,
    crossover_frame,
    crossover_sentence,
    crossover_table_rows,
    noisy_flags,
    ok_cells,
    records,
    transfer_as_mode,
    unsynchronized_flags,
    winners,
)
from devbench.crossover import CROSSOVER_EXPLANATION
from devbench.formatting import format_percent, format_time
from devbench.html_report import charts as ch
from devbench.html_report.page import Charts, esc, facts, page, table
from devbench.plots.common import device_colours, machine_line, series_cells
from devbench.shapes import axis_name, size_header
from devbench.store import Run, prepare_output_dir, write_atomic

REPORT_HTML = "report.html"

MAX_LISTED = 500
"""Cells listed per warning table; the rest are counted (results.csv has them all)."""


def _cell(r: Mapping[str, Any]) -> list[str]:
    return [str(r["op"]), str(r["dtype"]), str(r["mode"]), str(r["device"]), str(r["size"])]


CELL_HEADERS = ("op", "dtype", "mode", "device", "n")


def _title(run: Run) -> str:
    return str(run.meta.get("run_id") or (run.path.name if run.path is not None else "results"))


def _summary(run: Run) -> str:
    meta = run.meta
    results = run.results
    counts = results["status"].value_counts() if not results.empty else pd.Series(dtype="int64")
    cells = ", ".join(f"{int(n)} {status}" for status, n in counts.items()) or "none"
    items = [
        ("source", str(run.path) if run.path is not None else ""),
        *((label, str(meta.get(key) or "")) for label, key in (
            ("run id", "run_id"), ("status", "status"), ("started", "started_at"), ("finished", "finished_at"))),
        ("cells", f"{len(results)} ({cells})"),
    ]
    command = meta.get("command")
    out = '<section id="run" aria-labelledby="run-h"><h2 id="run-h">Run</h2>'
    if command:
        out += f"<p>Command:</p><pre><code>{esc(command)}</code></pre>"
    return out + facts(items) + "</section>"


def _groups(results: pd.DataFrame) -> Iterator[tuple[tuple[str, str, str], pd.DataFrame]]:
    """(op, dtype, mode) groups with at least one ok cell, in sorted order."""
    frame = transfer_as_mode(results)
    ok = ok_cells(frame)
    with_ok = {tuple(str(v) for v in k) for k, _ in ok.groupby(list(GROUP))} if not ok.empty else set()
    for key, group in frame.groupby(list(GROUP), sort=True):
        k = (str(key[0]), str(key[1]), str(key[2]))
        if k in with_ok:
            yield k, group


def _of(frame: pd.DataFrame, key: tuple[str, str, str]) -> pd.DataFrame:
    op, dtype, mode = key
    if frame.empty:
        return frame
    chosen: pd.DataFrame = frame[(frame["op"] == op) & (frame["dtype"] == dtype) & (frame["mode"] == mode)]
    return chosen


def _sentences(crossovers: pd.DataFrame) -> list[str]:
    """One sentence per crossover row: located ones as 'GPU:0 faster than CPU:0 above n≈724 (range …)',
    the others as their note ('no crossover in [64, 4096]: …')."""
    out = []
    for r in records(crossovers):
        size = float(r["crossover_size"])
        if math.isfinite(size):
            out.append(crossover_sentence(str(r["faster_above"]), size, float(r["low"]), float(r["high"]),
                                          than=str(r["faster_below"]), decisive=bool(r.get("decisive")),
                                          axis=axis_name(str(r["op"]))))
        else:
            out.append(f"{r['device_a']} vs {r['device_b']}: {r['note']}")
    return out


def _crossover_section(crossovers: pd.DataFrame) -> str:
    head = '<section id="crossovers" aria-labelledby="crossovers-h"><h2 id="crossovers-h">Crossovers</h2>'
    if crossovers.empty:
        return head + "<p>No (op, dtype, mode) was measured on two devices, so there is no crossover.</p></section>"
    intro = "<p>" + re.sub(r"\*([^*]+)\*", r"<em>\1</em>", esc(CROSSOVER_EXPLANATION)) + "</p>"
    return head + intro + table("Crossover per (op, dtype, mode) and device pair", CROSSOVER_HEADERS,
                                crossover_table_rows(crossovers)) + "</section>"


def _energy_section(run: Run) -> str:
    """Joules per call and the energy crossovers next to the time crossovers, or why there are none (the rows
    and words are devbench.energy's, as in report.md)."""
    from devbench.energy import (
        ENERGY_CROSSOVER_HEADERS,
        ENERGY_EXPLANATION,
        ENERGY_HEADERS,
        energy_crossover_rows,
        energy_facts,
        energy_table_rows,
    )

    out = '<section id="energy" aria-labelledby="energy-h"><h2 id="energy-h">Energy per call</h2>'
    out += table("Energy meters (meta.json energy)", ["what", "detail"],
                 [[label, text] for label, text in energy_facts(run.meta)])
    rows = energy_table_rows(run.results)
    if rows:
        out += f"<p>{esc(ENERGY_EXPLANATION)}</p>"
        crossings = energy_crossover_rows(run.results)
        if crossings:
            out += table("Energy crossover per (op, dtype, mode) and device pair", ENERGY_CROSSOVER_HEADERS,
                         crossings)
        out += table("Joules per call", ENERGY_HEADERS, rows)
    return out + "</section>"
def _cache_section(run: Run) -> str:
    """Warm vs cache-cold (``op[cache=cold]``) per cell, when the run measured both (devbench.cache)."""
    from devbench.cache import CACHE_EXPLANATION, CACHE_HEADERS, cache_table_rows, host_llc_of, warm_cold_pairs

    llc = host_llc_of(run.meta)
    pairs = warm_cold_pairs(run.results, run.samples, llc)
    if pairs.empty:
        return ""
    source = f" Host LLC: {llc.bytes // 2**20} MiB, from {llc.source}." if llc is not None else ""
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(CACHE_EXPLANATION + source))
    return ('<section id="cache" aria-labelledby="cache-h"><h2 id="cache-h">Cache state (warm vs flushed)</h2>'
            f"<p>{text}</p>" + table("Flushed (cache-cold) vs warm, per cell", CACHE_HEADERS,
                                     cache_table_rows(pairs)) + "</section>")


def _flags_text(r: Mapping[str, Any]) -> str:
    return ", ".join(w for w, on in (("noisy", r["noisy"]), ("unsynchronized", r["unsynchronized"])) if on)


def _winners_map_section(results: pd.DataFrame, colours: Mapping[str, str], charts: Charts) -> str:
    """The map of where each device wins, for shapes varying in two or more dimensions (``--fuzz``); else
    nothing (devbench.plots.winners)."""
    from devbench.plots.winners import map_worth_drawing, winner_points

    if not map_worth_drawing(results):
        return ""
    points = winner_points(results)
    chart = charts.embed(ch.winners_map_chart(points, colours),
                         "Scatter: one point per measured shape, coloured by the fastest device; hollow where "
                         "its interval overlaps the runner-up's.", "Hollow: within noise (intervals overlap).")
    clear = points[~points["within_noise"].astype(bool)]
    counts = ", ".join(f"{device} {n}" for device, n in clear["winner"].value_counts().items()) or "none"
    return ('<section id="winners-map" aria-labelledby="winners-map-h"><h2 id="winners-map-h">Where each device '
            f"wins</h2><p>{len(points)} shapes; clear wins: {esc(counts)}; within noise: "
            f"{len(points) - len(clear)}.</p>{chart}</section>")


def _overview_section(best: pd.DataFrame, charts: Charts) -> str:
    head = '<section id="overview" aria-labelledby="overview-h"><h2 id="overview-h">Overview</h2>'
    fig = ch.overview_chart(best)
    if fig is None:
        return head + "<p>No ok cells: nothing to rank.</p></section>"
    contender = contender_name(best)
    without = "" if contender == "best accelerator" else " (no accelerator measured)"
    chart = charts.embed(
        fig,
        f"Heatmap: rows op, dtype and mode; columns size n; each cell names the fastest device and its speed-up "
        f"over the slower one, and is coloured by the {contender}'s speed-up over {REFERENCE_DEVICE}{without} "
        f"(red: {REFERENCE_DEVICE} faster, blue: the {contender} faster).",
        f"* noisy, ! unsynchronized; blank: {REFERENCE_DEVICE} or the {contender} missing. The same numbers are in "
        "the table below.",
    )
    rows = [
        [f"{r['op']} {r['dtype']} {r['mode']}", str(r["size"]), str(r["device"]), format_time(r["median_s"]),
         ch.ratio_text(r["speedup_vs_cpu"]), str(r["contender"]) or "–",
         ch.ratio_text(r["contender_speedup"]), _flags_text(r)]
        for r in records(best)
    ]
    body = table(
        "Fastest device per (op, dtype, mode) and size",
        ["op dtype mode", size_header(best["op"]), "fastest", "median / call", f"speed-up over {REFERENCE_DEVICE}",
         contender,
         f"{contender} vs {REFERENCE_DEVICE}", "flags"],
        rows,
    )
    return head + chart + f"<details><summary>Table: fastest device per cell ({len(rows)} cells)</summary>{body}" \
        "</details></section>"


def _advice_section(run: Run) -> str:
    """Placement advice (devbench.advise): per op the device to use by size over 1000 calls, the break-even."""
    from devbench.advise import DEFAULT_CALLS, advise
    from devbench.advise_render import ADVICE_EXPLANATION, SUMMARY_HEADERS, agreement_sentence, summary_rows

    head = '<section id="advice" aria-labelledby="advice-h"><h2 id="advice-h">Placement advice</h2>'
    if run.results.empty or ok_cells(run.results).empty:
        return head + "<p>No ok cells: nothing to advise on.</p></section>"
    advice = advise(run.results, run.samples, run.meta, DEFAULT_CALLS)
    intro = re.sub(r"`([^`]+)`", r"<code>\1</code>", re.sub(r"\*([^*]+)\*", r"<em>\1</em>", esc(
        ADVICE_EXPLANATION.format(calls=DEFAULT_CALLS))))
    return (head + f"<p>{intro}</p>" + table("Device to use per (op, dtype, mode) and the break-even call count",
                                             SUMMARY_HEADERS, summary_rows(advice))
            + f"<p>{esc(agreement_sentence(advice))}</p></section>")


PCT_HEADERS = {"pct_of_peak": "% of calibrated peak", "pct_of_best": "% of the run's best"}
"""Headers of the numbers tables' pct columns: pct_of_best is labelled as what it is, not as a peak."""


def _numbers_table(group: pd.DataFrame, memory_bound: bool) -> str:
    """The numbers behind a group's charts, for readers without JavaScript or a mouse."""
    cells = series_cells(group).sort_values(["device", "sync", "size"])
    unit, work = ("GB/s", "bytes") if memory_bound else ("GFLOP/s", "flops")
    has_rounds = "n_rounds" in cells.columns
    pcts = [c for c in ("pct_of_peak", "pct_of_best") if c in cells.columns]
    headers = ["device", "sync", size_header(group["op"]), "median / call", "95 % CI", "IQR", "samples",
               *(["rounds"] if has_rounds else []), unit,
               *(PCT_HEADERS[c] for c in pcts), "flags"]
    rows = []
    for r in records(cells):
        rate = float(r[work]) / float(r["median_s"]) / 1e9 if pd.notna(r[work]) else math.nan
        rows.append([
            str(r["device"]), str(r["sync"]), str(r["size"]), format_time(r["median_s"]),
            f"{format_time(r['ci_low_s'])} – {format_time(r['ci_high_s'])}",
            f"{format_time(r['q1_s'])} – {format_time(r['q3_s'])}", str(r["n_samples"]),
            *([str(r["n_rounds"])] if has_rounds else []), f"{rate:.3g}" if math.isfinite(rate) else "–",
            *(f"{float(r[c]):.3g}" if pd.notna(r[c]) and math.isfinite(float(r[c])) else "–" for c in pcts),
            ", ".join(ch.flags(r)),
        ])
    return table("Median time per call and throughput per device and size", headers, rows)


def _group_section(index: int, key: tuple[str, str, str], group: pd.DataFrame, *, crossovers: pd.DataFrame,
                   colours: Mapping[str, str], calibration: Mapping[str, Any] | None, charts: Charts) -> str:
    from devbench.ceilings import ABOVE_PEAK_NOTE
    from devbench.plots import is_memory_bound

    op, dtype, mode = key
    name = f"{op} · {dtype} · {mode}"
    out = f'<section id="group-{index}" aria-labelledby="group-{index}-h"><h3 id="group-{index}-h">{esc(name)}</h3>'
    sentences = _sentences(crossovers)
    out += "".join(f'<p class="crossover">{esc(s)}</p>' for s in sentences)
    devices = ", ".join(sorted(set(group["device"].astype(str))))
    out += charts.embed(
        ch.crossover_chart(group, key, crossovers, colours),
        f"Median time per call against size n, log–log, for {devices}, with 95 % CI bands; "
        f"below: speed-up over {REFERENCE_DEVICE}. " + " ".join(sentences),
        "Band: 95 % CI of the median. Dashed line: crossover, shaded: its range. Red ring: noisy; ✕ and dashed "
        "line: unsynchronized. Click a device in the legend to hide it.",
    )
    memory = is_memory_bound(op, group["flops"], group["bytes"])
    fig = ch.throughput_chart(group, key, colours, memory_bound=memory, calibration=calibration)
    if fig is not None:
        unit = "GB/s" if memory else "GFLOP/s"
        out += charts.embed(
            fig,
            f"Throughput in {unit} against size n for {devices}, with each device's calibrated ceiling as a "
            f"dotted line where the run was calibrated.",
            "Dotted: the device's calibrated ceiling (memory bandwidth for memory-bound ops, peak GEMM rate "
            "otherwise), what pct_of_peak is measured against. Triangle: a point above it, "
            f"{ABOVE_PEAK_NOTE}.",
        )
    out += f"<details><summary>Table: the numbers behind these charts</summary>{_numbers_table(group, memory)}" \
        "</details>"
    return out + "</section>"


def _warning_rows(results: pd.DataFrame) -> list[tuple[str, list[list[str]], str]]:
    """(title, rows of CELL_HEADERS + detail, detail header) per category with at least one cell."""
    from devbench.report import FAILED_STATUSES
    from devbench.stats import NOISY_REL_IQR

    ok = results["status"].astype(str) == "ok"
    flagged = results.assign(is_noisy=noisy_flags(results), is_unsync=unsynchronized_flags(results))
    out: list[tuple[str, list[list[str]], str]] = []
    noisy = [[*_cell(r), f"rel. IQR {r['rel_iqr']:.0%}" if math.isfinite(r["rel_iqr"]) else "–"]
             for r in records(flagged[ok & flagged["is_noisy"]])]
    out.append((f"Noisy cells (IQR over {NOISY_REL_IQR:.0%} of the median)", noisy, "spread"))
    if "throttled" in results.columns:
        throttled = results["throttled"].fillna(False).astype(bool)
        out.append(("Throttled cells (the clock dropped while measuring)",
                    [[*_cell(r), str(r["reason"]) or "–"] for r in records(results[ok & throttled])], "reason"))
    if "cpu_freq_moved" in results.columns:
        from devbench.hostcheck import MOVED_REL, moved_detail

        moved = results["cpu_freq_moved"].fillna(False).astype(bool)
        out.append((f"CPU frequency moved over {format_percent(MOVED_REL)} within a visit",
                    [[*_cell(r), moved_detail(r)] for r in records(results[ok & moved])], "CPU frequency"))
    if "above_peak" in results.columns:
        from devbench.ceilings import ABOVE_PEAK_NOTE

        above = results["above_peak"].fillna(False).astype(bool)
        out.append(("Above the calibrated ceiling",
                    [[*_cell(r), f"{float(r['pct_of_peak']):.3g} % of the calibrated peak: {ABOVE_PEAK_NOTE}"]
                     for r in records(results[ok & above])], "pct_of_peak"))
    unsync = [[*_cell(r), f"sync={r['sync']}: measures launch, not work"]
              for r in records(flagged[ok & flagged["is_unsync"]])]
    out.append(("Unsynchronized cells", unsync, "why"))
    for status, title in FAILED_STATUSES:
        failed = results[results["status"].astype(str) == status].sort_values([*GROUP, "device", "size"])
        out.append((title, [[*_cell(r), str(r["reason"]) or "no reason given"] for r in records(failed)], "reason"))
    known = {"ok", *(s for s, _ in FAILED_STATUSES)}
    other = results[~results["status"].astype(str).isin(known)]
    out.append(("Cells with an unknown status",
                [[*_cell(r), f"status {r['status']}: {r['reason']}"] for r in records(other)], "status"))
    return [(title, rows, detail) for title, rows, detail in out if rows]


def _warnings_section(run: Run) -> str:
    out = '<section id="warnings" aria-labelledby="warnings-h"><h2 id="warnings-h">Warnings</h2>'
    parts = []
    if run.torn_lines:
        parts.append(f'<p class="warn">cells.jsonl had {run.torn_lines} unreadable line(s), left by an interrupted '
                     "sweep; they were ignored.</p>")
    if not run.results.empty:
        for title, rows, detail in _warning_rows(run.results):
            more = len(rows) - MAX_LISTED
            parts.append(table(f"{title} ({len(rows)})", [*CELL_HEADERS, detail], rows[:MAX_LISTED]))
            if more > 0:
                parts.append(f'<p class="note">… and {more} more (see results.csv).</p>')
    return out + ("".join(parts) or "<p>None: every cell is ok, synchronized and quiet.</p>") + "</section>"


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """A nested fingerprint as ('cpu.model', 'AMD EPYC 7B13') pairs, lists indexed ('devices[0].name')."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, (list, tuple)) and any(isinstance(v, (Mapping, list, tuple)) for v in value):
        for i, v in enumerate(value):
            yield from flatten(v, f"{prefix}[{i}]")
    elif isinstance(value, (list, tuple)):
        yield prefix, ", ".join(str(v) for v in value)
    else:
        yield prefix, "" if value is None else str(value)


def _machine_section(meta: Mapping[str, Any]) -> str:
    out = '<section id="machine" aria-labelledby="machine-h"><h2 id="machine-h">Machine</h2>'
    machine = meta.get("machine")
    if not isinstance(machine, dict) or not machine:
        return out + "<p>No machine fingerprint: these results came from a bare table, not a devbench run.</p>" \
            "</section>"
    rows = [[k, v] for k, v in flatten(machine)]
    return out + f"<p><strong>{esc(machine_line(dict(meta)))}</strong></p>" + table(
        "Machine fingerprint (meta.json)", ["field", "value"], rows) + "</section>"


def _host_section(run: Run) -> str:
    """The host's clocks before the sweep (and each resume or refinement), their warnings, and what the
    per-visit frequency samples showed (devbench.hostcheck; report.md shows the same)."""
    from devbench.hostcheck import NO_CHECK, checks_of, clock_summary, host_facts

    out = '<section id="host" aria-labelledby="host-h"><h2 id="host-h">Host</h2>'
    checks = checks_of(run.meta)
    for title, check in checks:
        warnings = check.get("warnings") or []
        out += f"<h3>Checked {esc(title)}</h3>" + facts(host_facts(check))
        out += ("<ul>" + "".join(f'<li class="warn">{esc(w)}</li>' for w in warnings) + "</ul>" if warnings
                else "<p>No warnings.</p>")
    if not checks:
        out += f"<p>{esc(NO_CHECK)}</p>"
    return out + f"<p>{esc(clock_summary(run.results))}</p></section>"


def _calibration_section(meta: Mapping[str, Any], results: pd.DataFrame) -> str:
    """The calibrated ceilings (what pct_of_peak is measured against, or why there is none) and the run's best
    rates (what pct_of_best is measured against), per device and dtype (devbench.ceilings.ceilings_frame)."""
    from devbench.ceilings import CEILINGS_SENTENCE, ceilings_frame

    out = '<section id="calibration" aria-labelledby="calibration-h"><h2 id="calibration-h">Calibration</h2>'
    calibration = meta.get("calibration")
    frame = ceilings_frame(calibration if isinstance(calibration, Mapping) else None, results)
    if not (isinstance(calibration, Mapping) and calibration.get("devices")):
        out += "<p>Not calibrated (<code>--no-calibrate</code>, or a bare results table): the throughput " \
            "charts have no ceilings and pct_of_peak is empty.</p>"
    if frame.empty:
        return out + "</section>"

    def number(value: Any, scale: float, fmt: str = ".1f") -> str:
        return format(float(value) / scale, fmt) if pd.notna(value) and math.isfinite(float(value)) else "–"

    def source(r: Mapping[str, Any], name: str) -> str:
        return str(r[f"{name}_source"]) or (f"not calibrated: {r[f'{name}_reason']}" if r[f"{name}_reason"] else "–")

    rows = [[str(r["device"]), str(r["dtype"]) or "–", number(r["peak_flops"], 1e9), source(r, "peak"),
             number(r["bandwidth"], 1e9), source(r, "bandwidth"), number(r["ridge"], 1.0, ".3g"),
             number(r["best_flops"], 1e9, ".3g"), str(r["best_flops_source"]) or "–",
             number(r["best_bandwidth"], 1e9, ".3g"), str(r["best_bandwidth_source"]) or "–"]
            for r in records(frame)]
    return out + f"<p>{esc(CEILINGS_SENTENCE)}</p>" + table(
        "Calibrated ceilings per device and dtype, and the run's best rates",
        ["device", "dtype", "peak GFLOP/s", "from", "bandwidth GB/s", "from", "ridge FLOP/byte",
         "run's best GFLOP/s", "from", "run's best GB/s", "from"], rows,
    ) + "</section>"


def render_html_report(
    run: Run, *, crossovers: pd.DataFrame | None = None, best: pd.DataFrame | None = None
) -> str:
    """The report page as text. ``crossovers`` (``analysis.crossover_frame``) and ``best``
    (``analysis.winners``) are computed from ``run.results`` (and ``run.samples``) when not given."""
    results = run.results
    crossovers = crossover_frame(results, run.samples) if crossovers is None else crossovers
    best = winners(results) if best is None else best
    calibration = run.meta.get("calibration")
    calibration = calibration if isinstance(calibration, Mapping) else None
    charts = Charts()
    groups = list(_groups(results)) if not results.empty else []
    colours = device_colours(list(transfer_as_mode(results)["device"].astype(str))) if groups else {}
    title = _title(run)
    cache = _cache_section(run)
    nav_items = [("run", "Run"), ("crossovers", "Crossovers"), ("energy", "Energy"), ("overview", "Overview"),
                 ("advice", "Placement advice"),
                 *((("cache", "Cache state"),) if cache else ()),
                 *((f"group-{i}", " · ".join(k)) for i, (k, _) in enumerate(groups, 1)),
                 ("warnings", "Warnings"), ("machine", "Machine"), ("host", "Host"), ("calibration", "Calibration")]
    nav = '<nav aria-label="Contents"><ul>' + "".join(
        f'<li><a href="#{esc(ident)}">{esc(label)}</a></li>' for ident, label in nav_items) + "</ul></nav>"
    body = [
        f'<header><h1>devbench report: {esc(title)}</h1><p class="machine">{esc(machine_line(run.meta))}</p></header>',
        nav,
        "<main>",
        _summary(run),
        _crossover_section(crossovers),
        _energy_section(run),
        _winners_map_section(results, colours, charts),
        _overview_section(best, charts),
        cache,
        _advice_section(run),
        '<section id="groups" aria-labelledby="groups-h"><h2 id="groups-h">Per op, dtype and mode</h2>',
        "".join(
            _group_section(i, key, group, crossovers=_of(crossovers, key), colours=colours,
                           calibration=calibration, charts=charts)
            for i, (key, group) in enumerate(groups, 1)
        ) or "<p>No ok cells: nothing to chart.</p>",
        "</section>",
        _warnings_section(run),
        _machine_section(run.meta),
        _host_section(run),
        _calibration_section(run.meta, results),
        "</main>",
    ]
    return page(f"devbench report: {title}", "".join(body), charts)


def write_html_report(
    run: Run, out_dir: Path, *, crossovers: pd.DataFrame | None = None, best: pd.DataFrame | None = None
) -> Path:
    """Write ``out_dir/report.html`` (atomically) and return its path. See ``render_html_report``. A file at
    ``out_dir``, or a folder that cannot be created or written, is a UsageError."""
    prepare_output_dir(out_dir)
    path = out_dir / REPORT_HTML
    write_atomic(path, render_html_report(run, crossovers=crossovers, best=best).encode("utf-8"))
    return path
