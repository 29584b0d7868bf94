"""Steps in a series of medians: found where they are, with an interval that holds them, and rare where there
are none, also when each run is offset by more than its own interval says (the between-run variance)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from devbench.changepoints import MIN_POINTS, detect_steps, own_variances, standard_errors
from devbench.resampling import t_quantile


def _series(rng: np.random.Generator, n: int, se: float, between: float, *, step_at: int | None = None,
            step: float = 1.10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log medians with noise ``se`` (which each run's interval reports, from 3 rounds: 2 dof) plus a run
    offset ``between`` (which no interval reports); from ``step_at`` on, ``step`` times slower."""
    y = rng.normal(0.0, se, n) + rng.normal(0.0, between, n)
    if step_at is not None:
        y[step_at:] += math.log(step)
    reported = se * np.sqrt(rng.chisquare(2, n) / 2)
    return y, reported, np.full(n, 2.0)


def test_a_clear_step_is_found_at_its_run_with_an_interval_that_holds_it() -> None:
    rng = np.random.default_rng(1)
    found = covered = 0
    for _ in range(40):
        y, se, dof = _series(rng, 30, 0.02, 0.01, step_at=15)
        fit = detect_steps(y, se, dof)
        at = [s for s in fit.steps if s.index == 15]
        found += len(fit.steps) == 1 and len(at) == 1
        covered += bool(at) and at[0].ci_low <= 1.10 <= at[0].ci_high
    assert found >= 34  # 85 %
    assert covered >= 0.9 * found


def test_a_b_a_series_are_rarely_given_a_step_even_with_run_offsets_beyond_the_intervals() -> None:
    rng = np.random.default_rng(2)
    series = 150
    with_step = sum(bool(detect_steps(*_series(rng, 30, 0.02, 0.04)).steps) for _ in range(series))
    assert with_step / series <= 0.05
    # the same series weighted by their intervals alone (no between-run variance) are full of steps
    rng = np.random.default_rng(2)
    naive = 0
    for _ in range(series):
        y, se, dof = _series(rng, 30, 0.02, 0.04)
        fit = detect_steps(y, se, dof)
        assert fit.between_run_var > 0
        v = own_variances(se, dof)
        z = np.abs(np.diff(y)) / np.sqrt(v[:-1] + v[1:])
        naive += bool((z > 4).any())
    assert naive / series > 0.3


def test_five_runs_with_a_step_down_and_back_give_both_steps() -> None:
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(50):
        y = np.log([1.0, 2.0, 2.0, 1.0, 1.0]) + rng.normal(0.0, 0.03, 5)
        fit = detect_steps(y, np.full(5, 0.03), np.full(5, 2.0))
        hits += [s.index for s in fit.steps] == [1, 3] and fit.steps[0].ratio > 1 > fit.steps[1].ratio
    assert hits >= 45


def test_short_flat_and_interval_free_series() -> None:
    assert detect_steps([0.0, 1.0, 0.0], [0.1, 0.1, 0.1]).steps == ()
    assert MIN_POINTS == 4
    flat = detect_steps(np.zeros(10), np.full(10, np.nan))
    assert flat.steps == ()
    assert len(flat.segments) == 1
    # no intervals at all: the variance comes from successive differences; a big step is still found
    rng = np.random.default_rng(4)
    y = rng.normal(0.0, 0.02, 20)
    y[10:] += math.log(1.5)
    assert [s.index for s in detect_steps(y, np.full(20, np.nan)).steps] == [10]
    with pytest.raises(ValueError, match="finite"):
        detect_steps([0.0, np.nan, 1.0, 2.0], [0.1] * 4)


def test_standard_errors_read_back_a_t_interval() -> None:
    se = standard_errors([-0.2, np.log(0.9)], [0.2, np.log(1.2)], [3, 1000])
    assert se[0] == pytest.approx(0.2 / t_quantile(0.975, 2.0))
    assert se[1] == pytest.approx((np.log(1.2) - np.log(0.9)) / 2 / t_quantile(0.975, 999.0))
    assert math.isnan(standard_errors([np.nan], [0.1], [3])[0])


def test_a_lucky_narrow_interval_is_pulled_towards_the_others() -> None:
    se = np.array([0.05, 0.05, 0.05, 0.001])
    shrunk = own_variances(se, np.full(4, 2.0))
    assert shrunk[3] > 0.3 * 0.05**2  # not 0.001²: two degrees of freedom cannot make one run that certain
    assert own_variances(se)[3] == pytest.approx(0.001**2)
