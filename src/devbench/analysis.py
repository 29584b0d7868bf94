"""The winner per cell and the text tables of crossovers and winners; the one import point of analysis.

``winners`` ranks the devices of every (op, dtype, mode, size); ``render_crossovers`` / ``render_winners`` give
the terminal table, CSV or JSON of a crossover or winner frame, every number through :mod:`devbench.formatting`.
The crossover detection and refine planning live in :mod:`devbench.crossover`, the shared row filters and the
device rules in :mod:`devbench.selection`; both are re-exported here so callers keep one import point.

Units: times are seconds per call, sizes are the matrix side n, speed-ups are plain ratios of times.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pandas as pd

from devbench.crossover import (
    CROSSOVER_COLUMNS,
    CROSSOVER_EXTRA_COLUMNS,
    Measured,
    MeasureFn,
    RefineCell,
    Refinement,
    SkippedCrossing,
    bracket_converged,
    crossover_frame,
    crossover_sentence,
    refine,
    refine_plan,
    skipped_crossings,
)
from devbench.errors import UsageError
from devbench.formatting import MISSING, format_ratio, format_size, format_time, json_text, rich_table
from devbench.frameworks import is_accelerator
from devbench.selection import (
    GROUP,
    REFERENCE_DEVICE,
    TRANSFER_SUFFIX,
    device_order,
    device_sort_key,
    merge_results,
    noisy_flags,
    ok_cells,
    records,
    split_mode,
    transfer_as_mode,
    unsynchronized_flags,
)
from devbench.shapes import axis_name, size_header

__all__ = [
    "CROSSOVER_COLUMNS",
    "CROSSOVER_EXTRA_COLUMNS",
    "CROSSOVER_HEADERS",
    "FORMATS",
    "GROUP",
    "REFERENCE_DEVICE",
    "TRANSFER_SUFFIX",
    "WINNER_COLUMNS",
    "Format",
    "MeasureFn",
    "Measured",
    "RefineCell",
    "Refinement",
    "SkippedCrossing",
    "bracket_converged",
    "contender_name",
    "crossover_frame",
    "crossover_sentence",
    "crossover_table_rows",
    "device_order",
    "device_sort_key",
    "is_accelerator",
    "merge_results",
    "noisy_flags",
    "ok_cells",
    "records",
    "refine",
    "refine_plan",
    "render_crossovers",
    "render_winners",
    "skipped_crossings",
    "split_mode",
    "transfer_as_mode",
    "unsynchronized_flags",
    "winners",
]

WINNER_COLUMNS: tuple[str, ...] = (
    "op",
    "dtype",
    "mode",
    "size",
    "device",
    "median_s",
    "speedup_vs_cpu",
    "cpu_median_s",
    "best_accelerator",
    "accelerator_speedup",
    "n_devices",
    "noisy",
    "unsynchronized",
    "contender",
    "contender_speedup",
    "margin",
)

Format = Literal["table", "csv", "json"]
FORMATS: tuple[str, ...] = ("table", "csv", "json")


# ---------------------------------------------------------------------------------------------------------
# Winners


def _fastest(group: pd.DataFrame) -> pd.Series | None:
    """The row with the smallest median (the first of equals), None for no rows."""
    return group.iloc[int(np.argmin(group["median_s"].to_numpy()))] if len(group) else None


def contender_name(table: pd.DataFrame) -> str:
    """What the overview compares with CPU:0, for a chart's legend: ``best accelerator`` when the winner table
    has any accelerator, else ``fastest other device`` (see :func:`winners`)."""
    has_accelerator = not table.empty and bool((table["best_accelerator"].astype(str) != "").any())
    return "best accelerator" if has_accelerator else "fastest other device"


def winners(results: pd.DataFrame) -> pd.DataFrame:
    """The fastest ok device per (op, dtype, mode, size), with its speed-up over CPU:0.

    ``speedup_vs_cpu`` = CPU:0 median / winner median (≥ 1; NaN when CPU:0 has no ok cell there).
    ``best_accelerator`` is the fastest device that :func:`is_accelerator` accepts (a GPU, TPU or Apple GPU of
    any framework; not a host CPU, not numpy:CPU) and ``accelerator_speedup`` its speed-up over CPU:0 (< 1 when
    CPU:0 wins). ``noisy`` / ``unsynchronized`` are true when the winner's or CPU:0's cell is, since either makes
    the speed-up doubtful. Columns: ``WINNER_COLUMNS``; ties go to the device first in ``device_order``.

    What the overview heatmap colours is ``contender_speedup``, CPU:0 median / ``contender`` median: the
    contender is the best accelerator when the results hold any accelerator, else (a CPU-only run: CPU:0 and
    numpy:CPU, or every framework's CPU) the fastest device other than CPU:0, so the first chart of a run without
    a GPU is filled too. ``margin`` is the winner's speed-up over the device it beat in that comparison: over
    CPU:0 when another device wins, over the contender when CPU:0 wins (NaN without the other one).
    """
    cells = ok_cells(results)
    any_accelerator = any(is_accelerator(str(d)) for d in cells["device"].unique())
    rows: list[dict[str, Any]] = []
    for key, unordered in cells.groupby([*GROUP, "size"], sort=True):
        op, dtype, mode, size = (str(k) for k in key)
        devices = [str(d) for d in unordered["device"]]
        group = unordered.iloc[sorted(range(len(devices)), key=lambda i: device_sort_key(devices[i]))]
        best = group.iloc[int(np.argmin(group["median_s"].to_numpy()))]
        cpu = group[group["device"] == REFERENCE_DEVICE]
        accel = group[[is_accelerator(d) for d in group["device"].astype(str)]]
        cpu_median = float(cpu["median_s"].iloc[0]) if len(cpu) else math.nan
        best_accel = _fastest(accel)
        accel_speedup = math.nan if best_accel is None else cpu_median / float(best_accel["median_s"])
        contender = best_accel if any_accelerator else _fastest(group[group["device"] != REFERENCE_DEVICE])
        contender_speedup = math.nan if contender is None else cpu_median / float(contender["median_s"])
        speedup = cpu_median / float(best["median_s"])
        margin = 1 / contender_speedup if str(best["device"]) == REFERENCE_DEVICE else speedup
        involved = pd.concat([group[group["device"] == best["device"]], cpu])
        rows.append(
            {
                "op": op,
                "dtype": dtype,
                "mode": mode,
                "size": int(size),
                "device": str(best["device"]),
                "median_s": float(best["median_s"]),
                "speedup_vs_cpu": speedup,
                "cpu_median_s": cpu_median,
                "best_accelerator": "" if best_accel is None else str(best_accel["device"]),
                "accelerator_speedup": accel_speedup,
                "n_devices": len(group),
                "noisy": bool(involved["is_noisy"].any()),
                "unsynchronized": bool(involved["is_unsynchronized"].any()),
                "contender": "" if contender is None else str(contender["device"]),
                "contender_speedup": contender_speedup,
                "margin": margin,
            }
        )
    frame = pd.DataFrame(rows, columns=list(WINNER_COLUMNS))
    frame["size"] = frame["size"].astype("int64")
    frame["n_devices"] = frame["n_devices"].astype("int64")
    for col in ("noisy", "unsynchronized"):
        frame[col] = frame[col].astype(bool)
    out: pd.DataFrame = frame
    return out


# ---------------------------------------------------------------------------------------------------------
# Rendering


def _flags(noisy: bool, unsynchronized: bool) -> str:
    return ", ".join(word for word, on in (("noisy", noisy), ("UNSYNCHRONIZED", unsynchronized)) if on)


def _json_records(frame: pd.DataFrame) -> str:
    return json_text(frame.to_dict(orient="records"))


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")


def crossover_table_rows(frame: pd.DataFrame) -> list[list[str]]:
    """Display strings per crossover row (shared by the terminal table and the Markdown report)."""
    rows = []
    for r in records(frame):
        rng = (
            f"{format_size(r['low'])}–{format_size(r['high'])}"
            if math.isfinite(r["low"]) and math.isfinite(r["high"])
            else MISSING
        )
        speedups = (
            f"{format_ratio(r['speedup_min'])} @ {format_size(r['min_size'])} / "
            f"{format_ratio(r['speedup_max'])} @ {format_size(r['max_size'])}"
            if math.isfinite(r["speedup_min"])
            else MISSING
        )
        crossover = r["crossover_size"]
        evidence = MISSING if not math.isfinite(crossover) else ("decisive" if r["decisive"] else "within noise")
        rows.append(
            [
                f"{r['op']} {r['dtype']} {r['mode']}",
                f"{r['device_a']} vs {r['device_b']}",
                MISSING if not math.isfinite(crossover) else f"{axis_name(str(r['op']))}≈{format_size(crossover)}",
                rng,
                str(r["faster_below"]) or MISSING,
                str(r["faster_above"]) or MISSING,
                evidence,
                speedups,
                str(r["note"]),
            ]
        )
    return rows


CROSSOVER_HEADERS = (
    "op dtype mode",
    "pair (a vs b)",
    "crossover",
    "range",
    "faster below",
    "faster above",
    "evidence",
    "b over a: speed-up @ min / max size",
    "note",
)


def render_crossovers(frame: pd.DataFrame, fmt: Format = "table", width: int = 160) -> str:
    """The crossover frame as a terminal table, CSV (all columns, public ones first) or JSON records.

    JSON writes NaN as null. ``width`` (characters) only affects the table.
    """
    _check_format(fmt)
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        return _json_records(frame)
    if frame.empty:
        return "no crossovers: the results hold no (op, dtype, mode) measured on two devices\n"
    return rich_table("Crossovers", CROSSOVER_HEADERS, crossover_table_rows(frame), width)


def render_winners(frame: pd.DataFrame, fmt: Format = "table", width: int = 160) -> str:
    """The winner frame as a terminal table (the sweep's summary), CSV or JSON records."""
    _check_format(fmt)
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        return _json_records(frame)
    if frame.empty:
        return "no ok cells: nothing to rank\n"
    rows = [
        [
            f"{r['op']} {r['dtype']} {r['mode']}",
            str(r["size"]),
            str(r["device"]),
            format_time(r["median_s"]),
            format_ratio(r["speedup_vs_cpu"]),
            _flags(bool(r["noisy"]), bool(r["unsynchronized"])),
        ]
        for r in records(frame)
    ]
    return rich_table(
        "Fastest device per cell",
        ["op dtype mode", size_header(frame["op"]), "fastest", "median / call", f"speed-up over {REFERENCE_DEVICE}",
         "flags"],
        rows,
        width,
    )
