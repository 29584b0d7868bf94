"""How far devbench's numbers are from independent references: the pure half (no TensorFlow, no timing).

- :func:`summarize_fidelity` turns interleaved (devbench, bare loop) medians into a ratio per size with a
  verdict against a target (``bench/fidelity.py`` measures them; tests feed synthetic ones);
- :func:`dispatch_gap` is eager minus graph_loop per cell: the cost of Python dispatch, per device;
- :func:`transfer_overhead` is sync ``transfer`` against the resident measurement of the same cell.

Times are seconds per call; ratios are plain ratios.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from devbench.formatting import format_percent, format_time
from devbench.frameworks import is_host

if TYPE_CHECKING:
    import pandas as pd

FIDELITY_TARGETS: Mapping[int, float] = {64: 0.05}
"""Allowed |devbench / bare - 1| per size; sizes not listed allow ``DEFAULT_FIDELITY_TARGET``. At n = 64 TF's
dispatch (tens of µs) dominates and is itself noisy, hence the wider margin."""
DEFAULT_FIDELITY_TARGET = 0.03


@dataclass(frozen=True)
class FidelityPair:
    """One round of the interleaved comparison at one size: devbench's per-call median and the bare loop's."""

    size: int
    devbench_s: float
    bare_s: float

    @property
    def ratio(self) -> float:
        return self.devbench_s / self.bare_s if self.bare_s > 0 else math.nan


@dataclass(frozen=True)
class FidelityVerdict:
    size: int
    rounds: int
    ratio: float
    """Median over rounds of devbench / bare."""
    low: float
    high: float
    """Smallest and largest per-round ratio: how much the machine moved between rounds."""
    devbench_s: float
    bare_s: float
    """Median over rounds of each side's per-call median, seconds."""
    target: float

    @property
    def ok(self) -> bool:
        return math.isfinite(self.ratio) and abs(self.ratio - 1.0) <= self.target

    def line(self) -> str:
        verdict = "ok" if self.ok else "MISSED"
        return (f"n={self.size:<5} devbench/bare = {self.ratio:.4f} (rounds {self.low:.3f}..{self.high:.3f}, "
                f"{self.rounds} rounds; devbench {format_time(self.devbench_s)}, bare {format_time(self.bare_s)} "
                f"per call) target ±{format_percent(self.target)}: {verdict}")


def fidelity_target(size: int, targets: Mapping[int, float] = FIDELITY_TARGETS) -> float:
    return targets.get(size, DEFAULT_FIDELITY_TARGET)


def summarize_fidelity(pairs: Iterable[FidelityPair], targets: Mapping[int, float] = FIDELITY_TARGETS
                       ) -> list[FidelityVerdict]:
    """Per size, the median per-round ratio devbench / bare, its range, and whether it is within target.

    The median of per-round ratios (not the ratio of overall medians): each round's two sides ran next to
    each other, so a round's ratio cancels the machine's drift between rounds.
    """
    by_size: dict[int, list[FidelityPair]] = {}
    for pair in pairs:
        by_size.setdefault(pair.size, []).append(pair)
    verdicts = []
    for size in sorted(by_size):
        rounds = by_size[size]
        ratios = [p.ratio for p in rounds if math.isfinite(p.ratio)]
        verdicts.append(FidelityVerdict(
            size=size,
            rounds=len(rounds),
            ratio=statistics.median(ratios) if ratios else math.nan,
            low=min(ratios) if ratios else math.nan,
            high=max(ratios) if ratios else math.nan,
            devbench_s=statistics.median(p.devbench_s for p in rounds),
            bare_s=statistics.median(p.bare_s for p in rounds),
            target=fidelity_target(size, targets),
        ))
    return verdicts


# ---------------------------------------------------------------------------------------------------------
# What the time is made of, from a results table

_CELL = ["op", "dtype", "device", "size", "sync"]


def _ok(results: pd.DataFrame) -> pd.DataFrame:
    import numpy as np

    median = results["median_s"].astype("float64")
    keep = (results["status"].astype(str) == "ok") & np.isfinite(median) & (median > 0)
    out: pd.DataFrame = results[keep]
    return out


