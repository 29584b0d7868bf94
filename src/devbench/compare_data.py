"""The data of a machine-vs-machine comparison: plain frozen types that ``compare.compare_runs`` fills in.

Renderers (``compare_render``, ``plots.compare``, an HTML page) read these and compute nothing new. Times are
seconds per call; every ratio is NEW/BASE of a cell's typical per-call time, the geometric mean of its round
medians (> 1: the new side is slower). Import them from :mod:`devbench.compare`, which re-exports every name
here.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from devbench.formatting import json_safe
from devbench.machine import FingerprintDiff

FloatArray = npt.NDArray[np.float64]

Verdict = Literal["slower", "faster", "same", "uncertain"]
VERDICTS: tuple[Verdict, ...] = ("slower", "faster", "uncertain", "same")
"""All verdicts, most alarming first (the order of counts in summaries)."""

MATCH_KEY = ("op", "size", "dtype", "device", "mode")
"""Columns that match a cell of one run to a cell of the other (``sync`` is compared, not matched on)."""

GateMethod = Literal["holm", "bh"]
GATE_METHODS: tuple[GateMethod, ...] = ("holm", "bh")
"""``--gate-method``: Holm (family-wise error rate, the default) or Benjamini–Hochberg (false discovery rate)."""

CSV_COLUMNS = (
    "op", "size", "dtype", "device", "mode", "base_sync", "new_sync", "n_base", "n_new",
    "n_rounds_base", "n_rounds_new", "base_median_s", "new_median_s", "ratio", "ci_low", "ci_high",
    "p_value", "p_adjusted", "verdict", "gate_fails", "notes",
)
"""Columns of ``render_comparison(..., "csv")``, one row per compared cell (status ok in both runs).

Times in seconds; ``n_base``/``n_new`` samples and ``n_rounds_*`` rounds (visits) with samples, summed over
the runs of a side; ``base_median_s``/``new_median_s`` a side's typical per-call time: the geometric mean of
the cell's round medians (with several runs, of each run's geometric mean; the stored ``median_s`` when a
side has no raw samples); ``ratio`` = new_median_s / base_median_s (>1 = slower), the estimate of the
interval [``ci_low``, ``ci_high``]: Welch's t interval of the log ratio with the round (one run per side) or
the run (several) as the unit; ``p_value`` is Welch's one-sided p of "slower by more than the threshold"
(``LogInterval.p_above(1 + t)``), ``p_adjusted`` that p after the gate's correction (Holm or BH over every
cell with a p); ``gate_fails`` whether ``--fail-on-regression`` fails on this cell; empty fields mean "not
available" (no raw samples, too few rounds); ``notes`` joins the cell's notes with "; "."""

CROSSOVER_COLUMNS = (
    "op", "dtype", "mode", "device_a", "device_b", "crossover_size", "low", "high",
    "faster_below", "faster_above", "note",
)
"""Columns expected of each crossover frame (``crossover.crossover_frame``) given to ``compare_runs``; any
further columns (``decisive``, ...) are ignored here."""


# --------------------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class CellKey:
    """What matches a cell across runs. ``size`` is the op's size parameter (e.g. n of an n×n matmul)."""

    op: str
    size: int
    dtype: str
    device: str
    mode: str

    @property
    def sort_key(self) -> tuple[str, str, str, str, int]:
        """Reading order: grouped by op, dtype, device, mode; sizes ascending within a group."""
        return (self.op, self.dtype, self.device, self.mode, self.size)

    def label(self) -> str:
        return f"{self.op}[{self.size}, {self.dtype}, {self.device}, {self.mode}]"

    def as_dict(self) -> dict[str, Any]:
        return {"op": self.op, "size": self.size, "dtype": self.dtype, "device": self.device,
                "mode": self.mode}


