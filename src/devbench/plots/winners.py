"""A map of where each device wins: one point per measured shape, coloured by its fastest device.

The chart of ``--fuzz`` (shapes drawn within bounds, devbench.shapes) and of any run whose shaped cells vary
in two or more dimensions. The axes are the two dimensions that vary when exactly two do (``m`` against
``k``), else the work against the traffic (FLOPs against bytes per call), both on log scales. A filled point
is a clear win; a hollow one is *within noise*: the winner's interval overlaps the runner-up's (the cells' 95 %
intervals over rounds, their IQRs where a cell has none), so the colour there is no answer.

:func:`winner_points` is the one table behind the PNG (:func:`winners_figure`) and the HTML report's chart.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from devbench.analysis import device_order, ok_cells, records
from devbench.plots.common import chart_note, chart_title, use_matplotlib
from devbench.shapes import shape_of
from devbench.variants import base_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure

POINT_COLUMNS = ("op", "dtype", "mode", "shape", "winner", "runner_up", "median_s", "margin", "within_noise",
                 "flops", "bytes")
"""One row per shape point: its fastest device, the runner-up, the winner's median, the runner-up's time over
the winner's (``margin`` ≥ 1), whether the two intervals overlap, the work per call; plus ``dim_<d>`` columns."""


def _interval(row: pd.Series[Any]) -> tuple[float, float]:
    low, high = float(row["ci_low_s"]), float(row["ci_high_s"])
    if math.isfinite(low) and math.isfinite(high):
        return low, high
    q1, q3 = float(row["q1_s"]), float(row["q3_s"])
    if math.isfinite(q1) and math.isfinite(q3):
        return q1, q3
    median = float(row["median_s"])
    return median, median


def winner_points(results: pd.DataFrame) -> pd.DataFrame:
    """Per shaped point measured ok on two or more devices (one op, size, dtype, mode and sync), the winner.

    Square ops are left out: their points lie on one line (every dimension n), which the crossover charts
    show. Columns: :data:`POINT_COLUMNS` and ``dim_<d>`` for every dimension of the points' ops.
    """
    cells = ok_cells(results)
    rows: list[dict[str, Any]] = []
    if not cells.empty:
        cells = cells[[bool(shape_of(str(op), 1)) for op in cells["op"]]]
    for (op, size, dtype, mode, _sync), group in cells.groupby(["op", "size", "dtype", "mode", "sync"], sort=True):
        if group["device"].nunique() < 2:
            continue
        ranked = group.sort_values("median_s", kind="stable")
        best, second = ranked.iloc[0], ranked.iloc[1]
        dims = shape_of(str(op), int(str(size)))
        rows.append({
            "op": base_of(str(op)), "dtype": dtype, "mode": mode,
            "shape": ",".join(f"{d}={v}" for d, v in dims.items()),
            "winner": str(best["device"]), "runner_up": str(second["device"]),
            "median_s": float(best["median_s"]),
            "margin": float(second["median_s"]) / float(best["median_s"]),
            "within_noise": _interval(best)[1] >= _interval(second)[0],
            "flops": float(best["flops"]), "bytes": float(best["bytes"]),
            **{f"dim_{d}": float(v) for d, v in dims.items()},
        })
    points: pd.DataFrame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(POINT_COLUMNS))
    return points


def map_axes(points: pd.DataFrame) -> tuple[str, str, str, str]:
    """(x column, y column, x label, y label): the two dimensions that vary when exactly two do, else
    FLOPs against bytes per call."""
    varying = [c for c in points.columns if c.startswith("dim_") and points[c].nunique(dropna=True) > 1]
    if len(varying) == 2:
        fixed = {c[4:]: points[c].dropna().unique() for c in points.columns
                 if c.startswith("dim_") and c not in varying}
        note = ", ".join(f"{d}={int(v[0])}" for d, v in fixed.items() if len(v) == 1)
        return (varying[0], varying[1], varying[0][4:] + (f" ({note})" if note else ""), varying[1][4:])
    return "flops", "bytes", "work per call (FLOPs)", "traffic per call (bytes)"


def map_worth_drawing(results: pd.DataFrame) -> bool:
    """A run gets the map when its shaped points vary in two or more dimensions (a fuzz, or several curves):
    one swept dimension alone is a line, which the crossover chart already shows."""
    points = winner_points(results)
    return len(points) >= 2 and sum(points[c].nunique(dropna=True) > 1
                                    for c in points.columns if c.startswith("dim_")) >= 2


def winners_figure(results: pd.DataFrame, *, machine: str = "", colours: dict[str, str] | None = None
                   ) -> Figure:
    """The map: per op, dtype and mode one panel; x and y from :func:`map_axes` (log), colour = the winning
    device, hollow = within noise."""
    use_matplotlib()
    from matplotlib.figure import Figure

    from devbench.plots.common import device_colours

    points = winner_points(results)
    keys = sorted({(str(r["op"]), str(r["dtype"]), str(r["mode"])) for r in records(points)}) or [("", "", "")]
    devices = device_order(list(points["winner"].astype(str)) + list(points["runner_up"].astype(str)))
    colours = colours or device_colours(devices)
    fig = Figure(figsize=(6.5 * len(keys), 5.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(keys)))
    chart_title(fig, "Where each device wins (hollow: within noise)", machine, False)
    for ax, key in zip(axes, keys, strict=True):
        part = points[(points["op"] == key[0]) & (points["dtype"] == key[1]) & (points["mode"] == key[2])]
        if part.empty:
            chart_note(ax, "no shaped cell measured on two devices: no winner to map")
            ax.set_axis_off()
            continue
        part = part.dropna(axis=1, how="all")
        x, y, xlabel, ylabel = map_axes(part)
        for device in devices:
            won = part[part["winner"] == device]
            for hollow, sub in won.groupby("within_noise"):
                ax.scatter(sub[x], sub[y], s=46, lw=1.4, edgecolors=colours.get(device, "0.3"),
                           facecolors="none" if hollow else colours.get(device, "0.3"),
                           label=f"{device} (within noise)" if hollow else f"{device} wins",
                           gid=f"winner:{device}:{'noise' if hollow else 'clear'}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(" · ".join(key), fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    return fig


def render_map(points: pd.DataFrame, width: int = 160) -> str:
    """The map as a terminal table (what a ``--fuzz`` sweep prints instead of a crossover table of one-point
    curves): per shape its fastest device, by how much, and whether that is within noise."""
    from devbench.formatting import format_ratio, format_time, rich_table

    if points.empty:
        return "no shaped cell measured on two devices: no winner to map\n"
    rows = [[f"{r['op']} {r['dtype']} {r['mode']}", str(r["shape"]), str(r["winner"]), format_time(r["median_s"]),
             f"{format_ratio(r['margin'])} over {r['runner_up']}", "within noise" if r["within_noise"] else "clear"]
            for r in records(points.sort_values(["op", "dtype", "mode", "flops"], kind="stable"))]
    clear = points[~points["within_noise"].astype(bool)]["winner"].value_counts()
    title = (f"Where each device wins ({len(points)} shapes; clear wins: "
             + (", ".join(f"{device} {n}" for device, n in clear.items()) or "none") + ")")
    return rich_table(title, ["op dtype mode", "shape", "fastest", "median / call", "margin", "evidence"], rows,
                      width)
