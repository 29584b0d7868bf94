"""History: many runs of one machine in order, the steps in each cell's median and the crossovers that moved.

Input is a sequence of :class:`devbench.store.Run` (run directories, bare tables, or runs read from a dataset).
They are ordered by their start time (``meta.started_at``) or by a ``key`` from meta.json (a dotted path such
as ``machine.packages.tensorflow``, or ``commit``), and become one series per cell (op, dtype, mode, device,
size): each run's ``median_s`` with its interval (``ci_low_s``, ``ci_high_s``), and one series per curve (op,
dtype, mode, device pair): each run's crossings (``crossover.crossover_frame`` on that run, with its range),
with the winner of every size in every run beside it.

Steps: each cell's series goes through :func:`devbench.changepoints.detect_steps` (weighted by the runs'
intervals, with a between-run variance estimated from the series). A step is reported with its ratio
after/before and interval, the first run after it, and the fingerprint fields (``machine.fingerprint_diff``:
framework versions, driver, CPU flags, the performance environment such as ``TF_NUM_INTRAOP_THREADS``) that
differ between the last run before and the first run after it: the attribution.

Moved crossovers: walking the runs in order, a curve's decisive crossing whose range [low, high] does not
overlap the range of the last decisive crossing seen before is a move, reported with both positions ("CPU:0
overtakes numpy:CPU for matmul at n≈700, was n≈1400 before run 3: ..."). Ranges of decisive crossings hold the
true crossing with at least 95 % each, so disjoint ranges are a real move, not a wobble within noise.

Several machines: the history of a machine is one machine's; runs of several (by hostname, else the
fingerprint's short name) need ``machine`` to pick one, or are refused with the list of machines.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from devbench.changepoints import detect_steps, standard_errors
from devbench.crossover import crossover_frame
from devbench.errors import UsageError
from devbench.formatting import format_size, format_time, json_text, rich_table
from devbench.machine import fingerprint_diff, short_name
from devbench.selection import GROUP, ok_cells
from devbench.store import Run

CELL_KEY: tuple[str, ...] = (*GROUP, "device", "size")
"""A cell of the history: the same op, dtype, mode, device and size in every run."""

CURVE_KEY: tuple[str, ...] = (*GROUP, "device_a", "device_b")

HISTORY_FORMATS: tuple[str, ...] = ("table", "markdown", "json")

UNKNOWN_MACHINE = "unknown machine"
"""The machine of runs without a fingerprint (bare results tables)."""

COMMIT_PATHS: tuple[str, ...] = ("commit", "git.commit", "git_commit", "source.commit")
"""Where ``--key commit`` looks in meta.json, in order."""


@dataclass(frozen=True)
class HistoryRun:
    """One run in its place: ``position`` 0, 1, ... in the order; ``label`` what the order shows for it."""

    position: int
    run_id: str
    label: str
    started_at: str
    run: Run


@dataclass(frozen=True)
class History:
    """Everything ``devbench history`` shows; each frame has a ``run`` column (the run's position)."""

    machine: str
    key: str
    runs: tuple[HistoryRun, ...]
    cells: pd.DataFrame
    """One row per cell and run: CELL_KEY, run, run_id, median_s, ci_low_s, ci_high_s, n_rounds."""
    steps: pd.DataFrame
    """STEP_COLUMNS: one row per step found in a cell's series."""
    crossovers: pd.DataFrame
    """crossover_frame of every run, with ``run`` and ``run_id``."""
    moves: pd.DataFrame
    """MOVE_COLUMNS: one row per crossover that moved."""
    winners: pd.DataFrame
    """One row per (op, dtype, mode, size) and run: the fastest ok device there."""


STEP_COLUMNS: tuple[str, ...] = (
    *CELL_KEY, "run", "run_id", "label", "ratio", "ci_low", "ci_high", "before_median_s", "after_median_s",
    "runs_before", "runs_after", "attribution",
)
MOVE_COLUMNS: tuple[str, ...] = (
    *CURVE_KEY, "run", "run_id", "label", "faster_above", "crossover_size", "low", "high",
    "was_size", "was_low", "was_high", "was_run_id", "attribution", "sentence",
)


# ---------------------------------------------------------------------------------------------------------
# Machines and order


def machine_of(run: Run) -> str:
    """The machine a run belongs to: the name its dataset partition was written under (``dataset add
    --label``), else its fingerprint's hostname (an upgrade keeps the machine), else its short name; bare tables
    (no fingerprint) all belong to one unknown machine."""
    from devbench.dataset import dataset_label

    label = dataset_label(run)
    if label:
        return label
    machine = run.meta.get("machine")
    if isinstance(machine, dict) and machine:
        host = machine.get("hostname")
        return str(host) if host else short_name(machine)
    return UNKNOWN_MACHINE


def one_machine(runs: Sequence[Run], machine: str | None = None) -> tuple[str, list[Run]]:
    """The runs of one machine: ``machine`` if given, else the only machine there is (UsageError listing the
    machines when there are several, or when ``machine`` is not one of them)."""
    names = [machine_of(r) for r in runs]
    counts = {name: names.count(name) for name in dict.fromkeys(names)}
    listing = ", ".join(f"{name!r} ({n} run{'s' if n != 1 else ''})" for name, n in counts.items())
    if machine is None:
        if len(counts) > 1:
            raise UsageError(f"these runs come from {len(counts)} machines: {listing}; "
                             "pick one with --machine NAME")
        return names[0], list(runs)
    if machine not in counts:
        raise UsageError(f"--machine {machine!r} is not among these runs' machines: {listing}")
    return machine, [r for r, name in zip(runs, names, strict=True) if name == machine]


def _dotted(meta: dict[str, Any], path: str) -> Any:
    value: Any = meta
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def key_value(run: Run, key: str | None) -> str | None:
    """What orders ``run``: its ``started_at`` (key None), the commit (``commit``: COMMIT_PATHS) or the value at
    a dotted path of meta.json; None where the run lacks it."""
    if key is None:
        value = run.meta.get("started_at")
    elif key == "commit":
        value = next((v for v in (_dotted(run.meta, p) for p in COMMIT_PATHS) if v not in (None, "")), None)
    else:
        value = _dotted(run.meta, key)
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


def _natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key in which '2.10' follows '2.9' (numbers compared as numbers)."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", text) if p)


