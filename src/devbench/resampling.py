"""The two-level bootstrap over rounds, and the intervals and ratios built from it. Pure numpy, no I/O.

Data model: a cell's samples grouped by round, ``Sequence[Sequence[float]]`` (round -> per-call seconds).
A *round* is one visit of the cell; rounds are interleaved in time with the other cells of the run, so the
machine's drift shows up as differences between rounds, while the samples of one visit share that visit's
state. Resampling only samples (one level) treats the drift as if it were not there; resampling rounds and
then samples within each chosen round (two levels) lets the interval see it.

Estimates and their intervals:

- A cell's **median** (:func:`cell_median`) is the median of all its samples with every round weighted
  alike (weight 1 per round, split over its samples), so the number of samples a visit happened to take
  does not choose the weights. Its replicate is the same median of one two-level resample: ``R`` rounds
  drawn with replacement, then, in each drawn round, as many samples as it has, drawn with replacement,
  each drawn round again weighing 1.
- **Two cells of different runs** (compare): ratio NEW/BASE of the cells' medians; each side is resampled
  on its own (the runs are independent).
- **Two cells of one run, measured back to back in each round** (crossovers): the per-round ratio of
  medians, combined as the geometric mean over rounds; one draw of rounds serves both cells (paired), and
  within a drawn round each cell's samples are resampled on their own.
- **Geometric mean over many cells of two runs**: one draw of rounds per replicate and run serves every
  cell of that run (see :func:`joint_geomean_ratio`).

Intervals are percentile intervals on the log scale (so the ratio interval of NEW/BASE is exactly the inverse
of BASE/NEW), widened by a small-sample factor (:func:`expansion_factor`). Why percentile and not BCa: the
median's bootstrap distribution is discrete and the round level has 3-10 units, so the BCa bias and
acceleration estimates (a jackknife over rounds) are themselves too noisy to trust; the percentile interval
needs neither, respects the log transform, and its one flaw here (too narrow with few rounds: a bootstrap
over R rounds sees (R-1)/R of the between-round variance and uses normal rather than t quantiles) is what the
expansion factor corrects.

The nominal 95 % interval of the median covered the true one 91.5-95 % of the time at 3 rounds and 95-96.5 %
at 5 and 10 in simulation; the figures, the ratio's and the widths are measured in ``tests/test_resampling``
("Coverage").

Cost: O(n_boot x samples) per cell and side, vectorised over replicates: about 2 ms per side for 5 rounds
x 10 samples at n_boot=2000 on an idle core (1000 cells: ~2.5 s for :func:`median_interval`, ~5 s for
:func:`ratio_of_cells`), 5x that for 50 samples per round; rounds of different sizes cost up to about
twice what the pooled median did (short rounds are padded to the longest, and the weights need a cumulative
sum); :func:`paired_ratio` is O(n_boot x rounds).

Too little data: fewer than :data:`MIN_ROUNDS_FOR_CI` rounds gives NaN bounds and a reason; one round cannot
see drift at all, two give one degree of freedom for it (a t quantile of 12.7). The unit is the round, not
the sample: a cell's median needs no number of samples, but 3 rounds with a single-sample round give no
interval of the median (:func:`too_thin_rounds`). Quantised samples cannot give a zero-width interval: the
half-widths are floored at the samples' resolution (:func:`resolution_floor`), and samples without any
step (all the same value) give NaN and :data:`NO_SPREAD_REASON`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Rounds = Sequence[Sequence[float] | npt.NDArray[np.float64]]
"""A cell's samples by round: ``rounds[r]`` holds the per-call seconds of visit ``r``."""
Seed = int | Sequence[int] | np.random.Generator
"""What numpy's ``default_rng`` takes: a seed, a list of seeds (e.g. [run seed, cell hash]), or a Generator."""

MIN_ROUNDS_FOR_CI = 3
"""Fewer rounds than this on a side gives no interval (NaN and a reason): with 1 round the drift between
rounds is invisible, with 2 its variance has a single degree of freedom."""

