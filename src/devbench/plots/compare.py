"""The compare chart: per op, the NEW/BASE ratio of median per-call time against size, coloured by verdict.

Reads a :class:`devbench.compare.Comparison` and computes nothing new; matplotlib is imported on first use.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from devbench.compare import VERDICTS, Comparison, Verdict
from devbench.formatting import format_percent
from devbench.plots.common import use_matplotlib
from devbench.stats import same_band

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["VERDICT_COLOURS", "compare_figure", "write_compare_chart"]

VERDICT_COLOURS: dict[Verdict, str] = {
    "slower": "#d62728", "faster": "#2ca02c", "same": "#7f7f7f", "uncertain": "#ff7f0e",
}
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
_LINESTYLES: tuple[Literal["-", "--", ":", "-."], ...] = ("-", "--", ":", "-.")


def compare_figure(comparison: Comparison) -> Figure:
    """The compare chart as a matplotlib Figure (not registered with pyplot, so nothing to close).

    One subplot per op; x = size (log2 axis), y = ratio NEW/BASE with its CI as error bars; one
    line and marker shape per (dtype, device, mode), points nudged sideways so bars do not overlap; marker
    colour = verdict; a line at 1× and the shaded ``same`` band [1/(1 + t), 1 + t].
    """
    use_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    plotted = [c for c in comparison.cells if math.isfinite(c.ratio)]
    ops = sorted({c.key.op for c in plotted})
    t = comparison.settings.threshold
    band_low, band_high = same_band(t)
    fig = Figure(figsize=(10.0, 0.9 + 3.0 * max(len(ops), 1)), layout="constrained")
    fig.suptitle(f"{comparison.new_label} vs {comparison.base_label}\n"
                 "ratio of per-call time (geometric mean of round medians), new/base (>1× = slower)",
                 fontsize=10)
    if not ops:
        ax = fig.subplots()
        ax.text(0.5, 0.5, "no cells measured ok in both runs", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    axes = fig.subplots(len(ops), 1, squeeze=False)[:, 0]
    for ax, op in zip(axes, ops, strict=True):
        cells = [c for c in plotted if c.key.op == op]
        series = sorted({(c.key.dtype, c.key.device, c.key.mode) for c in cells})
        ax.axhspan(band_low, band_high, color="0.88", zorder=0, label=f"±{format_percent(t)} threshold")
        ax.axhline(1.0, color="0.25", linewidth=1.0, zorder=1, label="1× (no change)")
        handles: list[Any] = []
        for i, (dtype, device, mode) in enumerate(series):
            points = sorted((c for c in cells if (c.key.dtype, c.key.device, c.key.mode)
                             == (dtype, device, mode)), key=lambda c: c.key.size)
            nudge = 2.0 ** ((i - (len(series) - 1) / 2.0) * 0.06)
            xs = np.array([c.key.size * nudge for c in points], dtype=np.float64)
            ys = np.array([c.ratio for c in points], dtype=np.float64)
            marker, style = _MARKERS[i % len(_MARKERS)], _LINESTYLES[(i // len(_MARKERS)) % len(_LINESTYLES)]
            label = f"{dtype} {device} {mode}"
            ax.plot(xs, ys, color="0.55", linestyle=style, linewidth=0.8, zorder=2, label=label)
            for verdict in VERDICTS:
                chosen = [j for j, c in enumerate(points) if c.verdict == verdict]
                if not chosen:
                    continue
                lo = np.array([points[j].ci_low for j in chosen], dtype=np.float64)
                hi = np.array([points[j].ci_high for j in chosen], dtype=np.float64)
                y = ys[chosen]
                yerr = np.vstack([np.nan_to_num(y - lo, nan=0.0), np.nan_to_num(hi - y, nan=0.0)])
                ax.errorbar(xs[chosen], y, yerr=np.clip(yerr, 0.0, None), fmt=marker, markersize=5,
                            color=VERDICT_COLOURS[verdict], ecolor=VERDICT_COLOURS[verdict], elinewidth=1.0,
                            capsize=2.5, zorder=3)
            handles.append(Line2D([], [], color="0.55", linestyle=style, marker=marker,
                                  markerfacecolor="white", markeredgecolor="0.35", label=label))
        present = [v for v in VERDICTS if any(c.verdict == v for c in cells)]
        handles += [Patch(color=VERDICT_COLOURS[v], label=v) for v in present]
        handles.append(Patch(color="0.88", label=f"±{format_percent(t)} threshold"))
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_xscale("log", base=2)
        sizes = sorted({c.key.size for c in cells})
        if len(sizes) <= 12:
            ax.set_xticks(sizes, [str(size) for size in sizes])
            ax.minorticks_off()
        ax.set_title(op, loc="left", fontsize=10)
        ax.set_xlabel("size")
        ax.set_ylabel("new / base")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: f"{y:g}×"))
        ax.grid(True, axis="y", color="0.92", zorder=0)
    return fig


def write_compare_chart(comparison: Comparison, path: Path) -> Path:
    """Write the compare chart (see ``compare_figure``) as PNG to ``path``; an existing directory gets
    ``compare.png`` inside it. Returns the file written."""
    target = path / "compare.png" if path.is_dir() else path
    fig = compare_figure(comparison)
    fig.savefig(target, dpi=120)
    return target
