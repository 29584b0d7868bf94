"""RUN_DIR/report.md: what was measured, on what, the answer (crossovers, winners), the charts, and every
reason to doubt a number (noisy, unsynchronized and failed cells), in one Markdown file that a code host
renders as it stands. Pure text from a Run; no TensorFlow, no plotting (charts are linked, not drawn).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from devbench.analysis import (
    CROSSOVER_HEADERS,
    GROUP,
    REFERENCE_DEVICE,
    crossover_frame,
    crossover_table_rows,
    noisy_flags,
    records,
    unsynchronized_flags,
    winners,
)
from devbench.crossover import CROSSOVER_EXPLANATION
from devbench.formatting import format_gib, format_percent, format_ratio, format_time
from devbench.plots.common import PLOTS_DIR, machine_line
from devbench.shapes import size_header
from devbench.stats import NOISY_REL_IQR
from devbench.store import Run, write_atomic

REPORT = "report.md"

FAILED_STATUSES: tuple[tuple[str, str], ...] = (
    ("fallback", "Fallback: the output landed on another device than asked"),
    ("unsupported", "Unsupported: the framework cannot run the op with this dtype or mode on this device"),
    ("wrong", "Wrong: the result missed the numpy float64 reference"),
    ("oom", "Out of memory"),
    ("skipped", "Skipped: not attempted"),
    ("error", "Error: unexpected failure (please report it)"),
)

MAX_LISTED = 50
"""Cells listed per warning category; the rest are counted (results.csv has them all)."""


def md_cell(value: Any) -> str:
    """Text safe inside a Markdown table cell: no pipes, no line breaks."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ").strip()


