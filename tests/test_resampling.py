"""The two-level bootstrap over rounds, on synthetic samples with drift between rounds (fixed seeds)."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from devbench import resampling
from devbench.resampling import (
    LogInterval,
    as_rounds,
    cell_median,
    draw_rounds,
    joint_geomean_ratio,
    median_interval,
    paired_ratio,
    pooled_median_replicates,
    ratio_of_cells,
    round_median_replicates,
)
from devbench.stats import summarize, summarize_rounds, verdict_from_interval
from devbench.t_intervals import NO_SPREAD_REASON

Cell = list[list[float]]


def _cell(rng: np.random.Generator, rounds: int, *, drift: float, noise: float, samples: int = 10,
          scale: float = 1.0) -> Cell:
    """Per-round multiplicative drift (lognormal, sigma ``drift``) times within-round noise (lognormal,
    sigma ``noise``): the true median of the cell's distribution is ``scale``."""
    effects = np.exp(rng.normal(0.0, drift, rounds))
    return [list(scale * effects[r] * np.exp(rng.normal(0.0, noise, samples))) for r in range(rounds)]


def _frequencies(values: np.ndarray) -> dict[float, float]:
    counts = Counter(np.round(values, 9).tolist())
    return {k: v / values.size for k, v in counts.items()}


# --------------------------------------------------------------------------------------------------------
# The resampling itself, against exact distributions


def test_round_median_replicates_have_the_exact_distribution() -> None:
    # A resample of (1, 2, 3) has median 1 when at least two draws are 1: 3 (1/3)^2 (2/3) + (1/3)^3 = 7/27.
    rng = np.random.default_rng(0)
    rounds = as_rounds([[3.0, 1.0, 2.0], [5.0, 6.0]])
    picks = np.zeros((40000, 1), dtype=np.int64)
    freq = _frequencies(round_median_replicates(rounds, picks, rng)[:, 0])
    assert freq[1.0] == pytest.approx(7 / 27, abs=0.01)
    assert freq[2.0] == pytest.approx(13 / 27, abs=0.01)
    assert freq[3.0] == pytest.approx(7 / 27, abs=0.01)
    # Even size: (5, 6) resampled gives medians 5, 5.5, 6 with probabilities 1/4, 1/2, 1/4.
    freq = _frequencies(round_median_replicates(rounds, np.ones((40000, 1), dtype=np.int64), rng)[:, 0])
    assert freq == pytest.approx({5.0: 0.25, 5.5: 0.5, 6.0: 0.25}, abs=0.01)


def test_pooled_median_replicates_have_the_exact_distribution() -> None:
    # Rounds (1, 2) and (3, 4), each picked once: the pooled median is (max of two draws from {1, 2} + min
    # of two from {3, 4}) / 2: 2 with P 1/4 * 3/4, 3 with 3/4 * 1/4, 2.5 otherwise.
    rng = np.random.default_rng(1)
    rounds = as_rounds([[1.0, 2.0], [3.0, 4.0]])
    picks = np.tile(np.array([[0, 1]], dtype=np.int64), (40000, 1))
    freq = _frequencies(pooled_median_replicates(rounds, picks, rng))
    assert freq == pytest.approx({2.0: 3 / 16, 2.5: 10 / 16, 3.0: 3 / 16}, abs=0.01)


