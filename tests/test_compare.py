"""devbench compare's statistics: verdicts, the gate, untestable cells, matching, several runs per side,
geometric means (synthetic runs with known answers, deterministic or seeded; ratios and verdicts asserted,
never absolute times)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devbench.compare import (
    CellKey,
    compare_runs,
    has_regression,
)
from devbench.compare_render import render_comparison
from devbench.errors import UsageError
from devbench.resampling import MIN_ROUNDS_FOR_CI
from devbench.schema import VisitRecord
from devbench.stats import gate_failures
from devbench.store import Run
from tests.compare_fixtures import (
    NOISY,
    ROUNDS,
    FakeCell,
    by_key,
    drifting_run,
    grid,
    machine,
    make_run,
    rounds_of,
)

# ---------------------------------------------------------------------------------------------- verdicts


def test_a_run_compared_with_itself_is_same_wherever_the_data_allow() -> None:
    run = make_run([*grid(), *grid(sizes=(4096,), rounds=1)])
    comparison = compare_runs(run, run)
    cells = by_key(comparison)
    assert {cells[(op, n)].verdict for op in ("matmul", "add") for n in (64, 256, 1024)} == {"same"}
    one_round = cells[("matmul", 4096)]
    assert one_round.verdict == "uncertain"
    assert "1 round: cannot see drift between rounds" in one_round.notes[0]
    assert all(c.ratio == pytest.approx(1.0) for c in comparison.cells)
    assert not has_regression(comparison)
    assert comparison.counts() == {"slower": 0, "faster": 0, "uncertain": 2, "same": 6}
    assert comparison.only_in_base == comparison.only_in_new == ()
    assert comparison.not_compared == ()


def test_identical_runs_with_independent_drift_have_no_slower_or_faster_cell() -> None:
    """Two runs of the same 60 cells, each with its own drift (8 % between rounds, shared by the cells of
    the run) and 2 % within-round noise: the drift of a whole run moves every ratio, but the intervals see
    it; no ``slower``/``faster``, the gate passes."""
    rng = np.random.default_rng(11)
    for _ in range(2):
        base = drifting_run(60, rng, run_id="base", drift=0.08, noise=0.02)
        new = drifting_run(60, rng, run_id="new", drift=0.08, noise=0.02)
        comparison = compare_runs(base, new, n_boot=200)
        assert comparison.counts()["slower"] == comparison.counts()["faster"] == 0
        assert not has_regression(comparison)


def test_a_tight_twenty_percent_slowdown_is_slower_and_fails_the_gate() -> None:
    comparison = compare_runs(make_run(grid()), make_run(grid({256: 1.2, 1024: 1.2}), run_id="new"))
    cells = by_key(comparison)
    for size in (256, 1024):
        slow = cells[("matmul", size)]
        assert slow.verdict == "slower"
        assert slow.gate_fails
        assert slow.ratio == pytest.approx(1.2)
        assert 1.05 < slow.ci_low <= 1.2 <= slow.ci_high
        assert slow.p_value < 1e-6
        assert slow.p_adjusted <= 0.05
        assert (slow.n_rounds_base, slow.n_rounds_new) == (ROUNDS, ROUNDS)
    others = [c for k, c in cells.items() if k not in {("matmul", 256), ("matmul", 1024)}]
    assert {c.verdict for c in others} == {"same"}
    assert has_regression(comparison)
    assert comparison.regressions == (cells[("matmul", 256)], cells[("matmul", 1024)])


def test_the_same_slowdown_under_heavy_drift_with_three_rounds_is_uncertain() -> None:
    base = make_run(grid(rounds=3, drift=0.3))
    new = make_run(grid({256: 1.2}, rounds=3, drift=0.3, rng=np.random.default_rng(5)), run_id="new")
    comparison = compare_runs(base, new)
    cell = by_key(comparison)[("matmul", 256)]
    assert cell.verdict == "uncertain"
    assert cell.ci_low < 1.05 < cell.ci_high
    assert any(note.startswith("drift between rounds") for note in cell.notes)
    assert comparison.counts()["slower"] == 0
    assert not has_regression(comparison)


def test_twenty_percent_slower_but_very_noisy_is_uncertain() -> None:
    base = make_run(grid(sigma=NOISY, n=4))
    new = make_run(grid({256: 1.2}, sigma=NOISY, n=4), run_id="new")
    cell = by_key(compare_runs(base, new))[("matmul", 256)]
    assert cell.ratio == pytest.approx(1.2)
    assert cell.verdict == "uncertain"
    assert any(note.startswith("noisy: base IQR") for note in cell.notes)
    assert not has_regression(compare_runs(base, new))


def test_two_percent_change_with_tight_samples_under_five_percent_threshold_is_same() -> None:
    comparison = compare_runs(make_run(grid()), make_run(grid({256: 1.02}), run_id="new"))
    cell = by_key(comparison)[("matmul", 256)]
    assert cell.ci_low > 1.0  # the change is real ...
    assert cell.ci_high < 1.05  # ... and ruled out beyond the threshold
    assert cell.verdict == "same"
    assert not has_regression(comparison)


def test_the_same_two_percent_change_counts_under_a_one_percent_threshold() -> None:
    comparison = compare_runs(make_run(grid()), make_run(grid({256: 1.02}), run_id="new"), threshold=0.01)
    assert by_key(comparison)[("matmul", 256)].verdict == "slower"
    assert has_regression(comparison)


def test_twenty_percent_faster_is_faster_and_not_a_regression() -> None:
    comparison = compare_runs(make_run(grid()), make_run(grid({1024: 0.8}), run_id="new"))
    cell = by_key(comparison)[("matmul", 1024)]
    assert cell.verdict == "faster"
    assert cell.change == pytest.approx(-0.2)
    assert cell.p_value > 0.99  # the gate's p is one-sided: a faster cell is no evidence of slower
    assert not has_regression(comparison)


@given(base_scale=st.floats(0.5, 2.0), change=st.floats(0.7, 1.4), drift=st.floats(0.0, 0.3),
       noise=st.floats(0.001, 0.3), n_rounds=st.integers(1, 6), samples=st.integers(1, 12),
       threshold=st.sampled_from([0.0, 0.02, 0.05, 0.1]), seed=st.integers(0, 2**16))
@settings(deadline=None, max_examples=30)
def test_verdict_never_disagrees_with_the_printed_interval(
        *, base_scale: float, change: float, drift: float, noise: float, n_rounds: int, samples: int,
        threshold: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = make_run([FakeCell(rounds=rounds_of(1e-3 * base_scale, noise, rounds=n_rounds, n=samples,
                                               drift=drift, rng=rng))])
    new = make_run([FakeCell(rounds=rounds_of(1e-3 * base_scale * change, noise, rounds=n_rounds,
                                              n=samples, drift=drift, rng=rng))], run_id="new")
    (cell,) = compare_runs(base, new, threshold=threshold, n_boot=200).cells
    lo, hi, t = cell.ci_low, cell.ci_high, threshold
    if n_rounds < MIN_ROUNDS_FOR_CI:
        assert math.isnan(lo)
        assert cell.verdict == "uncertain"
        return
    expected = ("slower" if lo > 1 + t else "faster" if hi < 1 / (1 + t)
                else "same" if 1 / (1 + t) <= lo and hi <= 1 + t else "uncertain")
    assert cell.verdict == expected
    assert lo <= cell.ratio <= hi
    assert (cell.p_value < 0.025) == (lo > 1 + t)  # the gate's p and the 95 % interval agree
    swapped = compare_runs(new, base, threshold=threshold, n_boot=200).cells[0]
    assert swapped.verdict == MIRROR[cell.verdict]  # swapping base and new mirrors the verdict
    assert swapped.ratio == pytest.approx(1 / cell.ratio)
    assert not cell.gate_fails or cell.verdict == "slower"


MIRROR = {"slower": "faster", "faster": "slower", "same": "same", "uncertain": "uncertain"}


# -------------------------------------------------------------------------------------------- the gate


@pytest.mark.parametrize("shared", [True, False])
def test_aa_families_through_compare_runs_pass_the_gate(shared: bool) -> None:
    """2 A/A families of 200 cells (5 rounds x 10 samples, drift 5 % between rounds shared by a run's cells
    or drawn per cell, noise 3 % within), judged at threshold 0 where the gate is most exposed: Holm and BH
    pass both; at the default 5 % no cell is even ``slower`` (the interval does not depend on the
    threshold, so one comparison serves both). The rates over many families are in ``simulation.gate``
    (tests/test_simulation_gate.py)."""
    rng = np.random.default_rng(2026)
    for _ in range(2):
        base = drifting_run(200, rng, run_id="base", drift=0.05, noise=0.03, shared=shared)
        new = drifting_run(200, rng, run_id="new", drift=0.05, noise=0.03, shared=shared)
        comparison = compare_runs(base, new, threshold=0.0, n_boot=200)
        assert not has_regression(comparison)
        p = np.array([c.p_value for c in comparison.cells])
        slower = np.array([c.verdict == "slower" for c in comparison.cells])
        assert not (gate_failures(p, 0.05, "bh") & slower).any()
        assert not any(c.ci_low > 1.05 for c in comparison.cells)


def test_a_cell_slower_by_its_interval_but_not_after_correction_is_noted_not_failed() -> None:
    """One cell of 200 6.4 % slower, just beyond the 5 % threshold: its own 95 % interval says ``slower``
    (p 0.006), but with 199 other cells judged its Holm-adjusted p is above alpha, so the gate passes and the
    note says why; judged alone the same cell fails the gate."""
    base_cells = [FakeCell(op=f"op{i // 20}", size=2 ** (i % 20), rounds=rounds_of(1e-3, 0.02))
                  for i in range(200)]
    new_cells = [FakeCell(op=c.op, size=c.size, rounds=rounds_of(1e-3 * (1.064 if i == 0 else 1.0), 0.02))
                 for i, c in enumerate(base_cells)]
    comparison = compare_runs(make_run(base_cells), make_run(new_cells, run_id="new"), n_boot=200)
    edge = by_key(comparison)[("op0", 1)]
    assert edge.verdict == "slower"
    assert 0.0 < edge.p_value < 0.025
    assert edge.p_adjusted > 0.05
    assert not edge.gate_fails
    assert comparison.slower_not_significant == (edge,)
    assert not has_regression(comparison)
    assert any("not significant after holm over 200 cells" in note for note in edge.notes)
    alone = compare_runs(make_run(base_cells[:1]), make_run(new_cells[:1], run_id="new"))
    assert alone.cells[0].gate_fails  # the same cell judged alone fails the gate


def test_bh_gate_is_an_option() -> None:
    comparison = compare_runs(make_run(grid()), make_run(grid({256: 1.2}), run_id="new"), gate_method="bh")
    assert comparison.settings.gate_method == "bh"
    assert [c.key.size for c in comparison.regressions] == [256]
    with pytest.raises(UsageError, match="--gate-method 'bonferroni' is unknown; allowed: holm, bh"):
        compare_runs(make_run(grid()), make_run(grid()), gate_method="bonferroni")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------- untestable cells


def test_bare_tables_without_samples_fall_back_to_medians_and_are_uncertain() -> None:
    base = make_run(grid(), with_samples=False)
    new = make_run(grid({256: 1.2}), run_id="new", with_samples=False)
    comparison = compare_runs(base, new)
    cell = by_key(comparison)[("matmul", 256)]
    assert cell.ratio == pytest.approx(1.2)
    assert cell.verdict == "uncertain"
    assert math.isnan(cell.p_value)
    assert math.isnan(cell.ci_low)
    assert "no raw samples" in cell.notes[0]
    assert (cell.n_base, cell.n_new) == (0, 0)
    assert {c.verdict for c in comparison.cells} == {"uncertain"}
    assert not has_regression(comparison)
    assert comparison.overall.ratio == pytest.approx(1.2 ** (1 / 6))
    assert math.isnan(comparison.overall.ci_low)
    assert "without usable raw samples" in comparison.overall.note


@pytest.mark.parametrize("n_rounds", range(1, MIN_ROUNDS_FOR_CI))
def test_too_few_rounds_is_uncertain_with_the_reason(n_rounds: int) -> None:
    base = make_run([FakeCell(rounds=rounds_of(1e-3, rounds=n_rounds))])
    new = make_run([FakeCell(rounds=rounds_of(1.5e-3, rounds=n_rounds))], run_id="new")
    comparison = compare_runs(base, new)
    cell = comparison.cells[0]
    assert cell.verdict == "uncertain"
    assert cell.ratio == pytest.approx(1.5)
    assert math.isnan(cell.ci_low)
    assert math.isnan(cell.p_value)
    assert "round" in cell.notes[0]
    assert "not tested" in cell.notes[0]
    assert not has_regression(comparison)
    assert comparison.n_judged == 0
    assert "no interval" in comparison.overall.note


def test_one_sample_per_round_still_gives_an_interval() -> None:
    """Budget-capped big cells often have one sample per visit: the rounds alone then carry the interval."""
    comparison = compare_runs(make_run([FakeCell(rounds=rounds_of(1e-3, n=1, drift=0.01))]),
                              make_run([FakeCell(rounds=rounds_of(1.5e-3, n=1, drift=0.01))], run_id="new"))
    cell = comparison.cells[0]
    assert math.isfinite(cell.ci_low)
    assert cell.verdict == "slower"
# ----------------------------------------------------------------------------------------- matching


def test_disjoint_cell_sets_are_listed_not_dropped() -> None:
    base = make_run(grid(sizes=(64, 256)))
    new = make_run([*grid(sizes=(256, 1024)), FakeCell(op="add", size=256, dtype="float16")], run_id="new")
    comparison = compare_runs(base, new)
    assert sorted((c.key.op, c.key.size) for c in comparison.cells) == [("add", 256), ("matmul", 256)]
    assert [(c.key.op, c.key.size) for c in comparison.only_in_base] == [("add", 64), ("matmul", 64)]
    assert [(c.key.op, c.key.size, c.key.dtype) for c in comparison.only_in_new] == [
        ("add", 256, "float16"), ("add", 1024, "float32"), ("matmul", 1024, "float32")]
    assert comparison.only_in_new[0].status == "ok"
    text = render_comparison(comparison, "table")
    assert "Only in base (2)" in text
    assert "Only in new (3)" in text
    data = json.loads(render_comparison(comparison, "json"))
    assert len(data["only_in_base"]) == 2
    assert len(data["only_in_new"]) == 3


def test_non_ok_cells_are_excluded_and_listed() -> None:
    base_cells = [*grid(), FakeCell(op="matmul", size=4096, dtype="float16", status="unsupported")]
    new_cells = [*grid(), FakeCell(op="matmul", size=4096, dtype="float16", status="unsupported")]
    new_cells[1] = FakeCell(op="matmul", size=256, status="oom", rounds=[], reason="OOM at 256")
    comparison = compare_runs(make_run(base_cells), make_run(new_cells, run_id="new"))
    assert ("matmul", 256) not in by_key(comparison)
    assert ("matmul", 4096) not in by_key(comparison)
    assert len(comparison.cells) == 5
    changed = [p for p in comparison.not_compared if p.changed]
    assert [(p.key.size, p.base_status, p.new_status, p.new_reason) for p in changed] == [
        (256, "ok", "oom", "OOM at 256")]
    unchanged = [p for p in comparison.not_compared if not p.changed]
    assert [(p.key.size, p.base_status) for p in unchanged] == [(4096, "unsupported")]
    text = render_comparison(comparison, "table")
    assert "status changed" in text
    assert "oom" in text
    assert "same non-ok status in both runs: unsupported 1" in text


def test_cells_differing_only_in_sync_are_matched_with_a_note() -> None:
    base = make_run([FakeCell(sync="scalar")])
    new = make_run([FakeCell(sync="none")], run_id="new")
    comparison = compare_runs(base, new)
    assert comparison.only_in_base == comparison.only_in_new == ()
    cell = comparison.cells[0]
    assert (cell.base_sync, cell.new_sync) == ("scalar", "none")
    assert any("sync differs" in note for note in cell.notes)
    assert any("unsynchronized" in note for note in cell.notes)


def test_ambiguous_sync_pairings_are_listed_rather_than_guessed() -> None:
    base = make_run([FakeCell(sync="scalar"), FakeCell(sync="full")])
    new = make_run([FakeCell(sync="none"), FakeCell(sync="sync_devices")], run_id="new")
    comparison = compare_runs(base, new)
    assert comparison.cells == ()
    assert sorted(c.sync for c in comparison.only_in_base) == ["full", "scalar"]
    assert sorted(c.sync for c in comparison.only_in_new) == ["none", "sync_devices"]


def test_cells_come_out_in_reading_order() -> None:
    cells = list(reversed(grid()))
    comparison = compare_runs(make_run(cells), make_run(cells, run_id="new"))
    assert [(c.key.op, c.key.size) for c in comparison.cells] == [
        ("add", 64), ("add", 256), ("add", 1024), ("matmul", 64), ("matmul", 256), ("matmul", 1024)]


# ----------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize("threshold", [-0.01, 1.0, 5.0, math.nan, math.inf])
def test_bad_threshold_is_a_usage_error_naming_the_value(threshold: float) -> None:
    run = make_run(grid())
    with pytest.raises(UsageError, match=r"--threshold .*0 <= t < 1") as info:
        compare_runs(run, run, threshold=threshold)
    assert repr(threshold) in str(info.value)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.5, 1.5, math.nan])
def test_bad_alpha_is_a_usage_error_naming_the_value(alpha: float) -> None:
    run = make_run(grid())
    with pytest.raises(UsageError, match=r"--alpha .*0 < alpha < 1") as info:
        compare_runs(run, run, alpha=alpha)
    assert repr(alpha) in str(info.value)


def test_bad_confidence_and_n_boot_are_usage_errors() -> None:
    run = make_run(grid())
    with pytest.raises(UsageError, match=r"confidence 1\.0"):
        compare_runs(run, run, confidence=1.0)
    with pytest.raises(UsageError, match="n_boot 10"):
        compare_runs(run, run, n_boot=10)
    with pytest.raises(UsageError, match="seed -1"):
        compare_runs(run, run, seed=-1)


def test_zero_threshold_is_allowed_and_never_calls_noise_same() -> None:
    comparison = compare_runs(make_run(grid()), make_run(grid(), run_id="new"), threshold=0.0)
    assert {c.verdict for c in comparison.cells} == {"uncertain"}


def test_runs_of_different_schema_versions_are_a_usage_error() -> None:
    run = make_run(grid())
    future = Run(path=None, meta={**run.meta, "schema_version": 3}, results=run.results, samples=run.samples)
    with pytest.raises(UsageError, match=r"different schema versions \(base 2, new 3\)"):
        compare_runs(run, future)


def test_a_results_table_without_identity_columns_is_a_usage_error() -> None:
    run = make_run(grid())
    broken = Run(path=None, meta={}, results=run.results.drop(columns=["device"]), samples=run.samples)
    with pytest.raises(UsageError, match="base run's results lack the columns device"):
        compare_runs(broken, run)


# -------------------------------------------------------------------------------------------- statistics


def test_cells_use_no_random_numbers_and_only_the_geomean_bootstrap_takes_the_seed() -> None:
    """A cell's interval is Welch's t on its own round medians: the seed changes nothing there (so two sync
    variants of a cell cannot share a random stream); the one-run geometric mean's joint bootstrap uses it."""
    base = make_run(grid(sigma=0.05, drift=0.03))
    new = make_run(grid({256: 1.1}, sigma=0.05, drift=0.03), run_id="new")
    assert compare_runs(base, new, seed=3) == compare_runs(base, new, seed=3)
    assert compare_runs(base, new, seed=3).cells == compare_runs(base, new, seed=4).cells
    assert compare_runs(base, new, seed=3).overall.ci_low != compare_runs(base, new, seed=4).overall.ci_low


