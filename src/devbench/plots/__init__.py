"""Charts of a run, as PNG files: crossover, throughput, overview heatmap, cold vs warm; and the compare chart.

One module per chart (``crossover``, ``throughput``, ``overview``, ``cold_warm``, ``compare``, ``winners``),
what they share in ``common``; this module lists a run's charts (``figures``) and writes them (``write_charts``).

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

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from devbench.analysis import crossover_frame, ok_cells, records, transfer_as_mode
from devbench.plots.cold_warm import cold_warm_figure
from devbench.plots.common import DPI, PLOTS_DIR, device_colours, machine_line, slug
from devbench.plots.crossover import crossover_figure
from devbench.plots.overview import overview_figure
from devbench.plots.throughput import is_memory_bound, throughput_figure
from devbench.plots.winners import map_worth_drawing, winners_figure
from devbench.store import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "DPI",
    "PLOTS_DIR",
    "cold_warm_figure",
    "crossover_figure",
    "figures",
    "is_memory_bound",
    "machine_line",
    "overview_figure",
    "throughput_figure",
    "winners_figure",
    "write_charts",
]

# ---------------------------------------------------------------------------------------------------------
# Writing


def figures(run: Run) -> Iterator[tuple[str, Figure]]:
    """(file stem, Figure) for every chart the run supports, built one at a time."""
    results = transfer_as_mode(run.results)  # transfer timings get charts of their own (mode eager+transfer)
    machine = machine_line(run.meta)
    if results.empty or ok_cells(results).empty:
        return
    colours = device_colours(list(results["device"].astype(str)))
    crossovers = crossover_frame(results, run.samples)
    keys = sorted({(str(r["op"]), str(r["dtype"]), str(r["mode"])) for r in records(ok_cells(results))})
    fuzzed = map_worth_drawing(results)
    sizes_of = ok_cells(results).groupby("op")["size"].nunique()
    for key in keys:
        if fuzzed and sizes_of.get(key[0], 0) < 2:  # a fuzzed shape alone: a point on the map, not a curve
            continue
        yield (
            slug("crossover", *key),
            crossover_figure(results, key, machine=machine, crossovers=crossovers, colours=colours,
                             samples=run.samples),
        )
        throughput = throughput_figure(results, key, machine=machine, colours=colours,
                                       calibration=run.meta.get("calibration"))
        if throughput is not None:
            yield slug("throughput", *key), throughput
    if fuzzed:
        yield "winners", winners_figure(results, machine=machine, colours=colours)
    yield "overview", overview_figure(results, machine=machine)
    cold = cold_warm_figure(results, machine=machine, colours=colours)
    if cold is not None:
        yield "cold-vs-warm", cold


def write_charts(run: Run, out_dir: Path) -> list[Path]:
    """Write every chart of ``run`` as PNG (``DPI`` dots per inch) into ``out_dir``; return the paths.

    Names are stable, so a later call (after refining, say) replaces the same files:
    ``crossover-<op>-<dtype>-<mode>.png``, ``throughput-…``, ``winners.png`` (a map of where each device
    wins, for shapes varying in two or more dimensions), ``overview.png``, ``cold-vs-warm.png``.
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
