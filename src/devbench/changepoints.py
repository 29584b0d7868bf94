"""Steps in a series of one cell's medians over many runs: a penalised segmentation weighted by each run's
interval, with a between-run variance fitted with it. Pure numpy, no I/O.

The idea is asv's (``step_detect``: a Potts / BIC-style fit, a piecewise-constant function whose cost is the
weighted squared error plus a penalty per jump); the code is devbench's own. Three things make it fit
devbench's runs:

- **Each run's weight comes from its interval.** A cell's median has a 95 % interval whose half-width is a t
  quantile (``n_rounds - 1`` degrees of freedom) times its standard error, so ``se = half / t``; a run with a
  wide interval counts less. With 3 rounds that ``se`` rests on 2 degrees of freedom, so it is pulled towards
  the series' median before use (:data:`DOF_PRIOR`): a run whose rounds agreed by luck must not outweigh the
  others.
- **A between-run variance.** One run's interval is conditional on that run: its rounds share the process,
  so an offset of the whole run is not in it. Weighting by the intervals alone would call every such offset
  a step (30 A/A runs would be full of steps). So every point's variance is ``se_i² + tau²``, and ``tau²`` is
  estimated with the segmentation, not before it: the fit minimises the Gaussian negative log-likelihood
  ``sum((y_i - mu_seg)² / v_i + log v_i) + penalty * steps`` over the segmentation (exactly: optimal
  partitioning, O(n²)) and over ``tau`` on a grid (:data:`TAU_GRID`). Estimating ``tau²`` from the series
  first (a robust scale of successive differences) fails on short series: in five runs with a step down and
  back, two of the four differences are the steps. Without any interval the likelihood has no floor, so
  ``tau²`` is then fixed at half the robust square scale of successive differences.
- **The penalty** is :data:`PENALTY_PER_LOG_N` ``* log(n)``, and each step found must also have a 95 %
  interval (difference of the two neighbouring segments' weighted means) that excludes 1; a step that does
  not is merged away. The rates (a real 10 % step found at the right run, false steps on A/A series, with
  drift per cell, round and run) are measured by ``bench/history_rates.py`` and quoted in the README
  ("History").

Units: values are natural logs of seconds (so a step's size is a ratio after/before); ``index`` is the
position in the series of the first point after a step.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from devbench.resampling import t_quantile

FloatArray = npt.NDArray[np.float64]

CONFIDENCE = 0.95
"""Confidence of a step's interval, and what its interval must exclude 1 at for the step to be kept."""

PENALTY_PER_LOG_N = 4.0
"""The penalty per step is this times log(n) in units of the standardised squared error. BIC would be 2 (a
step's two parameters); with tau² fitted jointly and intervals from 3 rounds, 3 gave false steps on up to 5 %
of 30-run A/A series and 4 on up to 1.5 % (bench/history_rates.py has the figures for whole runs)."""

DOF_PRIOR = 4.0
"""How many degrees of freedom the series' median variance counts for when a run's own variance (from its
interval, ``n_rounds - 1`` dof) is shrunk towards it."""

MIN_POINTS = 4
"""A series shorter than this is not segmented (no step can be told from noise)."""

_MAD_TO_SD = 1.482602218505602
"""Robust scale: sd = 1.4826 x median absolute deviation, for normal data."""


@dataclass(frozen=True)
class Segment:
    """Points ``start`` up to (not including) ``stop``: their weighted mean (log) and its standard error."""

    start: int
    stop: int
    log_mean: float
    log_se: float


@dataclass(frozen=True)
class Step:
    """A step between two segments: ``index`` is the first point after it; ``log_ratio`` after - before."""

    index: int
    log_ratio: float
    half_width: float
    before: Segment
    after: Segment

    @property
    def ratio(self) -> float:
        """after / before (> 1: slower after the step for a time)."""
        return math.exp(self.log_ratio)

    @property
    def ci_low(self) -> float:
        return math.exp(self.log_ratio - self.half_width)

    @property
    def ci_high(self) -> float:
        return math.exp(self.log_ratio + self.half_width)


