"""Crossover detection and the pure half of refining (which sizes to measure next). No TensorFlow, no plotting.

The question devbench answers is *from which size on is one device faster than another*. For each
(op, dtype, mode) and each pair of devices, the curve is the device ratio A/B (time of a over time of b) at
every shared size, and a crossover is where it crosses 1.

The ratio is taken with the round as the unit: within a round all devices of one size are measured back to
back, so the per-round log ratio of medians ``u_r = log median(A, r) - log median(B, r)`` cancels the drift
both devices share. The ratio at a size is ``exp(mean u_r)`` over the rounds both devices have there, and its
interval the t interval of that mean (:mod:`devbench.t_intervals`, variance floored at the samples'
resolution). Each size is one question, but a curve asks it at every size, and a search over K per-size 95 %
intervals finds a false "decisive" size far more often than 5 % of the time (the finer the grid, the more
often). So the intervals form a **simultaneous band**: each size's interval is at ``1 - ALPHA / K``
(Bonferroni over the K sizes that have an interval), so the band holds at every size at once with at least
95 %. A size's variance is pooled with its neighbours' (sizes within a factor 1.5: :func:`_pool_neighbours`),
so a fine grid buys degrees of freedom instead of only more questions. A size is decisive (+1 / -1) when its
band excludes 1; sizes with fewer than 3 paired rounds have no interval and decide nothing.

A crossing is **decisive** when two consecutive decisive sizes (within-noise sizes between them ignored) lie on
opposite sides of 1. Everything between them is ONE crossing, however often the mean ratio wobbles across 1
there: ``low`` / ``high`` are those two decisive sizes (the band holds everywhere, so the true crossing lies
between them with >= 95 %), ``crossover_size`` is where the mean log ratio crosses zero inside that range
(log-log interpolation when it changes sign once; with several sign changes, the zero of a least-squares line
of mean log ratio against log size over the range, clipped to it). Every other sign change of the mean ratio
is **within noise**: one row per block between consecutive decisive sizes (or a curve end) in which the mean
ratio changes sign, its range that block, its point the block's first sign change. No curve shape is assumed
anywhere; the rates (false decisive crossings, detection, coverage of the range) are measured in
:mod:`devbench.simulation.crossovers`.

Without samples (a bare table from another tool, or a run written before rounds) the cells' own CIs stand in,
per size: the ratio's interval is [ci_low_a / ci_high_b, ci_high_a / ci_low_b], which can neither pair the
devices by round nor be made simultaneous (the note says so); without CIs nothing is decisive.

Units: times are seconds per call, sizes are the matrix side n, ratios are plain ratios of times (A/B).

Only ``status == "ok"`` rows with a finite, positive ``median_s`` enter; a cell measured more than once
(different ``sync`` policies) counts once, preferring a synchronized measurement. ``CPU:0`` is the
reference device of every speed-up, and sorts first so that pairs read (CPU:0, other).

The module is long (about 750 lines) so that the one rule of what a crossing is, and when it is decisive,
stays in one place with its only consumer that acts on it: the refine plan bisects decisive crossings only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from devbench.errors import UsageError
from devbench.formatting import format_ratio, format_size
from devbench.schema import RESULT_COLUMNS
from devbench.selection import (
    GROUP,
    device_order,
    merge_results,
    ok_cells,
    records,
    transfer_as_mode,
)
from devbench.shapes import axis_name
from devbench.stats import decisive_direction
from devbench.t_intervals import Mean, log_resolution, mean_of_units, t_interval

CROSSOVER_COLUMNS: tuple[str, ...] = (
    "op",
    "dtype",
    "mode",
    "device_a",
    "device_b",
    "crossover_size",
    "low",
    "high",
    "faster_below",
    "faster_above",
    "decisive",
    "note",
)
"""The public columns of ``crossover_frame`` (and its CSV), in this order."""

CROSSOVER_EXPLANATION = (
    "Where the faster device changes. The device ratio at each size is taken within each round (both devices "
    "measured back to back), and its intervals form a band that holds at every size of the curve at once "
    "(95 %). A crossing is *decisive* between two consecutive sizes whose band lies on opposite sides of 1, and "
    "its range is those two sizes; any other change of the faster device is *within noise*. The crossover size "
    "is where the mean ratio crosses 1, interpolated in log-log. Speed-ups are device b over device a "
    "(> 1: b faster). Sizes are the matrix side n, or for a shaped op the dimension its name sweeps (m in "
    "matmul[m=…,k=256,n=256]), the others held fixed at the values the name gives."
)
"""What a crossover table means, in words, for every report that shows one (report.md, report.html); the
terms a reader looks up are in Markdown emphasis."""


CROSSOVER_EXTRA_COLUMNS: tuple[str, ...] = (
    "min_size",
    "max_size",
    "speedup_min",
    "speedup_max",
    "bracket_low",
    "bracket_high",
    "ratio_below",
    "ratio_below_ci_low",
    "ratio_below_ci_high",
    "ratio_above",
    "ratio_above_ci_low",
    "ratio_above_ci_high",
    "ratio_basis",
    "n_rounds",
    "n_shared",
    "unsynchronized",
)
"""Extra columns after the public ones. ``speedup_*`` = median_a / median_b at the smallest / largest shared
size, i.e. how many times faster device_b is than device_a (> 1: device_b faster). ``bracket_low/high``: the
measured shared sizes around ``crossover_size`` (equal when it sits exactly on a grid point; what refine
bisects). ``ratio_below*`` / ``ratio_above*``: the device ratio A/B (time of device_a over time of device_b;
> 1: device_b faster) with its band, at the two decisive sizes that bound a decisive crossing (``low`` and
``high``), or at ``bracket_low`` / ``bracket_high`` for a crossing within noise (NaN: too little data). How it
was taken is ``ratio_basis``: ``rounds`` (paired over rounds: geometric mean of the per-round ratios of
medians, the band simultaneous over the curve's sizes), ``cell CIs`` (no samples: ratio of medians, interval
from the cells' own CIs, per size) or ``none`` (no interval). ``n_rounds``: the fewer paired rounds of those
two sizes (0 without samples)."""

ALPHA = 0.05
"""A curve's band holds at all its sizes at once with at least ``1 - ALPHA``: each size at ``1 - ALPHA / K``."""

RatioBasis = Literal["rounds", "cell CIs", "none"]

_SAMPLE_KEY = ("op", "dtype", "mode", "device", "size", "sync")
"""A cell's samples are found by these columns (``mode`` after ``transfer_as_mode``, as in ``ok_cells``)."""

@dataclass(frozen=True)
class RoundSamples:
    """One cell's per-call seconds by round number (1-based, as in samples.parquet), and each round's median."""

    samples: dict[int, np.ndarray]
    medians: dict[int, float]


BySamples = dict[tuple[str, str, str, str, int, str], RoundSamples]
"""Every cell's ``RoundSamples``, keyed (op, dtype, mode, device, size, sync)."""

_NO_SAMPLES = RoundSamples({}, {})


# ---------------------------------------------------------------------------------------------------------
# The device ratio at each shared size


@dataclass(frozen=True)
class _Curve:
    """One device's medians and their CI bounds (seconds) at the shared sizes."""

    median: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray


@dataclass(frozen=True)
class _Ratios:
    """The device ratio A/B (time of a over time of b) at each shared size with its interval (NaN: none)."""

    estimate: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_rounds: np.ndarray
    """Paired rounds behind each ratio (0 without samples)."""
    reasons: tuple[str, ...]
    """Per size: "" or why the interval is NaN."""
    basis: RatioBasis
    confidence: float = 0.95
    """Each size's confidence: ``1 - ALPHA / K`` for a band over rounds, the cells' 95 % otherwise."""

    @property
    def k(self) -> int:
        """How many sizes have an interval (the K of the band)."""
        return int(np.isfinite(self.ci_low).sum())

    def direction(self, i: int) -> int:
        return decisive_direction(float(self.ci_low[i]), float(self.ci_high[i]))

    def band(self) -> str:
        """How the intervals were taken, for the notes."""
        if self.basis == "rounds":
            return (f"band simultaneous over {self.k} size{'s' if self.k != 1 else ''} "
                    f"({self.confidence * 100:.3g} % each)")
        return ("no rounds in the data: decided from the cells' own CIs, per size, not simultaneous over the "
                "sizes, and without pairing the devices by round")


def usable_samples(samples: pd.DataFrame | None) -> bool:
    """True when ``samples`` can pair the devices by round: rows with every key column, ``round`` included."""
    return (samples is not None and not samples.empty
            and {*_SAMPLE_KEY, "round", "per_call_s"} <= set(samples.columns))


def samples_by_cell(samples: pd.DataFrame) -> BySamples:
    """Each cell's positive finite per-call seconds by round, keyed (op, dtype, mode, device, size, sync)."""
    frame = transfer_as_mode(samples)
    seconds = pd.to_numeric(frame["per_call_s"], errors="coerce").to_numpy(dtype=np.float64)
    keep = np.isfinite(seconds) & (seconds > 0)
    frame, seconds = frame[keep], seconds[keep]
    frame = frame.assign(per_call_s=seconds)
    keys = [*_SAMPLE_KEY, "round"]
    # Group positions and medians in one pass each, not sub-frame by sub-frame: the simulations call this per
    # curve.
    medians = frame.groupby(keys, sort=False)["per_call_s"].median()
    positions = frame.groupby(keys, sort=False).indices
    out: BySamples = {}
    for key, median in medians.items():
        op, dtype, mode, device, size, sync, round_ = key
        cell = (str(op), str(dtype), str(mode), str(device), int(size), str(sync))
        rounds = out.setdefault(cell, RoundSamples({}, {}))
        rounds.samples[int(round_)] = seconds[positions[key]]
        rounds.medians[int(round_)] = float(median)
    return out


def _paired_ratios(key: tuple[str, str, str], pair: tuple[str, str], shared: Sequence[int], *,
                   tables: tuple[pd.DataFrame, pd.DataFrame], by_cell: BySamples) -> _Ratios:
    # ``tables``: each device's ok cells indexed by size (its ``sync`` finds the samples).
    """The ratio at each shared size paired by round number (rounds only one device has are left out), with
    the curve's simultaneous band. A size without a paired round keeps the ratio of the cells' medians."""
    op, dtype, mode = key
    (a, b), (ta, tb) = pair, tables
    n = len(shared)
    sync_a, sync_b = (table.loc[list(shared), "sync"].astype(str).tolist() for table in tables)
    medians = ta.loc[list(shared), "median_s"].to_numpy(np.float64) / tb.loc[list(shared), "median_s"].to_numpy(
        np.float64)
    estimate = np.full(n, math.nan)
    counts = np.zeros(n, dtype=np.int64)
    means: list[Mean | None] = []
    reasons: list[str] = []
    for i, size in enumerate(shared):
        ra = by_cell.get((op, dtype, mode, a, int(size), sync_a[i]), _NO_SAMPLES)
        rb = by_cell.get((op, dtype, mode, b, int(size), sync_b[i]), _NO_SAMPLES)
        common = sorted(set(ra.medians) & set(rb.medians))
        if not common:
            estimate[i] = medians[i]
            means.append(None)
            reasons.append("no round holds samples of both devices")
            continue
        u = np.log([ra.medians[r] for r in common]) - np.log([rb.medians[r] for r in common])
        paired = mean_of_units(u, resolution=log_resolution([*(ra.samples[r] for r in common),
                                                             *(rb.samples[r] for r in common)]))
        estimate[i], counts[i] = math.exp(paired.value), len(common)
        means.append(paired)
        reasons.append(paired.reason)
    k = sum(1 for m in means if m is not None and not m.reason)
    confidence = 1.0 - ALPHA / max(k, 1)
    low, high = np.full(n, math.nan), np.full(n, math.nan)
    for i, mean in enumerate(_pool_neighbours(shared, means)):
        if mean is not None and not mean.reason:
            interval = t_interval(mean, confidence)
            low[i], high[i] = interval.ci_low, interval.ci_high
    return _Ratios(estimate, low, high, counts, tuple(reasons), "rounds", confidence)


POOL_WINDOW = 1.5
"""Sizes within this factor of each other share their round-to-round variance (see :func:`_pool_neighbours`)."""


def _pool_neighbours(sizes: Sequence[int], means: Sequence[Mean | None]) -> list[Mean | None]:
    """Each size's mean with its variance pooled over the sizes within :data:`POOL_WINDOW` of it.

    Why: with R rounds a size's own variance has R - 1 degrees of freedom, and the Bonferroni quantile of a
    t with 2-4 degrees of freedom is huge (7.2 at R=5 over 25 sizes, against 3.5 at 20): on a fine grid the
    band lost real crossings. Neighbouring sizes (a factor 1.5 apart at most) see nearly the same noise, so
    their per-round variances are pooled (weighted by degrees of freedom) and the degrees of freedom add up.
    On a x2 grid no neighbour is that close and nothing changes. Simulated with the noise level tripling
    across the grid, identical devices stayed decisive in <= 0.7 % of curves (``simulation.crossovers``).
    """
    logs = np.log(np.asarray(sizes, dtype=np.float64))
    usable = {i: m for i, m in enumerate(means) if m is not None and not m.reason}
    out: list[Mean | None] = list(means)
    for i, mean in usable.items():
        near = [m for j, m in usable.items() if abs(logs[j] - logs[i]) <= math.log(POOL_WINDOW) + 1e-12]
        dof = sum(m.dof for m in near)
        per_round = sum(m.dof * m.variance * m.units for m in near) / dof  # a mean's variance times its units
        out[i] = Mean(mean.value, per_round / mean.units, dof, mean.units)
    return out


def _cell_ci_ratios(a: _Curve, b: _Curve) -> _Ratios:
    """Without samples: the ratio of medians, its interval the extremes of the two cells' CIs."""
    ma, mb = a.median, b.median
    n = len(ma)
    counts = np.zeros(n, dtype=np.int64)
    have_ci = bool(np.all(np.isfinite([a.ci_low, a.ci_high, b.ci_low, b.ci_high]))
                   and np.all(a.ci_low > 0) and np.all(b.ci_low > 0))
    if not have_ci:
        nan = np.full(n, math.nan)
        return _Ratios(ma / mb, nan, nan, counts, ("",) * n, "none")
    # A CI that does not contain its median (hand-made tables) is widened to contain it.
    la, ha = np.minimum(a.ci_low, ma), np.maximum(a.ci_high, ma)
    lb, hb = np.minimum(b.ci_low, mb), np.maximum(b.ci_high, mb)
    return _Ratios(ma / mb, la / hb, ha / lb, counts, ("",) * n, "cell CIs")


# ---------------------------------------------------------------------------------------------------------
# Crossings


def _zero(x0: float, x1: float, y0: float, y1: float) -> float:
    """Where the line through (x0, y0), (x1, y1) (x in log size) crosses zero; returned as a size."""
    if y0 == y1:
        return math.exp(x0)
    t = y0 / (y0 - y1)
    return math.exp(x0 + min(max(t, 0.0), 1.0) * (x1 - x0))


@dataclass(frozen=True)
class _Crossing:
    size: float
    low: float
    high: float
    bracket_low: int
    bracket_high: int
    below_index: int
    """Index (into the shared sizes) of the size whose ratio is reported below the crossing (the lower decisive
    size of a decisive crossing, else the bracket's lower size); ``above_index`` above it."""
    above_index: int
    rising: bool
    """True when device_a is faster below (log-ratio goes from negative to positive)."""
    notes: tuple[str, ...]
    decisive: bool


def _sign_changes(d: np.ndarray, lo: int, hi: int) -> list[tuple[int, int]]:
    """(p, q) for each sign change of ``d`` over indices lo..hi: consecutive nonzero entries of opposite sign
    (exact zeros between them are where the curve sits on 1)."""
    nonzero = [i for i in range(lo, hi + 1) if d[i] != 0]
    return [(p, q) for p, q in itertools.pairwise(nonzero) if (d[p] > 0) != (d[q] > 0)]


def _locate(x: np.ndarray, d: np.ndarray, lo: int, hi: int, changes: Sequence[tuple[int, int]]) -> float:
    """The point estimate of a crossing in the block lo..hi (x: log sizes, d: mean log ratios), as a size.

    One sign change: log-log interpolation between its two sizes (on exact ties, the middle of the tied grid
    points). Several: the zero of the least-squares line of d against x over the block, clipped to the block,
    since no single pair of neighbours is more trustworthy than the others inside the noise.
    """
    if len(changes) == 1:
        p, q = changes[0]
        if q == p + 1:
            return _zero(x[p], x[q], d[p], d[q])
        return math.exp((x[p + 1] + x[q - 1]) / 2.0)  # exact ties between p and q: the crossing sits on them
    xs, ds = x[lo: hi + 1], d[lo: hi + 1]
    slope, intercept = np.polyfit(xs, ds, 1) if xs[-1] > xs[0] else (0.0, 0.0)
    if slope == 0:
        return math.exp((x[lo] + x[hi]) / 2.0)
    return math.exp(min(max(-intercept / slope, x[lo]), x[hi]))


def _bracket(sizes: Sequence[int], size: float, lo: int, hi: int) -> tuple[int, int, float]:
    """The measured sizes (indices within lo..hi) around ``size``, and ``size`` snapped onto a grid point it
    equals up to rounding."""
    values = np.asarray(sizes[lo: hi + 1], dtype=np.float64)
    near = int(np.argmin(np.abs(values - size)))
    if abs(values[near] - size) <= 1e-9 * size:
        return lo + near, lo + near, float(values[near])
    above = lo + int(np.searchsorted(values, size))
    return above - 1, above, size


def _ratio_text(ratios: _Ratios, i: int, sizes: Sequence[int], axis: str = "n") -> str:
    """'0.52× (0.49–0.55) at n=512' for the ratio at index i (``axis``: what the size is, 'm' for a shaped op)."""
    interval = (f" ({ratios.ci_low[i]:.3g}–{ratios.ci_high[i]:.3g})"
                if math.isfinite(ratios.ci_low[i]) and math.isfinite(ratios.ci_high[i]) else " (no interval)")
    return f"{format_ratio(float(ratios.estimate[i]))}{interval} at {axis}={format_size(sizes[i])}"


def _blocks(directions: Sequence[int]) -> list[tuple[int, int]]:
    """The curve cut at its decisive sizes: (lo, hi) index pairs between consecutive decisive sizes, and from
    each curve end to the nearest decisive size (the whole curve when none is decisive)."""
    cuts = sorted({0, len(directions) - 1, *(i for i, d in enumerate(directions) if d)})
    return list(itertools.pairwise(cuts))


def _crossings(sizes: Sequence[int], log_ratio: np.ndarray, ratios: _Ratios, pair: str, axis: str = "n"
               ) -> list[_Crossing]:
    """The crossings of ``log_ratio`` (the mean log ratio A/B over the shared sizes, ascending): one decisive
    crossing per pair of consecutive decisive sizes on opposite sides of 1, one within-noise crossing per other
    block in which the log ratio changes sign. ``pair`` ('CPU:0/GPU:0') names the ratio in the notes, ``axis``
    the size ('n', or a shaped op's swept dimension)."""
    d = log_ratio
    x = np.log(np.asarray(sizes, dtype=np.float64))
    directions = [ratios.direction(i) for i in range(len(sizes))]
    found: list[_Crossing] = []
    for lo, hi in _blocks(directions):
        changes = _sign_changes(d, lo, hi)
        decisive = directions[lo] * directions[hi] == -1
        if not changes and not decisive:
            continue
        # Within noise, the point is where the faster device first swaps (faster_below / faster_above say
        # which way): with an even number of swaps no line through the block has a zero worth naming.
        size = _locate(x, d, lo, hi, changes if decisive else changes[:1])
        p, q, size = _bracket(sizes, size, lo, hi)
        first = next(i for i in range(lo, hi + 1) if d[i] != 0)
        notes: list[str] = []
        if decisive:
            below, above = lo, hi
            rounds = (f", paired over {min(ratios.n_rounds[lo], ratios.n_rounds[hi])} rounds"
                      if ratios.basis == "rounds" else "")
            notes.append(f"{pair} = {_ratio_text(ratios, lo, sizes, axis)} and {_ratio_text(ratios, hi, sizes, axis)}"
                         f"{rounds}; {ratios.band()}")
            if len(changes) > 1:
                notes.append(f"the mean ratio crosses 1 {len(changes)} times in between: {axis}≈ is a line fitted "
                             "over the range")
        else:
            below, above = p, q
            notes.extend(_noise_notes(sizes, ratios, directions, (lo, hi), changes=len(changes), axis=axis))
        found.append(
            _Crossing(
                size=float(size),
                low=float(sizes[lo]),
                high=float(sizes[hi]),
                bracket_low=int(sizes[p]),
                bracket_high=int(sizes[q]),
                below_index=below,
                above_index=above,
                rising=bool(d[first] < 0),
                notes=tuple(notes),
                decisive=decisive,
            )
        )
    return found


def _noise_notes(sizes: Sequence[int], ratios: _Ratios, directions: Sequence[int], block: tuple[int, int], *,
                 changes: int, axis: str = "n") -> list[str]:
    """Why a crossing in the block lo..hi is within noise, and where its range is open-ended."""
    lo, hi = block
    notes: list[str] = []
    held = [i for i in range(lo, hi + 1) if directions[i] == 0]
    if ratios.basis == "none":
        notes.append("no rounds and no CI in the data: nothing is decisive")
    elif ratios.k == 0:
        why = "; ".join(dict.fromkeys(reason for reason in ratios.reasons if reason))
        notes.append(f"the ratio has no interval at any size ({why})")
    else:
        span = (f"at {axis}={format_size(sizes[held[0]])}" if len(held) == 1 else
                f"from {axis}={format_size(sizes[held[0]])} to {axis}={format_size(sizes[held[-1]])}")
        notes.append(f"the ratio's interval holds 1 {span}; {ratios.band()}")
        notes.extend(dict.fromkeys(f"{axis}={format_size(sizes[i])}: {ratios.reasons[i]}"
                                   for i in held if ratios.reasons[i]))
    if changes > 1:
        notes.append(f"the mean ratio crosses 1 {changes} times in this range")
    if directions[lo] == 0:
        notes.append(f"may lie below {axis}={format_size(sizes[0])} (within noise down to the smallest size)")
    if directions[hi] == 0:
        notes.append(f"may lie above {axis}={format_size(sizes[-1])} (within noise up to the largest size)")
    return notes


def crossover_sentence(faster_above: str, size: float, low: float, high: float, than: str = "", *,
                       decisive: bool | None = None, axis: str = "n") -> str:
    """'GPU:0 faster above n≈724 (range 690–760), decisive'; with ``than``: 'GPU:1 faster than GPU:0 above …'.

    ``decisive`` adds ', decisive' (True) or ', within noise' (False); None says neither. ``axis``: what the
    size measures (a shaped op's swept dimension, devbench.shapes.axis_name: 'above m≈724').
    """
    text = f"{faster_above} faster{f' than {than}' if than else ''} above {axis}≈{format_size(size)}"
    if math.isfinite(low) and math.isfinite(high) and (low, high) != (size, size):
        text += f" (range {format_size(low)}–{format_size(high)})"
    if decisive is not None:
        text += ", decisive" if decisive else ", within noise"
    return text


_RATIO_SIDES = ("ratio_below", "ratio_above")


def _pair_rows(key: tuple[str, str, str], a: str, b: str, cells: pd.DataFrame,
               by_cell: BySamples | None) -> list[dict[str, Any]]:
    op, dtype, mode = key
    ta = cells[cells["device"] == a].set_index("size")
    tb = cells[cells["device"] == b].set_index("size")
    shared = sorted(set(ta.index) & set(tb.index))
    base: dict[str, Any] = {
        "op": op,
        "dtype": dtype,
        "mode": mode,
        "device_a": a,
        "device_b": b,
        "crossover_size": math.nan,
        "low": math.nan,
        "high": math.nan,
        "faster_below": "",
        "faster_above": "",
        "decisive": False,
        "note": "",
        "min_size": math.nan,
        "max_size": math.nan,
        "speedup_min": math.nan,
        "speedup_max": math.nan,
        "bracket_low": math.nan,
        "bracket_high": math.nan,
        **{f"{side}{end}": math.nan for side in _RATIO_SIDES for end in ("", "_ci_low", "_ci_high")},
        "ratio_basis": "",
        "n_rounds": 0,
        "n_shared": len(shared),
        "unsynchronized": False,
    }
    if len(shared) < 2:
        base["note"] = (
            f"too few ok cells to compare: {a} has {len(ta)}, {b} has {len(tb)}, "
            f"{len(shared)} shared size{'s' if len(shared) != 1 else ''} (need 2)"
        )
        return [base]

    def column(table: pd.DataFrame, name: str) -> np.ndarray:
        values: np.ndarray = table.loc[shared, name].to_numpy(dtype=np.float64)
        return values

    def curve(table: pd.DataFrame) -> _Curve:
        return _Curve(column(table, "median_s"), column(table, "ci_low_s"), column(table, "ci_high_s"))

    ma, mb = column(ta, "median_s"), column(tb, "median_s")
    unsync = bool(ta.loc[shared, "is_unsynchronized"].any() or tb.loc[shared, "is_unsynchronized"].any())
    ratios = (_paired_ratios(key, (a, b), shared, tables=(ta, tb), by_cell=by_cell) if by_cell is not None
              else _cell_ci_ratios(curve(ta), curve(tb)))
    base.update(
        min_size=float(shared[0]),
        max_size=float(shared[-1]),
        speedup_min=float(ma[0] / mb[0]),
        speedup_max=float(ma[-1] / mb[-1]),
        ratio_basis=ratios.basis,
        unsynchronized=unsync,
    )
    tail = ["unsynchronized cells: measures launch, not work"] if unsync else []
    d = np.log(ratios.estimate)
    crossings = _crossings(shared, d, ratios, f"{a}/{b}", axis_name(op))
    span = f"[{format_size(shared[0])}, {format_size(shared[-1])}]"
    if not crossings:
        if np.all(d == 0):
            text = f"no crossover in {span}: {a} and {b} are tied throughout"
            faster = ""
        else:
            faster = a if np.all(d <= 0) else b
            text = f"no crossover in {span}: {faster} is faster throughout"
        row = {**base, "faster_below": faster, "faster_above": faster}
        row["note"] = "; ".join([text, *tail])
        return [row]
    rows = []
    for c in crossings:
        below, above = (a, b) if c.rising else (b, a)
        sides = {}
        for side, i in zip(_RATIO_SIDES, (c.below_index, c.above_index), strict=True):
            sides.update({side: float(ratios.estimate[i]), f"{side}_ci_low": float(ratios.ci_low[i]),
                          f"{side}_ci_high": float(ratios.ci_high[i])})
        rows.append(
            {
                **base,
                **sides,
                "crossover_size": c.size,
                "low": c.low,
                "high": c.high,
                "faster_below": below,
                "faster_above": above,
                "bracket_low": float(c.bracket_low),
                "bracket_high": float(c.bracket_high),
                "decisive": c.decisive,
                "n_rounds": int(min(ratios.n_rounds[c.below_index], ratios.n_rounds[c.above_index])),
                "note": "; ".join([crossover_sentence(above, c.size, c.low, c.high, decisive=c.decisive,
                                                      axis=axis_name(op)),
                                   *c.notes, *tail]),
            }
        )
    return rows


def crossover_frame(results: pd.DataFrame, samples: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every crossover for each (op, dtype, mode) and each pair of devices present in it.

    One row per crossing; a pair that never changes sign gets one row with NaN ``crossover_size`` and the
    note "no crossover in [min, max]: X is faster throughout". A pair with fewer than two shared ok sizes gets
    one row with NaN numbers, empty ``faster_*`` and a note saying so: nothing is invented. Devices count as
    present in a group if they have any row there (whatever the status), so a device whose cells all failed
    still shows up as "too few ok cells". Pairs come CPU:0-first (``device_order``), crossings by size.

    ``samples`` (``Run.samples``: ``schema.SAMPLE_COLUMNS`` with ``round``) pairs the devices by round: the
    ratio at each size is the geometric mean of the per-round ratios of medians, rounds matched by number, and
    the intervals form a band simultaneous over the curve's sizes (see the module docstring). Without it
    (None, empty, or no ``round`` column) the cells' own CIs stand in, per size, and the note says so.

    ``decisive`` is True for a crossing between two consecutive decisive sizes (band wholly above / below 1)
    on opposite sides of 1; ``low`` and ``high`` are then those two sizes. A crossing within noise (the mean
    ratio changes sign in a block with no such pair) has its block as its range, open-ended at a curve end.
    ``crossover_size`` is the point estimate inside the range (matrix side n, float). Rows without a crossing
    have ``decisive`` False. Columns: ``CROSSOVER_COLUMNS`` then ``CROSSOVER_EXTRA_COLUMNS`` (documented
    there).
    """
    columns = [*CROSSOVER_COLUMNS, *CROSSOVER_EXTRA_COLUMNS]
    if results.empty:
        empty: pd.DataFrame = pd.DataFrame(columns=columns)
        return empty
    by_cell = samples_by_cell(samples) if samples is not None and usable_samples(samples) else None
    results = transfer_as_mode(results)
    cells = ok_cells(results)
    by_group = {key: frame for key, frame in cells.groupby(list(GROUP), sort=False)}
    rows: list[dict[str, Any]] = []
    for key, group in results.groupby(list(GROUP), sort=True):
        op, dtype, mode = (str(k) for k in key)
        group_cells = by_group.get(key, cells.iloc[0:0])
        for a, b in itertools.combinations(device_order(group["device"].astype(str)), 2):
            rows.extend(_pair_rows((op, dtype, mode), a, b, group_cells, by_cell))
    frame = pd.DataFrame(rows, columns=columns)
    floats = ["crossover_size", "low", "high", "min_size", "max_size", "speedup_min", "speedup_max",
              "bracket_low", "bracket_high",
              *(f"{side}{end}" for side in _RATIO_SIDES for end in ("", "_ci_low", "_ci_high"))]
    for col in floats:
        frame[col] = frame[col].astype("float64")
    for col in ("n_shared", "n_rounds"):
        frame[col] = frame[col].astype("int64")
    for col in ("decisive", "unsynchronized"):
        frame[col] = frame[col].astype(bool)
    out: pd.DataFrame = frame
    return out


# ---------------------------------------------------------------------------------------------------------
# Refining


class RefineCell(NamedTuple):
    """A cell to measure while refining: the devices that still lack ``size`` (matrix side n)."""

    op: str
    dtype: str
    mode: str
    devices: tuple[str, ...]
    size: int


class SkippedCrossing(NamedTuple):
    """A crossing refine leaves alone because it is within noise: bisecting it would measure noise."""

    op: str
    dtype: str
    mode: str
    device_a: str
    device_b: str
    crossover_size: float
    low: float
    """The block within noise around it (matrix side n): the nearest decisive sizes, or the curve's ends."""
    high: float

    def describe(self) -> str:
        """'matmul float32 eager CPU:0 vs CPU:1 at n≈116 (range 64–1024)': the range is the block over which
        the two devices cannot be told apart."""
        span = (f" (range {format_size(self.low)}–{format_size(self.high)})"
                if math.isfinite(self.low) and math.isfinite(self.high) else "")
        return (f"{self.op} {self.dtype} {self.mode} {self.device_a} vs {self.device_b} "
                f"at {axis_name(self.op)}≈{format_size(self.crossover_size)}{span}")


Measured = tuple[pd.DataFrame, pd.DataFrame]
"""What a refine measurement returns: (result rows, their sample rows with ``round``; may be empty)."""

MeasureFn = Callable[[list[RefineCell]], Measured]
"""Measures the given cells and returns their result rows (RESULT_COLUMNS, any status) and sample rows
(``schema.SAMPLE_COLUMNS``), so decisiveness after measuring is judged by rounds like the sweep's."""


def bracket_converged(low: float, high: float, crossover: float, rel_tol: float = 0.05) -> bool:
    """A bracket [low, high] of measured sizes is narrow enough: within ``rel_tol`` of the crossover size,
    or adjacent integers (nothing left to measure in between)."""
    return high - low <= 1 or high - low <= rel_tol * crossover


def _bisection_size(low: int, high: int, unusable: set[int]) -> int | None:
    """The integer nearest the geometric mean of (low, high), strictly inside, not in ``unusable``."""
    middle = round(math.sqrt(low * high))
    for step in range(32):
        for candidate in (middle - step, middle + step) if step else (middle,):
            if low < candidate < high and candidate not in unusable:
                return candidate
    return None


def skipped_crossings(frame: pd.DataFrame) -> list[SkippedCrossing]:
    """The within-noise crossings of a ``crossover_frame``: the ones refine does not bisect."""
    noise = frame[np.isfinite(frame["crossover_size"]) & ~frame["decisive"].astype(bool)]
    return [SkippedCrossing(str(r["op"]), str(r["dtype"]), str(r["mode"]), str(r["device_a"]),
                            str(r["device_b"]), float(r["crossover_size"]), float(r["low"]), float(r["high"]))
            for r in records(noise)]


def refine_plan(results: pd.DataFrame, samples: pd.DataFrame | None = None, rel_tol: float = 0.05
                ) -> list[RefineCell]:
    """The cells to measure next: one bisection point (in log size) inside each unconverged decisive bracket.

    Only decisive crossings (``crossover_frame(results, samples)``) are refined, each independently: the
    bracket is the pair of measured sizes around its point estimate, inside its decisive range [low, high]; a
    crossing within noise is left alone (see ``skipped_crossings``). A size already attempted by either
    device and not ok (failed, skipped…) is avoided, since measuring it again would not narrow anything; a
    device that already has an ok cell at the chosen size is not asked again. Requests for the same (op,
    dtype, mode, size) are merged. Sorted, so the plan is deterministic.
    """
    if not 0 < rel_tol < 1:
        raise UsageError(f"refine tolerance {rel_tol!r} must be a fraction between 0 and 1 (0.05 is 5 %)")
    frame = crossover_frame(results, samples)
    frame = frame[np.isfinite(frame["crossover_size"]) & frame["decisive"].astype(bool)]
    if frame.empty:
        return []
    status = results.assign(ok=results["status"].astype(str) == "ok")
    attempted: dict[tuple[str, str, str, str], dict[int, bool]] = {}
    for r in records(status[[*GROUP, "device", "size", "ok"]]):
        key = (str(r["op"]), str(r["dtype"]), str(r["mode"]), str(r["device"]))
        sizes = attempted.setdefault(key, {})
        sizes[int(r["size"])] = sizes.get(int(r["size"]), False) or bool(r["ok"])
    wanted: dict[tuple[str, str, str, int], set[str]] = {}
    for r in records(frame):
        lo, hi = int(r["bracket_low"]), int(r["bracket_high"])
        if bracket_converged(lo, hi, r["crossover_size"], rel_tol):
            continue
        op, dtype, mode = str(r["op"]), str(r["dtype"]), str(r["mode"])
        pair = (str(r["device_a"]), str(r["device_b"]))
        seen = [attempted.get((op, dtype, mode, d), {}) for d in pair]
        unusable = {s for sizes in seen for s, ok in sizes.items() if not ok}
        unusable |= set(seen[0]) & set(seen[1])
        size = _bisection_size(lo, hi, unusable)
        if size is None:
            continue
        need = {d for d, sizes in zip(pair, seen, strict=True) if size not in sizes}
        wanted.setdefault((op, dtype, mode, size), set()).update(need)
    return sorted(
        RefineCell(op, dtype, mode, tuple(device_order(devices)), size)
        for (op, dtype, mode, size), devices in wanted.items()
    )


@dataclass
class Refinement:
    """What ``refine`` did: the merged results (and samples), the rounds run, and what is left."""

    results: pd.DataFrame
    rounds: int
    converged: bool
    """True when no decisive bracket is left that more measurements could narrow."""
    pending: list[RefineCell] = field(default_factory=list)
    """The cells the next round would measure (empty when converged)."""
    measured: list[RefineCell] = field(default_factory=list)
    """Every cell requested from ``measure``, in order."""
    skipped: list[SkippedCrossing] = field(default_factory=list)
    """The crossings within noise in the final results: not bisected."""
    samples: pd.DataFrame | None = None
    """The merged samples (None when ``refine`` was given none)."""


def _merge_samples(old: pd.DataFrame, new_results: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``old`` samples with every cell that ``new_results`` re-measured replaced by its ``new`` samples."""
    from devbench.schema import IDENTITY

    if old.empty:
        fresh: pd.DataFrame = new.reset_index(drop=True)
        return fresh
    replaced = set(new_results[list(IDENTITY)].itertuples(index=False, name=None))
    keep = [key not in replaced for key in old[list(IDENTITY)].itertuples(index=False, name=None)]
    merged: pd.DataFrame = pd.concat([old[keep], new], ignore_index=True)
    return merged


def refine(results: pd.DataFrame, measure: MeasureFn, max_rounds: int = 6, rel_tol: float = 0.05,
           samples: pd.DataFrame | None = None) -> Refinement:
    """Narrow every decisive crossover bracket by bisection in log size until within ``rel_tol`` or out of
    rounds; crossings within noise are skipped (``Refinement.skipped``).

    Each round asks ``measure`` for the cells of ``refine_plan`` and merges the rows it returns (a cell it
    returns again replaces the old row, and its samples the old samples). With ``samples`` None (a bare
    table) decisiveness comes from the cells' CIs and the samples ``measure`` returns are not used. A round
    whose ``measure`` returns no rows ends the loop, since nothing would change. From a x2 grid, each round
    halves the bracket in log space: about five rounds take a bracket from 100 % to within 5 %.
    """
    if max_rounds < 0:
        raise UsageError(f"refine rounds {max_rounds!r} must be 0 or more")
    current = results.reset_index(drop=True)
    current_samples = None if samples is None else samples.reset_index(drop=True)
    measured: list[RefineCell] = []

    def outcome(rounds: int, converged: bool, pending: list[RefineCell]) -> Refinement:
        skipped = skipped_crossings(crossover_frame(current, current_samples))
        return Refinement(current, rounds, converged, pending, measured, skipped, current_samples)

    for done in range(max_rounds):
        plan = refine_plan(current, current_samples, rel_tol)
        if not plan:
            return outcome(done, True, [])
        measured.extend(plan)
        new, new_samples = measure(plan)
        if new.empty:
            return outcome(done + 1, False, plan)
        current = merge_results(current, new.reindex(columns=list(RESULT_COLUMNS)))
        if current_samples is not None:
            current_samples = _merge_samples(current_samples, new, new_samples)
    plan = refine_plan(current, current_samples, rel_tol)
    return outcome(max_rounds, not plan, plan)