MIN_ROUNDS_WITH_A_SINGLE_SAMPLE = 4
"""A cell with a round of a single sample needs this many rounds for an interval of its median: at 3 rounds
such a cell's interval covered 90.5-92.8 % on average over simulated drift and noise, where 3 rounds of 2
samples each covered 93.3 %, of 10 93.7 %, and 4 rounds of 1 sample 95.9 % (``tests/test_resampling.py``)."""

DEFAULT_N_BOOT = 2000
"""Bootstrap replicates per estimate: the 2.5 % quantile then rests on 50 replicates."""

_NORMAL = NormalDist()
_MAD_TO_SIGMA = 1.4826  # MAD of a normal sample times this estimates its standard deviation


def as_rounds(rounds: Rounds) -> list[FloatArray]:
    """The rounds as float arrays, each sorted; ValueError unless every round has positive finite times.

    Sorted rounds let a resample's order statistics be read by index (see :func:`round_median_replicates`).
    """
    out = [np.sort(np.asarray(r, dtype=np.float64)) for r in rounds]
    if not out:
        raise ValueError("need at least one round")
    for i, values in enumerate(out):
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"round {i} has no samples")
        if not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise ValueError(f"round {i}: samples must be finite and positive seconds")
    return out


def draw_rounds(n_rounds: int, n_boot: int, rng: np.random.Generator) -> IntArray:
    """Round indices of ``n_boot`` resamples, shape (n_boot, n_rounds), each drawn with replacement."""
    return rng.integers(0, n_rounds, size=(n_boot, n_rounds), dtype=np.int64)


def _padded(rounds: Sequence[FloatArray]) -> tuple[FloatArray, IntArray]:
    """(table, sizes): round r's sorted samples in row r, +inf beyond its size."""
    sizes = np.array([r.size for r in rounds], dtype=np.int64)
    table = np.full((len(rounds), int(sizes.max())), np.inf)
    for i, r in enumerate(rounds):
        table[i, : r.size] = r
    return table, sizes


def _median_at_half(ordered: npt.NDArray[np.generic], cumulative: FloatArray) -> npt.NDArray[np.generic]:
    """Row-wise weighted median from each row's sorted values (or sorted ranks of values, which are then
    averaged by the caller) and the cumulative sum of their weights.

    The value where the cumulative weight reaches half the row's total; where it reaches exactly half at
    one value, the mean of that value and the next (so equal weights give ``np.median``). Trailing zero
    weights (padding) count for nothing. Sums of weights such as 1/3 are inexact, so "exactly half" is read
    to 1e-9 of the total.
    """
    total = cumulative[:, -1:]
    half, tol = 0.5 * total, 1e-9 * total
    low = np.sum(cumulative < half - tol, axis=1)  # first position whose cumulative weight reaches half
    high = np.sum(cumulative <= half + tol, axis=1)  # first position whose cumulative weight passes half
    return np.stack([np.take_along_axis(ordered, low[:, None], axis=1)[:, 0],
                     np.take_along_axis(ordered, high[:, None], axis=1)[:, 0]])


def cell_median(rounds: Rounds) -> float:
    """A cell's median from its rounds: the median of all its samples with the rounds weighted equally.

    Each round has weight 1, shared equally by its samples, so a visit of 2 samples counts as much as a
    visit of 40. Weighting by sample count instead lets the timer's stopping rule choose the weights: a
    disturbed visit (noisier, so slower to converge) takes more samples and drags the pooled median towards
    itself (``tests/test_resampling.py`` measures the bias both ways). Rounds of one size (and one round)
    give exactly the median of the pooled samples. The one definition of a cell's median wherever it is
    computed from samples; quartiles, mean and extremes stay over the pooled samples.
    """
    return _cell_median(as_rounds(rounds))


def _cell_median(rounds: Sequence[FloatArray]) -> float:
    if len({r.size for r in rounds}) == 1:  # equal weights: the plain median, bit for bit
        return float(np.median(np.concatenate(rounds)))
    values = np.concatenate(rounds)
    weights = np.concatenate([np.full(r.size, 1.0 / r.size) for r in rounds])
    order = np.argsort(values)
    low, high = _median_at_half(values[order][None, :], np.cumsum(weights[order])[None, :])[:, 0]
    return 0.5 * (float(low) + float(high))


