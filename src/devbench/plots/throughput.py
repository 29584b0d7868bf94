"""Throughput chart: GFLOP/s (GB/s for memory-bound ops) against size per device, with calibrated ceilings.

The points are the rates pct_of_peak is computed from and the dotted lines the ceilings it is computed against
(devbench.ceilings), so a point above its line is a row with ``above_peak``: it is ringed and noted, never
clipped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from devbench.analysis import (
    device_order,
)
from devbench.ceilings import ABOVE_PEAK_NOTE, calibrated, op_bound, with_pct_columns
from devbench.formatting import format_rate
from devbench.plots.common import (
    chart_title,
    device_colours,
    device_legend,
    quality_markers,
    series_cells,
    size_axis,
    use_matplotlib,
)
from devbench.shapes import axis_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


# ---------------------------------------------------------------------------------------------------------
# 2. Throughput chart


def is_memory_bound(op: str, flops: pd.Series[Any], nbytes: pd.Series[Any]) -> bool:
    """Chart in GB/s rather than GFLOP/s? The op's bound (:func:`devbench.ceilings.op_bound`: ``OpDef.bound``
    for devbench's ops, else the median FLOP/byte), the rule pct_of_peak uses."""
    return op_bound(op, flops, nbytes) == "memory"


def _ceilings(ax: Axes, devices: list[str], *, dtype: str, memory: bool, colours: dict[str, str],
              calibration: Mapping[str, Any] | None) -> None:
    """Each device's calibrated ceiling as a dotted line (what pct_of_peak is measured against): bandwidth for
    memory-bound ops, else peak, with the probe that measured it."""
    ceilings = calibrated(calibration)
    drawn: set[float] = set()
    for device in devices:
        rate = ceilings.by_bound(device, dtype, "memory" if memory else "compute")
        if rate is None:
            continue
        limit = rate.value / 1e9
        if round(limit, 6) in drawn:
            continue  # logical CPUs share one host ceiling: draw it once
        drawn.add(round(limit, 6))
        ax.axhline(limit, color=colours.get(device, "grey"), ls=":", lw=1.5, gid=f"ceiling:{device}",
                   label=f"{device} calibrated ceiling {format_rate(rate.value, 'B' if memory else 'FLOP')} "
                         f"({rate.source})")


def _above_peak(ax: Axes, series: pd.DataFrame, devices: list[str], colours: dict[str, str]) -> None:
    """Ring the points above their calibrated ceiling (gid ``above_peak:<device>``) and say what it means."""
    above = series[series["above_peak"].to_numpy(dtype=bool) & np.isfinite(series["rate"].to_numpy(dtype=float))]
    if above.empty:
        return
    for device in devices:
        part = above[above["device"] == device]
        if not part.empty:
            ax.scatter(part["size"], part["rate"], s=110, facecolors="none", edgecolors=colours[device],
                       linewidths=1.8, marker="^", zorder=5, gid=f"above_peak:{device}")
    ax.text(0.01, 0.01, f"△ {len(above)} point(s) {ABOVE_PEAK_NOTE}", transform=ax.transAxes, fontsize=8,
            va="bottom", ha="left", gid="above_peak_note")


def throughput_figure(
    results: pd.DataFrame, key: tuple[str, str, str], *, machine: str = "", colours: dict[str, str] | None = None,
    calibration: Mapping[str, Any] | None = None,
) -> Figure | None:
    """GFLOP/s (or GB/s for memory-bound ops) against size per device; None when the table has neither
    FLOP nor byte counts (a bare table from another tool). Lines carry gid ``throughput:<device>``.

    With a ``calibration`` (meta.json's, from ``devbench calibrate``) each device's calibrated ceiling, its
    peak FLOP/s or its memory bandwidth, is a dotted horizontal line (gid ``ceiling:<device>``); points above
    it are ringed (gid ``above_peak:<device>``) with a note (gid ``above_peak_note``)."""
    use_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    op, dtype, mode = key
    group = results[(results["op"] == op) & (results["dtype"] == dtype) & (results["mode"] == mode)]
    series = series_cells(group)
    memory = is_memory_bound(op, series["flops"], series["bytes"])
    work, unit = ("bytes", "GB/s") if memory else ("flops", "GFLOP/s")
    rate = pd.to_numeric(series[work], errors="coerce") / series["median_s"] / 1e9
    if not np.isfinite(rate.to_numpy(dtype=float)).any():
        return None
    series = with_pct_columns(series.assign(rate=rate), calibration)
    devices = device_order(series["device"].astype(str))
    colours = colours or device_colours(devices)
    syncs_per_device = series.groupby("device")["sync"].nunique()

    fig = Figure(figsize=(8.5, 4.8), layout="constrained")
    ax = fig.subplots()
    seen: set[str] = set()
    for device in devices:
        for sync, unsorted in series[series["device"] == device].groupby("sync", sort=True):
            part = unsorted[np.isfinite(unsorted["rate"])].sort_values("size")
            if part.empty:
                continue
            unsync = bool(part["is_unsynchronized"].all())
            label = device if syncs_per_device[device] == 1 else f"{device} (sync={sync})"
            ax.plot(
                part["size"],
                part["rate"],
                marker="o",
                ms=4,
                color=colours[device],
                ls="--" if unsync else "-",
                label=label,
                gid=f"throughput:{device}",
            )
            quality_markers(ax, part["size"], part["rate"], part, seen)
    _ceilings(ax, devices, dtype=dtype, memory=memory, colours=colours, calibration=calibration)
    _above_peak(ax, series, devices, colours)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.set_ylabel(f"throughput ({unit}, from median time)")
    ax.set_xlabel(axis_label(op))
    size_axis(ax, [int(s) for s in series["size"]])
    ax.grid(True, which="major", alpha=0.3)
    device_legend(ax, devices, loc="best")
    kind = "memory-bound: bytes moved" if memory else "compute: FLOPs"
    chart_title(
        fig,
        f"{op} · {dtype} · {mode}: throughput in {unit} ({kind} / median time)",
        machine,
        bool(series["is_unsynchronized"].any()),
    )
    return fig
