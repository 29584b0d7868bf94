"""Plotly figures of a run and of a comparison: the interactive twins of the PNG charts in ``devbench.plots``.

Same rules as the PNGs: only ``ok`` cells are drawn, one colour per device across a page (CPU:0 first), sizes
are the matrix side n, times seconds per call. Each device's traces share a ``legendgroup``, so a click on
its legend entry hides its median line, its band, its speed-up and its ceiling together. Every trace carries
``meta = {"role": ..., "device": ...}`` so that tests and readers of the page can tell the traces apart.

Hover labels hold size, device, median, 95 % CI of the median, IQR, samples, rounds (when the results have
an ``n_rounds`` column), status and flags (noisy, unsynchronized, and throttled when the results have a
``throttled`` column). Strings from the results are escaped with ``page.plotly_text``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from devbench.analysis import (
    REFERENCE_DEVICE,
    contender_name,
    crossover_sentence,
    device_order,
    ok_cells,
    records,
)
from devbench.formatting import format_time
from devbench.html_report.page import plotly_text as pt
from devbench.plots.common import series_cells
from devbench.shapes import axis_label, axis_name

if TYPE_CHECKING:
    import plotly.graph_objects as go  # type: ignore[import-untyped]

    from devbench.compare import CellComparison

NOISY_COLOUR = "#C00000"
LABEL_LINE_PX = 15
"""Height of one crossover label line above the crossover chart, in CSS pixels."""

FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12}


def flags(r: Mapping[str, Any]) -> list[str]:
    """The reasons to doubt one ok cell, in words (``r`` is an ``ok_cells`` row)."""
    out = []
    if r.get("is_noisy"):
        out.append("noisy")
    if r.get("is_unsynchronized"):
        out.append("unsynchronized")
    throttled = r.get("throttled")
    if isinstance(throttled, (bool, np.bool_)) and bool(throttled):
        out.append("throttled")
    above = r.get("above_peak")
    if isinstance(above, (bool, np.bool_)) and bool(above):
        out.append("above the calibrated ceiling")
    return out


def _interval(low: Any, high: Any) -> str:
    lo, hi = float(low), float(high)
    return f"{format_time(lo)} – {format_time(hi)}" if math.isfinite(lo) and math.isfinite(hi) else "–"


def point_label(r: Mapping[str, Any], *, rate: str = "") -> str:
    """The hover label of one measured cell (Plotly's HTML subset; result strings escaped)."""
    lines = [
        f"<b>{pt(r['device'])}</b> · n={int(r['size'])} · {pt(r['op'])} {pt(r['dtype'])} {pt(r['mode'])}",
        f"median {format_time(float(r['median_s']))} per call",
        f"95 % CI {_interval(r.get('ci_low_s', math.nan), r.get('ci_high_s', math.nan))}",
        f"IQR {_interval(r.get('q1_s', math.nan), r.get('q3_s', math.nan))}",
    ]
    if rate:
        lines.append(rate)
    counts = f"samples {int(r['n_samples'])}" if pd.notna(r.get("n_samples")) else "samples –"
    rounds = r.get("n_rounds")
    if rounds is not None and pd.notna(rounds):
        counts += f" · rounds {int(rounds)}"
    lines.append(counts)
    lines.append(f"status {pt(r['status'])} · sync {pt(r['sync'])}")
    lines.append("flags: " + (", ".join(flags(r)) or "none"))
    return "<br>".join(lines)


def _markers(part: pd.DataFrame, colour: str) -> dict[str, Any]:
    """Per point: a red ring on noisy cells, an ✕ on unsynchronized ones (as in the PNGs)."""
    noisy = part["is_noisy"].to_numpy(dtype=bool)
    unsync = part["is_unsynchronized"].to_numpy(dtype=bool)
    return {
        "size": 7,
        "color": colour,
        "symbol": ["x" if u else "circle" for u in unsync],
        "line": {"color": [NOISY_COLOUR if n else colour for n in noisy], "width": [2.5 if n else 0 for n in noisy]},
    }


def _base_layout(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title, "font": {"size": 14}},
        "font": FONT,
        "hovermode": "closest",
        "legend": {"groupclick": "togglegroup"},
        "margin": {"l": 70, "r": 20, "t": 60, "b": 50},
        "template": "plotly_white",
        **extra,
    }


