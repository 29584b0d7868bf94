"""Crossover chart: time per call against size per device with its fit ``a + b·n^p`` (``devbench.advise``), and the
speed-up over CPU:0 below it."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from devbench.analysis import (
    REFERENCE_DEVICE,
    crossover_frame,
    crossover_sentence,
    device_order,
    ok_cells,
    records,
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
    time_axis,
    use_matplotlib,
)
from devbench.shapes import axis_label, axis_name

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


# ---------------------------------------------------------------------------------------------------------
# 1. Crossover chart


def _fit_lines(ax: Axes, group: pd.DataFrame, key: tuple[str, str, str], samples: pd.DataFrame | None,
               colours: dict[str, str]) -> None:
    """Each device's fitted ``a + b·n^p`` as a thin line over its measured sizes, and one legend entry for all."""
    from devbench.advise import FIT_FORM, fitted_curves

    fits = fitted_curves(group, samples, key)
    for device, fit in fits.items():
        n = np.geomspace(fit.sizes[0], fit.sizes[-1], 120)
        ax.plot(n, fit.fit.at(n), color=colours.get(device, "0.3"), lw=0.8, alpha=0.9, label="_nolegend_",
                gid=f"fit:{device}")
    if fits:
        ax.plot([], [], color="0.35", lw=0.8, label=f"fit {FIT_FORM} (thin)", gid="fit-legend")


def crossover_figure(
    results: pd.DataFrame,
    key: tuple[str, str, str],
    *,
    machine: str = "",
    crossovers: pd.DataFrame | None = None,
    colours: dict[str, str] | None = None,
    samples: pd.DataFrame | None = None,
) -> Figure:
    """Median time per call against size (log–log) per device, IQR band, crossovers; speed-up panel below.

    ``key`` is (op, dtype, mode). ``crossovers`` defaults to ``crossover_frame`` of these results (and
    ``samples``, which pair the devices by round); each located crossover is a vertical line (gid
    ``crossover``), solid when decisive and dashed when within noise, labelled like "GPU:0 faster above n≈724
    (range 690–760), decisive" with its range shaded. Lines carry gid ``median:<device>`` (top) and
    ``speedup:<device>`` (bottom), so tests can find them; the fit ``a + b·n^p`` of each device with three ok
    sizes or more (``advise.fitted_curves``, over the sizes it measured) is a thin line with gid ``fit:<device>``.
    """
    use_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    op, dtype, mode = key
    group = results[(results["op"] == op) & (results["dtype"] == dtype) & (results["mode"] == mode)]
    series = series_cells(group)
    cells = ok_cells(group)
    devices = device_order(series["device"].astype(str))
    colours = colours or device_colours(devices)
    if crossovers is None:
        crossovers = crossover_frame(group, samples)
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
            quality_markers(top, x, y, part, seen)
    _fit_lines(top, group, key, samples, colours)

    n_lines = 0
    several_pairs = len(devices) > 2
    for r in records(crossovers):
        size = float(r["crossover_size"])
        if not math.isfinite(size):
            continue
        above, below = str(r["faster_above"]), str(r["faster_below"])
        low, high = float(r["low"]), float(r["high"])
        decisive = bool(r["decisive"])
        label = crossover_sentence(above, size, low, high, than=below if several_pairs else "", decisive=decisive,
                                   axis=axis_name(op))
        colour = colours.get(above, "0.3")
        for ax in (top, bottom):
            ax.axvline(size, color=colour, ls="-" if decisive else "--", lw=1.3, gid="crossover",
                       label=label if ax is top else "_nolegend_")
            if math.isfinite(low) and math.isfinite(high) and high > low:
                ax.axvspan(low, high, color=colour, alpha=0.08, lw=0, gid="crossover-range")
        n_lines += 1

    top.set_ylabel("median time per call (s)")
    time_axis(top, np.concatenate([series["median_s"].to_numpy(dtype=float), np.array([np.nan])]))
    if len(devices) < 2:
        only = devices[0] if devices else "no device"
        chart_note(top, f"only {only} measured: no accelerator measured, so no crossover to show", (0.5, 0.92))
    elif n_lines == 0:
        note = "no crossover in the measured range" if len(crossovers) else "no crossover"
        top.text(0.02, 0.02, note, transform=top.transAxes, fontsize=8, color="0.35", gid="note")
    device_legend(top, devices, loc="upper left")
    top.grid(True, which="major", alpha=0.3)

    others = [d for d in devices if d != REFERENCE_DEVICE]
    cpu = cells[cells["device"] == REFERENCE_DEVICE].set_index("size")["median_s"]
    if not others or cpu.empty:
        chart_note(
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
        bottom.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: format_ratio(v)))
        bottom.yaxis.set_minor_formatter(FuncFormatter(lambda _v, _pos: ""))
    bottom.set_ylabel(f"speed-up over {REFERENCE_DEVICE} (×)")
    bottom.set_xlabel(axis_label(op))
    bottom.grid(True, which="major", alpha=0.3)
    size_axis(bottom, [int(s) for s in series["size"]])
    chart_title(
        fig,
        f"{op} · {dtype} · {mode}: median time per call (band: IQR)",
        machine,
        bool(series["is_unsynchronized"].any()),
    )
    return fig