def dispatch_gap(results: pd.DataFrame) -> pd.DataFrame:
    """Eager minus graph_loop per (op, dtype, device, size, sync): what Python dispatch costs per call.

    Columns: ``op, dtype, device, size, sync, eager_s, graph_loop_s, gap_s`` (eager_s - graph_loop_s, seconds
    per call; negative means graph_loop was slower, e.g. an op whose graph version does more) and
    ``gap_fraction`` (gap_s / eager_s: the share of an eager call that is dispatch). Only cells measured ``ok``
    in both modes; the ``numpy:CPU`` baseline has no modes and is left out.
    """

    ok = _ok(results)
    ok = ok[ok["device"].astype(str) != "numpy:CPU"]
    columns = [*_CELL, "eager_s", "graph_loop_s", "gap_s", "gap_fraction"]
    eager = ok[ok["mode"] == "eager"][[*_CELL, "median_s"]].rename(columns={"median_s": "eager_s"})
    loop = ok[ok["mode"] == "graph_loop"][[*_CELL, "median_s"]].rename(columns={"median_s": "graph_loop_s"})
    merged = eager.merge(loop, on=_CELL, how="inner")
    merged["gap_s"] = merged["eager_s"] - merged["graph_loop_s"]
    merged["gap_fraction"] = merged["gap_s"] / merged["eager_s"]
    out: pd.DataFrame = merged[columns].sort_values(["device", "op", "dtype", "sync", "size"]).reset_index(drop=True)
    return out


def dispatch_gap_by_device(results: pd.DataFrame) -> pd.DataFrame:
    """Per device: the dispatch gap at its smallest measured size (where dispatch matters most) and the median
    over all cells. Columns ``device, cells, smallest_size, gap_at_smallest_s, median_gap_s``."""
    import pandas as pd

    gaps = dispatch_gap(results)
    rows = []
    for device, group in gaps.groupby("device", sort=True):
        smallest = group[group["size"] == group["size"].min()]
        rows.append({
            "device": device,
            "cells": len(group),
            "smallest_size": int(smallest["size"].iloc[0]),
            "gap_at_smallest_s": float(smallest["gap_s"].median()),
            "median_gap_s": float(group["gap_s"].median()),
        })
    out: pd.DataFrame = pd.DataFrame(rows, columns=["device", "cells", "smallest_size", "gap_at_smallest_s",
                                                    "median_gap_s"])
    return out


def transfer_overhead(results: pd.DataFrame) -> pd.DataFrame:
    """Sync ``transfer`` next to the resident measurement of the same (op, dtype, mode, device, size).

    Columns ``op, dtype, mode, device, size, resident_sync, resident_s, transfer_s, overhead_s`` (transfer -
    resident, seconds per call) and ``ratio`` (transfer / resident). On a CPU device (and ``numpy:CPU``) there
    is no bus to cross: the overhead is the numpy -> tensor conversion and the copy of the result to numpy.
    """

    ok = _ok(results)
    key = ["op", "dtype", "mode", "device", "size"]
    transfer = ok[ok["sync"] == "transfer"][[*key, "median_s"]].rename(columns={"median_s": "transfer_s"})
    resident = ok[(ok["sync"] != "transfer") & (ok["sync"] != "none")]
    resident = resident[[*key, "sync", "median_s"]].rename(columns={"sync": "resident_sync",
                                                                   "median_s": "resident_s"})
    resident = resident.drop_duplicates(subset=key, keep="last")
    merged = resident.merge(transfer, on=key, how="inner")
    merged["overhead_s"] = merged["transfer_s"] - merged["resident_s"]
    merged["ratio"] = merged["transfer_s"] / merged["resident_s"]
    columns = [*key, "resident_sync", "resident_s", "transfer_s", "overhead_s", "ratio"]
    out: pd.DataFrame = merged[columns].sort_values(key).reset_index(drop=True)
    return out


def host_only(devices: Sequence[str]) -> bool:
    """True when every device is the host CPU (``CPU:k``, ``jax:cpu:k``, ``torch:cpu``, ``numpy:CPU``): transfer
    crosses no bus, so the
    crossover with transfer is the resident one up to conversion costs, and a report should say so."""
    return all(is_host(str(d)) for d in devices)