def _ticks(sizes: Sequence[int]) -> dict[str, Any]:
    """Label the measured sizes on the log axis when there are few, so a reader finds each cell."""
    unique = sorted(set(sizes))
    if 0 < len(unique) <= 16:
        return {"tickvals": unique, "ticktext": [str(s) for s in unique]}
    return {}


def _size_range(sizes: Sequence[int]) -> list[float] | None:
    """The measured sizes plus 4 % of their log span on each side, in log10 units (a log axis' range)."""
    positive = [math.log10(s) for s in sizes if s > 0]
    if not positive:
        return None
    lo, hi = min(positive), max(positive)
    pad = 0.04 * (hi - lo) if hi > lo else 0.1
    return [lo - pad, hi + pad]


def number_text(value: float) -> str:
    """Three significant digits without an exponent from 100 on: '1000', '20.5', '0.5'."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def ratio_text(ratio: float) -> str:
    """'12.3×', '1/4.2×' below 1 (how the overview names a slow-down)."""
    if not math.isfinite(ratio) or ratio <= 0:
        return "–"
    return f"{number_text(ratio)}×" if ratio >= 1 else f"1/{number_text(1 / ratio)}×"


def log_ticks(values: Sequence[float], label: Callable[[float], str], *, with_one: bool = False) -> dict[str, Any]:
    """Ticks for a log axis: the powers of ten spanning ``values`` named by ``label`` ('1 ms', '10×'), with 2
    and 5 between them when the data span at most two decades. Data within one decade get that decade as the
    axis range, so at least two ticks show. ``with_one`` keeps 1 in the span (the parity line of a speed-up
    axis). Empty (Plotly's own ticks) when no value is positive."""
    finite = [float(v) for v in values if math.isfinite(float(v)) and float(v) > 0] + ([1.0] if with_one else [])
    if not finite:
        return {}
    lo, hi = math.floor(math.log10(min(finite))), math.ceil(math.log10(max(finite)))
    hi = max(hi, lo + 1)
    steps = (1.0, 2.0, 5.0) if hi - lo <= 2 else (1.0,)
    ticks = [m * 10.0**k for k in range(lo, hi + 1) for m in steps if m * 10.0**k <= 10.0**hi]
    out: dict[str, Any] = {"tickvals": ticks, "ticktext": [label(t) for t in ticks]}
    if hi - lo == 1:
        out["range"] = [lo, hi]  # log axes take their range in log10 units
    return out


def crossover_chart(
    group: pd.DataFrame, key: tuple[str, str, str], crossovers: pd.DataFrame, colours: Mapping[str, str]
) -> go.Figure:
    """Median per call against n (log–log) per device with its 95 % CI band (IQR where no CI), each located
    crossover as a line with its range shaded (solid when decisive, dashed and labelled "within noise"
    otherwise); below, each device's speed-up over CPU:0.

    ``group`` holds the results of one (op, dtype, mode) ``key``; ``crossovers`` that key's rows of
    ``analysis.crossover_frame``. Traces per (device, sync): ``band`` (when any interval is finite) then
    ``median``; then ``speedup`` per non-reference device sharing sizes with CPU:0.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots  # type: ignore[import-untyped]

    series = series_cells(group)
    cells = ok_cells(group)
    devices = device_order(series["device"].astype(str))
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.06)
    syncs = series.groupby("device")["sync"].nunique()
    for device in devices:
        for sync, unsorted in series[series["device"] == device].groupby("sync", sort=True):
            part = unsorted.sort_values("size")
            name = pt(device) if syncs[device] == 1 else f"{pt(device)} (sync={pt(sync)})"
            colour = colours[device]
            low, high, band_kind = part["ci_low_s"], part["ci_high_s"], "95 % CI"
            if not np.isfinite(low.to_numpy(dtype=float)).any():
                low, high, band_kind = part["q1_s"], part["q3_s"], "IQR"
            finite = np.isfinite(low.to_numpy(dtype=float)) & np.isfinite(high.to_numpy(dtype=float))
            if finite.any():
                xs = part["size"].to_numpy()[finite]
                fig.add_trace(
                    go.Scatter(
                        x=[*xs, *xs[::-1]],
                        y=[*high.to_numpy(dtype=float)[finite], *low.to_numpy(dtype=float)[finite][::-1]],
                        fill="toself", fillcolor=colour, opacity=0.18, line={"width": 0}, mode="lines",
                        hoverinfo="skip", showlegend=False, legendgroup=device, name=f"{name} {band_kind}",
                        meta={"role": "band", "device": device, "sync": str(sync)},
                    ),
                    row=1, col=1,
                )
            unsync = bool(part["is_unsynchronized"].all())
            fig.add_trace(
                go.Scatter(
                    x=part["size"].tolist(), y=part["median_s"].tolist(), mode="lines+markers", name=name,
                    legendgroup=device, line={"color": colour, "dash": "dash" if unsync else "solid", "width": 2},
                    marker=_markers(part, colour), hovertext=[point_label(r) for r in records(part)],
                    hoverinfo="text", meta={"role": "median", "device": device, "sync": str(sync)},
                ),
                row=1, col=1,
            )

    cpu = cells[cells["device"] == REFERENCE_DEVICE].set_index("size")["median_s"]
    speedups: list[float] = []
    for device in devices:
        if device == REFERENCE_DEVICE or cpu.empty:
            continue
        dev = cells[cells["device"] == device].set_index("size")["median_s"]
        shared = sorted(set(cpu.index) & set(dev.index))
        if not shared:
            continue
        speedup = cpu.loc[shared].to_numpy(dtype=float) / dev.loc[shared].to_numpy(dtype=float)
        speedups.extend(speedup.tolist())
        fig.add_trace(
            go.Scatter(
                x=shared, y=speedup.tolist(), mode="lines+markers", name=f"{pt(device)} speed-up",
                legendgroup=device, showlegend=False, line={"color": colours[device], "width": 1.5},
                marker={"size": 6, "color": colours[device]},
                hovertext=[f"<b>{pt(device)}</b> · n={n}<br>{s:.3g}× the speed of {REFERENCE_DEVICE}"
                           for n, s in zip(shared, speedup, strict=True)],
                hoverinfo="text", meta={"role": "speedup", "device": device},
            ),
            row=2, col=1,
        )
    if len(devices) > 1 and not cpu.empty:
        fig.add_hline(y=1.0, line={"color": "#555", "width": 1}, row=2, col=1)

    several_pairs = len(devices) > 2
    labels = 0
    for r in records(crossovers):
        size = float(r["crossover_size"])
        if not math.isfinite(size):
            continue
        above, below = str(r["faster_above"]), str(r["faster_below"])
        low, high = float(r["low"]), float(r["high"])
        colour = colours.get(above, "#555")
        decisive = bool(r.get("decisive"))
        text = crossover_sentence(above, size, low, high, than=below if several_pairs else "", decisive=decisive,
                                  axis=axis_name(key[0]))
        if math.isfinite(low) and math.isfinite(high) and high > low:
            fig.add_vrect(x0=low, x1=high, fillcolor=colour, opacity=0.1, line_width=0, layer="below")
        fig.add_vline(x=size, line={"color": colour, "dash": "solid" if decisive else "dash", "width": 1.5})
        # Stacked above the plot, one line per crossing, so that close crossings do not overwrite each other.
        fig.add_annotation(x=math.log10(size), y=1.0, xref="x", yref="paper", text=pt(text), showarrow=False,
                           xanchor="left", yanchor="bottom", yshift=LABEL_LINE_PX * labels,
                           font={"size": 11, "color": colour})
        labels += 1

    op, dtype, mode = key
    sizes = [int(s) for s in series["size"]]
    layout = _base_layout(f"{pt(op)} · {pt(dtype)} · {pt(mode)}: median time per call",
                          height=560 + LABEL_LINE_PX * labels)
    layout["margin"]["t"] += LABEL_LINE_PX * labels
    fig.update_layout(**layout)
    # An explicit range: autorange would stretch the axis to make room for the crossover labels.
    fig.update_xaxes(type="log", range=_size_range(sizes), **_ticks(sizes))
    fig.update_xaxes(title_text=pt(axis_label(op)), row=2, col=1)
    times = [*series["median_s"], *series["ci_low_s"], *series["ci_high_s"]]
    fig.update_yaxes(type="log", title_text="median time per call", row=1, col=1, **log_ticks(times, format_time))
    fig.update_yaxes(type="log", title_text=f"speed-up over {REFERENCE_DEVICE}", row=2, col=1,
                     **log_ticks(speedups, ratio_text, with_one=True))
    return fig


def _rate_text(r: Mapping[str, Any], unit: str) -> str:
    """A point's rate with its pct_of_peak (against the calibrated ceiling) and pct_of_best (where known)."""
    text = f"{r['rate']:.3g} {unit}"
    peak, best = float(r.get("pct_of_peak", math.nan)), float(r.get("pct_of_best", math.nan))
    if math.isfinite(peak):
        text += f" · {peak:.3g} % of the calibrated peak"
    if math.isfinite(best):
        text += f" · {best:.3g} % of the run's best"
    return text


def throughput_chart(
    group: pd.DataFrame,
    key: tuple[str, str, str],
    colours: Mapping[str, str],
    *,
    memory_bound: bool,
    calibration: Mapping[str, Any] | None,
) -> go.Figure | None:
    """GFLOP/s (GB/s when ``memory_bound``) from the median time, per device, with each device's calibrated
    ceiling as a dotted line (role ``ceiling``, drawn once per distinct value: logical CPUs share the host's),
    the ceiling pct_of_peak is measured against. Points above it are ringed (role ``above_peak``, named with
    :data:`devbench.ceilings.ABOVE_PEAK_NOTE`), never clipped. Hover labels give pct_of_peak and, where the
    results have it, pct_of_best. None when the results have neither FLOP nor byte counts (a bare table from
    another tool)."""
    import plotly.graph_objects as go

    from devbench.ceilings import ABOVE_PEAK_NOTE, calibrated, with_pct_columns

    series = series_cells(group)
    work, unit = ("bytes", "GB/s") if memory_bound else ("flops", "GFLOP/s")
    rate = pd.to_numeric(series[work], errors="coerce") / series["median_s"] / 1e9
    if not np.isfinite(rate.to_numpy(dtype=float)).any():
        return None
    # pct_of_peak and above_peak need only the row and the calibration; pct_of_best (the whole run's) is the table's
    scored = with_pct_columns(series, calibration)
    series = series.assign(rate=rate, pct_of_peak=scored["pct_of_peak"], above_peak=scored["above_peak"])
    devices = device_order(series["device"].astype(str))
    syncs = series.groupby("device")["sync"].nunique()
    fig = go.Figure()
    for device in devices:
        for sync, unsorted in series[series["device"] == device].groupby("sync", sort=True):
            part = unsorted[np.isfinite(unsorted["rate"])].sort_values("size")
            if part.empty:
                continue
            name = pt(device) if syncs[device] == 1 else f"{pt(device)} (sync={pt(sync)})"
            unsync = bool(part["is_unsynchronized"].all())
            fig.add_trace(
                go.Scatter(
                    x=part["size"].tolist(), y=part["rate"].tolist(), mode="lines+markers", name=name,
                    legendgroup=device,
                    line={"color": colours[device], "dash": "dash" if unsync else "solid", "width": 2},
                    marker=_markers(part, colours[device]),
                    hovertext=[point_label(r, rate=_rate_text(r, unit)) for r in records(part)],
                    hoverinfo="text", meta={"role": "throughput", "device": device, "sync": str(sync)},
                )
            )
    above = series[series["above_peak"].to_numpy(dtype=bool) & np.isfinite(series["rate"].to_numpy(dtype=float))]
    for device in devices:
        part = above[above["device"] == device]
        if part.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=part["size"].tolist(), y=part["rate"].tolist(), mode="markers", legendgroup=device,
                name=f"{pt(device)}: {len(part)} point(s) {ABOVE_PEAK_NOTE}",
                marker={"symbol": "triangle-up-open", "size": 14, "color": colours[device], "line": {"width": 2}},
                hovertext=[point_label(r, rate=_rate_text(r, unit)) for r in records(part)], hoverinfo="text",
                meta={"role": "above_peak", "device": device},
            )
        )
    sizes = sorted({int(s) for s in series["size"]})
    drawn: set[float] = set()
    op, dtype, mode = key
    ceilings = calibrated(calibration)
    for device in devices:
        ceiling_rate = ceilings.by_bound(device, dtype, "memory" if memory_bound else "compute")
        if ceiling_rate is None or round(ceiling_rate.value / 1e9, 6) in drawn:
            continue
        limit = ceiling_rate.value / 1e9
        drawn.add(round(limit, 6))
        label = f"{pt(device)} calibrated ceiling {number_text(limit)} {unit} ({pt(ceiling_rate.source)})"
        fig.add_trace(
            go.Scatter(
                x=[sizes[0], sizes[-1]], y=[limit, limit], mode="lines", name=label, legendgroup=device,
                line={"color": colours[device], "dash": "dot", "width": 1.5}, hovertext=[label, label],
                hoverinfo="text", meta={"role": "ceiling", "device": device},
            )
        )
    kind = "bytes moved" if memory_bound else "FLOPs"
    fig.update_layout(**_base_layout(f"{pt(op)} · {pt(dtype)} · {pt(mode)}: throughput ({kind} / median time)",
                                     height=400))
    fig.update_xaxes(type="log", title_text=pt(axis_label(op)), range=_size_range(sizes), **_ticks(sizes))
    rates = [*series["rate"], *(limit for limit in drawn)]
    fig.update_yaxes(type="log", title_text=f"{unit}", **log_ticks(rates, number_text))
    return fig