def test_two_sync_variants_of_a_cell_get_their_own_intervals() -> None:
    variants = [FakeCell(sync="scalar", rounds=rounds_of(1e-3, 0.05, drift=0.03)),
                FakeCell(sync="full", rounds=rounds_of(1e-3, 0.05, drift=0.03, rng=np.random.default_rng(1)))]
    comparison = compare_runs(make_run(variants), make_run(variants, run_id="new"))
    widths = {c.base_sync: c.ci_high / c.ci_low for c in comparison.cells}
    assert set(widths) == {"scalar", "full"}
    assert widths["scalar"] != pytest.approx(widths["full"])


def test_identical_quantised_samples_give_no_interval_not_certainty() -> None:
    """A coarse clock can make every sample of both runs the same value: no spread shows anywhere, so there
    is no interval (and no p-value of 0 for the gate to act on), and the note says why."""
    tick = [[1e-3] * 10 for _ in range(ROUNDS)]
    comparison = compare_runs(make_run([FakeCell(rounds=tick)]), make_run([FakeCell(rounds=tick)], run_id="new"))
    (cell,) = comparison.cells
    assert cell.verdict == "uncertain"
    assert math.isnan(cell.p_value)
    assert "below the timer's resolution" in cell.notes[0]
    # One tick of difference in a sample is enough to show the resolution, which then floors the variance.
    ticked = [[1e-3] * 9 + [1.001e-3] for _ in range(ROUNDS)]
    cell = compare_runs(make_run([FakeCell(rounds=tick)]),
                        make_run([FakeCell(rounds=ticked)], run_id="new")).cells[0]
    assert math.isfinite(cell.ci_low)
    assert cell.ci_low < 1.0 < cell.ci_high
    assert cell.p_value > 0


