"""Machine-vs-machine comparison of runs: the statistical core of ``devbench compare``.

``compare_runs(base, new)`` matches the cells of the BASE run(s) and the NEW run(s), and for every cell
measured ``ok`` on both sides gives the ratio NEW/BASE, its interval, a verdict read off that interval, and
the gate's p-values. It adds geometric-mean ratios per (op, dtype) and overall, the differences between the
machines' fingerprints, the cells that could not be compared (and why), and optionally the crossover sizes
of both sides. Everything is plain frozen data; rendering (``compare_render.render_comparison``: table,
csv, json), the chart (``plots.compare``) and the HTML page read that data and compute nothing new. No
TensorFlow or matplotlib here.

The statistics of one cell (:func:`cell_statistics`, callable on bare rounds so ``simulation.gate`` measures
the very function compare uses):

- each side's value is the mean of the cell's log round medians (``t_intervals.mean_over_runs``): with one
  run per side the round is the unit (dof rounds - 1); with several runs per side the run is the unit (each
  run's mean of its rounds, equally weighted; dof runs - 1), so whole-run offsets enter the variance;
- the ratio NEW/BASE is the Welch difference of the two sides (``t_intervals.welch_difference``) at
  ``confidence``: its estimate is the geometric mean of the round medians of NEW over that of BASE (the
  ``ratio`` column), its interval a t interval with Welch-Satterthwaite degrees of freedom, the variance
  floored at the resolution the samples show (``t_intervals.log_resolution``) so identical quantised
  samples never claim a zero-width interval;
- no random stream: a cell's interval depends on its own samples only, never on the other cells, a seed or
  its sync variant;
- with ``baseline_window`` (``--baseline-window K``) BASE is the last K runs by start time (:func:`window_of`)
  and one NEW run is judged by :func:`window_difference`: the window's run scatter is one more level of the
  interval (rates in ``simulation.gate.window_table``).

Why not the two-level bootstrap (``resampling.ratio_of_cells``)? The gate corrects p-values for hundreds of
cells, so Holm acts at p ~ 1e-4, far in the tail; a scaled t fitted to a bootstrap half-width turns normal
there whenever the estimated drift variance is cut off at 0, and measured 10-12x the nominal rate at 1e-4.
Welch's t on the round medians keeps the variance and its degrees of freedom from the rounds and measured
within about 1.5x nominal down to 1e-4 (``simulation.gate``, printed by ``bench/statistical_rates.py``).

What a comparison is conditional on: all rounds of a run ran in one process, so an offset of the whole run
(process layout, allocator, clock state) is shared by every round and invisible to them. With one run per
side the interval is conditional on the two runs; give several runs per side (``devbench compare A1 A2 --
B1 B2``) and the run becomes the unit, so run-level offsets enter the interval.

Verdicts (threshold t, default 0.05; [lo, hi] the interval of the ratio r), from the interval alone
(``stats.verdict_from_interval``) with the log-symmetric band [1/(1 + t), 1 + t] (``stats.same_band``), so
a verdict and its printed interval never disagree and swapping base and new mirrors every verdict:

- ``slower`` when lo > 1 + t; ``faster`` when hi < 1/(1 + t);
- ``same`` when 1/(1 + t) <= lo and hi <= 1 + t (an equivalence test: the data rule out any change beyond
  t, so a real 2 % change under a 5 % threshold is ``same``);
- ``uncertain`` otherwise, and whenever there is no interval: a side without raw samples (a bare results
  table: the ratio then comes from the stored ``median_s``), fewer than ``resampling.MIN_ROUNDS_FOR_CI``
  rounds on a side with one run ("1 round: cannot see drift between rounds"), samples that show no spread
  at all, or non-positive times. The note says why.

The gate (``--fail-on-regression``): per cell p = ``interval.p_above(1 + t)``, exactly Welch's one-sided
p-value of "slower by more than t" (the ``p_value`` column), consistent with the interval by construction
(p < (1 - confidence) / 2 exactly when lo > 1 + t); the p-values of every cell that has one are corrected
together, by Holm (default: family-wise error rate) or Benjamini–Hochberg (``gate_method="bh"``: false
discovery rate), and the gate fails on a cell when its adjusted p is at most ``alpha`` (default 0.05) *and*
its verdict is ``slower``. The second condition only makes the gate stricter, and it means every cell the
gate names is ``slower`` in the table. The converse does not hold: a cell can be ``slower`` by its own 95 %
interval and still not fail the gate once the number of cells is accounted for
(``Comparison.slower_not_significant``; the table notes it). What it promises: with Holm at alpha, when no
cell is truly slower by more than t, the gate fails on at most alpha of comparisons, whatever the number
of cells and their correlation, as long as each cell's p-value holds its level; with BH the same when
nothing changed, and on average at most alpha of the cells it names are false alarms otherwise. The rates
(A/A families of 200 cells with drift per cell, per round and per run; the p-value tail; detection) are in
``simulation.gate``.

The geometric means: with one run per side, ``resampling.joint_geomean_ratio`` (one draw of rounds per run
and replicate, shared by every cell of that run, since the cells of a run were measured interleaved and
share its drift), centred on the mean of the cells' log ratios. With several runs per side the run is the
unit here too: each run's level over the group's cells (a cell missing from a run does not shift it), then
Welch over the runs with the rounds' spread as a floor. A bootstrap over 2-3 runs has 3-10 distinct
resamples and cannot give an interval; the t interval over runs is the same test the cells get, one level
up, and it sees the run offsets the cells of a run share, which a joint bootstrap over rounds cannot.

Matching: cells are matched by (op, size, dtype, device, mode). When a side holds one cell per such key (one
sync method per sweep, the usual case) a differing ``sync`` still matches and the cell carries a note;
cells whose status is not ``ok`` in any run of a side are listed in ``not_compared``; cells found on one
side only are listed in ``only_in_base`` / ``only_in_new``. With several runs per side a cell missing (or
not ok, or without samples) in some runs uses the runs it has and its note says how many. Nothing is
dropped silently.

Why this module is long (about 800 lines): matching, per-cell intervals, the gate, the geometric means and
the pairing of crossovers are the steps of one comparison and share its identity types; the data types
live in ``compare_data``, every rendering elsewhere, the statistics in ``t_intervals``, ``resampling`` and
``stats``.
"""

