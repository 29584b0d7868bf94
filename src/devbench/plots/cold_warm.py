"""Cold vs warm chart: the first call's time against the warm median, per device and size."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from devbench.analysis import (
    device_order,
)
from devbench.formatting import format_ratio
from devbench.plots.common import (
    chart_note,
    chart_title,
    device_colours,
    device_legend,
    quality_markers,
    series_cells,
    size_axis,
    use_matplotlib,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


# ---------------------------------------------------------------------------------------------------------
# 4. Cold vs warm


def cold_warm_figure(
    results: pd.DataFrame, *, machine: str = "", colours: dict[str, str] | None = None
) -> Figure | None:
    """First-call time (``cold_s``) against steady-state median per device — what timing the first call,
    as the TF guide's ``time_matmul`` does, gets wrong. Left: scatter with the y = x line (gid ``parity``)
    and 10× / 100× guides; right: cold / warm ratio against size (median over ops, band min–max; without
    unsynchronized cells, whose warm time is wrong). None when no ok cell has a cold time."""
    use_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter, FuncFormatter

    cells = series_cells(results)
    cells = cells[np.isfinite(pd.to_numeric(cells["cold_s"], errors="coerce")) & (cells["cold_s"] > 0)]
    if cells.empty:
        return None
    cells = cells.assign(ratio=cells["cold_s"] / cells["median_s"])
    devices = device_order(cells["device"].astype(str))
    colours = colours or device_colours(devices)

    fig = Figure(figsize=(11.0, 4.8), layout="constrained")
    scatter, ratio_ax = fig.subplots(1, 2, width_ratios=[1, 1.2])
    seen: set[str] = set()
    for device in devices:
        part = cells[cells["device"] == device]
        scatter.plot(
            part["median_s"],
            part["cold_s"],
            ls="none",
            marker="o",
            ms=5,
            alpha=0.8,
            color=colours[device],
            label=device,
            gid=f"cold:{device}",
        )
        quality_markers(scatter, part["median_s"], part["cold_s"], part, seen)
    lo = float(min(cells["median_s"].min(), cells["cold_s"].min())) / 2
    hi = float(max(cells["median_s"].max(), cells["cold_s"].max())) * 2
    line = np.array([lo, hi])
    scatter.plot(line, line, color="0.2", lw=1, label="cold = warm", gid="parity")
    for factor, style in ((10, ":"), (100, "-.")):
        scatter.plot(
            line, line * factor, color="0.5", lw=0.8, ls=style, label=f"cold = {factor}× warm", gid=f"guide:{factor}"
        )
    scatter.set_xscale("log")
    scatter.set_yscale("log")
    scatter.set_xlim(lo, hi)
    scatter.set_ylim(lo, max(hi, float(cells["cold_s"].max()) * 3))
    scatter.xaxis.set_major_formatter(EngFormatter(unit="s"))
    scatter.yaxis.set_major_formatter(EngFormatter(unit="s"))
    scatter.set_xlabel("warm: median time per call (s)")
    scatter.set_ylabel("cold: first call (s)")
    scatter.grid(True, which="major", alpha=0.3)
    device_legend(scatter, devices, loc="lower right")  # below y = x: where no cell can be

    ratio_ax.axhline(1.0, color="0.3", lw=1, gid="parity")
    synced = cells[~cells["is_unsynchronized"]]  # a ratio against an unsynchronized warm time means nothing
    if synced.empty:
        chart_note(ratio_ax, "every cell is unsynchronized: no meaningful cold / warm ratio")
    for device in devices:
        part = synced[synced["device"] == device].groupby("size")["ratio"]
        if part.ngroups == 0:
            continue
        stats = pd.DataFrame({"median": part.median(), "min": part.min(), "max": part.max()}).sort_index()
        ratio_ax.plot(
            stats.index, stats["median"], marker="o", ms=4, color=colours[device], label=device, gid=f"ratio:{device}"
        )
        ratio_ax.fill_between(stats.index, stats["min"], stats["max"], color=colours[device], alpha=0.15, lw=0)
    ratio_ax.set_yscale("log")
    ratio_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: format_ratio(v)))
    ratio_ax.set_ylabel("cold / warm (×): how much the first call overstates")
    ratio_ax.set_xlabel("size n (matrix side)")
    size_axis(ratio_ax, [int(s) for s in cells["size"]])
    ratio_ax.grid(True, which="major", alpha=0.3)
    device_legend(ratio_ax, devices, loc="upper right")
    chart_title(
        fig,
        "First call (cold) vs steady state (warm): why timing the first call misleads",
        machine,
        bool(cells["is_unsynchronized"].any()),
    )
    return fig
