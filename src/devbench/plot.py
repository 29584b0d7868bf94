"""Charts of a run, as PNG files: crossover, throughput, overview heatmap, cold vs warm.

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
import os
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from devbench.analysis import (
    REFERENCE_DEVICE,
    crossover_frame,
    crossover_sentence,
    device_order,
    ok_cells,
    records,
    transfer_as_mode,
    winners,
)
from devbench.machine import short_name
from devbench.stats import NOISY_REL_IQR
from devbench.store import Run

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 110
PLOTS_DIR = "plots"

MEMORY_BOUND_OPS = frozenset({"add", "reduce_sum", "softmax_xent_grad"})
COMPUTE_BOUND_OPS = frozenset({"matmul", "conv2d", "dense_step"})
MEMORY_BOUND_INTENSITY = 4.0
"""FLOPs per byte below which an op not named above is charted in GB/s rather than GFLOP/s. Known ops are
classified by name, so that one op's chart does not change unit with the size range swept (matmul's
intensity is n/6 FLOP/byte in float32, under 4 for n < 24)."""

OVERVIEW_EXTENT = 100.0
"""The overview's colour scale runs from 1/100× to 100× (saturating beyond), the same for every run, so two
machines' overviews can be compared by eye."""

UNSYNC_SUFFIX = " — UNSYNCHRONIZED"
NOISY_LABEL = f"noisy (rel. IQR > {NOISY_REL_IQR:.0%})"
UNSYNC_LABEL = "unsynchronized (sync=none): launch, not work"


def _matplotlib() -> None:
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


def device_colours(devices: list[str]) -> dict[str, str]:
    """One colour per device, the same in every chart of a run (CPU:0 first, tab10 order)."""
    palette = [f"C{i}" for i in range(10)]
    return {d: palette[i % len(palette)] for i, d in enumerate(device_order(devices))}


def _series_cells(results: pd.DataFrame) -> pd.DataFrame:
    """Ok cells keeping one row per sync policy: a run timed with and without sync shows both lines."""
    frames = [ok_cells(part) for _, part in results.groupby(results["sync"].astype(str), sort=True)]
    if not frames:
        return ok_cells(results)
    return pd.concat(frames, ignore_index=True)


def _spaced_labels(sizes: list[int], min_gap: float = 0.05) -> list[str]:
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


def _size_axis(ax: Axes, sizes: list[int]) -> None:
    """Log x axis labelled with the measured sizes when there are few, so a reader can find each cell."""
    from matplotlib.ticker import NullFormatter, NullLocator, ScalarFormatter

    ax.set_xscale("log")
    unique = sorted(set(sizes))
    if 0 < len(unique) <= 24:
        ax.set_xticks(unique, _spaced_labels(unique))
        ax.xaxis.set_minor_locator(NullLocator())
    else:
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())


def _time_axis(ax: Axes, values: np.ndarray) -> None:
    """Log y axis in seconds with SI prefixes (10 µs, 1 ms); minor labels only for a narrow range."""
    from matplotlib.ticker import EngFormatter, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(EngFormatter(unit="s"))
    finite = values[np.isfinite(values) & (values > 0)]
    narrow = finite.size > 0 and math.log10(finite.max() / finite.min()) < 1.5
    ax.yaxis.set_minor_formatter(EngFormatter(unit="s") if narrow else NullFormatter())


def _quality_markers(ax: Axes, x: pd.Series[Any], y: pd.Series[Any], cells: pd.DataFrame, seen: set[str]) -> None:
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


def _note(ax: Axes, text: str, where: tuple[float, float] = (0.5, 0.5)) -> None:
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


def _legend(ax: Axes, devices: list[str], **kwargs: Any) -> None:
    """Legend with the device lines first, then quality markers and reference lines, in drawing order."""
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: (0 if labels[i].split(" (sync=")[0] in devices else 1, i))
    ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=8, **kwargs)


def ratio_text(ratio: float) -> str:
    """A speed-up for a label: '0.42×', '23.6×', '1340×' (no exponent notation)."""
    if not math.isfinite(ratio):
        return "–"
    return f"{ratio:.0f}×" if ratio >= 100 else f"{ratio:.3g}×"


def _title(fig: Figure, what: str, machine: str, unsynchronized: bool) -> None:
    fig.suptitle(
        f"{what}{UNSYNC_SUFFIX if unsynchronized else ''}\n{machine}",
        fontsize=10,
        color="darkred" if unsynchronized else "black",
    )