def test_a_cells_interval_does_not_depend_on_the_other_cells() -> None:
    full = compare_runs(make_run(grid(sigma=0.05)), make_run(grid({256: 1.1}, sigma=0.05), run_id="new"))
    alone = compare_runs(make_run(grid(sigma=0.05, sizes=(256,))),
                         make_run(grid({256: 1.1}, sigma=0.05, sizes=(256,)), run_id="new"))
    kept = ("ratio", "ci_low", "ci_high", "p_value", "verdict")
    assert ({k: getattr(by_key(alone)[("matmul", 256)], k) for k in kept}
            == {k: getattr(by_key(full)[("matmul", 256)], k) for k in kept})


def test_drift_between_rounds_widens_the_interval() -> None:
    quiet = compare_runs(make_run(grid()), make_run(grid(), run_id="new"))
    drifting = compare_runs(make_run(grid(drift=0.05)), make_run(grid(drift=0.05), run_id="new"))
    for q, d in zip(quiet.cells, drifting.cells, strict=True):
        assert d.ci_high / d.ci_low > 3 * (q.ci_high / q.ci_low - 1) + 1


def test_geometric_means_per_op_dtype_and_overall() -> None:
    comparison = compare_runs(make_run(grid()), make_run(grid({64: 1.2, 256: 1.2, 1024: 1.2}), run_id="new"))
    groups = {g.label: g for g in comparison.geomeans}
    assert set(groups) == {"add float32", "matmul float32"}
    matmul = groups["matmul float32"]
    assert matmul.n_cells == 3
    assert matmul.ratio == pytest.approx(1.2)
    assert matmul.ci_low < 1.2 < matmul.ci_high
    assert matmul.ci_high - matmul.ci_low < 0.02
    assert groups["add float32"].ratio == pytest.approx(1.0)
    assert comparison.overall.n_cells == 6
    assert comparison.overall.ratio == pytest.approx(math.sqrt(1.2))
    assert comparison.overall.ci_low < math.sqrt(1.2) < comparison.overall.ci_high