def _cell_log_median(rounds: Sequence[FloatArray]) -> float:
    return math.log(_cell_median(rounds))


def pooled_median_replicates(rounds: Sequence[FloatArray], picks: IntArray,
                             rng: np.random.Generator) -> FloatArray:
    """:func:`cell_median` of each two-level resample, shape (n_boot,).

    ``picks`` (n_boot, k) names the rounds of each resample (:func:`draw_rounds`, or a shared draw); each
    picked round contributes as many samples as it has, drawn with replacement from it, and weight 1 split
    over them (as in the estimate, so the interval is centred on the same estimator). Cost O(n_boot x total
    samples): one gather and one sort per replicate.
    """
    table, sizes = _padded(rounds)
    n_boot, k = picks.shape
    width = table.shape[1]
    n_pick = sizes[picks]  # (n_boot, k)
    if int(sizes.min()) == width:  # every round the same size: equal weights, the plain median
        within = rng.integers(0, width, size=(n_boot, k, width), dtype=np.int64)
        values = table.ravel()[picks[..., None] * width + within]  # a flat take: faster than 2-D fancy indexing
        flat = np.sort(values.reshape(n_boot, -1), axis=1)  # a full sort beats np.partition at these sizes
        count = k * width
        return np.asarray(0.5 * (flat[:, (count - 1) // 2] + flat[:, count // 2]), dtype=np.float64)
    # Rounds of different sizes: sort each replicate's samples by their rank among the cell's samples (small
    # integers sort several times faster than an argsort of the values, and the rank gives value and weight).
    pooled = table.ravel()
    order = np.argsort(pooled, kind="stable")  # padding (+inf) ranks last
    rank = np.empty(pooled.size, dtype=np.int32)
    rank[order] = np.arange(pooled.size, dtype=np.int32)
    weight = np.repeat(1.0 / sizes, width)  # the weight of each table entry, by rank below
    weight[np.arange(pooled.size) % width >= np.repeat(sizes, width)] = 0.0
    within = np.minimum((rng.random((n_boot, k, width)) * n_pick[..., None]).astype(np.int64),
                        n_pick[..., None] - 1)
    ranks = rank[picks[..., None] * width + within]
    ranks[np.arange(width)[None, None, :] >= n_pick[..., None]] = pooled.size  # not samples: past the end
    ranks = np.sort(ranks.reshape(n_boot, -1), axis=1)
    by_rank_value = np.append(pooled[order], np.inf)
    low, high = by_rank_value[_median_at_half(ranks, np.cumsum(np.append(weight[order], 0.0)[ranks], axis=1))]
    return np.asarray(0.5 * (low + high), dtype=np.float64)


def round_median_replicates(rounds: Sequence[FloatArray], picks: IntArray,
                            rng: np.random.Generator) -> FloatArray:
    """Median of a with-replacement resample of each picked round, shape of ``picks``.

    Exact and O(1) per entry whatever the round's size: a resample of n sorted values is ``floor(n U_i)``
    for iid uniforms, a monotone map, so its k-th smallest is ``floor(n U_(k))`` with U_(k) ~ Beta(k, n-k+1);
    for even n the next order statistic is U_(k) + (1 - U_(k)) Beta(1, n-k).
    """
    table, sizes = _padded(rounds)
    width = table.shape[1]
    n = sizes[picks]
    flat_rows = picks * width
    out = np.empty(picks.shape)
    for size in np.unique(sizes).tolist():  # one Beta draw per distinct round size: scalar parameters
        where = n == size
        count = int(where.sum())
        if not count:
            continue
        k = (size + 1) // 2 if size % 2 else size // 2
        u = rng.beta(k, size - k + 1, size=count)
        rows = flat_rows[where]
        lower = table.ravel()[rows + np.minimum((u * size).astype(np.int64), size - 1)]
        if size % 2:
            out[where] = lower
        else:
            v = u + (1.0 - u) * rng.beta(1, size - k, size=count)
            out[where] = 0.5 * (lower + table.ravel()[rows + np.minimum((v * size).astype(np.int64), size - 1)])
    return out


# --------------------------------------------------------------------------------------------------------
# Intervals


@dataclass(frozen=True)
class DriftPart:
    """One independent source of round-level variation in an estimate, for :func:`expansion_factor`.

    ``round_stats``: the estimate's round-level quantity, one per round (log round medians of a cell, or
    per-round log ratios); ``within_var``: the variance (log units squared) that within-round noise alone
    gives the estimate.
    """

    round_stats: FloatArray
    within_var: float

    @property
    def n_rounds(self) -> int:
        return int(self.round_stats.size)

    def drift_var(self) -> float:
        """Variance of the estimate from drift alone: spread of the round stats beyond within-round noise."""
        if self.n_rounds < 2:
            return 0.0
        return max(float(np.var(self.round_stats, ddof=1)) / self.n_rounds - self.within_var, 0.0)


def within_var_of_log_median(rounds: Sequence[FloatArray]) -> float:
    """Variance (log units squared) of the log :func:`cell_median` from within-round noise alone.

    Asymptotic variance of a weighted median, sum of w_i^2 times pi sigma_i^2 / 2 with weights normalised to
    1: each round's n_r samples weigh 1 / (R n_r), which gives pi / (2 R^2) times the sum over rounds of
    sigma_r^2 / n_r, sigma_r the round's robust spread (1.4826 MAD of log times). With rounds of one size it
    is pi sigma^2 / (2 N), the pooled median's.
    """
    sizes = np.array([r.size for r in rounds], dtype=np.float64)
    spreads = np.array([_MAD_TO_SIGMA * np.median(np.abs(np.log(r) - np.median(np.log(r)))) for r in rounds])
    return math.pi / 2.0 * float(np.sum(spreads**2 / sizes)) / len(rounds) ** 2


@dataclass(frozen=True)
class Expansion:
    """How much to widen a percentile interval (``factor`` >= 1) and the degrees of freedom of its tails
    (``dof``, inf when no drift is seen: normal tails)."""

    factor: float
    dof: float


def expansion_factor(parts: Sequence[DriftPart], confidence: float) -> Expansion:
    """How much to widen a percentile interval so that few rounds do not make it too narrow.

    A bootstrap over R rounds sees (R-1)/R of the drift variance and gives normal quantiles, where the drift
    variance is estimated from R-1 degrees of freedom. So the drift part of the variance is scaled by
    R/(R-1) and by (t/z)^2, t the Student quantile with the Welch-Satterthwaite degrees of freedom of the
    drift parts alone (R-1 for one cell); within-round noise rests on many samples and keeps its normal
    quantile. The factor is the square root of (within + corrected drift) / (within + drift): 1 without
    drift, t/z sqrt(R/(R-1)) when drift dominates (2.69 at R=3, 1.58 at R=5, 1.22 at R=10 for 95 %).
    (Giving the drift's few degrees of freedom to the total, as a plain Welch-Satterthwaite would, covered
    only 89.5-93 % at R=3 in the simulation: its drift estimate is too noisy to earn them.)

    ``dof`` is the Welch-Satterthwaite degrees of freedom of the total variance, for the tails beyond the
    interval (see :meth:`LogInterval.p_above`).
    """
    drift = [p.drift_var() for p in parts]
    within = sum(p.within_var for p in parts)
    total = sum(drift) + within
    if total <= 0.0 or sum(drift) <= 0.0:
        return Expansion(1.0, math.inf)
    pairs = [(d, p.n_rounds) for d, p in zip(drift, parts, strict=True) if p.n_rounds > 1 and d > 0]
    scaled = sum(d * r / (r - 1) for d, r in pairs)
    drift_dof = sum(d for d, _ in pairs) ** 2 / sum(d * d / (r - 1) for d, r in pairs)
    total_dof = total * total / sum(d * d / (r - 1) for d, r in pairs)
    q = 0.5 + confidence / 2.0
    t_over_z = t_quantile(q, drift_dof) / _NORMAL.inv_cdf(q)
    return Expansion(max(1.0, math.sqrt((within + t_over_z**2 * scaled) / total)), total_dof)


def t_quantile(q: float, dof: float) -> float:
    """Student's t quantile (normal for infinite dof), by scipy.special: without scipy.stats' overhead."""
    if math.isinf(dof):
        return _NORMAL.inv_cdf(q)
    from scipy.special import stdtrit  # lazy: scipy costs ~0.3 s to import

    return float(stdtrit(dof, q))


def _t_cdf(x: float, dof: float) -> float:
    if math.isinf(dof):
        return _NORMAL.cdf(x)
    from scipy.special import stdtr

    return float(stdtr(dof, x))


@dataclass(frozen=True)
class LogInterval:
    """An estimate of a positive quantity (a median in seconds, or a ratio) and its interval.

    Held on the log scale: ``log_estimate`` and the half-widths of the ``confidence`` interval below
    (``half_low``) and above (``half_high``) it, unequal since bootstrap distributions of medians are
    skewed; ``dof`` the degrees of freedom of its tails (inf: normal). ``reason`` is "" for a valid
    interval, else why the bounds are NaN. ``n_rounds`` is the smallest round count among the sides.
    """

    log_estimate: float
    half_low: float
    half_high: float
    confidence: float
    n_rounds: int
    dof: float = math.inf
    reason: str = ""

    @property
    def estimate(self) -> float:
        return math.exp(self.log_estimate)

    @property
    def ci_low(self) -> float:
        return math.exp(self.log_estimate - self.half_low)

    @property
    def ci_high(self) -> float:
        return math.exp(self.log_estimate + self.half_high)

    def _p_beyond(self, gap: float, half: float) -> float:
        """P(T > gap) for the scaled-t tail whose ``confidence`` quantile is ``half`` away from the estimate."""
        if not (math.isfinite(self.half_low) and math.isfinite(self.half_high)):
            return math.nan
        scale = half / t_quantile(0.5 + self.confidence / 2.0, self.dof)
        if scale == 0.0:  # a zero-width side (or one so narrow that the scale underflows): a step
            return 0.0 if gap > 0 else 1.0
        return _t_cdf(-gap / scale, self.dof)

    def p_above(self, bound: float) -> float:
        """One-sided p-value of "the true value is above ``bound``" (H0: it is at most ``bound``).

        Read off a scaled Student t (``dof``) fitted to the interval's lower half-width (upper when the
        estimate is below ``bound``), so ``p_above(b) < (1 - confidence) / 2`` exactly when ``ci_low > b``.
        Unlike a count of replicates it is not floored at 1/(n_boot+1), which a Holm correction over
        hundreds of cells needs; the t tail keeps the extrapolation from being optimistic with few rounds.
        NaN when the interval is NaN.
        """
        if not bound > 0:
            raise ValueError(f"bound {bound!r} must be a positive ratio or time")
        gap = self.log_estimate - math.log(bound)  # > 0: the estimate is above the bound
        return self._p_beyond(gap, self.half_low if gap > 0 else self.half_high)

    def p_below(self, bound: float) -> float:
        """One-sided p-value of "the true value is below ``bound``"; mirror of :meth:`p_above`."""
        if not bound > 0:
            raise ValueError(f"bound {bound!r} must be a positive ratio or time")
        gap = math.log(bound) - self.log_estimate  # > 0: the estimate is below the bound
        return self._p_beyond(gap, self.half_high if gap > 0 else self.half_low)


def no_interval(log_estimate: float, confidence: float, n_rounds: int, reason: str) -> LogInterval:
    """An estimate whose interval cannot be given: NaN bounds and the reason."""
    return LogInterval(log_estimate, math.nan, math.nan, confidence, n_rounds, reason=reason)


def percentile_interval(log_estimate: float, log_replicates: FloatArray, confidence: float,
                        parts: Sequence[DriftPart], resolution: float) -> LogInterval:
    """Percentile interval of ``log_replicates`` around ``log_estimate``, widened by :func:`expansion_factor`,
    each half-width floored by :func:`resolution_floor` (``resolution``: the samples' :func:`log_resolution`).

    NaN with :data:`NO_SPREAD_REASON` when the samples show no step at all (every one
    the same value): then no spread, not even the clock's, can be read from them.
    """
    n_rounds = min(p.n_rounds for p in parts)
    if not math.isfinite(resolution):
        return no_interval(log_estimate, confidence, n_rounds, NO_SPREAD_REASON)
    tail = (1.0 - confidence) / 2.0
    q_low, q_high = (float(v) for v in np.quantile(log_replicates, [tail, 1.0 - tail]))
    widen = expansion_factor(parts, confidence)
    half_low = widen.factor * max(log_estimate - q_low, 0.0)
    half_high = widen.factor * max(q_high - log_estimate, 0.0)
    floor, floor_dof = resolution_floor(parts, resolution, confidence)
    dof = min(widen.dof, floor_dof) if min(half_low, half_high) < floor else widen.dof
    return LogInterval(log_estimate=log_estimate, half_low=max(half_low, floor), half_high=max(half_high, floor),
                       confidence=confidence, n_rounds=n_rounds, dof=dof)


def resolution_floor(parts: Sequence[DriftPart], resolution: float, confidence: float) -> tuple[float, float]:
    """(half-width, dof): the narrowest half-width (log units) the samples' resolution allows, and its dof.

    Quantised samples (a coarse clock, a block time that is a multiple of a tick) can make every resample
    give the same median, and a zero-width interval would claim infinite certainty (and a p-value of 0
    downstream). As in :mod:`devbench.t_intervals`, each part's round values are given at least the variance
    of rounding to ``resolution``, step^2 / 12, so its mean over R rounds has at least step^2 / (12 R); the
    half-width is the t quantile (Welch-Satterthwaite dof over the parts, R - 1 each) times the root of
    their sum. For a continuous clock the step, and so the floor, is negligible.
    """
    floors = [(resolution * resolution / 12.0 / p.n_rounds, p.n_rounds) for p in parts]
    total = sum(v for v, _ in floors)
    dof = total * total / sum(v * v / (r - 1) for v, r in floors)
    return t_quantile(0.5 + confidence / 2.0, dof) * math.sqrt(total), dof


NO_SPREAD_REASON = "every round gave the same value: the spread is below the timer's resolution"
"""Why an interval is NaN when the round values and the samples behind them show no spread at all."""


def log_resolution(samples: Sequence[npt.ArrayLike]) -> float:
    """The smallest positive step between distinct log sample values of one or more cells (inf: none).

    A continuous clock gives a tiny step (a negligible floor); a quantised one gives its tick. Every interval
    here and in :mod:`devbench.t_intervals` is floored at the rounding variance of this step.
    """
    values = np.concatenate([np.log(np.asarray(s, dtype=np.float64)).ravel() for s in samples]) if samples \
        else np.array([])
    steps = np.diff(np.unique(values))
    steps = steps[steps > 0]
    return float(steps.min()) if steps.size else math.inf


def too_few_rounds(counts: Sequence[tuple[str, int]]) -> str:
    """The reason no interval can be given, or "" when every side has enough rounds."""
    short = [(side, n) for side, n in counts if n < MIN_ROUNDS_FOR_CI]
    if not short:
        return ""
    side, n = short[0]
    where = f"{side}: " if side else ""
    if n == 1:
        return f"{where}1 round: cannot see drift between rounds"
    return f"{where}{n} rounds: too few to bound drift between rounds (need at least {MIN_ROUNDS_FOR_CI})"


# --------------------------------------------------------------------------------------------------------
# Estimates of one cell, two cells, many cells


def log_round_medians(rounds: Rounds) -> FloatArray:
    """Each round's log median (empty rounds left out): what every interval over rounds starts from."""
    kept = [r for r in rounds if len(r)]
    sizes = {len(r) for r in kept}
    if len(sizes) == 1:  # one sort for all rounds: per-round np.median calls dominate the simulations' time
        ordered = np.sort(np.asarray(kept, dtype=np.float64), axis=1)
        k = ordered.shape[1]
        return np.asarray(np.log(0.5 * (ordered[:, (k - 1) // 2] + ordered[:, k // 2])), dtype=np.float64)
    return np.log(np.array([np.median(r) for r in kept], dtype=np.float64))


def _cell_part(rounds: Sequence[FloatArray]) -> DriftPart:
    return DriftPart(log_round_medians(rounds), within_var_of_log_median(rounds))


def too_thin_rounds(rounds: Sequence[FloatArray]) -> str:
    """Why a cell's median gets no interval although it has enough rounds, or "": a round of a single sample
    among fewer than :data:`MIN_ROUNDS_WITH_A_SINGLE_SAMPLE` rounds."""
    single = sum(r.size == 1 for r in rounds)
    if not single or len(rounds) >= MIN_ROUNDS_WITH_A_SINGLE_SAMPLE:
        return ""
    return (f"{len(rounds)} rounds, {single} of a single sample: too few to bound drift between rounds (need "
            f"{MIN_ROUNDS_WITH_A_SINGLE_SAMPLE} rounds, or 2 samples in every round)")


def median_interval(rounds: Rounds, *, confidence: float = 0.95, n_boot: int = DEFAULT_N_BOOT,
                    seed: Seed = 0) -> LogInterval:
    """A cell's median (seconds, :func:`cell_median`) with its two-level bootstrap interval.

    The interval's unit is the round: it needs :data:`MIN_ROUNDS_FOR_CI` rounds, not a number of samples (3
    rounds of 2 samples get one; 3 of 1 do not, see :func:`too_thin_rounds`).
    """
    cell = as_rounds(rounds)
    estimate = _cell_log_median(cell)
    reason = too_few_rounds([("", len(cell))]) or too_thin_rounds(cell)
    if reason:
        return no_interval(estimate, confidence, len(cell), reason)
    rng = np.random.default_rng(seed)
    reps = np.log(pooled_median_replicates(cell, draw_rounds(len(cell), n_boot, rng), rng))
    return percentile_interval(estimate, reps, confidence, [_cell_part(cell)], log_resolution(cell))


def ratio_of_cells(base: Rounds, new: Rounds, *, confidence: float = 0.95, n_boot: int = DEFAULT_N_BOOT,
                   seed: Seed = 0) -> LogInterval:
    """NEW/BASE of two cells' medians (> 1: NEW is slower), from two independent runs.

    Each side is resampled on its own (two levels), since the runs share no rounds.
    """
    b, n = as_rounds(base), as_rounds(new)
    estimate = _cell_log_median(n) - _cell_log_median(b)
    reason = too_few_rounds([("base", len(b)), ("new", len(n))])
    if reason:
        return no_interval(estimate, confidence, min(len(b), len(n)), reason)
    rng = np.random.default_rng(seed)
    reps = (np.log(pooled_median_replicates(n, draw_rounds(len(n), n_boot, rng), rng))
            - np.log(pooled_median_replicates(b, draw_rounds(len(b), n_boot, rng), rng)))
    return percentile_interval(estimate, reps, confidence, [_cell_part(b), _cell_part(n)],
                               log_resolution([*b, *n]))


def paired_ratio(a: Rounds, b: Rounds, *, confidence: float = 0.95, n_boot: int = DEFAULT_N_BOOT,
                 seed: Seed = 0) -> LogInterval:
    """A/B of two cells measured back to back in every round (two devices at one size), paired by round.

    The estimate is the geometric mean over rounds of median(A_r) / median(B_r): within a round both cells
    see the same machine state, so the per-round ratio cancels the drift both share. The interval resamples
    rounds (one draw for both cells) and, within each drawn round, each cell's samples on their own.
    ``a[r]`` and ``b[r]`` must be the same round; ValueError when the round counts differ.
    """
    ra, rb = as_rounds(a), as_rounds(b)
    if len(ra) != len(rb):
        raise ValueError(f"paired rounds differ in number: {len(ra)} and {len(rb)}")
    log_ratios = log_round_medians(ra) - log_round_medians(rb)
    estimate = float(log_ratios.mean())
    reason = too_few_rounds([("", len(ra))])
    if reason:
        return no_interval(estimate, confidence, len(ra), reason)
    rng = np.random.default_rng(seed)
    picks = draw_rounds(len(ra), n_boot, rng)
    reps = (np.log(round_median_replicates(ra, picks, rng))
            - np.log(round_median_replicates(rb, picks, rng))).mean(axis=1)
    within = sum(within_var_of_log_median([x]) + within_var_of_log_median([y])
                 for x, y in zip(ra, rb, strict=True)) / len(ra) ** 2
    return percentile_interval(estimate, reps, confidence, [DriftPart(log_ratios, within)],
                               log_resolution([*ra, *rb]))


def _shared_picks(run_rounds: int, cell_rounds: int, shared: IntArray, rng: np.random.Generator) -> IntArray:
    """A cell's round picks from its run's shared draw: the first ``cell_rounds`` shared labels, a label the
    cell does not have replaced by one of its own rounds drawn uniformly (so each pick stays uniform over
    the cell's rounds, and cells with every round share the draw exactly)."""
    picks: IntArray = shared[:, :cell_rounds].copy()
    if cell_rounds < run_rounds:
        missing = picks >= cell_rounds
        picks[missing] = rng.integers(0, cell_rounds, size=int(missing.sum()))
    return picks


def _run_part(cells: Sequence[Sequence[FloatArray]]) -> DriftPart:
    """The run-level round series for the geometric mean: per round, the mean over the cells that have it
    of the cell's log round median minus its own mean (centred, so a cell missing a round does not shift
    that round)."""
    width = max(len(c) for c in cells)
    sums, counts = np.zeros(width), np.zeros(width)
    for c in cells:
        m = log_round_medians(c)
        sums[: m.size] += m - m.mean()
        counts[: m.size] += 1
    within = sum(within_var_of_log_median(c) for c in cells) / len(cells) ** 2
    return DriftPart(sums / counts, within)


def joint_geomean_ratio(pairs: Sequence[tuple[Rounds, Rounds]], *, confidence: float = 0.95,
                        n_boot: int = DEFAULT_N_BOOT, seed: Seed = 0) -> LogInterval:
    """Geometric mean over cells of NEW/BASE medians, bootstrapped jointly: ``pairs`` is (base, new) per cell.

    The cells of one run were measured interleaved, so round r of every cell of a run shares that run's
    drift. Each replicate draws one set of round labels per run and applies it to every cell of the run
    (within-round samples are still resampled per cell); averaging independent per-cell bootstraps instead
    would shrink the interval like 1/sqrt(cells) and ignore the drift the cells share.

    Cells with fewer rounds than their run (an interrupted run: rounds are numbered 0, 1, ... in each cell,
    and a cell missing rounds misses the last ones) take the run's first labels and replace a label they do
    not have with one of their own rounds drawn uniformly. The interval needs :data:`MIN_ROUNDS_FOR_CI`
    rounds in each run (the most any of its cells has).
    """
    if not pairs:
        raise ValueError("need at least one cell")
    base = [as_rounds(b) for b, _ in pairs]
    new = [as_rounds(n) for _, n in pairs]
    logs = [_cell_log_median(n) - _cell_log_median(b) for b, n in zip(base, new, strict=True)]
    estimate = float(np.mean(logs))
    run_b, run_n = max(len(c) for c in base), max(len(c) for c in new)
    reason = too_few_rounds([("base", run_b), ("new", run_n)])
    if reason:
        return no_interval(estimate, confidence, min(run_b, run_n), reason)
    rng = np.random.default_rng(seed)
    shared_b, shared_n = draw_rounds(run_b, n_boot, rng), draw_rounds(run_n, n_boot, rng)
    reps = np.zeros(n_boot)
    for b, n in zip(base, new, strict=True):
        reps += np.log(pooled_median_replicates(n, _shared_picks(run_n, len(n), shared_n, rng), rng))
        reps -= np.log(pooled_median_replicates(b, _shared_picks(run_b, len(b), shared_b, rng), rng))
    reps /= len(pairs)
    return percentile_interval(estimate, reps, confidence, [_run_part(base), _run_part(new)],
                               log_resolution([r for cell in (*base, *new) for r in cell]))