@dataclass(frozen=True)
class Segmentation:
    """The fit of one series: its segments, the steps between them, and the variances behind the weights."""

    segments: tuple[Segment, ...]
    steps: tuple[Step, ...]
    between_run_var: float
    """tau²: the variance (log units) of a whole run's offset that no run's interval holds."""
    penalty: float


def standard_errors(log_low: npt.ArrayLike, log_high: npt.ArrayLike, n_rounds: npt.ArrayLike,
                    confidence: float = CONFIDENCE) -> FloatArray:
    """Each point's standard error (log units) read back from its interval: half-width over the t quantile of
    ``n_rounds - 1`` degrees of freedom (normal where unknown). NaN where the interval is missing."""
    low, high = np.asarray(log_low, dtype=np.float64), np.asarray(log_high, dtype=np.float64)
    rounds = np.asarray(n_rounds, dtype=np.float64)
    quantiles = np.array([t_quantile(0.5 + confidence / 2.0, r - 1.0) if r >= 2 else
                          t_quantile(0.5 + confidence / 2.0, math.inf) for r in np.broadcast_to(rounds, low.shape)])
    se: FloatArray = (high - low) / 2.0 / quantiles
    return se


def _robust_square_scale(values: FloatArray) -> float:
    """(1.4826 x median |v|)²: a variance of values centred on 0 that a few outliers (a step) cannot move."""
    if values.size == 0:
        return math.nan
    return float((_MAD_TO_SD * np.median(np.abs(values))) ** 2)


def own_variances(log_se: npt.ArrayLike, dof: npt.ArrayLike | None = None) -> FloatArray:
    """Each point's own variance (se²), shrunk towards the series' median by :data:`DOF_PRIOR` (a point's
    ``dof``: its ``n_rounds - 1``; None: exact, no shrinking); an unknown one (NaN) is the median. All zeros
    when no point has an interval."""
    se = np.asarray(log_se, dtype=np.float64)
    own = se * se
    known = np.isfinite(own) & (own > 0)
    median_own = float(np.median(own[known])) if known.any() else 0.0
    own = np.where(known, own, median_own)
    if dof is not None:
        d = np.asarray(dof, dtype=np.float64)
        d = np.where(np.isfinite(d) & (d > 0), d, 0.0)
        own = (d * own + DOF_PRIOR * median_own) / (d + DOF_PRIOR)
    out: FloatArray = own
    return out


TAU_GRID: FloatArray = np.concatenate([[0.0], np.geomspace(0.002, 1.0, 48)])
"""The between-run standard deviations (log units: 0.2 % to 100 %) the fit chooses from."""


def _optimal_partitions(y: FloatArray, w: FloatArray, penalty: float) -> tuple[list[list[int]], FloatArray]:
    """For each row of weights ``w`` (k x n): the change indices (first point of each new segment) minimising
    the weighted squared error + penalty per change, and that minimum.

    Exact dynamic programming over every last-segment start (O(n²)), vectorised over the starts and over the
    k weightings at once (the fit tries every tau of :data:`TAU_GRID` in one pass)."""
    k, n = w.shape
    zero = np.zeros((k, 1))
    cw = np.hstack([zero, np.cumsum(w, axis=1)])
    cwy = np.hstack([zero, np.cumsum(w * y, axis=1)])
    cwyy = np.hstack([zero, np.cumsum(w * y * y, axis=1)])
    best = np.zeros((k, n + 1))
    best[:, 0] = -penalty
    last = np.zeros((k, n + 1), dtype=np.int64)
    rows = np.arange(k)
    for t in range(1, n + 1):
        sw, swy = cw[:, t:t + 1] - cw[:, :t], cwy[:, t:t + 1] - cwy[:, :t]
        cost = best[:, :t] + penalty + (cwyy[:, t:t + 1] - cwyy[:, :t] - swy * swy / sw)
        at = np.argmin(cost, axis=1)
        best[:, t], last[:, t] = cost[rows, at], at
    partitions = []
    for row in range(k):
        changes: list[int] = []
        t = n
        while t > 0:
            t = int(last[row, t])
            if t > 0:
                changes.append(t)
        partitions.append(sorted(changes))
    minima: FloatArray = best[:, n]
    return partitions, minima


