"""Overview heatmap: per op and size, the fastest device and the contender's speed-up over CPU:0 (the best
accelerator; on a run without one, the fastest other device: see :func:`devbench.analysis.winners`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from devbench.analysis import (
    REFERENCE_DEVICE,
    contender_name,
    records,
    winners,
)
from devbench.formatting import format_ratio
from devbench.plots.common import (
    OVERVIEW_EXTENT,
    chart_note,
    chart_title,
    use_matplotlib,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


# ---------------------------------------------------------------------------------------------------------
# 3. Overview heatmap


def overview_figure(results: pd.DataFrame, *, machine: str = "") -> Figure:
    """Rows op/dtype(/mode), columns size; colour = speed-up of the contender over CPU:0 (log scale, white at
    1×, blue where the contender wins, red where CPU:0 does); each cell names the fastest device and its
    speed-up over the slower of the two (``margin``).

    The contender is the best accelerator, or on a run without one (CPU:0 and numpy:CPU, or every framework's
    CPU) the fastest device other than CPU:0: never the overall winner, whose speed-up over CPU:0 is never below
    1 and would hide how much slower the contender is. Grey: CPU:0 or the contender missing. Cell suffixes:
    ``*`` noisy, ``!`` unsynchronized (also in the footnote).
    """
    use_matplotlib()
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    table = winners(results)
    modes = sorted(set(table["mode"])) if not table.empty else []
    row_keys = sorted({(r["op"], r["dtype"], r["mode"]) for r in records(table)})
    sizes = sorted({int(s) for s in table["size"]})
    n_rows, n_cols = max(len(row_keys), 1), max(len(sizes), 1)
    fig = Figure(figsize=(max(6.5, 1.6 + 0.8 * n_cols), max(2.8, 1.6 + 0.5 * n_rows)), layout="constrained")
    ax = fig.subplots()
    unsync_any = bool(table["unsynchronized"].any()) if not table.empty else False
    chart_title(fig, "Overview: fastest device per cell", machine, unsync_any)
    if table.empty:
        chart_note(ax, "no ok cells to show")
        ax.set_axis_off()
        return fig

    values = np.full((n_rows, n_cols), np.nan)
    labels = [["" for _ in range(n_cols)] for _ in range(n_rows)]
    row_index = {k: i for i, k in enumerate(row_keys)}
    col_index = {s: j for j, s in enumerate(sizes)}
    for r in records(table):
        i, j = row_index[(r["op"], r["dtype"], r["mode"])], col_index[int(r["size"])]
        values[i, j] = r["contender_speedup"]
        marks = ("*" if r["noisy"] else "") + ("!" if r["unsynchronized"] else "")
        margin = float(r["margin"])
        factor = f"\n{format_ratio(margin)}" if math.isfinite(margin) else ""
        labels[i][j] = f"{r['device']}{marks}{factor}"
    extent = OVERVIEW_EXTENT
    norm = LogNorm(vmin=1 / extent, vmax=extent)
    import matplotlib

    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="0.85")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
    for i in range(n_rows):
        for j in range(n_cols):
            if labels[i][j]:
                v = values[i, j]
                dark = math.isfinite(v) and v > 0 and abs(math.log10(v)) > 0.6 * math.log10(extent)
                ax.text(
                    j,
                    i,
                    labels[i][j],
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else "black",
                    gid="cell-label",
                )
    ax.set_xticks(range(n_cols), [str(s) for s in sizes])
    ax.set_yticks(
        range(n_rows), [f"{op} {dtype}" + (f" {mode}" if len(modes) > 1 else "") for op, dtype, mode in row_keys]
    )
    ax.set_xlabel("size n (matrix side)")
    ax.set_ylabel("op / dtype" + (" / mode" if len(modes) > 1 else ""))
    bar = fig.colorbar(image, ax=ax, shrink=0.9, extend="both", format=FuncFormatter(lambda v, _pos: format_ratio(v)))
    contender = contender_name(table)
    bar.set_label(f"{contender} vs {REFERENCE_DEVICE} (×)")
    foot = f"* noisy   ! unsynchronized   grey: no {REFERENCE_DEVICE} or no {contender}"
    if contender != "best accelerator":  # the colour bar says what is compared; grey cannot happen with two devices
        foot = f"no accelerator measured: colour = {contender} vs {REFERENCE_DEVICE}   * noisy   ! unsynchronized"
    # As the figure's x label, so the constrained layout keeps room for it below the axis label.
    fig.supxlabel(foot, x=0.01, ha="left", fontsize=7, color="0.35").set_gid("footnote")
    return fig