def order_runs(runs: Sequence[Run], key: str | None = None) -> list[HistoryRun]:
    """The runs in order of ``key`` (see :func:`key_value`; versions compare number by number), ties by start
    time. A run without the key is a UsageError naming it (a history cannot place it)."""
    if not runs:
        raise UsageError("history needs at least one run")
    values = []
    for run in runs:
        value = key_value(run, key)
        if value is None and (key is not None or run.meta):
            where = str(run.path) if run.path is not None else "a run"
            raise UsageError(f"{where!r} has no {key or 'started_at'!r} in its meta.json; "
                             "give --key a dotted path every run has (e.g. machine.packages.tensorflow)")
        values.append(value or "")
    order = sorted(range(len(runs)), key=lambda i: (_natural(values[i]), str(runs[i].meta.get("started_at", "")), i))
    out = []
    for position, i in enumerate(order):
        run = runs[i]
        run_id = str(run.meta.get("run_id") or (run.path.name if run.path is not None else f"run{i}"))
        started = str(run.meta.get("started_at", ""))
        label = values[i][:19] if key is None else values[i]
        out.append(HistoryRun(position, run_id, label or run_id, started, run))
    return out


# ---------------------------------------------------------------------------------------------------------
# Series


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    frame: pd.DataFrame = pd.DataFrame(columns=list(columns))
    return frame


