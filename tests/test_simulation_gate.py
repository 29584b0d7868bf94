"""The gate's rates, small seeded versions of ``simulation.gate`` (full size: ``bench/statistical_rates.py``).

Each test tells the Welch gate from the bootstrap one it replaced: the audit measured the old p-values at
10-12x nominal at 1e-4 and A/A families with drift per cell failing Holm at threshold 0 in 29.5 % (R=3).
"""

from __future__ import annotations

import numpy as np

from devbench.simulation import Noise
from devbench.simulation.gate import (
    PER_CELL,
    PER_ROUND,
    PER_RUN,
    aa_comparison,
    detection,
    family_failures,
    table,
    tail_ratios,
)


def test_the_p_value_tail_holds_its_level_far_out() -> None:
    """10 000 null cells (R=3, 2 samples a round, 5 % drift per cell): P(p <= 1e-3) within 2.5x of nominal
    (10 expected; the old p-values gave about 10x) and P(p <= 1e-2) within [0.4, 1.6]x. Observed: 0.48x
    and 0.60x (Welch with 3 rounds a side is slightly conservative)."""
    ratios = tail_ratios(10_000, 1, rounds=3, noise=PER_CELL)
    assert 0.4 <= ratios[1e-2] <= 1.6
    assert ratios[1e-3] <= 2.5


def test_aa_families_with_drift_per_cell_or_per_round_rarely_fail() -> None:
    """20 A/A families of 200 cells, R=3: Holm and BH at threshold 0 fail at most 3 of 20 (1 expected at
    most; the old gate failed about 6 of 20 with drift per cell), and at 5 % none."""
    for noise in (PER_CELL, PER_ROUND):
        rates = family_failures(20, 7, rounds=3, noise=noise)
        assert rates[("holm", 0.0)] <= 0.15
        assert rates[("bh", 0.0)] <= 0.15
        assert rates[("holm", 0.05)] == rates[("bh", 0.05)] == 0.0


def test_a_run_offset_needs_several_runs_per_side() -> None:
    """A 5 % offset per run is invisible to the tight rounds of one run: with one run per side most A/A
    families fail at threshold 0 and some at 5 %; with two runs per side the run is the unit and they pass."""
    one = family_failures(10, 3, rounds=5, noise=PER_RUN, runs=1)
    two = family_failures(10, 3, rounds=5, noise=PER_RUN, runs=2)
    assert one[("holm", 0.0)] >= 0.5
    assert one[("bh", 0.05)] > 0.0
    assert max(two.values()) <= 0.1


def test_a_real_slowdown_is_found() -> None:
    """10 of 200 cells 50 % slower (R=5, 5 % drift per cell): Holm names at least 90 % of them and no other."""
    found = detection(5, 11, slowdown=1.5)
    assert found.found["holm"] >= 0.9
    assert found.found["bh"] >= found.found["holm"]
    assert found.false["holm"] == 0.0


def test_compare_runs_and_the_simulations_judge_every_cell_alike() -> None:
    """The end-to-end path (synthetic runs through ``compare_runs``, two runs per side) gives exactly the
    p-values the rates are measured with."""
    rng = np.random.default_rng(5)
    noise = Noise(within=0.03, per_cell=0.03, per_round=0.02, per_run=0.02, samples=3)
    comparison, judged = aa_comparison(rng, rounds=3, noise=noise, runs=2, cells=30)
    p = np.array([c.p_value for c in comparison.cells])
    np.testing.assert_allclose(p, judged.p_values, rtol=1e-12)
    assert [c.verdict == "slower" for c in comparison.cells] == judged.slower.tolist()
    assert comparison.base_runs == ("base0", "base1")


def test_the_table_has_every_section() -> None:
    lines = table(1, 0)
    text = "\n".join(lines)
    for part in ("(a) p-value tail", "drift per round, R=5, 10 samples/round", "(b) A/A families",
                 "run offset (5 %), 1 % drift, R=5, 3 runs per side", "(c) detection", "50% slower", "(d) end to end"):
        assert part in text