def overview_chart(winners: pd.DataFrame) -> go.Figure | None:
    """Rows (op, dtype, mode), columns size: colour = speed-up of the contender (the best accelerator; on a run
    without one, the fastest other device) over CPU:0 on a log scale from 1/100× (red, CPU:0 wins) to 100×
    (blue); each cell names the fastest device and its speed-up over the slower of the two (``*`` noisy, ``!``
    unsynchronized). Blank where CPU:0 or the contender is missing. None without ok cells."""
    import plotly.graph_objects as go

    from devbench.plots.common import OVERVIEW_EXTENT

    if winners.empty:
        return None
    decades = math.log10(OVERVIEW_EXTENT)  # the same fixed colour scale as the PNG overview
    contender = contender_name(winners)
    rows = sorted({(str(r["op"]), str(r["dtype"]), str(r["mode"])) for r in records(winners)})
    sizes = sorted({int(s) for s in winners["size"]})
    z: list[list[float | None]] = [[None] * len(sizes) for _ in rows]
    text = [[""] * len(sizes) for _ in rows]
    hover = [["no ok cell"] * len(sizes) for _ in rows]
    where = {k: i for i, k in enumerate(rows)}
    col = {s: j for j, s in enumerate(sizes)}
    for r in records(winners):
        i, j = where[(str(r["op"]), str(r["dtype"]), str(r["mode"]))], col[int(r["size"])]
        speedup = float(r["contender_speedup"])
        if math.isfinite(speedup) and speedup > 0:
            z[i][j] = max(-decades, min(decades, math.log10(speedup)))
        marks = ("*" if r["noisy"] else "") + ("!" if r["unsynchronized"] else "")
        margin = float(r["margin"])
        best = f"{pt(r['device'])}{marks}"
        text[i][j] = best + (f"<br>{ratio_text(margin)}" if math.isfinite(margin) else "")
        other = str(r["contender"])
        hover[i][j] = "<br>".join(
            [
                f"<b>{pt(r['op'])} {pt(r['dtype'])} {pt(r['mode'])}</b> · n={int(r['size'])}",
                f"fastest {best}: {format_time(float(r['median_s']))} per call",
                f"{contender} {pt(other)}: {ratio_text(speedup)} vs {REFERENCE_DEVICE}" if other
                else f"no {contender} measured",
            ]
        )
    from plotly.colors import diverging  # type: ignore[import-untyped]

    ticks = [float(k) for k in range(-math.floor(decades), math.floor(decades) + 1)]
    fig = go.Figure(
        go.Heatmap(
            z=z, x=[str(s) for s in sizes], y=[pt(" ".join(k)) for k in rows], text=text, texttemplate="%{text}",
            hovertext=hover, hoverinfo="text", colorscale=diverging.RdBu, zmin=-decades,
            zmax=decades, xgap=2, ygap=2,
            colorbar={"title": {"text": f"{contender}<br>vs {REFERENCE_DEVICE}"}, "tickvals": ticks,
                      "ticktext": [ratio_text(10**t) for t in ticks]},
            meta={"role": "overview"},
        )
    )
    fig.update_layout(**_base_layout(f"Fastest device per cell (colour: {contender}'s speed-up over "
                                     f"{REFERENCE_DEVICE})",
                                     height=max(260, 120 + 42 * len(rows))))
    fig.update_xaxes(type="category", title_text="size n (matrix side)")
    fig.update_yaxes(autorange="reversed")
    return fig