def cell_series(runs: Sequence[HistoryRun]) -> pd.DataFrame:
    """One row per ok cell and run (a cell measured with several syncs counts once, as ``ok_cells`` says),
    selected for all runs at once (per run, pandas' overhead would dominate a history of 1,000 runs)."""
    columns = [*CELL_KEY, "run", "run_id", "median_s", "ci_low_s", "ci_high_s", "n_rounds"]
    tables = [h.run.results.assign(run=h.position) for h in runs if len(h.run.results)]
    if not tables:
        return _empty(columns)
    cells = ok_cells(pd.concat(tables, ignore_index=True), by=("run",))
    ids = {h.position: h.run_id for h in runs}
    out: pd.DataFrame = cells.assign(run_id=cells["run"].map(ids))[columns]
    for col in (*GROUP, "device"):
        out[col] = out[col].astype(str)
    out["size"] = out["size"].astype("int64")
    ordered: pd.DataFrame = out.sort_values([*CELL_KEY, "run"], kind="stable").reset_index(drop=True)
    return ordered


def _attribution(before: HistoryRun, after: HistoryRun) -> str:
    """The fingerprint fields that differ between two runs, as 'torch 2.11 → 2.12; env unset → X=1' ('' none)."""
    diffs = fingerprint_diff(before.run.meta, after.run.meta)
    return "; ".join(f"{d.field} {'–' if d.base is None else d.base} → {'–' if d.new is None else d.new}"
                     for d in diffs if d.field != "hostname")


def cell_steps(cells: pd.DataFrame, runs: Sequence[HistoryRun]) -> pd.DataFrame:
    """Every step in every cell's series (:func:`devbench.changepoints.detect_steps`), with its attribution."""
    rows: list[dict[str, Any]] = []
    for key, unordered in cells.groupby(list(CELL_KEY), sort=True):
        series = unordered.sort_values("run")
        y = np.log(series["median_s"].to_numpy(dtype=float))
        low = np.log(series["ci_low_s"].to_numpy(dtype=float))
        high = np.log(series["ci_high_s"].to_numpy(dtype=float))
        rounds = series["n_rounds"].to_numpy(dtype=float)
        se = standard_errors(low, high, np.where(rounds >= 1, rounds, np.nan))
        fit = detect_steps(y, se, rounds - 1.0)
        positions = series["run"].to_numpy(dtype=int)
        for step in fit.steps:
            before, after = runs[positions[step.index - 1]], runs[positions[step.index]]
            rows.append({
                **dict(zip(CELL_KEY, key, strict=True)), "run": after.position, "run_id": after.run_id,
                "label": after.label, "ratio": step.ratio, "ci_low": step.ci_low, "ci_high": step.ci_high,
                "before_median_s": math.exp(step.before.log_mean), "after_median_s": math.exp(step.after.log_mean),
                "runs_before": step.before.stop - step.before.start, "runs_after": step.after.stop - step.after.start,
                "attribution": _attribution(before, after),
            })
    frame = pd.DataFrame(rows, columns=list(STEP_COLUMNS))
    out: pd.DataFrame = frame.sort_values(["run", *CELL_KEY], kind="stable").reset_index(drop=True)
    return out


def step_summary(history: History) -> list[str]:
    """One line per run that starts a step in any cell: how many cells got slower and faster there (with the
    median ratio of each) and the fingerprint change, e.g. 'run 1 (2026-12-06T22:50:38): 12 of 24 cells slower
    (median 2.1×), 0 faster; env – → TF_NUM_INTRAOP_THREADS=1'."""
    lines = []
    total = history.cells.groupby(list(CELL_KEY)).ngroups if len(history.cells) else 0
    for run, at in history.steps.groupby("run", sort=True):
        up, down = at[at["ratio"] > 1], at[at["ratio"] < 1]
        parts = [f"{len(up)} of {total} cells slower" + (f" (median {np.median(up['ratio']):.3g}×)" if len(up) else ""),
                 f"{len(down)} faster" + (f" (median {np.median(down['ratio']):.3g}×)" if len(down) else "")]
        change = str(at["attribution"].iloc[0]) or "no fingerprint difference"
        lines.append(f"run {run} ({at['label'].iloc[0]}): {', '.join(parts)}; {change}")
    return lines