def _segments(y: FloatArray, v: FloatArray, changes: Sequence[int]) -> list[Segment]:
    bounds = [0, *changes, y.size]
    out = []
    for start, stop in itertools.pairwise(bounds):
        w = 1.0 / v[start:stop]
        out.append(Segment(start, stop, float(np.sum(w * y[start:stop]) / w.sum()), float(math.sqrt(1.0 / w.sum()))))
    return out


def _steps(segments: Sequence[Segment], confidence: float) -> list[Step]:
    z = t_quantile(0.5 + confidence / 2.0, math.inf)
    return [Step(after.start, after.log_mean - before.log_mean, z * math.hypot(before.log_se, after.log_se),
                 before, after) for before, after in itertools.pairwise(segments)]


def _fit(y: FloatArray, own: FloatArray, beta: float) -> tuple[list[int], FloatArray, float]:
    """(changes, variances, tau²) minimising the penalised cost jointly over the segmentation and tau² (the
    Gaussian negative log-likelihood: weighted squared error + sum of log variances, + penalty per step).

    Without any interval (``own`` all zero) tau² cannot be told from the fit (every point its own segment would
    explain everything): it is then fixed at half the robust square scale of successive differences."""
    if not (own > 0).any():
        tau2 = _robust_square_scale(np.diff(y)) / 2.0 if y.size > 1 else 0.0
        v = np.full_like(y, tau2 if tau2 > 0 else 1e-12)
        return _optimal_partitions(y, (1.0 / v)[None, :], beta)[0][0], v, tau2
    variances = own[None, :] + (TAU_GRID * TAU_GRID)[:, None]
    partitions, costs = _optimal_partitions(y, 1.0 / variances, beta)
    i = int(np.argmin(costs + np.log(variances).sum(axis=1)))
    return partitions[i], variances[i], float(TAU_GRID[i] ** 2)


def detect_steps(log_values: npt.ArrayLike, log_se: npt.ArrayLike, dof: npt.ArrayLike | None = None, *,
                 penalty: float | None = None, confidence: float = CONFIDENCE) -> Segmentation:
    """Steps in one series of log medians (in run order) with their standard errors (NaN: unknown) and the
    degrees of freedom behind them (``n_rounds - 1``; None: taken as exact).

    Every step returned has an interval at ``confidence`` that excludes 1 (a ratio); ``penalty`` defaults to
    ``PENALTY_PER_LOG_N * log(n)``. Fewer than :data:`MIN_POINTS` points give one segment and no step.
    """
    y = np.asarray(log_values, dtype=np.float64)
    if y.ndim != 1 or not np.isfinite(y).all():
        raise ValueError("log_values must be a 1-d series of finite numbers")
    n = y.size
    if n == 0:
        raise ValueError("need at least one value")
    beta = PENALTY_PER_LOG_N * math.log(max(n, 2)) if penalty is None else penalty
    own = own_variances(log_se, dof)
    if n < MIN_POINTS:
        v = own if (own > 0).all() else np.ones_like(y)
        return Segmentation(tuple(_segments(y, v, [])), (), math.nan, beta)
    changes, variances, tau2 = _fit(y, own, beta)
    while True:
        segments = _segments(y, variances, changes)
        steps = _steps(segments, confidence)
        unsure = [s for s in steps if abs(s.log_ratio) <= s.half_width]
        if not unsure:
            break
        weakest = min(unsure, key=lambda s: abs(s.log_ratio) / s.half_width)
        changes = [c for c in changes if c != weakest.index]
    return Segmentation(tuple(segments), tuple(steps), tau2, beta)


__all__ = ["CONFIDENCE", "DOF_PRIOR", "MIN_POINTS", "PENALTY_PER_LOG_N", "Segment", "Segmentation", "Step",
           "detect_steps", "own_variances", "standard_errors"]
