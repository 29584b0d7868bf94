"""t intervals over rounds and runs: exact arithmetic, the variance floor, and p-value tails under the null
(fixed seeds; the full-size rates are printed by bench/statistical_rates.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from devbench.t_intervals import (
    NO_SPREAD_REASON,
    Mean,
    log_resolution,
    mean_of_units,
    mean_over_runs,
    t_interval,
    welch_difference,
)


def test_mean_of_units_is_the_textbook_t_interval() -> None:
    values = [0.1, 0.3, 0.2, 0.25]
    m = mean_of_units(values)
    interval = t_interval(m, 0.95)
    expected = sps.t.interval(0.95, 3, loc=np.mean(values), scale=sps.sem(values))
    assert math.log(interval.ci_low) == pytest.approx(expected[0])
    assert math.log(interval.ci_high) == pytest.approx(expected[1])
    assert interval.dof == 3


def test_welch_p_values_are_scipys() -> None:
    base, new = [0.0, 0.05, -0.02, 0.01], [0.2, 0.26, 0.18]
    interval = welch_difference(mean_of_units(base), mean_of_units(new), 0.95)
    ours = interval.p_above(math.exp(0.1))
    theirs = sps.ttest_ind(np.array(new) - 0.1, base, equal_var=False, alternative="greater").pvalue
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_too_few_rounds_and_no_spread_give_no_interval() -> None:
    assert "2 rounds" in mean_of_units([0.1, 0.2]).reason
    same = mean_of_units([0.5, 0.5, 0.5])
    assert same.reason == NO_SPREAD_REASON
    assert math.isnan(t_interval(same, 0.95).ci_low)


def test_quantised_rounds_are_floored_at_the_clock_step_not_zero_width() -> None:
    # Every round median is 1.0, but the samples show a step of 10 %: the interval is not zero wide.
    rounds = [np.array([1.0, 1.0, 1.1]), np.array([1.0, 1.0, 1.1]), np.array([1.0, 1.0, 1.1])]
    step = log_resolution(rounds)
    assert step == pytest.approx(math.log(1.1))
    interval = t_interval(mean_of_units([0.0, 0.0, 0.0], resolution=step), 0.95)
    assert interval.ci_high > 1.0 > interval.ci_low
    assert 0.0 < interval.p_above(0.99) < 0.5


def test_runs_are_the_unit_and_never_surer_than_their_rounds() -> None:
    runs = [[0.0, 0.1, 0.2], [0.5, 0.6, 0.7]]
    side = mean_over_runs(runs)
    assert side.units == 2
    assert side.dof == 1
    assert side.value == pytest.approx(0.35)
    assert side.variance == pytest.approx(np.var([0.1, 0.6], ddof=1) / 2)
    # Two runs that agree exactly: the variance is what the rounds give, not zero.
    agree = mean_over_runs([[0.0, 0.1, 0.2], [0.2, 0.1, 0.0]])
    assert agree.variance == pytest.approx(np.var([0.0, 0.1, 0.2], ddof=1) / 3 / 2)


def test_one_run_is_the_mean_of_its_rounds() -> None:
    assert mean_over_runs([[0.1, 0.2, 0.4]]) == mean_of_units([0.1, 0.2, 0.4])


@pytest.mark.parametrize("rounds", [3, 5])
def test_welch_p_values_hold_their_level_in_the_tail_under_the_null(rounds: int) -> None:
    # A/A: both sides the same truth, drift between rounds 10 % and unequal per side; P(p <= a) <= ~a.
    rng = np.random.default_rng(7)
    trials = 20000
    base = rng.normal(0.0, 0.10, (trials, rounds))
    new = rng.normal(0.0, 0.05, (trials, rounds))
    p = np.array([welch_difference(mean_of_units(b), mean_of_units(n), 0.95).p_above(1.0)
                  for b, n in zip(base, new, strict=True)])
    for level in (0.05, 0.01, 0.001):
        assert np.mean(p <= level) <= 1.5 * level + 3 * math.sqrt(level / trials)


def test_no_values_is_an_error_not_a_nan() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        mean_of_units([])
    with pytest.raises(ValueError, match="at least one run"):
        mean_over_runs([[]])
    assert isinstance(mean_of_units([1.0, 2.0, 3.0]), Mean)