# ---------------------------------------------------------------------------------------------------------
# 1. Crossover chart


def crossover_figure(
    results: pd.DataFrame,
    key: tuple[str, str, str],
    *,
    machine: str = "",
    crossovers: pd.DataFrame | None = None,
    colours: dict[str, str] | None = None,
) -> Figure:
    """Median time per call against size (log–log) per device, IQR band, crossovers; speed-up panel below.

    ``key`` is (op, dtype, mode). ``crossovers`` defaults to ``crossover_frame`` of these results; each
    located crossover is a dashed vertical line (gid ``crossover``) labelled like "GPU:0 faster above n≈724
    (range 690–760)" with its range shaded. Lines carry gid ``median:<device>`` (top) and
    ``speedup:<device>`` (bottom), so tests can find them.
    """
    _matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    op, dtype, mode = key
    group = results[(results["op"] == op) & (results["dtype"] == dtype) & (results["mode"] == mode)]
    series = _series_cells(group)
    cells = ok_cells(group)
    devices = device_order(series["device"].astype(str))
    colours = colours or device_colours(devices)
    if crossovers is None:
        crossovers = crossover_frame(group)
    else:
        crossovers = crossovers[
            (crossovers["op"] == op) & (crossovers["dtype"] == dtype) & (crossovers["mode"] == mode)
        ]

    fig = Figure(figsize=(8.5, 7.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.4])
    seen: set[str] = set()
    syncs_per_device = series.groupby("device")["sync"].nunique()
    for device in devices:
        several = syncs_per_device[device] > 1
        for sync, unsorted in series[series["device"] == device].groupby("sync", sort=True):
            part = unsorted.sort_values("size")
            unsync = bool(part["is_unsynchronized"].all())
            label = f"{device} (sync={sync})" if several else device
            x, y = part["size"], part["median_s"]
            top.plot(
                x,
                y,
                marker="o",
                ms=4,
                lw=1.6,
                color=colours[device],
                ls="--" if unsync else "-",
                label=label,
                gid=f"median:{device}" + (f":{sync}" if several else ""),
            )
            q1, q3 = part["q1_s"].to_numpy(dtype=float), part["q3_s"].to_numpy(dtype=float)
            band = np.isfinite(q1) & np.isfinite(q3)
            if band.any():
                top.fill_between(
                    x[band], q1[band], q3[band], color=colours[device], alpha=0.18, lw=0, gid=f"iqr:{device}"
                )
            _quality_markers(top, x, y, part, seen)

    n_lines = 0
    several_pairs = len(devices) > 2
    for r in records(crossovers):
        size = float(r["crossover_size"])
        if not math.isfinite(size):
            continue
        above, below = str(r["faster_above"]), str(r["faster_below"])
        low, high = float(r["low"]), float(r["high"])
        label = crossover_sentence(above, size, low, high, than=below if several_pairs else "")
        if bool(r["uncertain"]):
            label += ", uncertain"
        colour = colours.get(above, "0.3")
        for ax in (top, bottom):
            ax.axvline(size, color=colour, ls="--", lw=1.3, gid="crossover", label=label if ax is top else "_nolegend_")
            if math.isfinite(low) and math.isfinite(high) and high > low:
                ax.axvspan(low, high, color=colour, alpha=0.08, lw=0, gid="crossover-range")
        n_lines += 1

    top.set_ylabel("median time per call (s)")
    _time_axis(top, np.concatenate([series["median_s"].to_numpy(dtype=float), np.array([np.nan])]))
    if len(devices) < 2:
        only = devices[0] if devices else "no device"
        _note(top, f"only {only} measured: no accelerator measured, so no crossover to show", (0.5, 0.92))
    elif n_lines == 0:
        note = "no crossover in the measured range" if len(crossovers) else "no crossover"
        top.text(0.02, 0.02, note, transform=top.transAxes, fontsize=8, color="0.35", gid="note")
    _legend(top, devices, loc="upper left")
    top.grid(True, which="major", alpha=0.3)

    others = [d for d in devices if d != REFERENCE_DEVICE]
    cpu = cells[cells["device"] == REFERENCE_DEVICE].set_index("size")["median_s"]
    if not others or cpu.empty:
        _note(
            bottom,
            "no accelerator measured: no speed-up over CPU:0 to show"
            if not others
            else f"{REFERENCE_DEVICE} not measured: no speed-up to show",
        )
        bottom.set_yticks([])
    else:
        bottom.axhline(1.0, color="0.3", lw=1, gid="parity")
        for device in others:
            dev = cells[cells["device"] == device].set_index("size")["median_s"]
            shared = sorted(set(cpu.index) & set(dev.index))
            if not shared:
                continue
            speedup = cpu.loc[shared].to_numpy(dtype=float) / dev.loc[shared].to_numpy(dtype=float)
            bottom.plot(shared, speedup, marker="o", ms=4, color=colours[device], label=device, gid=f"speedup:{device}")
        bottom.set_yscale("log")
        bottom.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: ratio_text(v)))
        bottom.yaxis.set_minor_formatter(FuncFormatter(lambda _v, _pos: ""))
    bottom.set_ylabel(f"speed-up over {REFERENCE_DEVICE} (×)")
    bottom.set_xlabel("size n (matrix side)")
    bottom.grid(True, which="major", alpha=0.3)
    _size_axis(bottom, [int(s) for s in series["size"]])
    _title(
        fig,
        f"{op} · {dtype} · {mode}: median time per call (band: IQR)",
        machine,
        bool(series["is_unsynchronized"].any()),
    )
    return fig