def _independent_geomean_width(comparison_runs: tuple[Run, Run], n_boot: int = 1000) -> float:
    """Width (log units) of the geometric mean's 95 % interval as the old compare made it: every cell
    bootstrapped on its own (two levels here, for fairness), the replicates averaged across cells."""
    from devbench.resampling import as_rounds, draw_rounds, pooled_median_replicates

    def rounds_by_cell(run: Run) -> list[list[np.ndarray]]:
        return [as_rounds([g["per_call_s"].to_numpy() for _, g in cell.groupby("round")])
                for _, cell in run.samples.groupby(["op", "size"], sort=True)]

    rng = np.random.default_rng(0)
    base, new = (rounds_by_cell(run) for run in comparison_runs)
    reps = np.zeros(n_boot)
    for b, n in zip(base, new, strict=True):
        reps += np.log(pooled_median_replicates(n, draw_rounds(len(n), n_boot, rng), rng))
        reps -= np.log(pooled_median_replicates(b, draw_rounds(len(b), n_boot, rng), rng))
    reps /= len(base)
    low, high = np.quantile(reps, [0.025, 0.975])
    return float(high - low)


def test_the_joint_geomean_does_not_shrink_with_the_number_of_cells_when_drift_is_shared() -> None:
    """Drift of 5 % per round shared by all cells of a run, 1 % within-round noise. With 1 cell and with 80
    cells the run-level drift is the same, so the overall interval must stay about as wide; averaging
    independent per-cell bootstraps (the old way) shrinks it roughly like 1/sqrt(80)."""
    widths = {}
    for cells in (1, 80):
        rng = np.random.default_rng(3)
        runs = (drifting_run(cells, rng, run_id="base", drift=0.05, noise=0.01),
                drifting_run(cells, rng, run_id="new", drift=0.05, noise=0.01))
        overall = compare_runs(*runs, n_boot=1000).overall
        widths[cells] = (math.log(overall.ci_high / overall.ci_low), _independent_geomean_width(runs))
    joint_1, independent_1 = widths[1]
    joint_80, independent_80 = widths[80]
    assert joint_80 > 0.5 * joint_1
    assert independent_80 < 0.25 * independent_1
    assert joint_80 > 3 * independent_80