@dataclass(frozen=True)
class CellComparison:
    """One cell measured ``ok`` on both sides. Times in seconds; ratios NEW/BASE (>1 means NEW is slower).

    ``ci_low``/``ci_high`` (the ``confidence`` Welch t interval of ``ratio``; see ``CSV_COLUMNS``),
    ``p_value`` (one-sided p of "slower by more than the threshold") and ``p_adjusted`` (after the gate's
    multiple-comparison correction) are NaN where they could not be computed (see ``notes``). ``verdict``
    is a function of the interval alone (``stats.verdict_from_interval``). ``gate_fails``: the cell is
    ``slower`` and its adjusted p is at most alpha, so ``--fail-on-regression`` fails on it.
    """

    key: CellKey
    base_sync: str
    new_sync: str
    n_base: int
    n_new: int
    base_median_s: float
    new_median_s: float
    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    verdict: Verdict
    notes: tuple[str, ...] = ()
    n_rounds_base: int = 0
    n_rounds_new: int = 0
    p_adjusted: float = math.nan
    gate_fails: bool = False

    @property
    def change(self) -> float:
        """Relative change of the median per-call time: +0.2 is 20 % slower, -0.2 is 20 % faster."""
        return self.ratio - 1.0

    def as_dict(self) -> dict[str, Any]:
        """Flat, in ``CSV_COLUMNS`` order, with ``notes`` as a list."""
        return {
            **self.key.as_dict(),
            "base_sync": self.base_sync, "new_sync": self.new_sync,
            "n_base": self.n_base, "n_new": self.n_new,
            "n_rounds_base": self.n_rounds_base, "n_rounds_new": self.n_rounds_new,
            "base_median_s": self.base_median_s, "new_median_s": self.new_median_s,
            "ratio": self.ratio, "ci_low": self.ci_low, "ci_high": self.ci_high,
            "p_value": self.p_value, "p_adjusted": self.p_adjusted, "verdict": self.verdict,
            "gate_fails": self.gate_fails, "notes": list(self.notes),
        }


@dataclass(frozen=True)
class GeoMean:
    """Geometric mean of the per-cell ratios over ``n_cells`` compared cells.

    ``op``/``dtype`` are None for the overall mean. With one run per side the interval is
    ``resampling.joint_geomean_ratio``: each replicate draws one set of rounds per run and applies it to
    every cell of the run, since interleaved cells share their run's drift (independent per-cell bootstraps
    would shrink like 1/sqrt(cells)); with several runs per side a t interval with the run as the unit
    (``compare``'s docstring). It is centred on ``ratio`` and NaN when a cell in the group has no raw
    samples or a side has too few rounds or runs (``note`` says so) or the group is empty.
    """

    op: str | None
    dtype: str | None
    n_cells: int
    ratio: float
    ci_low: float
    ci_high: float
    note: str = ""

    @property
    def label(self) -> str:
        return "overall" if self.op is None else f"{self.op} {self.dtype}"

    def as_dict(self) -> dict[str, Any]:
        return {"op": self.op, "dtype": self.dtype, "n_cells": self.n_cells, "ratio": self.ratio,
                "ci_low": self.ci_low, "ci_high": self.ci_high, "note": self.note}


@dataclass(frozen=True)
class LoneCell:
    """A cell present in one run only (any status)."""

    key: CellKey
    sync: str
    status: str
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {**self.key.as_dict(), "sync": self.sync, "status": self.status, "reason": self.reason}


@dataclass(frozen=True)
class StatusPair:
    """A cell present in both runs but not ``ok`` in both, so it has no timing comparison."""

    key: CellKey
    base_sync: str
    new_sync: str
    base_status: str
    new_status: str
    base_reason: str = ""
    new_reason: str = ""

    @property
    def changed(self) -> bool:
        """True when the status differs (e.g. ok → oom), which is worth a look; False for e.g. both
        ``unsupported``."""
        return self.base_status != self.new_status

    def as_dict(self) -> dict[str, Any]:
        return {**self.key.as_dict(), "base_sync": self.base_sync, "new_sync": self.new_sync,
                "base_status": self.base_status, "new_status": self.new_status,
                "base_reason": self.base_reason, "new_reason": self.new_reason}


@dataclass(frozen=True)
class CrossoverPair:
    """One crossover of an (op, dtype, mode, device pair) in both runs. Sizes in the op's size unit (e.g.
    matrix side n); NaN where a run has no crossover for the pair (its ``note`` says why) or lacks it."""

    op: str
    dtype: str
    mode: str
    device_a: str
    device_b: str
    crossing: int
    """Row number within the device pair, in order of size (0 first; most pairs cross at most once).
    Crossings of the two runs share a row when their brackets overlap (``compare.crossover_side_by_side``),
    not because they have the same rank, so this is a position, not "the k-th crossing of each run"."""
    base_size: float
    new_size: float
    base_low: float
    base_high: float
    new_low: float
    new_high: float
    base_faster_below: str
    base_faster_above: str
    new_faster_below: str
    new_faster_above: str
    base_note: str
    new_note: str

    @property
    def moved(self) -> float:
        """new crossover size / base crossover size (0.5: the crossover moved to half the size); NaN when
        either is missing."""
        if math.isfinite(self.base_size) and math.isfinite(self.new_size) and self.base_size > 0:
            return self.new_size / self.base_size
        return math.nan

    def as_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["moved"] = self.moved
        return out


