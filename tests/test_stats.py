"""Statistics against textbook values: summaries, verdicts from intervals, and the multiple-comparison gate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from devbench.compare import cell_statistics
from devbench.errors import UsageError
from devbench.stats import (
    GateMethod,
    between_round_rel,
    bh_adjust,
    decisive_direction,
    gate_failures,
    holm_adjust,
    median_ci_indices,
    min_samples_for_median_ci,
    rel_iqr,
    same_band,
    summarize,
    summarize_rounds,
    verdict_from_interval,
)


def test_summary_of_one_to_ten() -> None:
    s = summarize([10, 2, 3, 4, 5, 6, 7, 8, 9, 1])
    assert s.n == 10
    assert s.median == 5.5
    # Hyndman-Fan type 7 (numpy, R default): q1 = 1 + 0.25*9 = 3.25th order statistic = 3.25
    assert s.q1 == 3.25
    assert s.q3 == 7.75
    assert s.iqr == 4.5
    assert s.mean == 5.5
    assert s.std == pytest.approx(math.sqrt(55 / 6))  # sample std, ddof=1
    assert (s.min, s.max) == (1, 10)
    # n=10: the 95 % CI of the median is [x(2), x(9)] (coverage 97.9 %)
    assert (s.ci_low, s.ci_high) == (2, 9)
    assert s.ci_reason == ""
    assert s.rel_iqr == pytest.approx(4.5 / 5.5)
    assert s.noisy
    assert (s.n_rounds, math.isnan(s.between_round_rel)) == (1, True)


@pytest.mark.parametrize(
    ("n", "lo", "hi"),
    # 1-based ranks from the binomial tables: n=6 -> (1, 6), n=10 -> (2, 9), n=20 -> (6, 15), n=50 -> (18, 33)
    [(6, 0, 5), (10, 1, 8), (20, 5, 14), (50, 17, 32)],
)
def test_median_ci_ranks(n: int, lo: int, hi: int) -> None:
    assert median_ci_indices(n) == (lo, hi)


def test_median_ci_covers_about_95_percent() -> None:
    rng = np.random.default_rng(1)
    hits = 0
    trials = 2000
    indices = median_ci_indices(25)
    assert indices is not None
    lo, hi = indices
    for _ in range(trials):
        sample = np.sort(rng.exponential(size=25))
        hits += sample[lo] <= math.log(2) <= sample[hi]
    assert 0.93 <= hits / trials <= 0.99


def test_too_few_samples_give_no_interval_rather_than_the_range() -> None:
    # Was: n < 6 returned [min, max] (n=5 covers 93.75 %, n=1 gives a zero-width "95 %" interval). No pair of
    # order statistics of 5 samples reaches 95 %, so the interval is NaN and the reason says why.
    assert median_ci_indices(1) is None
    assert median_ci_indices(5) is None
    assert min_samples_for_median_ci(0.95) == 6
    assert min_samples_for_median_ci(0.99) == 8  # 2 / 2**8 < 1 % <= 2 / 2**7
    one = summarize([3.0])
    assert (one.median, one.std, one.rel_iqr) == (3.0, 0.0, 0.0)
    assert math.isnan(one.ci_low)
    assert math.isnan(one.ci_high)
    assert one.ci_reason == "1 sample: too few for a 95% interval of the median (need at least 6)"
    five = summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert math.isnan(five.ci_low)
    assert "5 samples" in five.ci_reason


def test_quiet_sample_is_not_noisy() -> None:
    s = summarize([1.0, 1.01, 0.99, 1.0, 1.02])
    assert not s.noisy
    assert rel_iqr([1.0, 1.01, 0.99, 1.0, 1.02]) == pytest.approx(s.rel_iqr)


def test_bad_samples_are_rejected() -> None:
    with pytest.raises(ValueError, match="zero samples"):
        summarize([])
    with pytest.raises(ValueError, match="finite"):
        summarize([1.0, float("nan")])
    with pytest.raises(UsageError, match="confidence"):
        summarize([1.0], confidence=1.5)
    with pytest.raises(ValueError, match="round 1 has no samples"):
        summarize_rounds([[1.0], []])
    with pytest.raises(ValueError, match="positive"):
        summarize_rounds([[1.0], [-1.0]])


# --------------------------------------------------------------------------------------------------------
# Rounds


def test_summary_of_rounds_pools_the_samples_and_measures_the_drift() -> None:
    rounds = [[1.0, 1.1, 0.9], [2.0, 2.2, 1.8], [1.5, 1.4, 1.6], [1.2, 1.3, 1.1]]
    s = summarize_rounds(rounds)
    pooled = summarize([x for r in rounds for x in r])
    assert (s.n, s.median, s.q1, s.q3, s.mean, s.min, s.max) == (
        pooled.n, pooled.median, pooled.q1, pooled.q3, pooled.mean, pooled.min, pooled.max)
    assert s.n_rounds == 4
    # round medians 1.0, 2.0, 1.5, 1.2; pooled median 1.35
    assert s.between_round_rel == pytest.approx((2.0 - 1.0) / 1.35)
    assert s.ci_reason == ""
    assert s.ci_low < s.median < s.ci_high


def test_summary_of_rounds_of_different_sizes_weighs_the_rounds_alike() -> None:
    """A visit of 10 samples at 1.0 and two of 2 at 3.0 and 3.2: the median is the middle round's 3.0 (the
    pooled median would be 1.0, 10 of 14 samples), the quartiles stay over the pooled samples, and the
    median may then lie outside them; rel_iqr and between_round_rel are read against that median."""
    rounds = [[1.0] * 10, [3.0, 3.0], [3.2, 3.2]]
    s = summarize_rounds(rounds)
    pooled = summarize([x for r in rounds for x in r])
    assert s.median == 3.0
    assert (s.n, s.q1, s.q3, s.mean, s.min, s.max) == (pooled.n, pooled.q1, pooled.q3, pooled.mean, pooled.min,
                                                       pooled.max)
    assert s.q3 < s.median
    assert s.rel_iqr == pytest.approx(s.iqr / 3.0)
    assert s.between_round_rel == pytest.approx((3.2 - 1.0) / 3.0)
    assert s.ci_low < s.median < s.ci_high


def test_the_rounds_interval_counts_rounds_not_samples() -> None:
    """Fewer than 6 samples give summarize's order statistics no interval, but the rounds' interval rests on
    rounds: 4 rounds of 1 sample and 3 rounds of 2 get one; 3 rounds with a single-sample round do not (the
    coverage behind both is measured in test_resampling)."""
    assert summarize([1.0, 1.1, 0.95, 1.05]).ci_reason.startswith("4 samples: too few")
    four = summarize_rounds([[1.0], [1.1], [0.95], [1.05]])
    assert four.ci_reason == ""
    assert four.ci_low < four.median < four.ci_high
    assert summarize_rounds([[1.0, 1.01], [1.1, 1.12], [0.95, 0.96]]).ci_reason == ""
    thin = summarize_rounds([[1.0], [1.1, 1.12], [0.95, 0.96]])
    assert math.isnan(thin.ci_low)
    assert thin.ci_reason == ("3 rounds, 1 of a single sample: too few to bound drift between rounds "
                              "(need 4 rounds, or 2 samples in every round)")


def test_one_round_cannot_see_drift() -> None:
    s = summarize_rounds([[1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 1.02]])
    assert s.n_rounds == 1
    assert math.isnan(s.ci_low)
    assert math.isnan(s.ci_high)
    assert math.isnan(s.between_round_rel)
    assert s.ci_reason == "1 round: cannot see drift between rounds"
    two = summarize_rounds([[1.0, 1.1], [1.2, 1.3]])
    assert math.isnan(two.ci_low)
    assert two.ci_reason == "2 rounds: too few to bound drift between rounds (need at least 3)"
    assert two.between_round_rel == pytest.approx((1.25 - 1.05) / 1.15)


def test_between_round_rel_is_zero_for_identical_rounds() -> None:
    assert between_round_rel([[1.0, 2.0, 3.0]] * 3) == 0.0
    assert math.isnan(between_round_rel([[1.0, 2.0]]))


def test_summary_interval_is_reproducible_from_its_seed() -> None:
    rng = np.random.default_rng(5)
    rounds = [list(1.0 + 0.1 * rng.random(8)) for _ in range(5)]
    assert summarize_rounds(rounds, seed=3) == summarize_rounds(rounds, seed=3)
    assert summarize_rounds(rounds, seed=3).ci_low != summarize_rounds(rounds, seed=4).ci_low


# --------------------------------------------------------------------------------------------------------
# Verdicts


bounds = st.floats(min_value=0.3, max_value=3.0, allow_nan=False)


@given(a=bounds, b=bounds, threshold=st.floats(min_value=0.0, max_value=0.5))
def test_verdict_never_disagrees_with_its_interval(a: float, b: float, threshold: float) -> None:
    lo, hi = min(a, b), max(a, b)
    low, high = same_band(threshold)
    assert low == pytest.approx(1 / (1 + threshold))
    assert high == 1 + threshold
    verdict = verdict_from_interval(lo, hi, threshold)
    if verdict == "slower":
        assert lo > high
    elif verdict == "faster":
        assert hi < low
    elif verdict == "same":
        assert low <= lo
        assert hi <= high
    else:  # uncertain: the interval reaches past the band on one side without clearing it
        assert not lo > high
        assert not hi < low
        assert lo < low or hi > high


MIRROR = {"slower": "faster", "faster": "slower", "same": "same", "uncertain": "uncertain"}


@given(a=bounds, b=bounds, threshold=st.floats(min_value=0.0, max_value=0.5))
def test_swapping_base_and_new_mirrors_every_verdict(a: float, b: float, threshold: float) -> None:
    """The band [1/(1 + t), 1 + t] is symmetric on the log scale, so the inverse interval (BASE/NEW) gets
    the mirrored verdict at every threshold, not only at 0."""
    lo, hi = min(a, b), max(a, b)
    # Bounds as an interval computed on the log scale gives them: exp(-x) is the inverse of exp(x) exactly.
    inverse = (math.exp(-math.log(hi)), math.exp(-math.log(lo)))
    assert verdict_from_interval(*inverse, threshold) == MIRROR[verdict_from_interval(lo, hi, threshold)]


def test_the_old_linear_band_was_not_symmetric() -> None:
    """[0.951, 0.99] lay inside [1 - t, 1 + t] (``same``) while its mirror [1.010, 1.0515] did not
    (``uncertain``): one pair of runs was ``same`` one way round only. The log band treats both alike."""
    assert verdict_from_interval(0.951, 0.99, 0.05) == "uncertain"  # 0.951 < 1/1.05 = 0.9524
    assert verdict_from_interval(1 / 0.99, 1 / 0.951, 0.05) == "uncertain"
    assert verdict_from_interval(0.953, 0.99, 0.05) == verdict_from_interval(1 / 0.99, 1 / 0.953, 0.05) == "same"
    assert verdict_from_interval(0.94, 0.95, 0.05) == "faster"  # below 1/1.05 = 0.9524
    assert verdict_from_interval(1 / 0.95, 1 / 0.94, 0.05) == "slower"


def test_verdict_edges_and_nan() -> None:
    assert verdict_from_interval(1.05, 1.2, 0.05) == "uncertain"  # lo == 1 + t is not above it
    assert verdict_from_interval(1.0500001, 1.2, 0.05) == "slower"
    assert verdict_from_interval(1 / 1.05, 1.05, 0.05) == "same"
    assert verdict_from_interval(0.95, 1.05, 0.05) == "uncertain"  # 0.95 < 1/1.05: outside the band
    assert verdict_from_interval(0.8, 1 / 1.05 - 1e-9, 0.05) == "faster"
    assert verdict_from_interval(0.8, 0.9524, 0.05) == "uncertain"
    assert verdict_from_interval(math.nan, 1.0, 0.05) == "uncertain"
    with pytest.raises(UsageError, match="threshold"):
        verdict_from_interval(0.9, 1.1, 1.5)
    with pytest.raises(UsageError, match="threshold"):
        same_band(-0.1)
    with pytest.raises(ValueError, match="low end above"):
        verdict_from_interval(1.1, 0.9, 0.05)


def test_decisive_direction() -> None:
    assert decisive_direction(1.01, 1.2) == 1
    assert decisive_direction(0.8, 0.99) == -1
    assert decisive_direction(0.9, 1.1) == 0
    assert decisive_direction(1.0, 1.1) == 0  # touching 1 is not decisive
    assert decisive_direction(math.nan, math.nan) == 0


# --------------------------------------------------------------------------------------------------------
# Multiple comparisons


def test_holm_against_a_hand_computation() -> None:
    # sorted p 0.01, 0.02, 0.03, 0.04 -> 4*0.01, 3*0.02, 2*0.03, 1*0.04, then running max
    p = [0.03, 0.01, 0.04, 0.02, math.nan]
    adjusted = holm_adjust(p)
    assert list(adjusted[:4]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert math.isnan(adjusted[4])  # untested: not in the family
    assert list(holm_adjust([0.5, 0.9])) == pytest.approx([1.0, 1.0])


def test_bh_against_a_hand_computation() -> None:
    # m=4, sorted p 0.01, 0.02, 0.03, 0.04: p*m/rank = 0.04 each -> all 0.04
    assert list(bh_adjust([0.03, 0.01, 0.04, 0.02])) == pytest.approx([0.04] * 4)
    # m=3: 0.01*3/1 = 0.03, 0.04*3/2 = 0.06, 0.5*3/3 = 0.5
    adjusted = bh_adjust([0.5, 0.01, 0.04, math.nan])
    assert list(adjusted[:3]) == pytest.approx([0.5, 0.03, 0.06])
    assert math.isnan(adjusted[3])


def test_gate_is_order_free_and_ignores_untested_cells() -> None:
    p = np.array([0.001, 0.2, math.nan, 0.0001, 0.03])
    order = np.array([3, 0, 4, 2, 1])
    methods: tuple[GateMethod, ...] = ("holm", "bh")
    for method in methods:
        fails = gate_failures(p, alpha=0.05, method=method)
        assert list(gate_failures(p[order], alpha=0.05, method=method)) == list(fails[order])
        assert not fails[2]
    assert list(gate_failures(p, alpha=0.05)) == [True, False, False, True, False]  # Holm: 0.0001*4, 0.001*3
    assert list(gate_failures(p, alpha=0.05, method="bh")) == [True, False, False, True, True]  # 0.03*4/3
    assert not gate_failures([math.nan, math.nan]).any()


def test_gate_rejects_bad_settings() -> None:
    with pytest.raises(UsageError, match="alpha"):
        gate_failures([0.1], alpha=0.0)
    with pytest.raises(UsageError, match="gate method"):
        gate_failures([0.1], method="bonferroni")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm_adjust([1.5])


def _family(rng: np.random.Generator, cells: int, slow: dict[int, float], *, drift: float, noise: float,
            shared: bool, rounds: int = 5, samples: int = 10) -> list[tuple[list[list[float]], list[list[float]]]]:
    """A base run and a new run of ``cells`` cells: round effects (lognormal, sigma ``drift``) shared by all
    cells of a run when ``shared`` (interleaved rounds see the same drift) or drawn per cell, times
    within-round noise (lognormal, sigma ``noise``); cell i of the new run is ``slow.get(i, 1)`` times
    slower."""
    def run(factor: dict[int, float]) -> list[list[list[float]]]:
        run_effects = np.exp(rng.normal(0.0, drift, rounds))
        out = []
        for i in range(cells):
            effects = run_effects if shared else np.exp(rng.normal(0.0, drift, rounds))
            out.append([list(factor.get(i, 1.0) * effects[r] * np.exp(rng.normal(0.0, noise, samples)))
                        for r in range(rounds)])
        return out
    return list(zip(run({}), run(slow), strict=True))


def _p_slower(pairs: list[tuple[list[list[float]], list[list[float]]]], threshold: float) -> np.ndarray:
    """Each cell's gate p-value as compare computes it (Welch's t on the log round medians)."""
    return np.array([cell_statistics([b], [n], threshold=threshold, confidence=0.95).p_value for b, n in pairs])


@pytest.mark.slow
@pytest.mark.parametrize("shared", [False, True])
def test_aa_gate_fails_on_at_most_alpha_of_families(shared: bool) -> None:
    """12 A/A families of 200 cells each (R=5 rounds x 10 samples; drift 5 %, within noise 3 %), each cell's
    p-value as compare computes it (Welch's t on the log round medians), judged at threshold 0 so the null
    sits exactly on the truth (the hardest case for the gate: at t=0.05 the A/A p-values are far larger).
    Holm and BH at alpha 0.05 fail on at most 1 of 12 families. With drift drawn per cell the 200 p-values
    are independent and an unadjusted gate (any p below 0.05) fails on nearly every family, so the test
    tells a corrected gate from an uncorrected one; with drift shared by the cells of a run the cells move
    together and even the unadjusted gate fails rarely. Observed with these seeds: independent, Holm 0, BH 0,
    unadjusted 12 of 12 families; shared, 0, 0 and 1 of 12. The full-size rates are in
    ``simulation.gate``."""
    rng = np.random.default_rng(2024)
    holm_fails = bh_fails = naive_fails = 0
    families = 12
    for _ in range(families):
        p = _p_slower(_family(rng, 200, {}, drift=0.05, noise=0.03, shared=shared), 0.0)
        holm_fails += bool(gate_failures(p, 0.05, "holm").any())
        bh_fails += bool(gate_failures(p, 0.05, "bh").any())
        naive_fails += bool((p < 0.05).any())
    assert holm_fails <= 1
    assert bh_fails <= 1
    if not shared:
        assert naive_fails >= families - 2


@pytest.mark.slow
def test_gate_fails_on_a_real_slowdown() -> None:
    """200 tight cells (drift 1 %, noise 1 %), of which 5 are 20 % slower: both gates fail, on exactly those
    cells (their p-values for "slower by more than 5 %" are 3e-10 to 3e-8; every other cell's is 1.00)."""
    rng = np.random.default_rng(7)
    slow = {3: 1.2, 50: 1.2, 51: 1.2, 120: 1.2, 199: 1.2}
    p = _p_slower(_family(rng, 200, slow, drift=0.01, noise=0.01, shared=True), 0.05)
    methods: tuple[GateMethod, ...] = ("holm", "bh")
    for method in methods:
        flagged = set(np.flatnonzero(gate_failures(p, 0.05, method)).tolist())
        assert flagged == set(slow)