def _round_weighted_median(rounds: list[np.ndarray]) -> float:
    """The rounds-weighted-equally median by brute force: every sample repeated lcm(sizes) / its round's
    size times (so each round holds the same count), then the plain median."""
    common = math.lcm(*(len(r) for r in rounds))
    return float(np.median(np.concatenate([np.repeat(r, common // len(r)) for r in rounds])))


def test_pooled_median_of_rounds_of_different_sizes_matches_brute_force() -> None:
    rng = np.random.default_rng(2)
    rounds = as_rounds([[1.0, 2.0, 3.0], [10.0], [4.0, 8.0]])
    picks = draw_rounds(3, 20000, rng)
    fast = pooled_median_replicates(rounds, picks, rng)
    slow = np.array([_round_weighted_median([rng.choice(rounds[k], rounds[k].size) for k in row])
                     for row in picks[:4000]])
    assert set(np.round(fast, 9)) == set(np.round(slow, 9))
    for value, share in _frequencies(slow).items():
        assert _frequencies(fast).get(value, 0.0) == pytest.approx(share, abs=0.025)


# --------------------------------------------------------------------------------------------------------
# A cell's median: rounds weighted equally


def test_cell_median_weighs_every_round_alike() -> None:
    # 40 samples at 1.0 in one round, 2 at 2.0 and 2 at 3.0 in two more: the pooled median is 1.0 (40 of 44
    # samples), the rounds-weighted one 2.0, the middle of three equal rounds.
    assert cell_median([[1.0] * 40, [2.0, 2.0], [3.0, 3.0]]) == 2.0
    assert cell_median([[1.0] * 40, [2.0, 2.0], [3.0, 3.0], [4.0]]) == 2.5  # half the weight reached at 2.0
    # One round, or rounds of one size: exactly the plain median of the pooled samples.
    assert cell_median([[3.0, 1.0, 2.0, 7.0]]) == 2.5
    assert cell_median([[1.0, 9.0], [2.0, 8.0], [3.0, 4.0]]) == 3.5
    with pytest.raises(ValueError, match="at least one round"):
        cell_median([])


@given(st.lists(st.lists(st.integers(1, 20), min_size=1, max_size=6), min_size=1, max_size=5))
def test_cell_median_matches_the_brute_force_definition(rounds: list[list[int]]) -> None:
    cell = [np.array(r, dtype=np.float64) for r in rounds]
    assert cell_median(cell) == pytest.approx(_round_weighted_median(cell), rel=1e-12)


def _disturbed_cell(rng: np.random.Generator, rounds: int, *, more_samples: int) -> list[np.ndarray]:
    """A cell whose rounds are disturbed (+10 %) with probability 0.2; a disturbed round takes
    ``more_samples`` times the 10 samples of a quiet one (the timer's stopping rule: a noisier visit takes
    longer to converge). Round drift 2 %, within-round noise 3 %."""
    cell = []
    for _ in range(rounds):
        disturbed = rng.random() < 0.2
        size = 10 * (more_samples if disturbed else 1)
        cell.append(np.exp(rng.normal(0.0, 0.02) + (math.log(1.1) if disturbed else 0.0)
                           + rng.normal(0.0, 0.03, size)))
    return cell


def test_weighing_rounds_alike_removes_the_bias_of_the_stopping_rule() -> None:
    """1000 seeded cells of 5 rounds whose disturbed rounds took 4x the samples, against the same cells
    with equal sample counts (same seeds): the pooled median moves from +1.4 % to +4.4 % over the quiet
    median, the rounds-weighted one stays at +1.5 % (the disturbance itself, which equal counts also see).
    At 4000 cells (another seed): R=3, 5, 10 pooled +3.8, +4.2, +4.5 %, rounds-weighted +1.5, +1.4, +1.3 %,
    equal counts +1.7, +1.5, +1.3 %."""
    def bias(more_samples: int, estimate: str) -> float:
        rng = np.random.default_rng(21)
        logs = []
        for _ in range(1000):
            cell = _disturbed_cell(rng, 5, more_samples=more_samples)
            logs.append(math.log(np.median(np.concatenate(cell)) if estimate == "pooled" else cell_median(cell)))
        return math.expm1(float(np.mean(logs)))

    equal_counts = bias(1, "pooled")
    pooled, weighted = bias(4, "pooled"), bias(4, "rounds")
    assert bias(1, "rounds") == equal_counts  # equal sizes: the same estimator
    assert pooled > 0.035
    assert weighted < 0.02
    assert abs(weighted - equal_counts) < 0.003


# --------------------------------------------------------------------------------------------------------
# What the interval sees


def test_drift_between_rounds_widens_the_interval() -> None:
    """The same within-round noise and the same standard-normal round effects, scaled by a growing drift:
    the interval of the median widens with every step."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=6)
    noise = np.exp(rng.normal(0.0, 0.02, (6, 10)))
    widths = []
    for drift in (0.0, 0.02, 0.05, 0.1, 0.2):
        rounds = np.exp(drift * z)[:, None] * noise
        interval = median_interval(list(rounds), seed=0)
        widths.append(math.log(interval.ci_high / interval.ci_low))
    assert all(a < b for a, b in itertools.pairwise(widths))
    assert widths[-1] > 5 * widths[0]


def test_without_drift_the_two_level_interval_is_close_to_the_one_level_one() -> None:
    """No drift: the two-level interval is 1.0-1.5x as wide as the order-statistic interval of the pooled
    samples (it counts within-round noise twice, once through the spread of the round medians: the price
    of not assuming the drift away). Median over 40 cells of 5 rounds x 10 samples."""
    rng = np.random.default_rng(4)
    ratios = []
    for i in range(40):
        rounds = _cell(rng, 5, drift=0.0, noise=0.05)
        two = median_interval(rounds, seed=i)
        one = summarize([x for r in rounds for x in r])
        ratios.append(math.log(two.ci_high / two.ci_low) / math.log(one.ci_high / one.ci_low))
    assert 1.0 <= float(np.median(ratios)) <= 1.5


def test_too_few_rounds_give_nan_and_the_reason() -> None:
    rng = np.random.default_rng(5)
    five, one = _cell(rng, 5, drift=0.05, noise=0.02), _cell(rng, 1, drift=0.05, noise=0.02)
    r = ratio_of_cells(five, one)
    assert math.isnan(r.ci_low)
    assert r.reason == "new: 1 round: cannot see drift between rounds"
    assert r.estimate == pytest.approx(np.median(np.concatenate(one)) / np.median(np.concatenate(five)))
    assert verdict_from_interval(r.ci_low, r.ci_high, 0.05) == "uncertain"
    assert math.isnan(r.p_above(1.05))
    assert paired_ratio(one, one).reason == "1 round: cannot see drift between rounds"
    two = _cell(rng, 2, drift=0.05, noise=0.02)
    assert joint_geomean_ratio([(two, five)]).reason.startswith("base: 2 rounds: too few")
    with pytest.raises(ValueError, match="differ in number"):
        paired_ratio(five, two)
    with pytest.raises(ValueError, match="at least one cell"):
        joint_geomean_ratio([])
    with pytest.raises(ValueError, match="at least one round"):
        median_interval([])


def test_quantised_samples_get_no_zero_width_interval() -> None:
    """A coarse clock: every round of 10, 10, 11, 10, 10 ticks gives the same median, so every resample
    does; the interval is floored at the rounding variance of one tick (t with 4 dof over 5 rounds) rather
    than claiming zero width, and a ratio of two such cells gets a p-value, not 0."""
    tick = 1e-6
    cell = [[10 * tick, 10 * tick, 11 * tick, 10 * tick, 10 * tick]] * 5
    interval = median_interval(cell)
    step = math.log(11 / 10)
    floor = 2.7764451 * step / math.sqrt(12 * 5)  # t(0.975, 4) * sqrt(step^2 / 12 / 5)
    assert interval.reason == ""
    assert interval.estimate == pytest.approx(10 * tick)
    assert interval.half_low == pytest.approx(floor, rel=1e-6)
    assert interval.half_high == pytest.approx(floor, rel=1e-6)
    assert interval.dof == pytest.approx(4.0)
    ratio = ratio_of_cells(cell, cell)
    assert ratio.ci_low < 1.0 < ratio.ci_high
    assert 0.0 < ratio.p_above(0.98) < 0.5  # a zero-width interval made this 0: "surely above 0.98"
    assert 0.5 < ratio.p_above(1.02) < 1.0  # and this 1
    summary = summarize_rounds(cell)
    assert summary.ci_low < summary.median < summary.ci_high


def test_samples_without_any_step_give_no_interval() -> None:
    same = [[5e-6, 5e-6]] * 4
    assert median_interval(same).reason == NO_SPREAD_REASON
    assert math.isnan(median_interval(same).ci_low)
    assert ratio_of_cells(same, same).reason == NO_SPREAD_REASON
    assert math.isnan(ratio_of_cells(same, same).p_above(1.05))
    assert summarize_rounds(same).ci_reason == NO_SPREAD_REASON
    # One step anywhere (here between the two cells) is the resolution: both get a floored interval.
    other = [[6e-6, 6e-6]] * 4
    assert ratio_of_cells(same, other).reason == ""
    assert paired_ratio(same, other).reason == ""


def test_ratio_verdicts_from_real_intervals() -> None:
    rng = np.random.default_rng(6)
    base = _cell(rng, 5, drift=0.01, noise=0.01)
    same = ratio_of_cells(base, _cell(rng, 5, drift=0.01, noise=0.01), seed=1)
    slow = ratio_of_cells(base, _cell(rng, 5, drift=0.01, noise=0.01, scale=1.2), seed=1)
    assert verdict_from_interval(same.ci_low, same.ci_high, 0.05) == "same"
    assert verdict_from_interval(slow.ci_low, slow.ci_high, 0.05) == "slower"
    assert slow.ci_low < 1.2 < slow.ci_high
    assert slow.p_above(1.05) < 1e-4  # small enough to survive Holm over hundreds of cells
    # NEW/BASE and BASE/NEW are exact inverses, interval included (percentiles on the log scale).
    back = ratio_of_cells(_cell(np.random.default_rng(6), 5, drift=0.01, noise=0.01), base, seed=1)
    assert back.estimate == pytest.approx(1 / same.estimate, rel=0.05)


def test_pairing_cancels_the_drift_both_devices_share() -> None:
    """Two devices measured back to back in 6 rounds under a 20 % drift they share, B 10 % faster than A:
    the paired ratio A/B is decisive and tight, while treating the cells as unrelated cannot tell."""
    rng = np.random.default_rng(7)
    effects = np.exp(rng.normal(0.0, 0.2, 6))
    a = [list(effects[r] * np.exp(rng.normal(0.0, 0.02, 10))) for r in range(6)]
    b = [list(effects[r] / 1.1 * np.exp(rng.normal(0.0, 0.02, 10))) for r in range(6)]
    paired = paired_ratio(a, b, seed=0)
    assert paired.ci_low > 1.05
    assert paired.ci_low < 1.1 < paired.ci_high
    unpaired = ratio_of_cells(b, a, seed=0)
    assert unpaired.ci_low < 1.0 < unpaired.ci_high


def test_joint_geomean_keeps_the_shared_drift() -> None:
    """40 cells whose runs drift by 10 % per round, shared by every cell of a run: the joint interval stays
    about as wide as one cell's, where averaging independent per-cell bootstraps would shrink it by about
    sqrt(40) and claim a precision the shared drift does not allow."""
    rng = np.random.default_rng(8)
    base_effects, new_effects = np.exp(rng.normal(0.0, 0.1, 5)), np.exp(rng.normal(0.0, 0.1, 5))

    def run(effects: np.ndarray) -> list[Cell]:
        return [[list(effects[r] * (1 + i) * np.exp(rng.normal(0.0, 0.02, 8))) for r in range(5)]
                for i in range(40)]
    pairs = list(zip(run(base_effects), run(new_effects), strict=True))
    joint = joint_geomean_ratio(pairs, n_boot=1000, seed=0)
    one = ratio_of_cells(*pairs[0], n_boot=1000, seed=0)
    joint_width = math.log(joint.ci_high / joint.ci_low)
    one_width = math.log(one.ci_high / one.ci_low)
    assert 0.5 * one_width < joint_width < 1.5 * one_width
    # What the independent average would give: per-cell replicates averaged -> far narrower.
    reps = []
    for i, (b, n) in enumerate(pairs):
        g = np.random.default_rng(i)
        rb, rn = as_rounds(b), as_rounds(n)
        reps.append(np.log(pooled_median_replicates(rn, draw_rounds(5, 1000, g), g))
                    - np.log(pooled_median_replicates(rb, draw_rounds(5, 1000, g), g)))
    independent = np.quantile(np.mean(reps, axis=0), [0.025, 0.975])
    assert independent[1] - independent[0] < joint_width / 3


def test_joint_geomean_takes_cells_with_fewer_rounds() -> None:
    rng = np.random.default_rng(9)
    full = [(_cell(rng, 5, drift=0.05, noise=0.02), _cell(rng, 5, drift=0.05, noise=0.02)) for _ in range(3)]
    short = (_cell(rng, 3, drift=0.05, noise=0.02), _cell(rng, 5, drift=0.05, noise=0.02))
    joint = joint_geomean_ratio([*full, short], seed=0)
    assert joint.reason == ""
    assert joint.ci_low < joint.estimate < joint.ci_high
    logs = [math.log(np.median(np.concatenate(n)) / np.median(np.concatenate(b))) for b, n in [*full, short]]
    assert joint.log_estimate == pytest.approx(float(np.mean(logs)))


# --------------------------------------------------------------------------------------------------------
# p-values and intervals agree


@given(estimate=st.floats(-1.0, 1.0), low=st.floats(0.0, 0.5), high=st.floats(0.0, 0.5),
       dof=st.sampled_from([2.5, 4.0, 30.0, math.inf]), bound=st.floats(0.3, 3.0),
       confidence=st.sampled_from([0.9, 0.95, 0.99]))
def test_p_values_agree_with_the_interval(*, estimate: float, low: float, high: float, dof: float, bound: float,
                                          confidence: float) -> None:
    interval = LogInterval(estimate, low, high, confidence, n_rounds=5, dof=dof)
    level = (1 - confidence) / 2
    assume(abs(math.log(interval.ci_low) - math.log(bound)) > 1e-9)
    assume(abs(math.log(interval.ci_high) - math.log(bound)) > 1e-9)
    assert (interval.p_above(bound) < level) == (interval.ci_low > bound)
    assert (interval.p_below(bound) < level) == (interval.ci_high < bound)
    assert 0.0 <= interval.p_above(bound) <= 1.0


def test_p_value_tails_are_student_t() -> None:
    wide = LogInterval(0.5, 0.2, 0.2, 0.95, n_rounds=3, dof=2.0)
    normal = LogInterval(0.5, 0.2, 0.2, 0.95, n_rounds=3)
    # Same interval, same p at its own level; beyond it the t tail is heavier, so p is larger.
    assert wide.p_above(math.exp(0.3)) == pytest.approx(0.025)
    assert normal.p_above(math.exp(0.3)) == pytest.approx(0.025)
    assert wide.p_above(1.0) > 10 * normal.p_above(1.0)
    with pytest.raises(ValueError, match="positive"):
        wide.p_above(0.0)


# --------------------------------------------------------------------------------------------------------
# Coverage
#
# The larger simulation these tests are the seeded, fast versions of (1000 cells per setting; lognormal round
# effects of sigma 5, 10, 20 %, lognormal within-round noise of sigma 2 and 10 %, 10 samples per round, so the
# rounds-weighted median is the pooled one): the median covered 91.5-95.0 % at R=3, 95.3-96.2 % at R=5,
# 95.0-96.5 % at R=10; the ratio of two runs from the same model 96.0-98.3 % at R=3, 96.8-99.3 % at R=5,
# 97.0-98.1 % at R=10. Without drift the median covers 97.4-98.8 % and the ratio 99.2-99.7 %: the two-level
# resample counts within-round noise twice (once through the spread of the round medians, once directly),
# which errs on the safe side. Without the expansion factor R=3 covered only 70-77 %, R=5 88-92 %. Interval
# width (log units, median over cells) at 5 % drift: 0.21-0.26 at R=3, 0.15 at R=5, 0.08-0.10 at R=10; at
# 20 % drift 0.82, 0.55-0.67, 0.31-0.35. One or two samples a round: 91-96 % at R=3, 93-98 % from R=4 (see
# MIN_ROUNDS_WITH_A_SINGLE_SAMPLE and the test below).


@pytest.mark.slow
@pytest.mark.parametrize("rounds", [3, 5, 10])
def test_coverage_of_the_median_and_the_ratio(rounds: int) -> None:
    """Nominal 95 % intervals on simulated cells: per-round lognormal drift (sigma 5 % and 20 %), lognormal
    within-round noise (sigma 5 %), ``rounds`` rounds of 10 samples, 400 cells per setting, 1000
    replicates each. The median's interval must cover the true median (1) in 90-99 % of cells, and the
    interval of the ratio of two independent runs from the same model the true ratio (1) in 90-99.5 %: the
    ratio errs on the safe side (it counts within-round noise twice on each side) and sat at 99.25 % for
    R=3 at 5 % drift with these seeds, 96-99.3 % over the larger simulation above, where R=3 covered 91.5-95 %
    for the median.
    """
    rng = np.random.default_rng(100 + rounds)
    cells = 400
    for drift in (0.05, 0.2):
        median_hits = ratio_hits = 0
        for i in range(cells):
            m = median_interval(_cell(rng, rounds, drift=drift, noise=0.05), n_boot=1000, seed=i)
            median_hits += m.ci_low <= 1.0 <= m.ci_high
            r = ratio_of_cells(_cell(rng, rounds, drift=drift, noise=0.05),
                               _cell(rng, rounds, drift=drift, noise=0.05), n_boot=1000, seed=i)
            ratio_hits += r.ci_low <= 1.0 <= r.ci_high
        assert 0.90 <= median_hits / cells <= 0.99, (drift, median_hits / cells)
        assert 0.90 <= ratio_hits / cells <= 0.995, (drift, ratio_hits / cells)


@pytest.mark.slow
def test_coverage_of_the_paired_ratio() -> None:
    """Paired ratio A/B (true 1) under a 10 % drift shared by both devices plus a 3 % drift of their own per
    round and 5 % within-round noise, 5 rounds of 10 samples, 400 pairs: covered in 90-99 %."""
    rng = np.random.default_rng(11)
    hits = 0
    for i in range(400):
        shared = np.exp(rng.normal(0.0, 0.1, 5))
        a = [list(shared[r] * math.exp(rng.normal(0.0, 0.03)) * np.exp(rng.normal(0.0, 0.05, 10)))
             for r in range(5)]
        b = [list(shared[r] * math.exp(rng.normal(0.0, 0.03)) * np.exp(rng.normal(0.0, 0.05, 10)))
             for r in range(5)]
        p = paired_ratio(a, b, n_boot=1000, seed=i)
        hits += p.ci_low <= 1.0 <= p.ci_high
    assert 0.90 <= hits / 400 <= 0.99


@pytest.mark.slow
@pytest.mark.parametrize("sizes", [(1, 1, 1), (1, 10, 10), (2, 2, 2), (1, 1, 1, 1), (1, 10, 10, 10), (1,) * 10])
def test_coverage_with_one_or_two_samples_a_round(sizes: tuple[int, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    """The interval's unit is the round: with 1 or 2 samples a round it is a bootstrap of (nearly) the round
    values, widened for few rounds. 250 cells per setting, drift 5 % and 20 %, noise 5 %: it covers 90-99 %
    of them, except at 3 rounds with a single-sample round, measured here with the rule that withholds that
    interval turned off: it covers less (at 1000 cells over drift 5-20 % and noise 2-10 %: 91-92.7 % for 3
    rounds of 1 sample, 92 % on average with one such round among rounds of 10, 93.3 % for 3 rounds of 2,
    93.7 % for 3 of 10, 95-96.4 % for 4 rounds of 1), so it is not given."""
    rng = np.random.default_rng(list(sizes))
    cells = 250
    thin = len(sizes) < resampling.MIN_ROUNDS_WITH_A_SINGLE_SAMPLE and min(sizes) == 1

    def cell(drift: float) -> list[np.ndarray]:
        effects = np.exp(rng.normal(0.0, drift, len(sizes)))
        return [effects[r] * np.exp(rng.normal(0.0, 0.05, n)) for r, n in enumerate(sizes)]

    if thin:
        assert "of a single sample: too few" in median_interval(cell(0.1)).reason
        monkeypatch.setattr(resampling, "MIN_ROUNDS_WITH_A_SINGLE_SAMPLE", 0)
    rates = []
    for drift in (0.05, 0.2):
        hits = 0
        for i in range(cells):
            m = median_interval(cell(drift), n_boot=500, seed=i)
            hits += m.ci_low <= 1.0 <= m.ci_high
        rates.append(hits / cells)
    if thin:
        assert max(rates) < 0.94, rates
    else:
        assert min(rates) >= 0.90, rates
        assert max(rates) <= 0.99, rates


@pytest.mark.slow
def test_coverage_with_rounds_of_different_sizes() -> None:
    """5 rounds of 2 to 20 samples (drawn at random, as the timer's stopping rule gives them), drift 5 % and
    20 %, noise 5 %, 200 cells: the rounds-weighted median's interval covers the true median in 90-99 %.
    At 1000 cells and 3, 5, 10 rounds of 2-40 samples: 93.3-95.9 % (the pooled median's 92.6-94.8 %), and
    its root-mean-square error is 7-14 % smaller than the pooled median's (weighing rounds alike is the
    efficient choice when the rounds differ by drift)."""
    rng = np.random.default_rng(205)
    cells = 200
    for drift in (0.05, 0.2):
        hits = 0
        for i in range(cells):
            effects = np.exp(rng.normal(0.0, drift, 5))
            cell = [effects[r] * np.exp(rng.normal(0.0, 0.05, int(rng.integers(2, 21)))) for r in range(5)]
            m = median_interval(cell, n_boot=500, seed=i)
            hits += m.ci_low <= 1.0 <= m.ci_high
        assert 0.90 <= hits / cells <= 0.99, (drift, hits / cells)