@dataclass(frozen=True)
class CompareSettings:
    """The parameters a comparison was made with (see ``compare_runs``)."""

    threshold: float = 0.05
    alpha: float = 0.05
    confidence: float = 0.95
    n_boot: int = 2000
    seed: int = 0
    gate_method: GateMethod = "holm"
    baseline_window: int = 0
    """K of ``--baseline-window`` (BASE is the last K runs; one NEW run is judged by a prediction interval),
    0 without it."""

    def as_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "alpha": self.alpha, "confidence": self.confidence,
                "n_boot": self.n_boot, "seed": self.seed, "gate_method": self.gate_method,
                "baseline_window": self.baseline_window}


@dataclass(frozen=True)
class Comparison:
    """The full result of ``compare_runs``: immutable, renderable, JSON-able through ``to_dict``.

    ``regressions`` are the cells the gate fails on; ``slower_not_significant`` the ``slower`` cells it does
    not (significant alone, not after the correction); ``n_judged`` the family size of the correction."""

    base_label: str
    new_label: str
    settings: CompareSettings
    fingerprint: tuple[FingerprintDiff, ...]
    cells: tuple[CellComparison, ...]
    geomeans: tuple[GeoMean, ...]
    """Per (op, dtype), in reading order."""
    overall: GeoMean
    not_compared: tuple[StatusPair, ...] = ()
    only_in_base: tuple[LoneCell, ...] = ()
    only_in_new: tuple[LoneCell, ...] = ()
    crossovers: tuple[CrossoverPair, ...] | None = None
    """Crossover sizes side by side (of each side's first run); None when no crossover frames were given."""
    base_runs: tuple[str, ...] = ()
    """The label of every run on the base side (``base_label`` joins them)."""
    new_runs: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    """Lines the reader must see, e.g. runs of one side measured on different machines."""

    def counts(self) -> dict[Verdict, int]:
        """Number of cells per verdict (every verdict present, zeros included)."""
        counter = Counter(cell.verdict for cell in self.cells)
        return {v: counter.get(v, 0) for v in VERDICTS}

    @property
    def regressions(self) -> tuple[CellComparison, ...]:
        """The cells ``--fail-on-regression`` fails on: ``slower`` and significant after the correction."""
        return tuple(cell for cell in self.cells if cell.gate_fails)

    @property
    def slower_not_significant(self) -> tuple[CellComparison, ...]:
        """Cells ``slower`` by their own interval but not significant once corrected for the number of
        cells judged: worth a look, not a gate failure."""
        return tuple(cell for cell in self.cells if cell.verdict == "slower" and not cell.gate_fails)

    @property
    def n_judged(self) -> int:
        """Cells the gate judged: those with a p-value (an interval); its family size."""
        return sum(math.isfinite(cell.p_value) for cell in self.cells)

    def to_frame(self) -> pd.DataFrame:
        """One row per compared cell, columns ``CSV_COLUMNS`` (notes joined with '; ')."""
        rows = [{**c.as_dict(), "notes": "; ".join(c.notes)} for c in self.cells]
        frame: pd.DataFrame = pd.DataFrame(rows, columns=list(CSV_COLUMNS))
        return frame

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-safe: NaN and infinities become None."""
        data: dict[str, Any] = {
            "base": self.base_label,
            "new": self.new_label,
            "base_runs": list(self.base_runs),
            "new_runs": list(self.new_runs),
            "warnings": list(self.warnings),
            "settings": self.settings.as_dict(),
            "summary": {**self.counts(), "cells": len(self.cells), "regression": has_regression(self),
                        "gate_judged": self.n_judged, "gate_fails": len(self.regressions)},
            "fingerprint_diff": [d._asdict() for d in self.fingerprint],
            "cells": [c.as_dict() for c in self.cells],
            "geomeans": [g.as_dict() for g in self.geomeans],
            "overall": self.overall.as_dict(),
            "not_compared": [p.as_dict() for p in self.not_compared],
            "only_in_base": [c.as_dict() for c in self.only_in_base],
            "only_in_new": [c.as_dict() for c in self.only_in_new],
            "crossovers": None if self.crossovers is None else [c.as_dict() for c in self.crossovers],
        }
        return json_safe(data)  # type: ignore[no-any-return]


def has_regression(comparison: Comparison) -> bool:
    """True when the gate fails (``--fail-on-regression``): some cell is ``slower`` and its p for "slower by
    more than the threshold", corrected over every judged cell (Holm or BH), is at most alpha."""
    return any(cell.gate_fails for cell in comparison.cells)
