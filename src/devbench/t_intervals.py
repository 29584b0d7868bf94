"""Student-t intervals whose unit is the round (or the run): the tests behind crossovers and the gate.

The bootstrap in :mod:`devbench.resampling` is right for a cell's *interval*, but two conclusions need the
far tail of a distribution, and a bootstrap over 3-10 rounds cannot give it:

- a **crossing** is decisive when the device ratio is on opposite sides of 1 at two sizes, judged with a
  band that holds at every size of the curve at once (Bonferroni over the sizes, so each size is judged at
  ``1 - alpha / K``);
- the **gate** corrects p-values for hundreds of cells (Holm needs p ~ 1e-4 to hold its level).

Both are answered here with the classic tool: a t statistic on round-level log values (a round's log
median, or a round's log ratio of medians), its variance estimated from the rounds and never cut off, its
degrees of freedom from the rounds (Welch-Satterthwaite for two sides). Within-round noise is inside the
round values, so nothing is counted twice. The simulated rates are in ``bench/statistical_rates.py`` and
``tests/test_t_intervals.py``.

Units: every value here is a natural log of seconds or of a ratio of seconds; :class:`LogInterval` turns
them back into seconds and ratios.

Quantised samples (a coarse clock, or a block whose time is a multiple of a tick) can make every round give
the same value: a variance of 0 would claim infinite certainty. The variance is floored at the resolution
the samples show (the smallest step between distinct sample values, squared over 12, the variance of
rounding); where no step shows at all, there is no interval and the reason says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from devbench.resampling import (
    MIN_ROUNDS_FOR_CI,
    NO_SPREAD_REASON,
    FloatArray,
    LogInterval,
    log_resolution,
    no_interval,
    t_quantile,
)

__all__ = ["NO_SPREAD_REASON", "Mean", "log_resolution", "mean_of_units", "mean_over_runs", "t_interval",
           "welch_difference"]


@dataclass(frozen=True)
class Mean:
    """A mean of log values with the variance of that mean and the degrees of freedom behind the variance.

    ``variance`` is already divided by the number of units (it is the variance of ``value``); ``units`` is
    how many rounds or runs it rests on. ``reason`` is "" or why the variance is unknown (NaN).
    """

    value: float
    variance: float
    dof: float
    units: int
    reason: str = ""


def _floored(values: FloatArray, resolution: float) -> tuple[float, str]:
    """Sample variance of ``values`` floored at the rounding variance of ``resolution`` (0 and a reason when
    neither shows any spread)."""
    var = float(np.var(values, ddof=1))
    floor = resolution * resolution / 12.0 if math.isfinite(resolution) else 0.0
    var = max(var, floor)
    return (var, "") if var > 0 else (0.0, NO_SPREAD_REASON)


def mean_of_units(values: Sequence[float] | FloatArray, *, resolution: float = math.inf) -> Mean:
    """The mean of round-level (or run-level) log values and its variance from their spread, dof n - 1.

    Fewer than :data:`devbench.resampling.MIN_ROUNDS_FOR_CI` values give a NaN variance and the reason.
    """
    v = np.asarray(values, dtype=np.float64)
    n = int(v.size)
    if n == 0:
        raise ValueError("need at least one value")
    mean = float(v.mean())
    if n < MIN_ROUNDS_FOR_CI:
        return Mean(mean, math.nan, math.nan, n, _too_few(n))
    var, reason = _floored(v, resolution)
    if reason:
        return Mean(mean, math.nan, math.nan, n, reason)
    return Mean(mean, var / n, n - 1.0, n)


def _too_few(n: int) -> str:
    if n == 1:
        return "1 round: cannot see drift between rounds"
    return f"{n} rounds: too few to bound drift between rounds (need at least {MIN_ROUNDS_FOR_CI})"


def mean_over_runs(runs: Sequence[Sequence[float] | FloatArray], *, resolution: float = math.inf) -> Mean:
    """One side of a comparison: the cell's log round medians from one or more runs.

    One run: the mean of its rounds (:func:`mean_of_units`), conditional on that run unless its rounds ran in
    separate processes. Several runs: the run is the unit (each run's mean of its rounds, equally weighted),
    so whole-run offsets enter the variance; dof = runs - 1. The variance is floored at what the rounds
    alone give (pooled round variance over all rounds), since a run's mean can never be surer than its own
    rounds make it: two runs that agree by luck do not make a side certain.
    """
    arrays = [np.asarray(r, dtype=np.float64) for r in runs if len(r)]
    if not arrays:
        raise ValueError("need at least one run with rounds")
    if len(arrays) == 1:
        return mean_of_units(arrays[0], resolution=resolution)
    means = np.array([a.mean() for a in arrays])
    m = len(arrays)
    value = float(means.mean())
    # The rounds' own share: each run's mean has variance >= s_round^2 / R_run; the side's mean the average.
    spread = [float(np.var(a, ddof=1)) / a.size for a in arrays if a.size >= 2]
    round_floor = sum(spread) / len(spread) / m if spread else 0.0
    var, reason = _floored(means, resolution)
    if reason and round_floor <= 0.0:
        return Mean(value, math.nan, math.nan, m, reason)
    return Mean(value, max(var / m, round_floor), m - 1.0, m)


def t_interval(mean: Mean, confidence: float) -> LogInterval:
    """The symmetric t interval of ``mean`` at ``confidence`` (NaN bounds and the reason when unknown)."""
    if mean.reason or not math.isfinite(mean.variance):
        return no_interval(mean.value, confidence, mean.units, mean.reason or "no variance")
    se = math.sqrt(mean.variance)
    half = t_quantile(0.5 + confidence / 2.0, mean.dof) * se
    return LogInterval(mean.value, half, half, confidence, mean.units, dof=mean.dof)


def welch_difference(base: Mean, new: Mean, confidence: float) -> LogInterval:
    """NEW - BASE of two independent means (log ratio NEW/BASE), Welch-Satterthwaite degrees of freedom.

    Its ``p_above`` / ``p_below`` are exactly Welch's one-sided p-values, since the interval is the t
    interval those p-values invert.
    """
    value = new.value - base.value
    units = min(base.units, new.units)
    for side, m in (("base", base), ("new", new)):
        if m.reason or not math.isfinite(m.variance):
            return no_interval(value, confidence, units, f"{side}: {m.reason or 'no variance'}")
    var = base.variance + new.variance
    dof = var * var / (base.variance**2 / base.dof + new.variance**2 / new.dof)
    return t_interval(Mean(value, var, dof, units), confidence)
