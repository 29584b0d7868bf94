"""Pure statistics over per-call times (seconds). No I/O, no TensorFlow, no global state.

What lives here: summaries of a cell (:func:`summarize` for one batch of samples, :func:`summarize_rounds`
for samples grouped by round), the verdict a ratio's interval allows (:func:`verdict_from_interval`,
:func:`decisive_direction`), and the multiple-comparison gate over many cells (:func:`holm_adjust`,
:func:`bh_adjust`, :func:`gate_failures`). The bootstrap behind the intervals is in
:mod:`devbench.resampling`.

No interval here is ever passed off as more than it is: where the data cannot give a ``confidence``
interval (too few samples for order statistics in one batch, too few rounds to see drift, samples with no
spread at all) the bounds are NaN and ``ci_reason`` says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from devbench.errors import UsageError
from devbench.resampling import DEFAULT_N_BOOT, Rounds, Seed, as_rounds, cell_median, median_interval

NOISY_REL_IQR = 0.10
"""A cell whose IQR is over this fraction of its median is flagged as noisy in every table and chart."""

Verdict = Literal["slower", "faster", "same", "uncertain"]
GateMethod = Literal["holm", "bh"]


@dataclass(frozen=True)
class Summary:
    """Robust summary of per-call times, all in seconds except ``n``, ``n_rounds`` and the fractions
    ``rel_iqr`` and ``between_round_rel``.

    ``median``: over rounds weighted alike (:func:`devbench.resampling.cell_median`; the plain median for
    one batch); the other statistics are over all samples pooled. ``ci_low``/``ci_high``: the ``confidence``
    interval of the median, NaN when the data cannot give one (``ci_reason`` then says why; it is "" for a
    valid interval). ``n_rounds``: visits the samples came from (1 for :func:`summarize`).
    ``between_round_rel``: (largest - smallest round median) / median, NaN with one round.
    """

    n: int
    median: float
    q1: float
    q3: float
    iqr: float
    mean: float
    std: float
    min: float
    max: float
    ci_low: float
    ci_high: float
    rel_iqr: float
    n_rounds: int = 1
    between_round_rel: float = math.nan
    ci_reason: str = ""

    @property
    def noisy(self) -> bool:
        return self.rel_iqr > NOISY_REL_IQR

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def median_ci_indices(n: int, confidence: float = 0.95) -> tuple[int, int] | None:
    """0-based order-statistic indices (lo, hi) of a distribution-free CI for the median, or None.

    The interval [x_(lo), x_(hi)] of the sorted sample covers the true median of independent samples with
    probability P(lo+1 <= B <= hi) for B ~ Binomial(n, 1/2), at least ``confidence``. None when no pair of
    order statistics reaches it (n < 6 at 95 %): [min, max] would cover less, and is no 95 % interval.
    """
    if n < 1:
        raise ValueError("need at least one sample")
    alpha = 1.0 - confidence
    j = _binomial_half_ppf(alpha / 2, n)  # smallest j with P(B <= j) >= alpha/2
    if j < 1:
        return None
    # 1-based (j, n - j + 1) -> 0-based (j - 1, n - j)
    return j - 1, n - j


def min_samples_for_median_ci(confidence: float = 0.95) -> int:
    """Fewest independent samples whose order statistics give a ``confidence`` interval of the median."""
    n = 1
    while median_ci_indices(n, confidence) is None:
        n += 1
    return n


def _binomial_half_ppf(q: float, n: int) -> int:
    """Smallest j with P(B <= j) >= q for B ~ Binomial(n, 1/2), computed exactly (no scipy at import)."""
    total = 2**n
    cumulative = 0
    for j in range(n + 1):
        cumulative += math.comb(n, j)
        if cumulative >= q * total:
            return j
    return n


def _check_confidence(confidence: float) -> None:
    if not (isinstance(confidence, (int, float)) and math.isfinite(confidence) and 0.0 < confidence < 1.0):
        raise UsageError(f"confidence {confidence!r} is out of range; allowed: 0 < confidence < 1 (e.g. 0.95)")


def _describe(values: npt.NDArray[np.float64], median: float | None = None) -> Summary:
    """Everything but the median's interval (NaN here), from sorted finite samples; ``median``: the cell's
    median when it is not the plain median of ``values`` (rounds weighted equally)."""
    n = int(values.size)
    q1, pooled_median, q3 = (float(v) for v in np.percentile(values, [25, 50, 75]))
    median = pooled_median if median is None else median
    iqr = q3 - q1
    return Summary(n=n, median=median, q1=q1, q3=q3, iqr=iqr, mean=float(values.mean()),
                   std=float(values.std(ddof=1)) if n > 1 else 0.0, min=float(values[0]),
                   max=float(values[-1]), ci_low=math.nan, ci_high=math.nan,
                   rel_iqr=iqr / median if median > 0 else math.inf)


def summarize(samples: Sequence[float], confidence: float = 0.95) -> Summary:
    """Summarize one batch of per-call times, treated as independent draws (one level: blind to drift).

    Quartiles use linear interpolation (numpy's default, Hyndman–Fan type 7). The median's interval is the
    distribution-free order-statistic one; with fewer than ``min_samples_for_median_ci(confidence)``
    samples (6 at 95 %) it is NaN, with the reason.
    """
    _check_confidence(confidence)
    values = np.sort(np.asarray(samples, dtype=np.float64))
    if values.size == 0:
        raise ValueError("cannot summarize zero samples")
    if not np.all(np.isfinite(values)):
        raise ValueError("samples must be finite")
    described = _describe(values)
    n = described.n
    indices = median_ci_indices(n, confidence)
    if indices is None:
        need = min_samples_for_median_ci(confidence)
        return replace(described, ci_reason=f"{n} sample{'s' if n != 1 else ''}: too few for a "
                                            f"{confidence:.0%} interval of the median (need at least {need})")
    lo, hi = indices
    return replace(described, ci_low=float(values[lo]), ci_high=float(values[hi]))


def between_round_rel(rounds: Rounds) -> float:
    """(largest - smallest round median) / the cell's median: how far the visits disagreed, a fraction.

    The range rather than an IQR because there are few rounds (3-10: an IQR of 3 values is half their
    range by interpolation) and because it reads directly against a threshold: 0.12 means the visits'
    medians spanned 12 % of the median, so a 5 % change cannot be told from drift with these rounds. It grows
    slowly with the number of rounds. NaN for one round, which cannot show drift (0 would claim none).
    """
    cell = as_rounds(rounds)
    if len(cell) < 2:
        return math.nan
    medians = np.array([np.median(r) for r in cell])
    return float((medians.max() - medians.min()) / cell_median(cell))


def summarize_rounds(rounds: Rounds, *, confidence: float = 0.95, n_boot: int = DEFAULT_N_BOOT,
                     seed: Seed = 0) -> Summary:
    """Summarize a cell's samples grouped by round (``rounds[r]``: per-call seconds of visit r).

    The median is :func:`devbench.resampling.cell_median`: the rounds weigh equally, however many samples
    each took (the timer's stopping rule gives a disturbed visit more). Quartiles, mean, spread and extremes
    are over all samples pooled (``rel_iqr`` is the pooled IQR over that median); when the rounds differ in
    size and disagree, the median can fall outside the pooled quartiles.

    The median's interval is the two-level bootstrap of :func:`devbench.resampling.median_interval` (rounds,
    then samples within them), so it includes the drift between visits. Its unit is the round, not the
    sample: it needs ``MIN_ROUNDS_FOR_CI`` rounds (NaN with a reason below: one round "cannot see drift
    between rounds") but not the 6 samples :func:`summarize`'s order statistics need. With one sample a
    round it is a bootstrap of the round values widened for few rounds, which covered 95-96 % of simulated
    cells at 4 rounds and 91-93 % at 3, so 3 rounds with a single-sample round give NaN and say so
    (``tests/test_resampling.py``). Quantised samples get no zero-width interval: it is floored at the
    samples' resolution, and NaN when every sample is the same value.
    """
    _check_confidence(confidence)
    cell = as_rounds(rounds)
    pooled = np.sort(np.concatenate(cell))
    interval = median_interval(cell, confidence=confidence, n_boot=n_boot, seed=seed)
    return replace(_describe(pooled, cell_median(cell)), ci_low=interval.ci_low, ci_high=interval.ci_high,
                   n_rounds=len(cell), between_round_rel=between_round_rel(cell), ci_reason=interval.reason)


def rel_iqr(samples: Sequence[float]) -> float:
    """IQR over median of ``samples``; inf for a zero median."""
    q1, median, q3 = np.percentile(np.asarray(samples, dtype=np.float64), [25, 50, 75])
    return float((q3 - q1) / median) if median > 0 else math.inf


# --------------------------------------------------------------------------------------------------------
# Verdicts from intervals


def _check_threshold(threshold: float) -> None:
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and 0.0 <= threshold < 1.0):
        raise UsageError(f"--threshold {threshold!r} is out of range; allowed: a fraction 0 <= t < 1 "
                         "(0.05 means a 5 % change)")


def same_band(threshold: float) -> tuple[float, float]:
    """The band of ratios NEW/BASE that count as no change: [1/(1 + t), 1 + t].

    Symmetric on the log scale (|log r| <= log(1 + t)), so swapping base and new (r -> 1/r) maps the band
    onto itself and every verdict onto its mirror; [1 - t, 1 + t] would not (0.95 is inside it, 1/0.95 =
    1.053 is not).
    """
    _check_threshold(threshold)
    return 1.0 / (1.0 + threshold), 1.0 + threshold


def verdict_from_interval(ci_low: float, ci_high: float, threshold: float) -> Verdict:
    """What an interval of a ratio NEW/BASE (> 1: slower) allows, with the band [1/(1 + t), 1 + t]
    (:func:`same_band`):

    ``slower`` when ci_low > 1 + t; ``faster`` when ci_high < 1/(1 + t); ``same`` when 1/(1 + t) <= ci_low
    and ci_high <= 1 + t (the data rule out any change beyond t); ``uncertain`` otherwise, and for a NaN
    bound. The verdict depends on nothing but the interval, so the two never disagree; and the verdict of
    the inverse interval [1/ci_high, 1/ci_low] (base and new swapped) is its mirror (slower <-> faster).
    """
    low, high = same_band(threshold)
    if not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return "uncertain"
    if ci_low > ci_high:
        raise ValueError(f"interval [{ci_low}, {ci_high}] has its low end above its high end")
    if ci_low > high:
        return "slower"
    if ci_high < low:
        return "faster"
    if low <= ci_low and ci_high <= high:
        return "same"
    return "uncertain"


def decisive_direction(ci_low: float, ci_high: float) -> int:
    """+1 when the interval of a ratio lies wholly above 1, -1 wholly below 1, 0 when it holds 1 or is NaN.

    For crossovers: device A is decisively slower than B at a size only when the paired ratio A/B gives +1.
    """
    if not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return 0
    if ci_low > 1.0:
        return 1
    if ci_high < 1.0:
        return -1
    return 0


# --------------------------------------------------------------------------------------------------------
# The gate over many cells


def _finite(p_values: Sequence[float] | npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64],
                                                                         npt.NDArray[np.bool_]]:
    p = np.asarray(p_values, dtype=np.float64)
    tested = np.isfinite(p)
    if np.any((p[tested] < 0) | (p[tested] > 1)):
        raise ValueError("p-values must lie in [0, 1] (NaN for an untested cell)")
    return p, tested


def holm_adjust(p_values: Sequence[float] | npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Holm step-down adjusted p-values (family-wise error control under any dependence).

    NaN entries (untested cells) stay NaN and do not count in the family size.
    """
    p, tested = _finite(p_values)
    out = np.full(p.shape, np.nan)
    q = p[tested]
    m = q.size
    if m:
        order = np.argsort(q, kind="stable")
        steps = np.maximum.accumulate((m - np.arange(m)) * q[order])
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(steps, 1.0)
        out[tested] = adjusted
    return out


def bh_adjust(p_values: Sequence[float] | npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Benjamini–Hochberg adjusted p-values (false discovery rate), by scipy; NaN entries stay NaN."""
    p, tested = _finite(p_values)
    out = np.full(p.shape, np.nan)
    if np.any(tested):
        from scipy import stats as sps  # lazy: scipy costs ~0.3 s to import

        out[tested] = sps.false_discovery_control(p[tested], method="bh")
    return out


def gate_failures(p_values: Sequence[float] | npt.NDArray[np.float64], alpha: float = 0.05,
                  method: GateMethod = "holm") -> npt.NDArray[np.bool_]:
    """Which cells the CI gate fails on: adjusted p <= ``alpha``. The gate fails when any entry is True.

    ``p_values``: per cell, the one-sided p-value of "slower by more than the threshold t", i.e.
    ``interval.p_above(1 + t)`` of its ratio (:class:`devbench.resampling.LogInterval`); NaN for a cell that
    could not be tested, which never fails the gate (it is reported as uncertain instead).

    What it promises, in numbers: with ``holm``, when no cell is truly slower by more than t, the gate
    fails with probability at most ``alpha`` however many cells it judges and however they are correlated
    (strong family-wise control, given per-cell p-values that hold their level: compare's Welch p-values
    do so down to 1e-4 within about 1.5x, measured in ``simulation.gate``). With ``bh`` the promise is the same when no
    cell changed, and when some did, at most a fraction ``alpha`` of the cells it flags are false on
    average (for independent or positively dependent p-values, as shared drift makes them); it flags more
    of the real changes than Holm.
    """
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and 0.0 < alpha < 1.0):
        raise UsageError(f"--alpha {alpha!r} is out of range; allowed: 0 < alpha < 1 (e.g. 0.05)")
    if method == "holm":
        adjusted = holm_adjust(p_values)
    elif method == "bh":
        adjusted = bh_adjust(p_values)
    else:
        raise UsageError(f"unknown gate method {method!r}; allowed: holm, bh")
    return np.asarray(np.isfinite(adjusted) & (adjusted <= alpha), dtype=np.bool_)
