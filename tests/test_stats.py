"""Statistics against textbook values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from devbench.stats import median_ci_indices, rel_iqr, summarize


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
    assert s.rel_iqr == pytest.approx(4.5 / 5.5)
    assert s.noisy


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
    for _ in range(trials):
        sample = np.sort(rng.exponential(size=25))
        lo, hi = median_ci_indices(25)
        hits += sample[lo] <= math.log(2) <= sample[hi]
    assert 0.93 <= hits / trials <= 0.99


def test_small_samples_fall_back_to_the_range() -> None:
    assert median_ci_indices(1) == (0, 0)
    assert median_ci_indices(5) == (0, 4)
    s = summarize([3.0])
    assert (s.median, s.std, s.ci_low, s.ci_high, s.rel_iqr) == (3.0, 0.0, 3.0, 3.0, 0.0)


def test_quiet_sample_is_not_noisy() -> None:
    s = summarize([1.0, 1.01, 0.99, 1.0, 1.02])
    assert not s.noisy
    assert rel_iqr([1.0, 1.01, 0.99, 1.0, 1.02]) == pytest.approx(s.rel_iqr)


def test_bad_samples_are_rejected() -> None:
    with pytest.raises(ValueError, match="zero samples"):
        summarize([])
    with pytest.raises(ValueError, match="finite"):
        summarize([1.0, float("nan")])