def md_table(headers: list[str] | tuple[str, ...], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(md_cell(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines.extend("| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows)
    return "\n".join(lines)


def md_facts(facts: list[tuple[str, str]]) -> list[str]:
    """'- **label**: value' lines, leaving out facts nobody recorded."""
    return [f"- **{label}**: {value}" for label, value in facts if value and value not in ("?", "None")]


def _cell_name(r: dict[str, Any]) -> str:
    return f"{r['op']} {r['dtype']} {r['mode']} on {r['device']} at n={r['size']}"


def _machine_section(meta: dict[str, Any]) -> list[str]:
    machine = meta.get("machine")
    out = ["## Machine", ""]
    if not isinstance(machine, dict) or not machine:
        return [*out, "No machine fingerprint: these results came from a bare table, not a devbench run.", ""]
    out += [f"**{machine_line(meta)}**", ""]
    cpu = machine.get("cpu", {})
    memory = machine.get("memory", {}).get("total_bytes")
    system = machine.get("os", {})
    tf = machine.get("tensorflow", {})
    facts = [
        (
            "CPU",
            f"{cpu.get('model', '?')}, {cpu.get('physical_cores', '?')} physical / "
            f"{cpu.get('logical_cores', '?')} logical cores",
        ),
        ("memory", format_gib(memory) if isinstance(memory, (int, float)) else ""),
        ("OS", str(system.get("platform") or system.get("system") or "")),
        ("Python", str(machine.get("python", {}).get("version", ""))),
        ("TensorFlow", str(tf.get("version", ""))),
        ("host", str(machine.get("hostname", ""))),
    ]
    build = tf.get("build_info", {})
    if isinstance(build, dict) and build.get("cuda_version"):
        facts.append(("CUDA / cuDNN", f"{build.get('cuda_version')} / {build.get('cudnn_version', '?')}"))
    for device in machine.get("devices", []):
        details = device.get("details", {}) if isinstance(device.get("details"), dict) else {}
        parts = [str(details[k]) for k in ("device_name",) if details.get(k)]
        if details.get("compute_capability"):
            parts.append(f"compute capability {details['compute_capability']}")
        if isinstance(details.get("memory_limit_bytes"), (int, float)):
            parts.append(f"{format_gib(details['memory_limit_bytes'])} usable")
        facts.append((f"device {device.get('name', '?')}", ", ".join(parts) or str(device.get("kind", ""))))
    facts.extend(_state_facts(meta))
    return [*out, *md_facts(facts), ""]


def _state_facts(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """The GPUs (NVML), the TF32 setting each framework ended up with, and each device's initialisation."""
    facts: list[tuple[str, str]] = []
    gpu = meta.get("gpu")
    if isinstance(gpu, dict) and gpu.get("available"):
        for g in gpu.get("gpus", []):
            memory = g.get("memory_total_bytes")
            facts.append((f"GPU {g.get('index')}", (
                f"{g.get('name')} (cc {g.get('compute_capability')}, "
                f"{format_gib(memory) if isinstance(memory, (int, float)) else '?'}, driver "
                f"{gpu.get('driver_version')}, CUDA {gpu.get('cuda_version')}, persistence "
                f"{'on' if g.get('persistence_mode') else 'off'}, MIG {'on' if g.get('mig_mode') else 'off'}, "
                f"UUID {g.get('uuid')})")))
    elif isinstance(gpu, dict) and gpu.get("reason"):
        facts.append(("GPU telemetry", str(gpu["reason"])))
    if isinstance(meta.get("tf32"), dict):
        from devbench.tf32 import describe

        facts.append(("TF32", describe(meta["tf32"], str(meta.get("tf32_setting") or "default"))))
    init = meta.get("init")
    if isinstance(init, dict):
        devices = [f"{name} {entry['init_s']:.3g} s" for name, entry in (init.get("devices") or {}).items()
                   if isinstance(entry, dict) and isinstance(entry.get("init_s"), (int, float))]
        runtime = (init.get("runtimes") or {}).get("tensorflow") or {}
        if isinstance(runtime.get("runtime_init_s"), (int, float)):
            devices.append(f"TensorFlow start-up {runtime['runtime_init_s']:.3g} s")
        if devices:
            facts.append(("device initialisation", "first op on each device, timed before anything else ran "
                          "there: " + "; ".join(devices)))
    return facts


def _host_section(run: Run) -> list[str]:
    """The host's clocks before the sweep (and each resume or refinement), their warnings, and what the
    per-visit frequency samples showed (devbench.hostcheck)."""
    from devbench.hostcheck import NO_CHECK, checks_of, clock_summary, host_facts

    out = ["## Host", ""]
    checks = checks_of(run.meta)
    for title, check in checks:
        warnings = [f"- ⚠ {md_cell(w)}" for w in check.get("warnings") or []]
        out += [f"Checked {title}:", "", *md_facts(host_facts(check)), *(warnings or ["- no warnings"]), ""]
    return [*out, *([] if checks else [NO_CHECK, ""]), clock_summary(run.results), ""]


def _run_section(run: Run) -> list[str]:
    meta = run.meta
    out = ["## Run", ""]
    command = meta.get("command")
    if command:
        out += ["Command:", "", "```", str(command), "```", ""]
    facts = [
        (label, str(meta.get(key)))
        for label, key in (
            ("run id", "run_id"),
            ("status", "status"),
            ("started", "started_at"),
            ("finished", "finished_at"),
        )
        if meta.get(key)
    ]
    if run.path is not None:
        facts.insert(0, ("source", str(run.path)))
    results = run.results
    counts = results["status"].value_counts() if not results.empty else pd.Series(dtype="int64")
    summary = ", ".join(f"{int(n)} {status}" for status, n in counts.items()) or "none"
    facts.append(("cells", f"{len(results)} ({summary})"))
    out += [*md_facts(facts), ""]
    return out


def _crossover_section(results: pd.DataFrame, samples: pd.DataFrame) -> list[str]:
    frame = crossover_frame(results, samples)
    out = ["## Crossovers", ""]
    if frame.empty:
        return [*out, "No (op, dtype, mode) was measured on two devices, so there is no crossover to find.", ""]
    out += [
        CROSSOVER_EXPLANATION,
        "",
        md_table(CROSSOVER_HEADERS, crossover_table_rows(frame)),
        "",
    ]
    return out


def _energy_section(run: Run) -> list[str]:
    """Joules per call and the energy crossovers, or why there are none (devbench.energy)."""
    from devbench.energy import (
        ENERGY_CROSSOVER_HEADERS,
        ENERGY_EXPLANATION,
        ENERGY_HEADERS,
        energy_crossover_rows,
        energy_facts,
        energy_table_rows,
    )

    out = ["## Energy per call", "", *md_facts(energy_facts(run.meta)), ""]
    rows = energy_table_rows(run.results)
    if not rows:
        return out
    out += [ENERGY_EXPLANATION, ""]
    crossings = energy_crossover_rows(run.results)
    if crossings:
        out += [md_table(ENERGY_CROSSOVER_HEADERS, crossings), ""]
    return [*out, md_table(ENERGY_HEADERS, rows), ""]
def _advice_section(run: Run) -> list[str]:
    """Placement advice (devbench.advise): the device to use per op by size over 1000 calls, the break-even."""
    from devbench.advise import DEFAULT_CALLS, advise
    from devbench.advise_render import ADVICE_EXPLANATION, SUMMARY_HEADERS, agreement_sentence, summary_rows
    from devbench.analysis import ok_cells

    out = ["## Placement advice", ""]
    if run.results.empty or ok_cells(run.results).empty:
        return [*out, "No ok cells: nothing to advise on.", ""]
    advice = advise(run.results, run.samples, run.meta, DEFAULT_CALLS)
    return [*out, ADVICE_EXPLANATION.format(calls=DEFAULT_CALLS), "",
            md_table(SUMMARY_HEADERS, summary_rows(advice)), "", agreement_sentence(advice), ""]


def _winner_section(results: pd.DataFrame) -> list[str]:
    table = winners(results)
    out = ["## Fastest device per op × size", ""]
    if table.empty:
        return [*out, "No ok cells.", ""]
    sizes = sorted({int(s) for s in table["size"]})
    rows: dict[tuple[str, str, str], dict[int, str]] = {}
    for r in records(table):
        flags = ("*" if r["noisy"] else "") + ("!" if r["unsynchronized"] else "")
        speedup = r["speedup_vs_cpu"]
        text = f"{r['device']}{flags}"
        if r["device"] != REFERENCE_DEVICE and math.isfinite(speedup):
            text += f" {format_ratio(speedup)}"
        text += f" ({format_time(r['median_s'])})"
        rows.setdefault((r["op"], r["dtype"], r["mode"]), {})[int(r["size"])] = text
    body = [[" ".join(key), *(cells.get(n, "–") for n in sizes)] for key, cells in sorted(rows.items())]
    out += [
        f"Each cell: the fastest device, its speed-up over {REFERENCE_DEVICE} and its median time per call. "
        f"`*` noisy, `!` unsynchronized (see Warnings).",
        "",
        md_table(["op dtype mode", *(f"{size_header(table['op'])}={n}" for n in sizes)], body),
        "",
    ]
    return out


def _chart_order(path: Path) -> tuple[int, str]:
    order = ("winners", "crossover-", "throughput-", "overview", "cold-vs-warm")
    rank = next((i for i, prefix in enumerate(order) if path.name.startswith(prefix)), len(order))
    return rank, path.name


def _charts_section(run_dir: Path, charts: list[Path] | None) -> list[str]:
    out = ["## Charts", ""]
    if charts is None:
        folder = run_dir / PLOTS_DIR
        charts = sorted(folder.glob("*.png"), key=_chart_order) if folder.is_dir() else []
    if not charts:
        return [*out, "No charts yet: `devbench plot RUN_DIR` draws them.", ""]
    for chart in charts:
        try:
            link = chart.resolve().relative_to(run_dir.resolve()).as_posix()
        except ValueError:
            link = Path(os.path.relpath(chart.resolve(), run_dir.resolve())).as_posix()
        out += [f"### {chart.stem}", "", f"![{chart.stem}]({link})", ""]
    return out


def _listing(title: str, lines: list[str]) -> list[str]:
    if not lines:
        return []
    shown = lines[:MAX_LISTED]
    more = [f"- … and {len(lines) - MAX_LISTED} more (see results.csv)"] if len(lines) > MAX_LISTED else []
    return [f"### {title} ({len(lines)})", "", *shown, *more, ""]


def _warnings_section(run: Run) -> list[str]:
    results = run.results
    out = ["## Warnings", ""]
    body: list[str] = []
    if run.torn_lines:
        body += [
            f"- cells.jsonl had {run.torn_lines} unreadable line(s), left by an interrupted sweep; they were ignored.",
            "",
        ]
    if not results.empty:
        ok = results["status"].astype(str) == "ok"
        flagged = results.assign(is_noisy=noisy_flags(results), is_unsync=unsynchronized_flags(results))
        noisy = [
            f"- {_cell_name(r)}: rel. IQR {format_percent(r['rel_iqr'])}" if math.isfinite(r["rel_iqr"])
            else f"- {_cell_name(r)}"
            for r in records(flagged[ok & flagged["is_noisy"]])
        ]
        body += _listing(f"Noisy cells (IQR over {format_percent(NOISY_REL_IQR)} of the median)", noisy)
        unsync = [
            f"- {_cell_name(r)}: sync={r['sync']}, measures launch, not work"
            for r in records(flagged[ok & flagged["is_unsync"]])
        ]
        body += _listing("Unsynchronized cells", unsync)
        if "above_peak" in results.columns:
            from devbench.ceilings import ABOVE_PEAK_NOTE

            above = [f"- {_cell_name(r)}: {format_percent(r['pct_of_peak'] / 100)} of the calibrated peak, "
                     f"{ABOVE_PEAK_NOTE}"
                     for r in records(results[ok & results["above_peak"].fillna(False).astype(bool)])]
            body += _listing("Above the calibrated ceiling", above)
        if "cpu_freq_moved" in results.columns:
            from devbench.hostcheck import MOVED_REL, moved_detail

            moved = [f"- {_cell_name(r)}: {moved_detail(r)}"
                     for r in records(results[ok & results["cpu_freq_moved"].fillna(False).astype(bool)])]
            body += _listing(f"CPU frequency moved over {format_percent(MOVED_REL)} within a visit", moved)
        for status, title in FAILED_STATUSES:
            failed = results[results["status"].astype(str) == status]
            body += _listing(
                title,
                [
                    f"- {_cell_name(r)}: {md_cell(r['reason']) or 'no reason given'}"
                    for r in records(failed.sort_values([*GROUP, "device", "size"]))
                ],
            )
        known = {"ok", *(s for s, _ in FAILED_STATUSES)}
        other = results[~results["status"].astype(str).isin(known)]
        body += _listing(
            "Cells with an unknown status",
            [f"- {_cell_name(r)}: status {r['status']!r} {md_cell(r['reason'])}".rstrip() for r in records(other)],
        )
    return [*out, *(body or ["None: every cell is ok, synchronized and quiet.", ""])]


def _cache_section(run: Run) -> list[str]:
    """Warm vs cache-cold (``op[cache=cold]``) per cell, when the run measured both (devbench.cache)."""
    from devbench.cache import CACHE_EXPLANATION, CACHE_HEADERS, cache_table_rows, host_llc_of, warm_cold_pairs

    llc = host_llc_of(run.meta)
    pairs = warm_cold_pairs(run.results, run.samples, llc)
    if pairs.empty:
        return []
    source = f" Host LLC: {llc.bytes // 2**20} MiB, from {llc.source}." if llc is not None else ""
    return ["## Cache state (warm vs flushed)", "", CACHE_EXPLANATION + source, "",
            md_table(CACHE_HEADERS, cache_table_rows(pairs)), ""]


def _fidelity_sections(run: Run) -> list[str]:
    """Machine limits (the calibrated ceilings of ``devbench calibrate`` or why there are none, and the run's
    best rates), dispatch overhead (eager − graph_loop) and the cost of moving data (sync ``transfer``), each
    only when the run holds what it needs."""
    from devbench.ceilings import ceilings_frame, render_ceilings
    from devbench.fidelity import dispatch_gap_by_device, host_only, transfer_overhead

    lines: list[str] = []
    calibration = run.meta.get("calibration")
    frame = ceilings_frame(calibration, run.results)
    if not frame.empty:
        lines += ["## Machine limits", "", *render_ceilings(frame), ""]
    if calibration:
        from devbench.calibrate import render_calibration

        lines += ["The calibration probes (the best large GEMM per dtype and a large copy):", "", "```",
                  *render_calibration(calibration), "```", ""]
    results = run.results
    gaps = dispatch_gap_by_device(results) if {"mode", "median_s"} <= set(results.columns) else None
    if gaps is not None and not gaps.empty:
        lines += ["## Dispatch overhead (eager − graph_loop)", "",
                  "What Python dispatch costs per call: the eager time minus the time of the same op run "
                  "`number` times inside one `tf.while_loop`.", ""]
        lines.append(md_table(
            ["device", "cells", "gap at smallest n", "median gap"],
            [[str(r["device"]), str(r["cells"]), f"{format_time(r['gap_at_smallest_s'])} (n={r['smallest_size']})",
              format_time(r["median_gap_s"])] for r in records(gaps)],
        ))
        lines.append("")
    overhead = transfer_overhead(results) if "sync" in results.columns else None
    if overhead is not None and not overhead.empty:
        lines += ["## Cost of moving data (sync `transfer`)", ""]
        if host_only(list(results["device"].astype(str).unique())):
            lines += ["Every device here is the host CPU: there is no bus to cross, so the transfer timings "
                      "add only the numpy↔tensor copies, and the crossovers with transfer are the resident "
                      "ones up to those copies.", ""]
        lines.append(md_table(
            ["op", "dtype", "mode", "device", "n", "resident", "with transfer", "ratio"],
            [[str(r["op"]), str(r["dtype"]), str(r["mode"]), str(r["device"]), str(r["size"]),
              format_time(r["resident_s"]), format_time(r["transfer_s"]), format_ratio(r["ratio"])]
             for r in records(overhead)],
        ))
        lines.append("")
    return lines


def render_report(run: Run, run_dir: Path, charts: list[Path] | None = None) -> str:
    """The report's Markdown text. ``charts`` default to the PNGs already in ``run_dir/plots``; links are
    relative to ``run_dir``, so the directory can be moved or published as it is."""
    title = run.meta.get("run_id") or (run.path.name if run.path is not None else "results")
    lines = [f"# devbench report: {title}", ""]
    lines += _run_section(run)
    lines += _machine_section(run.meta)
    lines += _host_section(run)
    lines += _crossover_section(run.results, run.samples)
    lines += _energy_section(run)
    lines += _winner_section(run.results)
    lines += _cache_section(run)
    lines += _advice_section(run)
    lines += _fidelity_sections(run)
    lines += _charts_section(run_dir, charts)
    lines += _warnings_section(run)
    return "\n".join(lines).rstrip() + "\n"


def write_report(run: Run, run_dir: Path, charts: list[Path] | None = None) -> Path:
    """Write ``run_dir/report.md`` (atomically) and return its path. See ``render_report``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / REPORT
    write_atomic(path, render_report(run, run_dir, charts).encode("utf-8"))
    return path