def test_cell_key_reading_order() -> None:
    keys = [CellKey("matmul", 1024, "float32", "CPU:0", "eager"), CellKey("matmul", 64, "float32", "CPU:0",
                                                                           "eager")]
    assert sorted(keys, key=lambda k: k.sort_key)[0].size == 64
    assert keys[0].label() == "matmul[1024, float32, CPU:0, eager]"


def test_runs_written_and_loaded_by_the_store_compare(tmp_path: Path) -> None:
    from devbench.store import CELLS, META, CellLog, finalize, load_run, new_meta, write_json

    def write(name: str, factor: float, parquet_only: bool) -> Path:
        run_dir = tmp_path / name
        run_dir.mkdir()
        write_json(run_dir / META, new_meta({"rounds": ROUNDS}, machine(hostname=name), name, ["sweep"]))
        log = CellLog(run_dir)
        for cell in grid({256: factor}):
            for round_, samples in enumerate(cell.rounds, start=1):
                log.append(VisitRecord(run_id=name, op=cell.op, size=cell.size, dtype=cell.dtype,
                                       device=cell.device, mode=cell.mode, sync=cell.sync, status="ok",
                                       n_samples=len(samples), number=10, median_s=float(np.median(samples))),
                           samples, round_)
        if parquet_only:  # read back through results.parquet / samples.parquet
            finalize(run_dir)
            (run_dir / CELLS).unlink()
        return run_dir

    base, new = load_run(write("laptop", 1.0, False)), load_run(write("gpubox", 1.2, True))
    comparison = compare_runs(base, new)
    assert comparison.base_label == str(tmp_path / "laptop")
    assert by_key(comparison)[("matmul", 256)].verdict == "slower"
    assert comparison.counts()["same"] == 5
    assert ("hostname", "laptop", "gpubox") in comparison.fingerprint