from __future__ import annotations

import inspect
import math
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from devbench.compare_data import (
    CROSSOVER_COLUMNS,
    CSV_COLUMNS,
    GATE_METHODS,
    MATCH_KEY,
    VERDICTS,
    CellComparison,
    CellKey,
    CompareSettings,
    Comparison,
    CrossoverPair,
    FloatArray,
    GateMethod,
    GeoMean,
    LoneCell,
    StatusPair,
    Verdict,
    has_regression,
)
from devbench.errors import UsageError
from devbench.machine import FingerprintDiff, fingerprint_diff, incomparable_changes
from devbench.resampling import LogInterval, Rounds, joint_geomean_ratio, log_round_medians
from devbench.stats import NOISY_REL_IQR, between_round_rel, gate_failures, rel_iqr, verdict_from_interval
from devbench.store import Run
from devbench.t_intervals import Mean, log_resolution, mean_over_runs, t_interval, welch_difference

__all__ = [
    "CROSSOVER_COLUMNS",
    "CSV_COLUMNS",
    "GATE_METHODS",
    "MATCH_KEY",
    "VERDICTS",
    "CellComparison",
    "CellKey",
    "CellStatistics",
    "CompareSettings",
    "Comparison",
    "CrossoverFrames",
    "CrossoverPair",
    "FingerprintDiff",
    "GateMethod",
    "GeoMean",
    "LoneCell",
    "Runs",
    "StatusPair",
    "Verdict",
    "cell_statistics",
    "compare_runs",
    "crossover_side_by_side",
    "fingerprint_diff",
    "has_regression",
    "window_difference",
    "window_of",
]

_REQUIRED_RESULT_COLUMNS = ("op", "size", "dtype", "device", "mode", "status")

CellRounds = list[FloatArray]
"""A cell's samples by round, in round order (round 1 first); rounds without samples are left out."""

Runs = Run | Sequence[Run]
"""One side of a comparison: a run, or several runs of the same thing (the run is then the unit)."""

CrossoverFrames = tuple[pd.DataFrame, pd.DataFrame] | Callable[..., pd.DataFrame]
"""Crossover frames for ``compare_runs``: (base, new) frames, or ``crossover_frame(results)`` /
``crossover_frame(results, samples)`` applied to the first run of each side."""


# --------------------------------------------------------------------------------------------------------
# The statistics of one cell


@dataclass(frozen=True)
class CellStatistics:
    """What one cell's samples give: each side's mean of log round medians and the interval of NEW/BASE;
    read at ``threshold``, the verdict and the gate's p-value (NaN, with ``interval.reason``, when there is
    no interval)."""

    base: Mean
    new: Mean
    interval: LogInterval
    threshold: float

    @property
    def verdict(self) -> Verdict:
        if self.interval.reason:
            return "uncertain"
        return verdict_from_interval(self.interval.ci_low, self.interval.ci_high, self.threshold)

    @property
    def p_value(self) -> float:
        """Welch's one-sided p of "slower by more than the threshold": the interval's ``p_above(1 + t)``."""
        return math.nan if self.interval.reason else self.interval.p_above(1.0 + self.threshold)

    def at(self, threshold: float) -> CellStatistics:
        """The same cell read at another threshold (the interval does not depend on it)."""
        return replace(self, threshold=threshold)


def cell_statistics(base: Sequence[Rounds], new: Sequence[Rounds], *, threshold: float,
                    confidence: float, window: bool = False) -> CellStatistics:
    """The per-cell statistics of ``compare`` (rules in the module docstring), on bare samples.

    ``base`` / ``new``: one entry per run of that side, each the cell's per-call seconds by round (positive).
    ``window``: BASE is a window of past runs (``--baseline-window``); with one NEW run the interval is
    :func:`window_difference` (the new run is one more draw of the run level), not Welch's.
    """
    runs = [run for side in (base, new) for run in side]
    resolution = log_resolution([r for run in runs for r in run if len(r)])
    b = mean_over_runs([log_round_medians(run) for run in base], resolution=resolution)
    n = mean_over_runs([log_round_medians(run) for run in new], resolution=resolution)
    if window and len(base) >= 2 and len(new) == 1:
        logs = [log_round_medians(run) for run in base]
        return CellStatistics(b, n, window_difference(logs, n, confidence, resolution=resolution), threshold)
    return CellStatistics(b, n, welch_difference(b, n, confidence), threshold)


