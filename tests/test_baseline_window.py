"""``compare --baseline-window K``: NEW judged against the last K base runs, the run as one more level of the
interval. Rates are measured on seeded synthetic runs with ``simulation.gate`` (the full table:
``bench/statistical_rates.py window``); these are small seeded versions of it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from devbench.cli import main
from devbench.compare import cell_statistics, compare_runs, window_of
from devbench.errors import UsageError
from devbench.resampling import log_round_medians, t_quantile
from devbench.simulation import Noise, simulate_run
from devbench.simulation.gate import PER_RUN, QUIET, _truth, detection, family_failures, synthetic_run
from devbench.store import Run
from tests.test_dataset import SMALL
from tests.test_merge import write_run


def _runs(rng: np.random.Generator, n: int, noise: Noise, cells: int = 20) -> list[Run]:
    truth = _truth(rng, cells)
    runs = [synthetic_run(simulate_run(rng, truth, 5, noise), f"r{i}") for i in range(n)]
    for i, run in enumerate(runs):  # started in the reverse of their order in the list
        run.meta["started_at"] = f"2026-12-0{9 - i}T10:00:00+00:00"
    return runs


def test_the_window_is_the_last_k_runs_by_start_time() -> None:
    runs = _runs(np.random.default_rng(1), 5, QUIET)
    assert [r.meta["run_id"] for r in window_of(runs, 3)] == ["r2", "r1", "r0"]
    assert [r.meta["run_id"] for r in window_of(runs, 5)] == ["r4", "r3", "r2", "r1", "r0"]
    comparison = compare_runs(runs, runs[:1], baseline_window=2, n_boot=200)
    assert comparison.base_runs == ("r1", "r0")
    assert comparison.settings.baseline_window == 2


@pytest.mark.parametrize(("k", "message"), [
    (0, "--baseline-window 0 is out of range; allowed: 1 to the 5 base runs given"),
    (6, "--baseline-window 6 is out of range; allowed: 1 to the 5 base runs given"),
])
def test_a_window_outside_the_runs_is_refused(k: int, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        window_of(_runs(np.random.default_rng(2), 5, QUIET), k)


def test_a_run_without_a_start_time_is_refused() -> None:
    runs = _runs(np.random.default_rng(3), 3, QUIET)
    del runs[1].meta["started_at"]
    with pytest.raises(UsageError, match="r1 records no started_at; --baseline-window orders runs by it"):
        window_of(runs, 2)


def test_cli_window_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b, c = (str(write_run(tmp_path / name, SMALL)) for name in ("a", "b", "c"))
    assert main(["compare", "--baseline-window", "3", a, b, "--", c]) == 2
    assert "--baseline-window 3 is out of range; allowed: 1 to the 2 base runs given" in capsys.readouterr().err
    assert main(["compare", "--baseline-window", "0", a, b, "--", c]) == 2
    assert "--baseline-window '0' must be at least 1" in capsys.readouterr().err
    assert main(["compare", "--baseline-window", "2", a, b, "--", c, "--format", "json",
                 "--chart", str(tmp_path / "c.png")]) == 0
    assert '"baseline_window": 2' in capsys.readouterr().out


def test_window_interval_adds_the_run_level() -> None:
    """Runs that scatter far more than their rounds: the interval is the one for one more draw of a run,
    s * sqrt(1 + 1/K) * t(K - 1), where Welch's interval (the new run's offset left out) is much narrower."""
    rng = np.random.default_rng(4)
    noise = Noise(within=0.01, per_cell=0.001, per_round=0.001, per_run=0.10, samples=5)
    truth = np.array([math.log(1e-3)])
    base = [simulate_run(rng, truth, 5, noise)[0] for _ in range(5)]
    new = [simulate_run(rng, truth, 5, noise)[0]]
    window = cell_statistics(base, new, threshold=0.05, confidence=0.95, window=True).interval
    welch = cell_statistics(base, new, threshold=0.05, confidence=0.95).interval
    s = float(np.std([log_round_medians(r).mean() for r in base], ddof=1))
    assert window.half_high == pytest.approx(s * math.sqrt(1.2) * t_quantile(0.975, window.dof), rel=0.02)
    assert 4.0 <= window.dof < 4.5  # the run level dominates: K - 1 degrees of freedom
    assert window.half_high > 1.8 * welch.half_high


def test_seeded_rates_one_baseline_run_vs_a_window() -> None:
    """A 5 % offset per run: one baseline run fails the gate in many A/A families (the two runs' offsets
    pass for a change), a window of 5 in few; without a run offset the window still finds a 10 % change."""
    one = family_failures(30, 11, rounds=5, noise=PER_RUN, runs=1, new_runs=1, cells=50, thresholds=(0.0,))
    window = family_failures(30, 11, rounds=5, noise=PER_RUN, runs=5, new_runs=1, window=True, cells=50,
                             thresholds=(0.0,))
    assert one[("holm", 0.0)] >= 0.3
    assert window[("holm", 0.0)] <= 0.1
    quiet = family_failures(30, 12, rounds=5, noise=QUIET, runs=5, new_runs=1, window=True, cells=50,
                            thresholds=(0.0,))
    assert quiet[("holm", 0.0)] <= 0.1
    found = detection(10, 13, slowdown=1.10, noise=QUIET, base_runs=5, window=True, cells=50, slow_cells=5)
    assert found.found["holm"] >= 0.3
    assert found.false["holm"] <= 0.01