# ------------------------------------------------------------------------------------ several runs per side


def _runs(factors: Sequence[float], name: str, cells: Sequence[FakeCell] | None = None,
          meta: Mapping[str, Any] | None = None) -> list[Run]:
    """One run per factor: the grid with every time scaled by that factor (a whole-run offset)."""
    out = []
    for i, factor in enumerate(factors):
        scaled = [FakeCell(op=c.op, size=c.size, rounds=[[s * factor for s in r] for r in c.rounds])
                  for c in (cells if cells is not None else grid())]
        out.append(make_run(scaled, run_id=f"{name}{i + 1}", meta=meta))
    return out


def test_one_run_per_side_cannot_see_a_run_offset_several_runs_can() -> None:
    """The same code measured in five processes whose whole-run offsets differ by up to 9 % (what a fresh
    process re-draws): compared one run against one, the tight rounds make the offset look like a real
    slowdown; with the runs as the unit the offsets are in the interval and nothing is ``slower``."""
    base, new = _runs((1.0, 0.96, 1.03), "a"), _runs((1.09, 1.0), "b")
    alone = compare_runs(base[0], new[0])
    assert alone.counts()["slower"] == 6
    several = compare_runs(base, new)
    assert several.counts()["slower"] == several.counts()["faster"] == 0
    assert not has_regression(several)
    cell = by_key(several)[("matmul", 256)]
    assert cell.ci_low < 1.0 < cell.ci_high
    assert cell.ratio == pytest.approx(((1.09 * 1.0) ** 0.5) / ((1.0 * 0.96 * 1.03) ** (1 / 3)))
    assert (cell.n_rounds_base, cell.n_rounds_new) == (3 * ROUNDS, 2 * ROUNDS)
    assert several.base_runs == ("a1", "a2", "a3")
    assert several.new_runs == ("b1", "b2")
    assert several.base_label == "a1, a2, a3"
    assert math.isfinite(several.overall.ci_low)
    assert several.overall.ci_low < 1.0 < several.overall.ci_high