def crossover_series(runs: Sequence[HistoryRun]) -> pd.DataFrame:
    """``crossover_frame`` of each run (paired by round where the run has samples), with ``run`` and ``run_id``."""
    frames = []
    for h in runs:
        frame = crossover_frame(h.run.results, h.run.samples)
        frames.append(frame.assign(run=h.position, run_id=h.run_id))
    out: pd.DataFrame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return out


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    # strict: ranges that share only an end (the decisive size between them) hold crossings on either side
    return a[0] < b[1] and b[0] < a[1]


def move_sentence(row: dict[str, Any]) -> str:
    """'CPU:0 overtakes numpy:CPU for matmul float32 eager at n≈700 (512–1024), was n≈1400 (1024–2048) before
    run …: attribution'."""
    slower = row["device_b"] if row["faster_above"] == row["device_a"] else row["device_a"]
    text = (f"{row['faster_above']} overtakes {slower} for {row['op']} {row['dtype']} {row['mode']} at "
            f"n≈{format_size(row['crossover_size'])} ({format_size(row['low'])}–{format_size(row['high'])}), "
            f"was n≈{format_size(row['was_size'])} ({format_size(row['was_low'])}–{format_size(row['was_high'])}) "
            f"before {row['label']}")
    return text + (f": {row['attribution']}" if row["attribution"] else " (no fingerprint difference)")


def crossover_moves(crossovers: pd.DataFrame, runs: Sequence[HistoryRun]) -> pd.DataFrame:
    """Decisive crossings whose range does not overlap the last decisive one of the same curve and direction
    (the device faster above): a crossover that moved, with both positions and the attribution."""
    rows: list[dict[str, Any]] = []
    if crossovers.empty:
        return _empty(MOVE_COLUMNS)
    decisive = crossovers[crossovers["decisive"].astype(bool)]
    for key, curve in decisive.groupby([*CURVE_KEY, "faster_above"], sort=True):
        last: dict[str, Any] | None = None
        for position, in_run in curve.groupby("run", sort=True):
            row = in_run.iloc[0]  # a curve has one decisive crossing per direction in practice; take the first
            here = {"size": float(row["crossover_size"]), "low": float(row["low"]), "high": float(row["high"]),
                    "run": int(position)}
            if last is not None and not _overlap((last["low"], last["high"]), (here["low"], here["high"])):
                before, after = runs[int(position) - 1], runs[int(position)]
                move = {**dict(zip((*CURVE_KEY, "faster_above"), key, strict=True)), "run": after.position,
                        "run_id": after.run_id, "label": after.label, "crossover_size": here["size"],
                        "low": here["low"], "high": here["high"], "was_size": last["size"], "was_low": last["low"],
                        "was_high": last["high"], "was_run_id": runs[last["run"]].run_id,
                        "attribution": _attribution(before, after)}
                move["sentence"] = move_sentence(move)
                rows.append(move)
            last = here
    frame = pd.DataFrame(rows, columns=list(MOVE_COLUMNS))
    out: pd.DataFrame = frame.sort_values(["run", *CURVE_KEY], kind="stable").reset_index(drop=True)
    return out


def winner_map(cells: pd.DataFrame) -> pd.DataFrame:
    """The fastest ok device per (op, dtype, mode, size) in each run, from :func:`cell_series`."""
    columns = [*GROUP, "size", "device", "median_s", "run"]
    if cells.empty:
        return _empty(columns)
    best = cells.loc[cells.groupby(["run", *GROUP, "size"], sort=True)["median_s"].idxmin()]
    out: pd.DataFrame = best[columns].sort_values(["run", *GROUP, "size"]).reset_index(drop=True)
    return out