def window_difference(base_runs: Sequence[FloatArray], new: Mean, confidence: float, *,
                      resolution: float = math.inf) -> LogInterval:
    """NEW - BASE when BASE is a window of past runs and NEW is one run: the run is one more level.

    ``base_runs``: per window run, the cell's log round medians; ``new``: the one new run's mean of its
    rounds. The rounds of one run cannot see that run's whole-run offset, but the window's runs show how far
    runs scatter. Two levels, estimated as in a one-way random-effects model:

    - rounds: the round variance w, pooled over the window's runs and the new run (each with its rounds - 1
      degrees of freedom), or the new run's own where that is larger (a noisier new run is never judged by
      the window's calm);
    - runs: the variance of the window's run means s^2 estimates sigma_run^2 + w/R, so
      sigma_run^2 = max(s^2 - w/R, 0), with K - 1 degrees of freedom.

    The difference has variance w/R_new + w/(R K) + (1 + 1/K) sigma_run^2: the new run's rounds, the window's
    rounds, and the run level once for the window's mean and once more for the new run (the interval for one
    more draw). Degrees of freedom by Welch-Satterthwaite over the parts. Pooling the rounds matters: with
    the new run's 4 degrees of freedom alone the far tail Holm acts in was 10x too heavy (simulated in
    ``simulation.gate.window_table``). Fewer than two window runs, or a side without a variance, is
    Welch's interval.
    """
    runs = [np.asarray(r, dtype=np.float64) for r in base_runs if len(r)]
    base = mean_over_runs(runs, resolution=resolution)
    if len(runs) < 2 or base.reason or new.reason or not math.isfinite(new.variance):
        return welch_difference(base, new, confidence)  # no run level to add, or no interval (reason says)
    k = len(runs)
    floor = resolution * resolution / 12.0 if math.isfinite(resolution) else 0.0
    new_rounds = new.variance * new.units  # the new run's round variance (its mean's variance times R)
    within = [(float(np.var(r, ddof=1)), r.size - 1.0) for r in runs if r.size >= 2]
    pooled_dof = sum(d for _, d in within) + new.dof
    pooled = max((sum(v * d for v, d in within) + new_rounds * new.dof) / pooled_dof, floor)
    per_run = float(np.mean([1.0 / r.size for r in runs]))  # mean of 1/R over the window's runs
    run_var = max(float(np.var([r.mean() for r in runs], ddof=1)) - pooled * per_run, 0.0)
    parts = [((1.0 + 1.0 / k) * run_var, k - 1.0)]
    if pooled >= new_rounds:
        parts.append((pooled * (1.0 / new.units + per_run / k), pooled_dof))
    else:
        parts += [(new.variance, new.dof), (pooled * per_run / k, pooled_dof)]
    parts = [(v, d) for v, d in parts if v > 0]
    var = sum(v for v, _ in parts)
    dof = var * var / sum(v * v / d for v, d in parts)
    return t_interval(Mean(new.value - base.value, var, dof, min(k, new.units)), confidence)


# --------------------------------------------------------------------------------------------------------
# Matching

Ident = tuple[CellKey, str]
"""A cell's identity within a run: (CellKey, sync)."""


