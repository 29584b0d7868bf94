"""The fleet table: runs of the same sweep on different machines, side by side.

Per (op, dtype, mode, size), each machine's median per-call time on its *best* device (``analysis.winners``:
the fastest ok device there, and which one it is) and its speed-up over the baseline machine's best; then each
machine's crossover sizes (``analysis.crossover_frame``) side by side. It answers "what does this op cost on
each of our machines, at best, and where does each machine's GPU start to pay off?".

Units: times in seconds per call, sizes the matrix side n, speed-ups plain ratios (baseline time / machine
time: > 1 means this machine is faster).

The speed-up interval is ``[base_ci_low / ci_high, base_ci_high / ci_low]``: the ratio of opposite ends of the
two medians' 95 % intervals (``ci_low_s``/``ci_high_s``, distribution-free, from order statistics). It contains
the true ratio whenever both intervals contain their medians, so its coverage is at least 0.95² ≈ 90 % for
independent runs, and it is wider than an interval of the ratio itself would be. A bootstrap over the raw
samples (what ``devbench compare`` does for two runs) is tighter; this approximation needs only the results
tables, so it works for bare tables from other tools too, and it never claims more certainty than there is.

Machines are named by their fingerprint's short name (``machine.short_name``); a label overrides it; a name
given twice gets `` #2``, `` #3`` in the order of the runs. matplotlib is imported only by the chart.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from devbench.analysis import GROUP, crossover_frame, winners
from devbench.errors import UsageError
from devbench.formatting import format_ratio, format_size, format_time, json_safe
from devbench.machine import short_name
from devbench.selection import ok_cells
from devbench.store import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FLEET_COLUMNS: tuple[str, ...] = (
    "op", "dtype", "mode", "size", "machine", "device", "median_s", "ci_low_s", "ci_high_s",
    "speedup", "speedup_low", "speedup_high", "is_baseline", "noisy", "unsynchronized",
)
"""Columns of :func:`fleet_table`: one row per (op, dtype, mode, size) and machine with an ok cell there.
``device`` is that machine's fastest device; ``speedup*`` are NaN where the baseline has no ok cell."""

FLEET_CROSSOVER_COLUMNS: tuple[str, ...] = (
    "op", "dtype", "mode", "device_a", "device_b", "machine", "crossover_size", "low", "high",
    "faster_below", "faster_above", "decisive", "note",
)

FleetFormat = Literal["table", "csv", "json", "markdown"]
FLEET_FORMATS: tuple[str, ...] = ("table", "csv", "json", "markdown")


def machine_name(run: Run, label: str | None = None) -> str:
    """``label`` if given, else the fingerprint's short name, else (a bare table) the file's stem."""
    if label:
        return label
    machine = run.meta.get("machine")
    if isinstance(machine, dict) and machine:
        return short_name(machine)
    return run.path.stem if run.path is not None else "unknown machine"


def machine_names(runs: Sequence[Run], labels: Sequence[str | None] | None = None) -> list[str]:
    """One distinct name per run (see the module docstring); ``labels`` has one entry (or None) per run."""
    if labels is not None and len(labels) != len(runs):
        raise UsageError(f"{len(labels)} labels for {len(runs)} runs; give one --label per run, in order")
    names: list[str] = []
    for i, run in enumerate(runs):
        name = machine_name(run, labels[i] if labels is not None else None)
        unique, n = name, 1
        while unique in names:
            n += 1
            unique = f"{name} #{n}"
        names.append(unique)
    return names


def _baseline_index(runs: Sequence[Run], baseline: int | None) -> int:
    index = 0 if baseline is None else baseline
    if not 0 <= index < len(runs):
        raise UsageError(f"baseline {baseline!r} is not one of the {len(runs)} runs; give an index 0..{len(runs) - 1}")
    return index


def _best(run: Run) -> pd.DataFrame:
    """Each (op, dtype, mode, size)'s fastest ok device with its median, interval and own quality flags."""
    best = winners(run.results)[[*GROUP, "size", "device", "median_s"]]
    cells = ok_cells(run.results)[[*GROUP, "size", "device", "ci_low_s", "ci_high_s", "is_noisy",
                                   "is_unsynchronized"]]
    out: pd.DataFrame = best.merge(cells, on=[*GROUP, "size", "device"], how="left").rename(
        columns={"is_noisy": "noisy", "is_unsynchronized": "unsynchronized"})
    return out