def compare_chart(cells: Sequence[CellComparison], labels: Sequence[str], *, threshold: float) -> go.Figure:
    """Ratio NEW/BASE per cell with its CI as an error bar, on a log axis, one trace per verdict (so the
    legend toggles verdicts), cells top to bottom in the order given (the table's, sorted by change); the
    ``same`` band [1/(1 + threshold), 1 + threshold] shaded grey, as in the PNG compare chart."""
    import plotly.graph_objects as go

    from devbench.plots.compare import VERDICT_COLOURS
    from devbench.stats import same_band

    fig = go.Figure()
    order = {label: i for i, label in enumerate(labels)}
    for verdict, colour in VERDICT_COLOURS.items():
        chosen = [(c, lab) for c, lab in zip(cells, labels, strict=True) if c.verdict == verdict]
        if not chosen:
            continue
        ratio = [c.ratio for c, _ in chosen]
        plus = [c.ci_high - c.ratio if math.isfinite(c.ci_high) else 0.0 for c, _ in chosen]
        minus = [c.ratio - c.ci_low if math.isfinite(c.ci_low) else 0.0 for c, _ in chosen]
        fig.add_trace(
            go.Scatter(
                x=ratio, y=[order[lab] for _, lab in chosen], mode="markers", name=verdict,
                marker={"color": colour, "size": 8},
                error_x={"type": "data", "array": plus, "arrayminus": minus, "color": colour, "thickness": 1.2},
                hovertext=[f"<b>{pt(lab)}</b><br>ratio {c.ratio:.3g}"
                           + (f" (CI {c.ci_low:.3g}–{c.ci_high:.3g})" if math.isfinite(c.ci_low) else " (no CI)")
                           + f"<br>{c.verdict}" for c, lab in chosen],
                hoverinfo="text", meta={"role": "ratio", "verdict": verdict},
            )
        )
    if 0 < threshold < 1:
        low, high = same_band(threshold)
        fig.add_vrect(x0=low, x1=high, fillcolor="#888", opacity=0.15, line_width=0,
                      layer="below")
    fig.add_vline(x=1.0, line={"color": "#555", "width": 1})
    fig.update_layout(**_base_layout("Ratio NEW / BASE of the median time per call (> 1: slower)",
                                     height=max(300, 110 + 18 * len(labels))))
    fig.update_xaxes(type="log", title_text="ratio NEW / BASE (log)")
    fig.update_yaxes(tickvals=list(range(len(labels))), ticktext=[pt(lab) for lab in labels], autorange="reversed")
    return fig