# ---------------------------------------------------------------------------------------------------------
# 2. Throughput chart


def is_memory_bound(op: str, flops: pd.Series[Any], nbytes: pd.Series[Any]) -> bool:
    """Chart in GB/s rather than GFLOP/s? By name for known ops, else median FLOP/byte < 4."""
    if op in MEMORY_BOUND_OPS:
        return True
    if op in COMPUTE_BOUND_OPS:
        return False
    intensity = (pd.to_numeric(flops, errors="coerce") / pd.to_numeric(nbytes, errors="coerce")).to_numpy()
    intensity = intensity[np.isfinite(intensity) & (intensity > 0)]
    return bool(intensity.size) and float(np.median(intensity)) < MEMORY_BOUND_INTENSITY


def _ceilings(ax: Axes, devices: list[str], *, dtype: str, memory: bool, unit: str, colours: dict[str, str],
              calibration: Mapping[str, Any] | None) -> None:
    """The calibrated limit of each device as a dotted line: bandwidth for memory-bound ops, else peak."""
    if not calibration:
        return
    from devbench.calibrate import ceiling

    drawn: set[float] = set()
    for device in devices:
        peak, bandwidth = ceiling(calibration, device, dtype)
        limit = (bandwidth if memory else peak) / 1e9
        if not math.isfinite(limit) or limit <= 0 or round(limit, 6) in drawn:
            continue  # logical CPUs share one host ceiling: draw it once
        drawn.add(round(limit, 6))
        ax.axhline(limit, color=colours.get(device, "grey"), ls=":", lw=1.5, gid=f"ceiling:{device}",
                   label=f"{device} ceiling {limit:.3g} {unit}")


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
    _ceilings(ax, devices, dtype=dtype, memory=memory, unit=unit, colours=colours, calibration=calibration)
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


# ---------------------------------------------------------------------------------------------------------
# 3. Overview heatmap


def overview_figure(results: pd.DataFrame, *, machine: str = "") -> Figure:
    """Rows op/dtype(/mode), columns size; colour = speed-up of the best accelerator over CPU:0 (log scale,
    white at 1×, blue where the accelerator wins, red where CPU:0 does); each cell names the fastest device.

    The colour uses the best *non-CPU:0* device rather than the overall winner, whose speed-up over CPU:0 is
    never below 1 and would hide how much slower the accelerator is. Grey: CPU:0 or every accelerator
    missing. Cell suffixes: ``*`` noisy, ``!`` unsynchronized (also in the footnote).
    """
    _matplotlib()
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
    _title(fig, "Overview: fastest device per cell", machine, unsync_any)
    if table.empty:
        _note(ax, "no ok cells to show")
        ax.set_axis_off()
        return fig

    values = np.full((n_rows, n_cols), np.nan)
    labels = [["" for _ in range(n_cols)] for _ in range(n_rows)]
    row_index = {k: i for i, k in enumerate(row_keys)}
    col_index = {s: j for j, s in enumerate(sizes)}
    for r in records(table):
        i, j = row_index[(r["op"], r["dtype"], r["mode"])], col_index[int(r["size"])]
        values[i, j] = r["accelerator_speedup"]
        marks = ("*" if r["noisy"] else "") + ("!" if r["unsynchronized"] else "")
        ratio = r["speedup_vs_cpu"]
        factor = f"\n{ratio_text(ratio)}" if math.isfinite(ratio) and r["device"] != REFERENCE_DEVICE else ""
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
    bar = fig.colorbar(image, ax=ax, shrink=0.9, extend="both", format=FuncFormatter(lambda v, _pos: ratio_text(v)))
    bar.set_label(f"best accelerator vs {REFERENCE_DEVICE} (×)")
    accelerators = set(table["best_accelerator"]) - {""}
    foot = "* noisy   ! unsynchronized   grey: no CPU:0 or no accelerator"
    if not accelerators:
        foot = "no accelerator measured   " + foot
    fig.text(0.01, 0.005, foot, fontsize=7, color="0.35", gid="footnote")
    return fig