def build_history(runs: Sequence[Run], *, key: str | None = None, machine: str | None = None) -> History:
    """The history of one machine's runs (see the module docstring)."""
    name, mine = one_machine(runs, machine)
    ordered = order_runs(mine, key)
    cells = cell_series(ordered)
    crossovers = crossover_series(ordered)
    return History(machine=name, key=key or "started_at", runs=tuple(ordered), cells=cells,
                   steps=cell_steps(cells, ordered), crossovers=crossovers,
                   moves=crossover_moves(crossovers, ordered), winners=winner_map(cells))


# ---------------------------------------------------------------------------------------------------------
# Text


def _cell_label(row: Any) -> str:
    return f"{row['op']} {row['dtype']} {row['mode']} {row['device']} n={row['size']}"


def _median_text(median: float, low: float, high: float) -> str:
    text = format_time(median)
    if math.isfinite(low) and math.isfinite(high):
        text += f" [{format_time(low)}–{format_time(high)}]"
    return text


def _series_rows(history: History) -> tuple[list[str], list[list[str]]]:
    headers = ["cell", *(f"{h.position}: {h.label}" for h in history.runs)]
    steps = {(tuple(str(r[c]) for c in CELL_KEY), int(r["run"])): r for r in history.steps.to_dict("records")}
    rows = []
    for key, series in history.cells.groupby(list(CELL_KEY), sort=True):
        by_run = {int(r["run"]): r for r in series.to_dict("records")}
        texts = []
        for h in history.runs:
            r = by_run.get(h.position)
            if r is None:
                texts.append("–")
                continue
            text = _median_text(float(r["median_s"]), float(r["ci_low_s"]), float(r["ci_high_s"]))
            step = steps.get((tuple(str(k) for k in key), h.position))
            if step is not None:
                text = f"{'▲' if step['ratio'] > 1 else '▼'} {text}"
            texts.append(text)
        rows.append([_cell_label(dict(zip(CELL_KEY, key, strict=True))), *texts])
    return headers, rows


def _step_rows(history: History) -> list[list[str]]:
    return [[_cell_label(r), f"{r['run']}: {r['label']}", f"{r['ratio']:.3g}× [{r['ci_low']:.3g}–{r['ci_high']:.3g}]",
             f"{format_time(r['before_median_s'])} → {format_time(r['after_median_s'])}",
             f"{r['runs_before']} | {r['runs_after']}", r["attribution"] or "–"]
            for r in history.steps.to_dict("records")]


def _crossing_text(rows: pd.DataFrame) -> str:
    parts = []
    for r in rows.to_dict("records"):
        if math.isfinite(float(r["crossover_size"])):
            parts.append(f"{format_size(r['crossover_size'])} [{format_size(r['low'])}–{format_size(r['high'])}]"
                         f"{'' if r['decisive'] else ' ~'}")
        else:
            note = str(r["note"])
            parts.append(f"{r['faster_below'] or '–'} throughout" if "throughout" in note else "–")
    return "; ".join(parts) or "–"


def _crossover_rows(history: History) -> tuple[list[str], list[list[str]]]:
    headers = ["curve", *(f"{h.position}" for h in history.runs)]
    rows: list[list[str]] = []
    if history.crossovers.empty:
        return headers, rows
    for key, curve in history.crossovers.groupby(list(CURVE_KEY), sort=True):
        op, dtype, mode, a, b = (str(k) for k in key)
        by_run = {int(str(run)): g for run, g in curve.groupby("run")}
        rows.append([f"{op} {dtype} {mode}: {a} vs {b}",
                     *(_crossing_text(by_run[h.position]) if h.position in by_run else "–" for h in history.runs)])
    return headers, rows


def _winner_rows(history: History) -> tuple[list[str], list[list[str]]]:
    headers = ["op dtype mode", "n", *(f"{h.position}" for h in history.runs)]
    rows = []
    for key, group in history.winners.groupby([*GROUP, "size"], sort=True):
        by_run = {int(r["run"]): str(r["device"]) for r in group.to_dict("records")}
        op, dtype, mode, size = key
        rows.append([f"{op} {dtype} {mode}", str(size), *(by_run.get(h.position, "–") for h in history.runs)])
    return headers, rows