def fleet_table(runs: Sequence[Run], labels: Sequence[str | None] | None = None,
                baseline: int | None = None) -> pd.DataFrame:
    """The fleet table (``FLEET_COLUMNS``), sorted by op, dtype, mode, size and then the runs' order.

    ``baseline`` is the index of the baseline run in ``runs`` (default 0); it must have ok cells.
    ``machine`` is an ordered categorical in the runs' order, so renderers keep that order. The runs need not
    have one spec (``--devices all`` gives each machine its own device list): cells are matched by op, dtype,
    mode and size, and a machine without a cell there shows none.
    """
    if not runs:
        raise UsageError("no runs for the fleet table; give the runs of two or more machines")
    names = machine_names(runs, labels)
    base = _baseline_index(runs, baseline)
    frames = []
    for i, run in enumerate(runs):
        best = _best(run)
        best["machine"] = names[i]
        best["order"] = i
        frames.append(best)
    if frames[base].empty:
        raise UsageError(f"the baseline {names[base]!r} has no ok cells to compare with; choose another baseline")
    table = pd.concat(frames, ignore_index=True)
    reference = frames[base][[*GROUP, "size", "median_s", "ci_low_s", "ci_high_s"]].rename(
        columns={"median_s": "base_median_s", "ci_low_s": "base_low_s", "ci_high_s": "base_high_s"})
    table = table.merge(reference, on=[*GROUP, "size"], how="left")
    table["speedup"] = table["base_median_s"] / table["median_s"]
    table["speedup_low"] = table["base_low_s"] / table["ci_high_s"]
    table["speedup_high"] = table["base_high_s"] / table["ci_low_s"]
    table["is_baseline"] = table["order"] == base
    table = table.sort_values([*GROUP, "size", "order"], kind="stable").reset_index(drop=True)
    table["machine"] = pd.Categorical(table["machine"], categories=names, ordered=True)
    for col in ("noisy", "unsynchronized"):
        table[col] = table[col].fillna(False).astype(bool)
    table["size"] = table["size"].astype("int64")
    out: pd.DataFrame = table[list(FLEET_COLUMNS)]
    return out


def fleet_crossovers(runs: Sequence[Run], labels: Sequence[str | None] | None = None) -> pd.DataFrame:
    """Every machine's crossovers (``FLEET_CROSSOVER_COLUMNS``), one row per crossing or per "no crossover"
    note, as ``analysis.crossover_frame`` gives them, with the machine's name; ``machine`` is an ordered
    categorical in the runs' order."""
    names = machine_names(runs, labels)
    frames = []
    for name, run in zip(names, runs, strict=True):
        frame = crossover_frame(run.results, run.samples)
        frame["machine"] = name
        frames.append(frame[list(FLEET_CROSSOVER_COLUMNS)])
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(FLEET_CROSSOVER_COLUMNS))
    table["machine"] = pd.Categorical(table["machine"], categories=names, ordered=True)
    out: pd.DataFrame = table
    return out


# ---------------------------------------------------------------------------------------------------------
# Rendering


def _machines(frame: pd.DataFrame) -> list[str]:
    column = frame["machine"]
    if isinstance(column.dtype, pd.CategoricalDtype):
        return [str(c) for c in column.cat.categories]
    return [str(m) for m in dict.fromkeys(column.astype(str))]


def _cell_text(row: pd.Series[Any] | None) -> str:
    if row is None:
        return "–"
    text = f"{format_time(float(row['median_s']))} {row['device']}"
    if bool(row["is_baseline"]):
        return f"{text} (baseline)"
    speedup = float(row["speedup"])
    if math.isfinite(speedup):
        text += f" · {format_ratio(speedup)}"
        low, high = float(row["speedup_low"]), float(row["speedup_high"])
        if math.isfinite(low) and math.isfinite(high):
            text += f" [{low:.3g}–{high:.3g}]"
    flags = [word for word, on in (("noisy", row["noisy"]), ("UNSYNCHRONIZED", row["unsynchronized"])) if on]
    return f"{text} ({', '.join(flags)})" if flags else text


def _cell_rows(frame: pd.DataFrame, machines: Sequence[str]) -> list[list[str]]:
    rows = []
    for key, group in frame.groupby([*GROUP, "size"], sort=True, observed=True):
        op, dtype, mode, size = key
        by_machine = {str(r["machine"]): r for _, r in group.iterrows()}
        rows.append([str(op), str(dtype), str(mode), str(size),
                     *(_cell_text(by_machine.get(m)) for m in machines)])
    return rows


def _crossing_text(rows: pd.DataFrame) -> str:
    parts = []
    for _, row in rows.iterrows():
        size = float(row["crossover_size"])
        if math.isfinite(size):
            text = (f"{format_size(size)} [{format_size(float(row['low']))}–{format_size(float(row['high']))}]"
                    f" {row['faster_above']} above")
            parts.append(text + (" (decisive)" if bool(row["decisive"]) else " (within noise)"))
        else:
            parts.append(str(row["note"]))
    return "; ".join(parts) or "–"


def _crossover_rows(crossovers: pd.DataFrame, machines: Sequence[str]) -> list[list[str]]:
    rows = []
    keys = [*GROUP, "device_a", "device_b"]
    for key, group in crossovers.groupby(keys, sort=True, observed=True):
        by_machine = {str(m): g for m, g in group.groupby("machine", observed=True)}
        rows.append([*(str(k) for k in key),
                     *(_crossing_text(by_machine[m]) if m in by_machine else "–" for m in machines)])
    return rows


def _rich(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*row)
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False, soft_wrap=False).print(table)
    return buffer.getvalue()