# ---------------------------------------------------------------------------------------------------------
# 4. Cold vs warm


def cold_warm_figure(
    results: pd.DataFrame, *, machine: str = "", colours: dict[str, str] | None = None
) -> Figure | None:
    """First-call time (``cold_s``) against steady-state median per device — what timing the first call,
    as the TF guide's ``time_matmul`` does, gets wrong. Left: scatter with the y = x line (gid ``parity``)
    and 10× / 100× guides; right: cold / warm ratio against size (median over ops, band min–max; without
    unsynchronized cells, whose warm time is wrong). None when no ok cell has a cold time."""
    _matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter, FuncFormatter

    cells = _series_cells(results)
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
        _quality_markers(scatter, part["median_s"], part["cold_s"], part, seen)
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
    _legend(scatter, devices, loc="lower right")  # below y = x: where no cell can be

    ratio_ax.axhline(1.0, color="0.3", lw=1, gid="parity")
    synced = cells[~cells["is_unsynchronized"]]  # a ratio against an unsynchronized warm time means nothing
    if synced.empty:
        _note(ratio_ax, "every cell is unsynchronized: no meaningful cold / warm ratio")
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
    ratio_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: ratio_text(v)))
    ratio_ax.set_ylabel("cold / warm (×): how much the first call overstates")
    ratio_ax.set_xlabel("size n (matrix side)")
    _size_axis(ratio_ax, [int(s) for s in cells["size"]])
    ratio_ax.grid(True, which="major", alpha=0.3)
    _legend(ratio_ax, devices, loc="upper right")
    _title(
        fig,
        "First call (cold) vs steady state (warm): why timing the first call misleads",
        machine,
        bool(cells["is_unsynchronized"].any()),
    )
    return fig


# ---------------------------------------------------------------------------------------------------------
# Writing


def figures(run: Run) -> Iterator[tuple[str, Figure]]:
    """(file stem, Figure) for every chart the run supports, built one at a time."""
    results = transfer_as_mode(run.results)  # transfer timings get charts of their own (mode eager+transfer)
    machine = machine_line(run.meta)
    if results.empty or ok_cells(results).empty:
        return
    colours = device_colours(list(results["device"].astype(str)))
    crossovers = crossover_frame(results)
    keys = sorted({(str(r["op"]), str(r["dtype"]), str(r["mode"])) for r in records(ok_cells(results))})
    for key in keys:
        yield (
            slug("crossover", *key),
            crossover_figure(results, key, machine=machine, crossovers=crossovers, colours=colours),
        )
        throughput = throughput_figure(results, key, machine=machine, colours=colours,
                                       calibration=run.meta.get("calibration"))
        if throughput is not None:
            yield slug("throughput", *key), throughput
    yield "overview", overview_figure(results, machine=machine)
    cold = cold_warm_figure(results, machine=machine, colours=colours)
    if cold is not None:
        yield "cold-vs-warm", cold


def write_charts(run: Run, out_dir: Path) -> list[Path]:
    """Write every chart of ``run`` as PNG (``DPI`` dots per inch) into ``out_dir``; return the paths.

    Names are stable, so a later call (after refining, say) replaces the same files:
    ``crossover-<op>-<dtype>-<mode>.png``, ``throughput-…``, ``overview.png``, ``cold-vs-warm.png``.
    Each file is written under a temporary name and renamed. A run without any ok cell gives no charts
    (an empty list). Groups with no ok cell get no per-group charts.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    used: set[str] = set()
    for stem, fig in figures(run):
        name, k = stem, 1
        while name in used:  # two groups whose names differ only in unsafe characters
            k += 1
            name = f"{stem}-{k}"
        used.add(name)
        target = out_dir / f"{name}.png"
        tmp = out_dir / f".{name}.png.tmp"
        fig.savefig(tmp, dpi=DPI, format="png")
        os.replace(tmp, target)
        written.append(target)
    return written
