"""The history chart: per (op, dtype, mode, device), each size's median per run relative to its own median
over the runs, with the runs' intervals, the steps marked; below, per curve, each run's crossover with its
range. Reads a :class:`devbench.history.History` and computes nothing new; matplotlib is imported on first use.

Medians are drawn relative (each cell's series over its median across runs) so that sizes decades apart share
one axis and a 2× step looks the same at n=64 and n=4096.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from devbench.history import CURVE_KEY, History
from devbench.plots.common import DPI, PALETTE, use_matplotlib
from devbench.selection import GROUP

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["history_figure", "write_history_chart"]


def _minor_ratio(value: float, _pos: int | None = None) -> str:
    """Label a narrow log axis' minor ticks at 2× and 5× multiples only (0.2×, 0.5×, 2×, 5×), else nothing."""
    if not (math.isfinite(value) and value > 0):
        return ""
    mantissa = value / 10.0 ** math.floor(math.log10(value) + 1e-9)
    return f"{value:.3g}×" if round(mantissa, 6) in (2.0, 5.0) else ""


def history_figure(history: History) -> Figure:
    """One panel per (op, dtype, mode, device) with a line per size, then one per curve with crossovers."""
    use_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    cell_groups = list(history.cells.groupby([*GROUP, "device"], sort=True)) if len(history.cells) else []
    curves = []
    if not history.crossovers.empty:
        crossings = history.crossovers[np.isfinite(history.crossovers["crossover_size"].to_numpy(dtype=float))]
        curves = list(crossings.groupby(list(CURVE_KEY), sort=True))
    panels = len(cell_groups) + len(curves)
    fig = Figure(figsize=(10.0, 1.2 + 2.8 * max(panels, 1)), layout="constrained")
    fig.suptitle(f"history of {history.machine}: {len(history.runs)} runs by {history.key}", fontsize=10)
    if not panels:
        ax = fig.subplots()
        ax.text(0.5, 0.5, "no ok cells in these runs", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    positions = [h.position for h in history.runs]
    labels = [f"{h.position}\n{h.label[5:16] if history.key == 'started_at' else h.label}" for h in history.runs]
    for ax, (key, group) in zip(axes, cell_groups, strict=False):
        sizes = sorted({int(s) for s in group["size"]})
        shown: list[float] = []
        for i, size in enumerate(sizes):
            series = group[group["size"] == size].sort_values("run")
            median = series["median_s"].to_numpy(dtype=float)
            ref = float(np.median(median))
            x = series["run"].to_numpy(dtype=float) + (i - (len(sizes) - 1) / 2) * 0.04
            y = median / ref
            shown.extend(y.tolist())
            low = np.nan_to_num(y - series["ci_low_s"].to_numpy(dtype=float) / ref, nan=0.0)
            high = np.nan_to_num(series["ci_high_s"].to_numpy(dtype=float) / ref - y, nan=0.0)
            ax.errorbar(x, y, yerr=np.clip(np.vstack([low, high]), 0.0, None), marker="o", markersize=3.5,
                        capsize=2, linewidth=1.0, color=PALETTE[i % len(PALETTE)], label=f"n={size}")
        steps = history.steps
        if len(steps):
            mine = steps[(steps["op"] == key[0]) & (steps["dtype"] == key[1]) & (steps["mode"] == key[2])
                         & (steps["device"] == key[3])]
            for run, at in mine.groupby("run"):
                ax.axvline(float(run) - 0.5, color="#C00000", linestyle="--", linewidth=1.0)
                ax.annotate(f"step: {len(at)} size{'s' if len(at) != 1 else ''}",
                            (float(run) - 0.5, 1.0), xycoords=("data", "axes fraction"), fontsize=7,
                            color="#C00000", ha="left", va="top", xytext=(3, -3), textcoords="offset points")
        ax.set_yscale("log")
        # the medians set the axis: an interval from a loaded run can span decades and would flatten the steps
        ax.set_ylim(min(shown) / 1.5, max(shown) * 1.5)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.3g}×"))
        ax.yaxis.set_minor_formatter(FuncFormatter(_minor_ratio))
        ax.axhline(1.0, color="0.4", linewidth=0.8)
        ax.set_title(f"{' '.join(str(k) for k in key)}: median per call / its median over the runs (95 % CI)",
                     loc="left", fontsize=9)
        ax.set_ylabel("relative median")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for ax, (key, curve) in zip(axes[len(cell_groups):], curves, strict=False):
        op, dtype, mode, a, b = (str(k) for k in key)
        for decisive, style in ((True, "o"), (False, "x")):
            part = curve[curve["decisive"].astype(bool) == decisive]
            if part.empty:
                continue
            size = part["crossover_size"].to_numpy(dtype=float)
            low = np.nan_to_num(size - part["low"].to_numpy(dtype=float), nan=0.0)
            high = np.nan_to_num(part["high"].to_numpy(dtype=float) - size, nan=0.0)
            ax.errorbar(part["run"].to_numpy(dtype=float), size, yerr=np.clip(np.vstack([low, high]), 0.0, None),
                        fmt=style, markersize=5, capsize=3, color="#1F77B4" if decisive else "0.5",
                        label="decisive: n [range]" if decisive else "within noise")
        for run in history.moves[(history.moves["op"] == op) & (history.moves["device_a"] == a)
                                 & (history.moves["device_b"] == b)]["run"] if len(history.moves) else []:
            ax.axvline(float(run) - 0.5, color="#C00000", linestyle="--", linewidth=1.0)
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.0f}" if math.isfinite(v) else ""))
        ax.set_title(f"{op} {dtype} {mode}: where {b} and {a} cross (dashed: the crossover moved)", loc="left",
                     fontsize=9)
        ax.set_ylabel("crossover n")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for ax in axes:
        ax.set_xticks(positions, labels, fontsize=7)
        ax.set_xlim(min(positions) - 0.5, max(positions) + 0.5)
        ax.grid(True, color="0.92")
    axes[-1].set_xlabel("run (in order)")
    return fig


def write_history_chart(history: History, path: Path) -> Path:
    """Write :func:`history_figure` as PNG to ``path`` (a directory gets ``history.png``); returns the file."""
    target = path / "history.png" if path.is_dir() else path
    history_figure(history).savefig(target, dpi=DPI)
    return target