def winners_map_chart(points: pd.DataFrame, colours: Mapping[str, str]) -> go.Figure:
    """The map of where each device wins (devbench.plots.winners, the PNG's table): one trace per (winner,
    clear or within noise), filled or hollow, on log axes."""
    import plotly.graph_objects as go

    from devbench.plots.winners import map_axes

    x, y, xlabel, ylabel = map_axes(points.dropna(axis=1, how="all"))
    fig = go.Figure()
    for device in device_order(points["winner"].astype(str)):
        for hollow, sub in points[points["winner"] == device].groupby("within_noise", sort=True):
            colour = colours.get(device, "#555")
            fig.add_trace(go.Scatter(
                x=sub[x].tolist(), y=sub[y].tolist(), mode="markers",
                name=f"{pt(device)} (within noise)" if hollow else f"{pt(device)} wins",
                marker={"size": 9, "color": "rgba(0,0,0,0)" if hollow else colour,
                        "line": {"color": colour, "width": 2}},
                hovertext=[f"<b>{pt(r['op'])}</b> {pt(r['shape'])} · {pt(r['dtype'])} · {pt(r['mode'])}<br>"
                           f"{pt(device)} {format_time(r['median_s'])}, {r['margin']:.3g}× ahead of "
                           f"{pt(r['runner_up'])}" for r in records(sub)],
                hoverinfo="text", meta={"role": "winner", "device": device, "within_noise": bool(hollow)},
            ))
    fig.update_layout(**_base_layout("Where each device wins (hollow: within noise)", height=520))
    fig.update_xaxes(type="log", title_text=pt(xlabel))
    fig.update_yaxes(type="log", title_text=pt(ylabel))
    return fig
