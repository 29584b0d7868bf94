"""What every chart of a run shares: constants, colours, axes, quality markers and titles.

Each chart is built by a function that returns a ``matplotlib.figure.Figure`` (so tests can inspect axes,
scales and lines), and ``write_charts`` saves them. Figures are made with ``Figure()`` directly, not through
pyplot, so none is registered with a GUI backend: nothing to close, nothing leaks, and the "more than 20
figures open" warning cannot fire. matplotlib is imported only inside these functions (it costs ~0.5 s).

What every chart shares: only ``status == "ok"`` cells are drawn; noisy cells (rel. IQR over
``NOISY_REL_IQR``) get a red ring, unsynchronized cells (``sync == "none"``) an ✕ marker and a dashed line,
and a chart holding any unsynchronized cell says UNSYNCHRONIZED in its title; titles name the machine (CPU
model, GPU name, TF version) when the run has a fingerprint. Sizes are the matrix side n; times are seconds.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from devbench.analysis import (
    device_order,
    ok_cells,
)
from devbench.formatting import format_percent
from devbench.machine import short_name
from devbench.stats import NOISY_REL_IQR

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


DPI = 110
PLOTS_DIR = "plots"

OVERVIEW_EXTENT = 100.0
"""The overview's colour scale runs from 1/100× to 100× (saturating beyond), the same for every run, so two
machines' overviews can be compared by eye."""

UNSYNC_SUFFIX = " — UNSYNCHRONIZED"
NOISY_LABEL = f"noisy (rel. IQR > {format_percent(NOISY_REL_IQR)})"
UNSYNC_LABEL = "unsynchronized (sync=none): launch, not work"


def use_matplotlib() -> None:
    """Import matplotlib on first use; pick Agg unless the caller already chose a backend through pyplot."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")


def machine_line(meta: dict[str, Any]) -> str:
    """The machine for a title: CPU model, GPU name, TF version; a bare table says it has no fingerprint."""
    machine = meta.get("machine")
    if isinstance(machine, dict) and machine:
        return short_name(machine)
    return "machine unknown (bare results table)"


def slug(*parts: str) -> str:
    """A stable, filesystem-safe file name stem: 'crossover-matmul-float32-eager'."""
    text = "-".join(parts)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "chart"


PALETTE = ("#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2", "#7F7F7F", "#BCBD22",
           "#17BECF")
"""matplotlib's tab10 (Plotly's D3 palette), written out so the PNG charts and the HTML report's Plotly figures
(devbench.html_report.charts) give a device the same colour."""


def device_colours(devices: Sequence[str]) -> dict[str, str]:
    """One colour per device, the same in every chart of a run, PNG or HTML (``device_order``: CPU:0 first)."""
    return {d: PALETTE[i % len(PALETTE)] for i, d in enumerate(device_order(devices))}


def series_cells(results: pd.DataFrame) -> pd.DataFrame:
    """Ok cells keeping one row per sync policy: a run timed with and without sync shows both lines (PNG and
    HTML charts alike)."""
    frames = [ok_cells(part) for _, part in results.groupby(results["sync"].astype(str), sort=True)]
    return pd.concat(frames, ignore_index=True) if frames else ok_cells(results)


def spaced_labels(sizes: list[int], min_gap: float = 0.05) -> list[str]:
    """Tick labels for sorted sizes, blank where a label would sit within ``min_gap`` of the axis' log span
    of the previous one (refined sizes crowd together near a crossover)."""
    span = math.log(sizes[-1] / sizes[0]) if sizes[-1] > sizes[0] else 1.0
    labels: list[str] = []
    last: int | None = None
    for size in sizes:
        if last is None or math.log(size / last) >= min_gap * span:
            labels.append(str(size))
            last = size
        else:
            labels.append("")
    return labels


def size_axis(ax: Axes, sizes: list[int]) -> None:
    """Log x axis labelled with the measured sizes when there are few, so a reader can find each cell."""
    from matplotlib.ticker import NullFormatter, NullLocator, ScalarFormatter

    ax.set_xscale("log")
    unique = sorted(set(sizes))
    if 0 < len(unique) <= 24:
        ax.set_xticks(unique, spaced_labels(unique))
        ax.xaxis.set_minor_locator(NullLocator())
    else:
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())


def time_axis(ax: Axes, values: np.ndarray) -> None:
    """Log y axis in seconds with SI prefixes (10 µs, 1 ms); minor labels only for a narrow range."""
    from matplotlib.ticker import EngFormatter, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(EngFormatter(unit="s"))
    finite = values[np.isfinite(values) & (values > 0)]
    narrow = finite.size > 0 and math.log10(finite.max() / finite.min()) < 1.5
    ax.yaxis.set_minor_formatter(EngFormatter(unit="s") if narrow else NullFormatter())


def quality_markers(ax: Axes, x: pd.Series[Any], y: pd.Series[Any], cells: pd.DataFrame, seen: set[str]) -> None:
    """Red rings on noisy cells, ✕ on unsynchronized ones; each label enters the legend once."""
    noisy = cells["is_noisy"].to_numpy(dtype=bool)
    unsync = cells["is_unsynchronized"].to_numpy(dtype=bool)
    if noisy.any():
        ax.plot(
            x[noisy],
            y[noisy],
            ls="none",
            marker="o",
            ms=11,
            mfc="none",
            mec="red",
            mew=1.5,
            label=NOISY_LABEL if NOISY_LABEL not in seen else "_nolegend_",
            gid="noisy",
            zorder=4,
        )
        seen.add(NOISY_LABEL)
    if unsync.any():
        ax.plot(
            x[unsync],
            y[unsync],
            ls="none",
            marker="x",
            ms=9,
            color="black",
            mew=1.5,
            label=UNSYNC_LABEL if UNSYNC_LABEL not in seen else "_nolegend_",
            gid="unsync",
            zorder=4,
        )
        seen.add(UNSYNC_LABEL)


def chart_note(ax: Axes, text: str, where: tuple[float, float] = (0.5, 0.5)) -> None:
    ax.text(
        *where,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=9,
        color="0.35",
        gid="note",
        bbox={"facecolor": "white", "edgecolor": "0.8", "boxstyle": "round"},
    )


def device_legend(ax: Axes, devices: list[str], **kwargs: Any) -> None:
    """Legend with the device lines first, then quality markers and reference lines, in drawing order."""
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: (0 if labels[i].split(" (sync=")[0] in devices else 1, i))
    ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=8, **kwargs)


def chart_title(fig: Figure, what: str, machine: str, unsynchronized: bool) -> None:
    fig.suptitle(
        f"{what}{UNSYNC_SUFFIX if unsynchronized else ''}\n{machine}",
        fontsize=10,
        color="darkred" if unsynchronized else "black",
    )