def _str(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _check_results(run: Run, side: str) -> pd.DataFrame:
    results = run.results
    missing = [c for c in _REQUIRED_RESULT_COLUMNS if c not in results.columns]
    if missing:
        raise UsageError(f"the {side} run's results lack the columns {', '.join(missing)}; "
                         f"a devbench results table has {', '.join(_REQUIRED_RESULT_COLUMNS)} and more")
    return results


def _rows_by_identity(results: pd.DataFrame) -> dict[Ident, dict[str, Any]]:
    """(CellKey, sync) → row; a cell listed twice keeps its last row, as the store does."""
    rows: dict[Ident, dict[str, Any]] = {}
    for record in results.to_dict("records"):
        row = {str(k): v for k, v in record.items()}
        key = CellKey(op=_str(row["op"]), size=int(row["size"]), dtype=_str(row["dtype"]),
                      device=_str(row["device"]), mode=_str(row["mode"]))
        rows[(key, _str(row.get("sync", "")))] = row
    return rows


def _samples_by_identity(samples: pd.DataFrame) -> dict[Ident, CellRounds]:
    """(CellKey, sync) → the cell's finite per-call times (s) grouped by round, rounds in order.

    A samples table without ``round`` (a hand-made table) is one round per cell."""
    needed = (*MATCH_KEY, "per_call_s")
    if samples is None or samples.empty or any(c not in samples.columns for c in needed):
        return {}
    frame = samples.copy()
    if "sync" not in frame.columns:
        frame["sync"] = ""
    if "round" not in frame.columns:
        frame["round"] = 1
    order = [c for c in ("round", "sample") if c in frame.columns]
    frame = frame.sort_values(order, kind="stable")
    values = frame["per_call_s"].to_numpy(dtype=np.float64)
    # One grouping by (identity, round): a groupby per cell costs more than all the statistics.
    visits = frame.groupby([*MATCH_KEY, "sync", "round"], sort=False, dropna=False).indices
    by_ident: dict[Ident, list[tuple[Any, FloatArray]]] = defaultdict(list)
    for (op, size, dtype, device, mode, sync, round_), rows in visits.items():
        key = CellKey(op=_str(op), size=int(size), dtype=_str(dtype), device=_str(device), mode=_str(mode))
        visit = values[np.sort(rows)]
        by_ident[(key, _str(sync))].append((round_, visit[np.isfinite(visit)]))
    return {ident: [v for _, v in sorted(found, key=lambda item: item[0]) if v.size]
            for ident, found in by_ident.items()}


@dataclass(frozen=True)
class _Side:
    """The runs of one side, read once: each run's rows and samples by identity, and one row per identity
    across the runs (the first ``ok`` row, else the first row) for matching and for the status lists."""

    name: str
    labels: tuple[str, ...]
    rows: tuple[dict[Ident, dict[str, Any]], ...]
    samples: tuple[dict[Ident, CellRounds], ...]
    merged: dict[Ident, dict[str, Any]]

    @property
    def n_runs(self) -> int:
        return len(self.rows)


def _read_side(runs: Sequence[Run], name: str) -> _Side:
    rows = tuple(_rows_by_identity(_check_results(run, name)) for run in runs)
    merged: dict[Ident, dict[str, Any]] = {}
    for by_ident in rows:
        for ident, row in by_ident.items():
            if ident not in merged or (_str(merged[ident]["status"]) != "ok" and _str(row["status"]) == "ok"):
                merged[ident] = row
    many = len(runs) > 1
    labels = tuple(_label(run, f"{name} {i + 1}" if many else name) for i, run in enumerate(runs))
    return _Side(name=name, labels=labels, rows=rows, samples=tuple(_samples_by_identity(r.samples) for r in runs),
                 merged=merged)


def _pair_cells(
    base_rows: Mapping[Ident, dict[str, Any]],
    new_rows: Mapping[Ident, dict[str, Any]],
) -> tuple[list[tuple[Ident, Ident]], list[Ident], list[Ident]]:
    """Pair identities: first exactly (sync included), then leftovers by CellKey when that pairing is
    unambiguous (one leftover on each side). Returns (pairs, only_base, only_new)."""
    pairs = [(ident, ident) for ident in base_rows if ident in new_rows]
    left_base: dict[CellKey, list[Ident]] = defaultdict(list)
    left_new: dict[CellKey, list[Ident]] = defaultdict(list)
    for ident in base_rows:
        if ident not in new_rows:
            left_base[ident[0]].append(ident)
    for ident in new_rows:
        if ident not in base_rows:
            left_new[ident[0]].append(ident)
    only_base: list[Ident] = []
    only_new: list[Ident] = []
    for key, idents in left_base.items():
        others = left_new.pop(key, [])
        if len(idents) == 1 and len(others) == 1:
            pairs.append((idents[0], others[0]))
        else:
            only_base.extend(idents)
            only_new.extend(others)
    for idents in left_new.values():
        only_new.extend(idents)
    return pairs, only_base, only_new


# --------------------------------------------------------------------------------------------------------
# Comparison


def _validate(threshold: float, alpha: float, confidence: float, n_boot: int, seed: int, *,
              gate_method: str) -> None:
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and 0.0 <= threshold < 1.0):
        raise UsageError(f"--threshold {threshold!r} is out of range; allowed: a fraction 0 <= t < 1 "
                         "(0.05 means a 5 % change)")
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and 0.0 < alpha < 1.0):
        raise UsageError(f"--alpha {alpha!r} is out of range; allowed: a family-wise level 0 < alpha < 1 "
                         "(e.g. 0.05)")
    if not (isinstance(confidence, (int, float)) and math.isfinite(confidence) and 0.0 < confidence < 1.0):
        raise UsageError(f"confidence {confidence!r} is out of range; allowed: 0 < confidence < 1 "
                         "(e.g. 0.95)")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 100:
        raise UsageError(f"n_boot {n_boot!r} is too small; allowed: a whole number >= 100 (e.g. 2000)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"seed {seed!r} is not allowed; give a whole number >= 0")
    if gate_method not in GATE_METHODS:
        raise UsageError(f"--gate-method {gate_method!r} is unknown; allowed: {', '.join(GATE_METHODS)}")


def _as_runs(runs: Runs, side: str) -> tuple[Run, ...]:
    out = (runs,) if isinstance(runs, Run) else tuple(runs)
    if not out:
        raise UsageError(f"no {side} run given; allowed: one run or several runs per side")
    return out


def window_of(runs: Sequence[Run], k: int) -> tuple[Run, ...]:
    """The last ``k`` of ``runs`` by their ``started_at`` (oldest first): the baseline window.

    UsageError, one line, for a ``k`` that is not a whole number in 1..len(runs) or a run that records no
    start time (a bare results table: nothing says where it falls in the window)."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(runs):
        raise UsageError(f"--baseline-window {k!r} is out of range; allowed: 1 to the {len(runs)} base run"
                         f"{'s' if len(runs) != 1 else ''} given")
    starts: list[tuple[str, int]] = []
    for i, run in enumerate(runs):
        started = run.meta.get("started_at") if run.meta else None
        if not isinstance(started, str) or not started:
            raise UsageError(f"{_label(run, f'base run {i + 1}')} records no started_at; --baseline-window "
                             "orders runs by it, so give run directories (or dataset partitions)")
        starts.append((started, i))
    return tuple(runs[i] for _, i in sorted(starts)[-k:])


def _label(run: Run, default: str) -> str:
    if run.path is not None:
        return str(run.path)
    run_id = run.meta.get("run_id") if run.meta else None
    return str(run_id) if run_id else default


def _median_from_rows(rows: Sequence[Mapping[str, Any]]) -> float:
    """The stored medians of a cell's rows (one per run), as a geometric mean; NaN when none is positive."""
    values = []
    for row in rows:
        try:
            values.append(float(row.get("median_s", math.nan)))
        except (TypeError, ValueError):
            continue
    good = [v for v in values if math.isfinite(v) and v > 0]
    return float(np.exp(np.mean(np.log(good)))) if good else math.nan


def _seed(seed: int, label: str) -> list[int]:
    """The generator seed of one geometric-mean group: its own, so its interval ignores the other groups."""
    return [seed, zlib.crc32(label.encode())]


CellRuns = dict[int, CellRounds]
"""A cell's rounds on one side, by the index of the run they come from (runs without samples left out)."""

_CellResult = tuple[CellComparison, tuple[CellRuns, CellRuns] | None]
"""A compared cell and its rounds (base, new) when both sides have valid samples (for the geometric mean)."""


def _compare_cell(key: CellKey, idents: tuple[Ident, Ident], base: _Side, new: _Side,
                  settings: CompareSettings) -> _CellResult:
    """Compare one cell (rules in the module docstring); p_adjusted and gate_fails are filled in later."""
    base_sync, new_sync = idents[0][1], idents[1][1]
    notes: list[str] = []
    if base_sync != new_sync:
        notes.append(f"sync differs (base {base_sync or '?'}, new {new_sync or '?'})")
    if "none" in (base_sync, new_sync):
        notes.append("unsynchronized (sync=none): times measure launch, not work")

    sides: list[CellRuns] = []
    ok_rows: list[list[dict[str, Any]]] = []
    for side, ident in zip((base, new), idents, strict=True):
        ok = [j for j, rows in enumerate(side.rows) if ident in rows and _str(rows[ident]["status"]) == "ok"]
        ok_rows.append([side.rows[j][ident] for j in ok])
        runs = {j: side.samples[j][ident] for j in ok if side.samples[j].get(ident)}
        sides.append(runs)
        if 0 < len(runs) < side.n_runs:  # none at all: the "no raw samples" note says it
            notes.append(f"{side.name}: {len(runs)} of {side.n_runs} runs (the cell is missing, not ok or "
                         "without samples in the others)")
    b_runs, n_runs = sides
    b_all = [r for rounds in b_runs.values() for r in rounds]
    n_all = [r for rounds in n_runs.values() for r in rounds]
    n_base, n_new = sum(int(r.size) for r in b_all), sum(int(r.size) for r in n_all)

    def cell(base_med: float, new_med: float, *, ci_low: float = math.nan, ci_high: float = math.nan,
             p_value: float = math.nan, verdict: Verdict = "uncertain", first: str = "") -> CellComparison:
        ratio = new_med / base_med if base_med > 0 and math.isfinite(new_med) else math.nan
        return CellComparison(key=key, base_sync=base_sync, new_sync=new_sync, n_base=n_base, n_new=n_new,
                              base_median_s=base_med, new_median_s=new_med, ratio=ratio, ci_low=ci_low,
                              ci_high=ci_high, p_value=p_value, verdict=verdict,
                              notes=(first, *notes) if first else tuple(notes),
                              n_rounds_base=len(b_all), n_rounds_new=len(n_all))

    if n_base == 0 or n_new == 0:
        missing = [name for name, n in (("base", n_base), ("new", n_new)) if n == 0]
        return cell(_median_from_rows(ok_rows[0]), _median_from_rows(ok_rows[1]),
                    first=f"no raw samples ({' and '.join(missing)}): ratio of stored medians, not tested"), None
    if any(np.any(r <= 0) for r in (*b_all, *n_all)):
        return cell(_median_from_rows(ok_rows[0]), _median_from_rows(ok_rows[1]),
                    first="non-positive per-call times: not tested"), None

    noisy = [f"{name} IQR {spread:.0%}" for name, rounds in (("base", b_all), ("new", n_all))
             if (spread := rel_iqr(np.concatenate(rounds).tolist())) > NOISY_REL_IQR]
    if noisy:
        notes.append("noisy: " + ", ".join(noisy) + " of median")
    drifting = [f"{name} {spread:.0%}" for name, rounds in (("base", b_all), ("new", n_all))
                if len(rounds) > 1 and (spread := between_round_rel(rounds)) > NOISY_REL_IQR]
    if drifting:
        notes.append("drift between rounds: " + ", ".join(drifting) + " of median")

    stats = cell_statistics(list(b_runs.values()), list(n_runs.values()), threshold=settings.threshold,
                            confidence=settings.confidence, window=settings.baseline_window > 0)
    base_med, new_med = math.exp(stats.base.value), math.exp(stats.new.value)
    if stats.interval.reason:
        return cell(base_med, new_med, first=f"{stats.interval.reason}: not tested"), (b_runs, n_runs)
    return cell(base_med, new_med, ci_low=stats.interval.ci_low, ci_high=stats.interval.ci_high,
                p_value=stats.p_value, verdict=stats.verdict), (b_runs, n_runs)


def _apply_gate(cells: Sequence[CellComparison], settings: CompareSettings) -> list[CellComparison]:
    """Fill in ``p_adjusted`` and ``gate_fails``: the correction runs over every cell with a p-value."""
    p = np.array([c.p_value for c in cells], dtype=np.float64)
    if not cells:
        return []
    if settings.gate_method == "holm":
        from devbench.stats import holm_adjust as adjust
    else:
        from devbench.stats import bh_adjust as adjust
    adjusted = adjust(p)
    flagged = gate_failures(p, settings.alpha, settings.gate_method)
    out = []
    for c, p_adj, flag in zip(cells, adjusted.tolist(), flagged.tolist(), strict=True):
        fails = bool(flag) and c.verdict == "slower"
        notes = c.notes
        if c.verdict == "slower" and not fails:
            notes = (*notes, f"not significant after {settings.gate_method} over {int(np.isfinite(p).sum())} "
                     f"cells (adjusted p {p_adj:.2g} > alpha {settings.alpha:g})")
        out.append(replace(c, p_adjusted=float(p_adj), gate_fails=fails, notes=notes))
    return out


# --------------------------------------------------------------------------------------------------------
# Geometric means


def _run_levels(cells: Sequence[CellRuns], n_runs: int) -> list[FloatArray]:
    """One side of a group with several runs: per run, its series over rounds of the group's mean log round
    median, each cell centred on its own level first so a cell missing from a run (or a round) shifts
    nothing; the run's offset is estimated from the cells it has. The series feed ``mean_over_runs``."""
    logs = [{j: log_round_medians(rounds) for j, rounds in cell.items()} for cell in cells]
    levels = [float(np.mean([m.mean() for m in by_run.values()])) for by_run in logs]
    level = float(np.mean(levels))
    series: list[FloatArray] = []
    for j in range(n_runs):
        present = [(by_run[j], lvl) for by_run, lvl in zip(logs, levels, strict=True) if j in by_run]
        if not present:
            continue
        offset = float(np.mean([m.mean() - lvl for m, lvl in present]))
        width = max(m.size for m, _ in present)
        sums, counts = np.zeros(width), np.zeros(width)
        for m, _ in present:
            sums[: m.size] += m - m.mean()
            counts[: m.size] += 1
        series.append(level + offset + sums / counts)
    return series


def _geomean_interval(data: Sequence[tuple[CellRuns, CellRuns]], label: str, base: _Side, new: _Side,
                      settings: CompareSettings) -> LogInterval:
    if base.n_runs == 1 and new.n_runs == 1:
        return joint_geomean_ratio([(b[0], n[0]) for b, n in data], confidence=settings.confidence,
                                   n_boot=settings.n_boot, seed=_seed(settings.seed, "geomean " + label))
    levels = [_run_levels([cell[i] for cell in data], side.n_runs) for i, side in enumerate((base, new))]
    sides = [mean_over_runs(series) for series in levels]
    if settings.baseline_window > 0 and base.n_runs >= 2 and new.n_runs == 1:
        return window_difference(levels[0], sides[1], settings.confidence)
    return welch_difference(sides[0], sides[1], settings.confidence)


def _geomean(items: Sequence[_CellResult], op: str | None, dtype: str | None, *, base: _Side, new: _Side,
             settings: CompareSettings) -> GeoMean:
    usable = [(c, rounds) for c, rounds in items if math.isfinite(c.ratio) and c.ratio > 0]
    if not usable:
        return GeoMean(op=op, dtype=dtype, n_cells=0, ratio=math.nan, ci_low=math.nan, ci_high=math.nan,
                       note="no comparable cells")
    log_ratio = float(np.mean([math.log(c.ratio) for c, _ in usable]))
    ratio = math.exp(log_ratio)
    data = [rounds for _, rounds in usable if rounds is not None]
    missing = len(usable) - len(data)
    if missing:
        return GeoMean(op=op, dtype=dtype, n_cells=len(usable), ratio=ratio, ci_low=math.nan,
                       ci_high=math.nan, note=f"no interval: {missing} cell(s) without usable raw samples")
    interval = _geomean_interval(data, "overall" if op is None else f"{op} {dtype}", base, new, settings)
    if interval.reason:
        return GeoMean(op=op, dtype=dtype, n_cells=len(usable), ratio=ratio, ci_low=math.nan,
                       ci_high=math.nan, note=f"no interval: {interval.reason}")
    # Centred on the cells' own log ratios (the ratio shown), with the interval's half-widths.
    return GeoMean(op=op, dtype=dtype, n_cells=len(usable), ratio=ratio,
                   ci_low=math.exp(log_ratio - interval.half_low), ci_high=math.exp(log_ratio + interval.half_high))


# --------------------------------------------------------------------------------------------------------
# compare_runs


def _takes_samples(function: Callable[..., pd.DataFrame]) -> bool:
    """Whether a crossover function accepts (results, samples) rather than (results) alone."""
    try:
        inspect.signature(function).bind(pd.DataFrame(), pd.DataFrame())
    except TypeError:
        return False
    except ValueError:  # no signature to read (a builtin): call it the old way
        return False
    return True


def _crossover_frames(crossovers: CrossoverFrames, base: Run, new: Run) -> tuple[pd.DataFrame, pd.DataFrame]:
    if isinstance(crossovers, tuple):
        return crossovers
    if _takes_samples(crossovers):
        return crossovers(base.results, base.samples), crossovers(new.results, new.samples)
    return crossovers(base.results), crossovers(new.results)


def _check_schema_versions(runs: Sequence[tuple[str, Run]]) -> None:
    versions = {(side, run.meta.get("schema_version")) for side, run in runs
                if run.meta.get("schema_version") is not None}
    if len({v for _, v in versions}) > 1:
        shown = ", ".join(f"{side} {v!r}" for side, v in sorted(versions, key=str))
        raise UsageError(f"the runs have different schema versions ({shown}); compare runs written with the "
                         "same schema version")


def _machine_warnings(side: _Side, runs: Sequence[Run]) -> list[str]:
    """A line per run of a side measured on another machine than the side's first run."""
    out = []
    for label, run in zip(side.labels[1:], runs[1:], strict=True):
        diffs = incomparable_changes(runs[0].meta, run.meta)
        if diffs:
            out.append(f"{side.name} runs {side.labels[0]} and {label} are from different machines "
                       f"({', '.join(d.field for d in diffs)}): their spread includes the machines' difference")
    return out


def compare_runs(
    base: Runs,
    new: Runs,
    *,
    threshold: float = 0.05,
    alpha: float = 0.05,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    gate_method: GateMethod = "holm",
    crossovers: CrossoverFrames | None = None,
    baseline_window: int | None = None,
) -> Comparison:
    """Compare NEW against BASE cell by cell (statistics, verdicts and the gate in the module docstring).

    base, new: a run, or a sequence of runs per side (the run is then the unit of the intervals).
    threshold: smallest relative change of the per-call time that counts, a fraction 0 <= t < 1 (0.05 =
        5 %). The band [1/(1 + t), 1 + t] decides ``same``. 0 means any change counts and ``same`` needs an
        interval of exactly 1.
    alpha: the gate's level over all judged cells (family-wise with Holm, false discovery rate with BH),
        0 < alpha < 1.
    confidence: level of the intervals (per cell and geometric means), 0 < confidence < 1.
    n_boot: bootstrap replicates of the geometric means' joint bootstrap with one run per side (>= 100).
    seed: a whole number >= 0 that makes that bootstrap reproducible; each group's generator is derived from
        it and the group's label. The per-cell intervals use no random numbers.
    gate_method: ``holm`` or ``bh`` (see ``stats.gate_failures``).
    crossovers: optional crossover sizes to show side by side: either the two frames (base, new) with
        ``CROSSOVER_COLUMNS`` or a function making such a frame from a run's results table (and its samples
        table, when it takes a second argument: ``crossover.crossover_frame``), applied to the first run of
        each side.
    baseline_window: K >= 1 judges NEW against the last K of the BASE runs by ``meta["started_at"]``
        (:func:`window_of`); with K >= 2 and one NEW run each cell's interval is :func:`window_difference`
        (the run level is one more level of the interval), so one unlucky baseline run cannot raise an alarm.

    Raises UsageError for an out-of-range parameter, a side without runs, runs whose meta give different
    ``schema_version``s, or a results table without the identity columns.
    """
    _validate(threshold, alpha, confidence, n_boot, seed, gate_method=gate_method)
    base_runs, new_runs = _as_runs(base, "base"), _as_runs(new, "new")
    if baseline_window is not None:
        base_runs = window_of(base_runs, baseline_window)
    _check_schema_versions([*(("base", r) for r in base_runs), *(("new", r) for r in new_runs)])
    settings = CompareSettings(threshold=float(threshold), alpha=float(alpha), confidence=float(confidence),
                               n_boot=n_boot, seed=seed, gate_method=gate_method,
                               baseline_window=baseline_window or 0)
    b_side, n_side = _read_side(base_runs, "base"), _read_side(new_runs, "new")
    pairs, only_base, only_new = _pair_cells(b_side.merged, n_side.merged)
    pairs.sort(key=lambda pair: (pair[0][0].sort_key, pair[0][1]))

    compared: list[_CellResult] = []
    not_compared: list[StatusPair] = []
    for base_ident, new_ident in pairs:
        key = base_ident[0]
        b_row, n_row = b_side.merged[base_ident], n_side.merged[new_ident]
        b_status, n_status = _str(b_row["status"]), _str(n_row["status"])
        if b_status != "ok" or n_status != "ok":
            not_compared.append(StatusPair(
                key=key, base_sync=base_ident[1], new_sync=new_ident[1], base_status=b_status,
                new_status=n_status, base_reason=_str(b_row.get("reason", "")),
                new_reason=_str(n_row.get("reason", ""))))
            continue
        compared.append(_compare_cell(key, (base_ident, new_ident), b_side, n_side, settings))
    gated = _apply_gate([c for c, _ in compared], settings)
    compared = [(c, rounds) for c, (_, rounds) in zip(gated, compared, strict=True)]

    groups: dict[tuple[str, str], list[_CellResult]] = defaultdict(list)
    for item in compared:
        groups[(item[0].key.op, item[0].key.dtype)].append(item)
    geomeans = tuple(_geomean(items, op, dtype, base=b_side, new=n_side, settings=settings)
                     for (op, dtype), items in sorted(groups.items()))

    def lone(idents: Iterable[Ident], rows: Mapping[Ident, dict[str, Any]]) -> tuple[LoneCell, ...]:
        return tuple(
            LoneCell(key=ident[0], sync=ident[1], status=_str(rows[ident]["status"]),
                     reason=_str(rows[ident].get("reason", "")))
            for ident in sorted(idents, key=lambda i: (i[0].sort_key, i[1]))
        )

    crossover_pairs: tuple[CrossoverPair, ...] | None = None
    if crossovers is not None:
        crossover_pairs = crossover_side_by_side(*_crossover_frames(crossovers, base_runs[0], new_runs[0]))

    return Comparison(
        base_label=", ".join(b_side.labels),
        new_label=", ".join(n_side.labels),
        settings=settings,
        fingerprint=tuple(fingerprint_diff(base_runs[0].meta, new_runs[0].meta)),
        cells=tuple(cell for cell, _ in compared),
        geomeans=geomeans,
        overall=_geomean(compared, None, None, base=b_side, new=n_side, settings=settings),
        not_compared=tuple(not_compared),
        only_in_base=lone(only_base, b_side.merged),
        only_in_new=lone(only_new, n_side.merged),
        crossovers=crossover_pairs,
        base_runs=b_side.labels,
        new_runs=n_side.labels,
        warnings=(*_machine_warnings(b_side, base_runs), *_machine_warnings(n_side, new_runs)),
    )


# --------------------------------------------------------------------------------------------------------
# Crossovers side by side


_PairKey = tuple[str, str, str, str, str]


def _crossover_rows(frame: pd.DataFrame, side: str) -> dict[_PairKey, list[dict[str, Any]]]:
    """(op, dtype, mode, sorted device pair) → that pair's rows, crossings by size (NaN rows last)."""
    missing = [c for c in CROSSOVER_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{side} crossover frame lacks the columns {', '.join(missing)}")
    rows: dict[_PairKey, list[dict[str, Any]]] = defaultdict(list)
    for record in frame.to_dict("records"):
        row = {str(k): v for k, v in record.items()}
        a, b = sorted((_str(row["device_a"]), _str(row["device_b"])))
        rows[(_str(row["op"]), _str(row["dtype"]), _str(row["mode"]), a, b)].append(row)
    for pair_rows in rows.values():
        pair_rows.sort(key=lambda r: (not math.isfinite(_float(r["crossover_size"])),
                                      _float(r["crossover_size"])))
    return rows


def _float(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _extent(row: Mapping[str, Any]) -> tuple[float, float]:
    """The sizes a crossing may lie in: its [low, high] bracket/range, else its point estimate."""
    size, low, high = (_float(row.get(c)) for c in ("crossover_size", "low", "high"))
    low = low if math.isfinite(low) else size
    high = high if math.isfinite(high) else size
    return (min(low, high), max(low, high))


def _same_direction(b: Mapping[str, Any], n: Mapping[str, Any]) -> bool:
    """Whether two crossings hand over the same way (the same device faster below); unknown counts as same."""
    below_b, below_n = _str(b.get("faster_below")), _str(n.get("faster_below"))
    return not below_b or not below_n or below_b == below_n


def _match_crossings(base: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
                     ) -> list[tuple[int | None, int | None]]:
    """Pair the crossings of one device pair in two runs by overlap, not by rank.

    Two crossings can be the same one when their brackets/ranges overlap and they hand over the same way;
    among such candidates the closest sizes (log scale) pair first, each crossing at most once. So one
    spurious crossing on one side stays alone instead of shifting every pairing after it. One rule more:
    when exactly one crossing is left over on each side and they hand over the same way, they are the same
    crossing that moved beyond its bracket (a different machine), and pair. The rest are unpaired
    (index None on the other side). Returned in order of size.
    """
    candidates = []
    for i, b in enumerate(base):
        b_low, b_high = _extent(b)
        for j, n in enumerate(new):
            n_low, n_high = _extent(n)
            if max(b_low, n_low) <= min(b_high, n_high) and _same_direction(b, n):
                distance = abs(math.log(_float(b["crossover_size"]) / _float(n["crossover_size"])))
                candidates.append((distance, i, j))
    used_b: set[int] = set()
    used_n: set[int] = set()
    matched: list[tuple[int | None, int | None]] = []
    for _, i, j in sorted(candidates):
        if i not in used_b and j not in used_n:
            matched.append((i, j))
            used_b.add(i)
            used_n.add(j)
    left_b = [i for i in range(len(base)) if i not in used_b]
    left_n = [j for j in range(len(new)) if j not in used_n]
    if len(left_b) == 1 and len(left_n) == 1 and _same_direction(base[left_b[0]], new[left_n[0]]):
        matched.append((left_b[0], left_n[0]))
        left_b, left_n = [], []
    matched.extend((i, None) for i in left_b)
    matched.extend((None, j) for j in left_n)

    def position(pair: tuple[int | None, int | None]) -> float:
        sizes = [_float(rows[k]["crossover_size"]) for rows, k in ((base, pair[0]), (new, pair[1]))
                 if k is not None]
        return min(sizes)

    return sorted(matched, key=position)


def _absent(rows: Sequence[Mapping[str, Any]] | None, side: str, other: str) -> str:
    """The note for the missing side of an unpaired crossing: why ``side`` has none to show."""
    if rows is None:
        return f"not in {side} run"
    if any(math.isfinite(_float(r["crossover_size"])) for r in rows):
        return f"only in {other} run: no crossing in the {side} run overlaps it"
    notes = [_str(r.get("note")) for r in rows if _str(r.get("note"))]
    return "; ".join(notes) if notes else f"no crossing in {side} run"


def crossover_side_by_side(base: pd.DataFrame, new: pd.DataFrame) -> tuple[CrossoverPair, ...]:
    """Join two crossover frames (``CROSSOVER_COLUMNS``, e.g. ``crossover.crossover_frame``) on (op, dtype,
    mode, device pair), one ``CrossoverPair`` per crossing.

    The device pair matches in either order (device_a/device_b are shown as the base frame has them). A pair
    may cross more than once; its crossings are paired by overlap of their brackets (``_match_crossings``),
    not by rank. A crossing without a partner gets NaN numbers on the other side and a note there: "not in
    base run" (the pair is absent), the other run's own note for the pair (e.g. "no crossover in [64, 4096]:
    CPU:0 is faster throughout"), or "only in new run: no crossing here overlaps it". A pair with no
    crossing in either run gets one row with both notes.
    """
    base_rows, new_rows = _crossover_rows(base, "base"), _crossover_rows(new, "new")
    pairs: list[CrossoverPair] = []
    for key in sorted(set(base_rows) | set(new_rows)):
        op, dtype, mode = key[:3]
        sides = {"base": base_rows.get(key), "new": new_rows.get(key)}
        crossings = {side: [r for r in (rows or []) if math.isfinite(_float(r["crossover_size"]))]
                     for side, rows in sides.items()}

        matched = _match_crossings(crossings["base"], crossings["new"])
        if not matched:  # no crossing on either side: one row with what each run says about the pair
            shown_rows = [*(sides["base"] or []), *(sides["new"] or [])]
            matched_rows: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = [(None, None)]
        else:
            shown_rows = []
            matched_rows = [(None if i is None else crossings["base"][i],
                             None if j is None else crossings["new"][j]) for i, j in matched]
        for index, (b, n) in enumerate(matched_rows):
            shown = b if b is not None else n if n is not None else shown_rows[0]

            def pick(row: Mapping[str, Any] | None, col: str) -> Any:
                return None if row is None else row.get(col)

            pairs.append(CrossoverPair(
                op=op, dtype=dtype, mode=mode, device_a=_str(shown["device_a"]),
                device_b=_str(shown["device_b"]), crossing=index,
                base_size=_float(pick(b, "crossover_size")), new_size=_float(pick(n, "crossover_size")),
                base_low=_float(pick(b, "low")), base_high=_float(pick(b, "high")),
                new_low=_float(pick(n, "low")), new_high=_float(pick(n, "high")),
                base_faster_below=_str(pick(b, "faster_below")),
                base_faster_above=_str(pick(b, "faster_above")),
                new_faster_below=_str(pick(n, "faster_below")),
                new_faster_above=_str(pick(n, "faster_above")),
                base_note=_absent(sides["base"], "base", "new") if b is None else _str(b.get("note")),
                new_note=_absent(sides["new"], "new", "base") if n is None else _str(n.get("note")),
            ))
    return tuple(pairs)