def test_a_real_slowdown_beyond_the_run_offsets_is_still_found() -> None:
    base, new = _runs((1.0, 1.01, 0.99), "a"), _runs((1.5, 1.49, 1.51), "b")
    comparison = compare_runs(base, new)
    assert comparison.counts()["slower"] == 6
    assert has_regression(comparison)
    assert comparison.overall.ci_low > 1.4


def test_several_runs_swapped_mirror_every_verdict() -> None:
    base, new = _runs((1.0, 1.01, 0.99), "a"), _runs((1.2, 1.21), "b")
    forward, backward = compare_runs(base, new), compare_runs(new, base)
    for f, b in zip(forward.cells, backward.cells, strict=True):
        assert b.verdict == MIRROR[f.verdict]
        assert b.ratio == pytest.approx(1 / f.ratio)
        assert b.ci_low == pytest.approx(1 / f.ci_high)


def test_a_cell_missing_from_some_runs_uses_the_runs_it_has() -> None:
    full = grid()
    partial = [c for c in full if (c.op, c.size) != ("matmul", 256)]
    broken = [c if (c.op, c.size) != ("matmul", 1024) else FakeCell(op="matmul", size=1024, status="oom", rounds=[])
              for c in full]
    base = [make_run(full, run_id="a1"), make_run(partial, run_id="a2"), make_run(broken, run_id="a3")]
    comparison = compare_runs(base, _runs((1.0, 1.0), "b"))
    cells = by_key(comparison)
    assert "base: 2 of 3 runs" in "; ".join(cells[("matmul", 256)].notes)
    assert "base: 2 of 3 runs" in "; ".join(cells[("matmul", 1024)].notes)
    assert not any("of 3 runs" in note for note in cells[("add", 256)].notes)
    assert cells[("matmul", 256)].n_rounds_base == 2 * ROUNDS
    assert comparison.not_compared == ()
    assert len(comparison.cells) == 6


def test_runs_of_one_side_from_different_machines_get_a_warning() -> None:
    base = [*_runs((1.0,), "a"), *_runs((1.0,), "x", meta=machine(hostname="otherbox"))]
    comparison = compare_runs(base, _runs((1.0, 1.0), "b"))
    (warning,) = comparison.warnings
    assert "base runs a1 and x1 are from different machines (hostname)" in warning
    assert "WARNING: base runs a1 and x1" in render_comparison(comparison, "table", width=200)
    assert compare_runs(_runs((1.0, 1.0), "a"), _runs((1.0,), "b")).warnings == ()


def test_the_table_header_names_the_runs_of_each_side() -> None:
    text = render_comparison(compare_runs(_runs((1.0, 1.0), "a"), _runs((1.0,), "b")), "table", width=200)
    assert "base (2 runs): a1, a2" in text
    assert "new:  b1" in text
    assert "Welch t over runs" in text
    one = render_comparison(compare_runs(make_run(grid()), make_run(grid(), run_id="new")), "table", width=200)
    assert "Welch t over rounds (conditional on the two runs)" in one


def test_an_empty_side_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no new run given"):
        compare_runs(make_run(grid()), [])