def _markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(headers), line(["---"] * len(headers)), *(line(r) for r in rows)]) + "\n"


STEP_HEADERS = ["cell", "first run after", "after/before [95 % CI]", "median before → after", "runs before | after",
                "fingerprint change"]

HISTORY_EXPLANATION = (
    "Each cell's median per call in each run with its 95 % interval; ▲/▼ marks the first run after a step up "
    "(slower) or down (faster). Steps come from a penalised segmentation of the series weighted by the runs' "
    "intervals plus a between-run variance fitted with it; each step's interval excludes 1. The fingerprint "
    "change is what differs between the runs on either side of a step: a suspect, not a proof. "
    "Crossovers: n [range] per run, ~ within noise; a move is a decisive crossing whose range does not overlap "
    "the last one's."
)


def render_history(history: History, fmt: str = "table", width: int = 200) -> str:
    """The history as text: ``table`` (rich tables), ``markdown`` or ``json`` (every frame as records)."""
    if fmt not in HISTORY_FORMATS:
        raise UsageError(f"unknown format {fmt!r}; allowed: {', '.join(HISTORY_FORMATS)}")
    if fmt == "json":
        return json_text({
            "machine": history.machine, "key": history.key,
            "runs": [{"run": h.position, "run_id": h.run_id, "label": h.label, "started_at": h.started_at}
                     for h in history.runs],
            "cells": history.cells.to_dict("records"), "steps": history.steps.to_dict("records"),
            "crossovers": history.crossovers.to_dict("records") if not history.crossovers.empty else [],
            "moves": history.moves.to_dict("records"), "winners": history.winners.to_dict("records"),
        })
    series_headers, series_rows = _series_rows(history)
    cross_headers, cross_rows = _crossover_rows(history)
    win_headers, win_rows = _winner_rows(history)
    title = f"History of {history.machine}: {len(history.runs)} runs ordered by {history.key}"
    moves = [str(s) for s in history.moves["sentence"]]
    if fmt == "markdown":
        text = f"## {title}\n\n{HISTORY_EXPLANATION}\n\n" + _markdown(series_headers, series_rows)
        text += "\n### Steps\n\n" + (_markdown(STEP_HEADERS, _step_rows(history)) if len(history.steps)
                                     else "No step in any cell.\n")
        text += "".join(f"\n- steps at {line}" for line in step_summary(history)) + "\n"
        text += "\n### Crossovers\n\n" + _markdown(cross_headers, cross_rows)
        text += "\n" + "".join(f"- {m}\n" for m in moves) if moves else "\nNo crossover moved.\n"
        text += "\n### Winners\n\n" + _markdown(win_headers, win_rows)
        return text
    text = rich_table(title, series_headers, series_rows, width)
    text += (rich_table("Steps (first run after; ratio after/before)", STEP_HEADERS, _step_rows(history), width)
             if len(history.steps) else "No step in any cell.\n")
    text += "".join(f"steps at {line}\n" for line in step_summary(history))
    if cross_rows:
        text += rich_table("Crossovers per run: n \\[range] (~ within noise)", cross_headers, cross_rows, width)
    text += "".join(f"moved: {m}\n" for m in moves) if moves else "No crossover moved.\n"
    if win_rows:
        text += rich_table("Fastest device per size and run", win_headers, win_rows, width)
    return text


__all__ = ["CELL_KEY", "HISTORY_FORMATS", "MOVE_COLUMNS", "STEP_COLUMNS", "History", "HistoryRun",
           "build_history", "cell_series", "cell_steps", "crossover_moves", "key_value", "machine_of",
           "one_machine", "order_runs", "render_history", "step_summary", "winner_map"]