def _markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(headers), line(["---"] * len(headers)), *(line(r) for r in rows)]) + "\n"


def render_fleet(frame: pd.DataFrame, fmt: FleetFormat = "table", crossovers: pd.DataFrame | None = None,
                 width: int = 200) -> str:
    """The fleet table as text: ``table`` (a column per machine: best device's median, speed-up over the
    baseline and its interval; then the crossovers side by side), ``markdown`` (the same, for report.md),
    ``csv`` (the cell rows of ``frame`` only, ``FLEET_COLUMNS``) or ``json`` (``machines``, ``baseline``,
    ``cells`` and ``crossovers`` as lists of records)."""
    if fmt not in FLEET_FORMATS:
        raise UsageError(f"unknown format {fmt!r}; allowed: {', '.join(FLEET_FORMATS)}")
    machines = _machines(frame)
    baseline = next((str(m) for m in frame.loc[frame["is_baseline"], "machine"]), machines[0] if machines else "")
    if fmt == "csv":
        return str(frame.to_csv(index=False))
    if fmt == "json":
        data = {
            "machines": machines,
            "baseline": baseline,
            "cells": frame.astype({"machine": str}).to_dict(orient="records"),
            "crossovers": [] if crossovers is None else
            crossovers.astype({"machine": str}).to_dict(orient="records"),
        }
        return json.dumps(json_safe(data), indent=2, ensure_ascii=False) + "\n"
    headers = ["op", "dtype", "mode", "n", *machines]
    cross_headers = ["op", "dtype", "mode", "device a", "device b", *machines]
    cell_rows = _cell_rows(frame, machines)
    cross_rows = [] if crossovers is None else _crossover_rows(crossovers, machines)
    if fmt == "markdown":
        text = (f"Best device per machine: median per call, speed-up over **{baseline}** "
                "[interval from both medians' 95 % CIs].\n\n" + _markdown(headers, cell_rows))
        if cross_rows:
            text += "\nCrossover sizes per machine (n, [range], the device faster above):\n\n"
            text += _markdown(cross_headers, cross_rows)
        return text
    text = _rich(f"Fleet: best device per machine, speed-up over {baseline} [interval]", headers, cell_rows,
                 width)
    if cross_rows:
        text += _rich("Crossovers per machine", cross_headers, cross_rows, width)
    return text


# ---------------------------------------------------------------------------------------------------------
# Chart


def fleet_figure(frame: pd.DataFrame) -> Figure:
    """Speed-up over the baseline machine against size: one subplot per (op, dtype, mode), a line per machine
    with its interval as error bars, log axes, 1× marked. Not registered with pyplot (nothing to close)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    machines = _machines(frame)
    groups = [(key, group) for key, group in frame.groupby(list(GROUP), sort=True, observed=True)]
    fig = Figure(figsize=(10.0, 1.0 + 3.0 * max(len(groups), 1)), layout="constrained")
    baseline = next((str(m) for m in frame.loc[frame["is_baseline"], "machine"]), "")
    fig.suptitle(f"speed-up over {baseline} (best device of each machine; >1× = faster)", fontsize=10)
    if not groups:
        ax = fig.subplots()
        ax.text(0.5, 0.5, "no ok cells in these runs", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    axes = fig.subplots(len(groups), 1, squeeze=False)[:, 0]
    for ax, (key, group) in zip(axes, groups, strict=True):
        ax.axhline(1.0, color="0.3", linewidth=1.0)
        for i, name in enumerate(machines):
            rows = group[group["machine"].astype(str) == name].sort_values("size")
            rows = rows[np.isfinite(rows["speedup"].to_numpy(dtype=float))]
            if rows.empty:
                continue
            nudge = 2.0 ** ((i - (len(machines) - 1) / 2.0) * 0.05)
            x = rows["size"].to_numpy(dtype=float) * nudge
            y = rows["speedup"].to_numpy(dtype=float)
            low = np.nan_to_num(y - rows["speedup_low"].to_numpy(dtype=float), nan=0.0)
            high = np.nan_to_num(rows["speedup_high"].to_numpy(dtype=float) - y, nan=0.0)
            ax.errorbar(x, y, yerr=np.clip(np.vstack([low, high]), 0.0, None), marker="o", markersize=4,
                        capsize=2.5, linewidth=1.2, label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: f"{y:g}×"))
        sizes = sorted({int(s) for s in group["size"]})
        if len(sizes) <= 12:
            ax.set_xticks(sizes, [str(s) for s in sizes])
            ax.minorticks_off()
        ax.set_title(" ".join(str(k) for k in key), loc="left", fontsize=10)
        ax.set_xlabel("size n")
        ax.set_ylabel("speed-up")
        ax.grid(True, color="0.92")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def write_fleet_chart(frame: pd.DataFrame, path: Path) -> Path:
    """Write :func:`fleet_figure` as PNG to ``path`` (a directory gets ``fleet.png``); returns the file."""
    target = path / "fleet.png" if path.is_dir() else path
    fleet_figure(frame).savefig(target, dpi=120)
    return target
