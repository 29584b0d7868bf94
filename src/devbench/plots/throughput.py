"""Throughput chart: GFLOP/s (GB/s for memory-bound ops) against size per device, with calibrated ceilings."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from devbench.analysis import (
    device_order,
)
from devbench.formatting import format_rate
from devbench.plots.common import (
    _legend,
    _matplotlib,
    _quality_markers,
    _series_cells,
    _size_axis,
    _title,
    device_colours,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


MEMORY_BOUND_INTENSITY = 4.0
"""FLOPs per byte below which an op devbench does not define (a bare table from another tool) is charted in
GB/s rather than GFLOP/s. Known ops say which they are (``OpDef.bound``), so that one op's chart does not
change unit with the size range swept (matmul's intensity is n/6 FLOP/byte in float32, under 4 for n < 24)."""


# ---------------------------------------------------------------------------------------------------------
# 2. Throughput chart


def is_memory_bound(op: str, flops: pd.Series[Any], nbytes: pd.Series[Any]) -> bool:
    """Chart in GB/s rather than GFLOP/s? ``OpDef.bound`` for devbench's ops, else median FLOP/byte < 4."""
    from devbench.ops import OPS

    if op in OPS:
        return OPS[op].bound == "memory"
    intensity = (pd.to_numeric(flops, errors="coerce") / pd.to_numeric(nbytes, errors="coerce")).to_numpy()
    intensity = intensity[np.isfinite(intensity) & (intensity > 0)]
    return bool(intensity.size) and float(np.median(intensity)) < MEMORY_BOUND_INTENSITY


def _ceilings(ax: Axes, devices: list[str], *, dtype: str, memory: bool, unit: str, colours: dict[str, str],
              calibration: Mapping[str, Any] | None, results: pd.DataFrame) -> None:
    """Each device's ceiling as a dotted line: bandwidth for memory-bound ops, else peak; the best sustained
    rate from the calibration and the whole run's cells (devbench.ceilings.ceilings_for), with its source."""
    if not calibration:
        return
    from devbench.ceilings import ceilings_for

    table = ceilings_for(calibration, results)
    drawn: set[float] = set()
    for device in devices:
        peak, bandwidth = table.of(device, dtype)
        rate = bandwidth if memory else peak
        if rate is None:
            continue
        limit = rate.value / 1e9
        if not math.isfinite(limit) or limit <= 0 or round(limit, 6) in drawn:
            continue  # logical CPUs share one host ceiling: draw it once
        drawn.add(round(limit, 6))
        ax.axhline(limit, color=colours.get(device, "grey"), ls=":", lw=1.5, gid=f"ceiling:{device}",
                   label=f"{device} ceiling {format_rate(limit * 1e9, 'B' if memory else 'FLOP')} ({rate.source})")


def throughput_figure(
    results: pd.DataFrame, key: tuple[str, str, str], *, machine: str = "", colours: dict[str, str] | None = None,
    calibration: Mapping[str, Any] | None = None,
) -> Figure | None:
    """GFLOP/s (or GB/s for memory-bound ops) against size per device; None when the table has neither
    FLOP nor byte counts (a bare table from another tool). Lines carry gid ``throughput:<device>``.

    With a ``calibration`` (meta.json's, from ``devbench calibrate``) each device's ceiling, its peak
    FLOP/s or its memory bandwidth, is a dotted horizontal line (gid ``ceiling:<device>``)."""
    _matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    op, dtype, mode = key
    group = results[(results["op"] == op) & (results["dtype"] == dtype) & (results["mode"] == mode)]
    series = _series_cells(group)
    memory = is_memory_bound(op, series["flops"], series["bytes"])
    work, unit = ("bytes", "GB/s") if memory else ("flops", "GFLOP/s")
    rate = pd.to_numeric(series[work], errors="coerce") / series["median_s"] / 1e9
    if not np.isfinite(rate.to_numpy(dtype=float)).any():
        return None
    series = series.assign(rate=rate)
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
            _quality_markers(ax, part["size"], part["rate"], part, seen)
    _ceilings(ax, devices, dtype=dtype, memory=memory, unit=unit, colours=colours, calibration=calibration,
              results=results)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.set_ylabel(f"throughput ({unit}, from median time)")
    ax.set_xlabel("size n (matrix side)")
    _size_axis(ax, [int(s) for s in series["size"]])
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, devices, loc="best")
    kind = "memory-bound: bytes moved" if memory else "compute: FLOPs"
    _title(
        fig,
        f"{op} · {dtype} · {mode}: throughput in {unit} ({kind} / median time)",
        machine,
        bool(series["is_unsynchronized"].any()),
    )
    return fig
