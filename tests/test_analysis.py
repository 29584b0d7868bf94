"""Crossover, winners, refining and bare-table loading on synthetic results with known answers."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from devbench import store
from devbench.analysis import (
    CROSSOVER_COLUMNS,
    RefineCell,
    bracket_converged,
    crossover_frame,
    device_order,
    is_accelerator,
    ok_cells,
    records,
    refine,
    refine_plan,
    render_crossovers,
    render_winners,
    winners,
)
from devbench.errors import UsageError
from devbench.schema import RESULT_COLUMNS, SAMPLE_COLUMNS
from tests.synthetic import frame, from_medians, from_model, grid, row


def cubic_vs_linear(ci_rel: float = 0.01, sizes: list[int] | None = None) -> pd.DataFrame:
    """CPU 1e-12·n³ s against GPU 1e-6·n s: the log-ratio is linear in log n and crosses 0 at n = 1000."""
    return from_model(
        {"CPU:0": lambda n: 1e-12 * n**3, "GPU:0": lambda n: 1e-6 * n}, sizes or grid(64, 4096), ci_rel=ci_rel
    )


def by_exponent(exponents: list[int], sizes: list[int], **kw: Any) -> pd.DataFrame:
    """CPU 1 ms everywhere; GPU 1 ms / 2^k, so the GPU is 2^k times faster (k < 0: slower)."""
    gpu = {n: 1e-3 / 2.0**k for n, k in zip(sizes, exponents, strict=True)}
    medians = {"CPU:0": dict.fromkeys(sizes, 1e-3), "GPU:0": gpu}
    return from_medians(medians, **kw)


def only(frame_: pd.DataFrame) -> dict[str, Any]:
    assert len(frame_) == 1, frame_
    return records(frame_)[0]


# ---------------------------------------------------------------------------------------------------------
# crossover_frame


def test_columns_are_the_public_ones_in_order() -> None:
    result = crossover_frame(cubic_vs_linear())
    assert tuple(result.columns[: len(CROSSOVER_COLUMNS)]) == (
        "op",
        "dtype",
        "mode",
        "device_a",
        "device_b",
        "crossover_size",
        "low",
        "high",
        "faster_below",
        "faster_above",
        "decisive",
        "note",
    )


def test_one_crossing_is_interpolated_in_log_log_and_bounded_by_the_cis() -> None:
    r = only(crossover_frame(cubic_vs_linear(ci_rel=0.01)))
    assert (r["device_a"], r["device_b"]) == ("CPU:0", "GPU:0")
    assert r["crossover_size"] == pytest.approx(1000.0, rel=1e-9)
    # The optimistic / pessimistic curves are the log-ratio shifted by ±log(1.01 / 0.99).
    assert r["low"] == pytest.approx(1000 * math.sqrt(0.99 / 1.01), rel=1e-9)
    assert r["high"] == pytest.approx(1000 * math.sqrt(1.01 / 0.99), rel=1e-9)
    assert (r["faster_below"], r["faster_above"]) == ("CPU:0", "GPU:0")
    assert (r["bracket_low"], r["bracket_high"]) == (512, 1024)
    assert r["speedup_min"] == pytest.approx(1e-6 * 64**2)  # GPU:0 over CPU:0 at n=64: 0.004×
    assert r["speedup_max"] == pytest.approx(1e-6 * 4096**2)
    assert (r["min_size"], r["max_size"]) == (64, 4096)
    assert r["decisive"]
    assert r["ratio_basis"] == "cell CIs"
    assert r["note"].startswith("GPU:0 faster above n≈1000 (range 990–1010), decisive; CPU:0/GPU:0 = ")
    assert "no rounds in the data" in r["note"]


def test_two_crossings_give_two_rows_in_size_order() -> None:
    sizes = grid(64, 4096)
    result = crossover_frame(by_exponent([-2, -1, 1, 2, 1, -1, -2], sizes))
    assert len(result) == 2
    first, second = records(result)
    assert first["crossover_size"] == pytest.approx(math.sqrt(128 * 256))
    assert (first["faster_below"], first["faster_above"]) == ("CPU:0", "GPU:0")
    assert second["crossover_size"] == pytest.approx(math.sqrt(1024 * 2048))
    assert (second["faster_below"], second["faster_above"]) == ("GPU:0", "CPU:0")
    assert second["note"].startswith("CPU:0 faster above n≈1448")
    for r in (first, second):
        assert r["low"] < r["crossover_size"] < r["high"]


def test_no_crossover_says_who_is_faster_throughout() -> None:
    sizes = grid(64, 1024)
    r = only(crossover_frame(by_exponent([1, 2, 3, 4, 5], sizes)))
    assert math.isnan(r["crossover_size"])
    assert math.isnan(r["low"])
    assert math.isnan(r["high"])
    assert (r["faster_below"], r["faster_above"]) == ("GPU:0", "GPU:0")
    assert r["note"] == "no crossover in [64, 1024]: GPU:0 is faster throughout"
    assert r["speedup_min"] == pytest.approx(2.0)
    assert r["speedup_max"] == pytest.approx(32.0)


def test_tied_throughout_is_not_a_crossover() -> None:
    r = only(crossover_frame(by_exponent([0, 0, 0], [64, 128, 256])))
    assert math.isnan(r["crossover_size"])
    assert "tied throughout" in r["note"]


def test_crossing_exactly_on_a_grid_point_is_reported_at_that_size() -> None:
    sizes = grid(64, 1024)
    r = only(crossover_frame(by_exponent([-2, -1, 0, 1, 2], sizes)))
    assert r["crossover_size"] == 256.0
    assert (r["bracket_low"], r["bracket_high"]) == (256, 256)
    assert 128 < r["low"] < 256 < r["high"] < 512
    assert r["decisive"]
    assert r["note"].startswith("GPU:0 faster above n≈256 (range ")


def test_crossing_inside_noisy_cis_is_widened_past_the_bracket_and_decided_by_the_nearest_decisive_sizes() -> None:
    # CI ±60 %: the optimistic curve is the log-ratio + log(1.6/0.4) = + log 4, so it crosses at 1000/2.
    # At 512 and 1024 the ratio's interval holds 1; at 256 (0.066×, ×/÷ 4) and 2048 (4.2×) it does not, on
    # opposite sides, with one crossing between: decisive, its range the sizes where the interval holds 1.
    r = only(crossover_frame(cubic_vs_linear(ci_rel=0.6)))
    assert r["crossover_size"] == pytest.approx(1000.0)
    assert r["decisive"]
    assert r["low"] == pytest.approx(500.0)
    assert r["high"] == pytest.approx(2000.0)
    assert r["low"] < r["bracket_low"]
    assert r["high"] > r["bracket_high"]
    assert "at n=256 and " in r["note"]
    assert "at n=2048" in r["note"]


def test_cis_overlapping_over_the_whole_range_clamp_to_it_and_say_so() -> None:
    r = only(crossover_frame(cubic_vs_linear(ci_rel=0.999)))
    assert not r["decisive"]
    assert ", within noise; the ratio's interval holds 1 at " in r["note"]
    assert (r["low"], r["high"]) == (64.0, 4096.0)
    assert "may lie below n=64" in r["note"]
    assert "may lie above n=4096" in r["note"]


def test_without_cis_the_range_is_the_measured_bracket() -> None:
    results = cubic_vs_linear().assign(ci_low_s=math.nan, ci_high_s=math.nan)
    r = only(crossover_frame(results))
    assert r["crossover_size"] == pytest.approx(1000.0)
    assert (r["low"], r["high"]) == (512.0, 1024.0)
    assert not r["decisive"]
    assert r["ratio_basis"] == "none"
    assert "no rounds and no CI in the data" in r["note"]


def test_non_ok_rows_never_enter() -> None:
    good = cubic_vs_linear()
    # A fallback "GPU" cell carrying a CPU-like tiny number, and an error cell: both must be ignored.
    bad = frame(
        [
            row(128, "GPU:0", 1e-9, status="fallback", reason="output on CPU:0"),
            row(2048, "GPU:0", 1.0, status="error", reason="boom"),
        ]
    )
    bad.loc[0, "median_s"] = 1e-9  # status says fallback even though a number is there
    results = pd.concat([good[~((good["device"] == "GPU:0") & good["size"].isin([128, 2048]))], bad])
    r = only(crossover_frame(results))
    assert r["crossover_size"] == pytest.approx(1000.0)
    assert r["n_shared"] == 5


def test_too_few_ok_cells_invents_nothing() -> None:
    results = pd.concat(
        [
            from_medians({"CPU:0": {64: 1e-3, 128: 2e-3, 256: 4e-3}}),
            frame(
                [
                    row(64, "GPU:0", 5e-3),
                    row(128, "GPU:0", 1.0, status="oom", reason="OOM"),
                    row(256, "GPU:0", 1.0, status="skipped", reason="memory guard"),
                ]
            ),
        ]
    )
    r = only(crossover_frame(results))
    assert math.isnan(r["crossover_size"])
    assert r["faster_below"] == ""
    assert r["faster_above"] == ""
    assert r["note"] == "too few ok cells to compare: CPU:0 has 3, GPU:0 has 1, 1 shared size (need 2)"


def test_a_device_whose_cells_all_failed_still_gets_its_row() -> None:
    results = pd.concat(
        [
            from_medians({"CPU:0": {64: 1e-3, 128: 2e-3}}),
            frame([row(64, "GPU:0", 1.0, status="unsupported", reason="no kernel")]),
        ]
    )
    r = only(crossover_frame(results))
    assert "GPU:0 has 0" in r["note"]


def test_groups_and_pairs_are_separate_and_cpu_first() -> None:
    sizes = grid(64, 4096)
    models = {"GPU:1": lambda n: 2e-6 * n, "CPU:0": lambda n: 1e-12 * n**3, "GPU:0": lambda n: 1e-6 * n}
    results = pd.concat([from_model(models, sizes), from_model(models, sizes, dtype="float16")])
    result = crossover_frame(results)
    pairs = list(zip(result["device_a"], result["device_b"], strict=True))
    assert pairs == [("CPU:0", "GPU:0"), ("CPU:0", "GPU:1"), ("GPU:0", "GPU:1")] * 2
    assert list(result["dtype"]) == ["float16"] * 3 + ["float32"] * 3
    gpus = records(result)[2]
    assert gpus["note"] == "no crossover in [64, 4096]: GPU:0 is faster throughout"
    assert records(result)[1]["crossover_size"] == pytest.approx(1000 * math.sqrt(2))


def test_device_order_puts_cpu0_first_and_sorts_indices_numerically() -> None:
    ordered = device_order(["GPU:10", "GPU:2", "CPU:1", "CPU:0", "GPU:2"])
    assert ordered == ["CPU:0", "CPU:1", "GPU:2", "GPU:10"]


def test_unsynchronized_cells_are_flagged_and_synchronized_duplicates_win() -> None:
    synced = cubic_vs_linear()
    # The same CPU cells timed without sync "take" 1 µs: they must not replace the synchronized ones.
    unsynced = from_medians({"CPU:0": dict.fromkeys(grid(64, 4096), 1e-6)}, sync="none")
    r = only(crossover_frame(pd.concat([unsynced, synced])))
    assert r["crossover_size"] == pytest.approx(1000.0)
    assert not r["unsynchronized"]
    only_unsynced = from_model(
        {"CPU:0": lambda n: 1e-12 * n**3, "GPU:0": lambda n: 1e-6 * n}, grid(64, 4096), sync="none"
    )
    r = only(crossover_frame(only_unsynced))
    assert r["unsynchronized"]
    assert "unsynchronized cells: measures launch, not work" in r["note"]


def test_ok_cells_drops_nan_and_non_positive_medians() -> None:
    results = from_medians({"CPU:0": {64: 1e-3, 128: math.nan, 256: 0.0}})
    assert list(ok_cells(results)["size"]) == [64]


def test_empty_results_give_an_empty_frame() -> None:
    result = crossover_frame(frame([]))
    assert result.empty
    assert "no crossovers" in render_crossovers(result, "table")


# ---------------------------------------------------------------------------------------------------------
# rendering


def test_render_table_shows_the_sentence() -> None:
    text = render_crossovers(crossover_frame(cubic_vs_linear()), "table", width=200)
    assert "GPU:0 faster above n≈1000 (range 990–1010)" in text
    assert "CPU:0 vs GPU:0" in text
    assert "\x1b[" not in text  # no colour codes when not a terminal


def test_render_csv_header_and_json_nulls() -> None:
    result = crossover_frame(pd.concat([cubic_vs_linear(), cubic_vs_linear().assign(op="add")]))
    csv_text = render_crossovers(result, "csv")
    assert csv_text.splitlines()[0].startswith(
        "op,dtype,mode,device_a,device_b,crossover_size,low,high,faster_below,faster_above,decisive,note"
    )
    parsed = json.loads(render_crossovers(crossover_frame(by_exponent([1, 2], [64, 128])), "json"))
    assert parsed[0]["crossover_size"] is None
    assert parsed[0]["faster_below"] == "GPU:0"


def test_render_rejects_an_unknown_format() -> None:
    with pytest.raises(UsageError, match="unknown format 'xml'; allowed: table, csv, json"):
        render_crossovers(crossover_frame(cubic_vs_linear()), "xml")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# winners


def test_winners_pick_the_fastest_ok_device_with_speedup_over_cpu() -> None:
    results = pd.concat(
        [
            cubic_vs_linear(sizes=[64, 4096]),
            frame(
                [
                    row(64, "GPU:1", 1e-9, status="wrong", reason="mismatch"),
                    row(4096, "GPU:1", 1e-2, rel_iqr=0.5),
                ]
            ),
        ]
    )
    table = winners(results).set_index("size")
    assert table.loc[64, "device"] == "CPU:0"
    assert table.loc[64, "speedup_vs_cpu"] == pytest.approx(1.0)
    assert table.loc[64, "best_accelerator"] == "GPU:0"
    assert table.loc[64, "accelerator_speedup"] == pytest.approx(1e-6 * 64**2)
    assert table.loc[4096, "device"] == "GPU:0"
    assert table.loc[4096, "speedup_vs_cpu"] == pytest.approx(1e-6 * 4096**2)
    assert table.loc[4096, "n_devices"] == 3
    assert not table.loc[4096, "noisy"]  # the noisy GPU:1 cell neither won nor is the reference


def test_winners_without_cpu_have_nan_speedup_and_carry_flags() -> None:
    results = from_medians({"GPU:0": {64: 1e-3}, "GPU:1": {64: 2e-3}}, rel_iqr=0.3, sync="none")
    r = only(winners(results))
    assert r["device"] == "GPU:0"
    assert math.isnan(r["speedup_vs_cpu"])
    assert r["noisy"]
    assert r["unsynchronized"]
    text = render_winners(winners(results), "table")
    assert "noisy, UNSYNCHRONIZED" in text
    assert "1 ms" in text


# ---------------------------------------------------------------------------------------------------------
# refining


def test_bracket_convergence_rule() -> None:
    assert bracket_converged(100, 104, 102)  # 4 ≤ 5 % of 102
    assert not bracket_converged(100, 110, 105)
    assert bracket_converged(7, 8, 7.5)  # adjacent integers: nothing left to measure
    assert bracket_converged(256, 256, 256)


def test_refine_plan_bisects_in_log_space() -> None:
    expected = RefineCell("matmul", "float32", "eager", ("CPU:0", "GPU:0"), 724)  # √(512·1024) ≈ 724.08
    assert refine_plan(cubic_vs_linear()) == [expected]


def test_refine_plan_avoids_failed_sizes_and_asks_only_missing_devices() -> None:
    results = pd.concat(
        [
            cubic_vs_linear(),
            frame([row(724, "GPU:0", 1.0, status="error", reason="flaky"), row(723, "CPU:0", 1e-12 * 723**3)]),
        ]
    )
    # 724 failed on GPU:0, so its neighbour 723 is chosen, and only GPU:0 still lacks it.
    assert refine_plan(results) == [RefineCell("matmul", "float32", "eager", ("GPU:0",), 723)]


def test_refine_plan_is_empty_without_crossings() -> None:
    assert refine_plan(by_exponent([1, 2, 3], [64, 128, 256])) == []


def test_refine_plan_rejects_a_bad_tolerance() -> None:
    with pytest.raises(UsageError, match="tolerance"):
        refine_plan(cubic_vs_linear(), rel_tol=5.0)


def cpu_model(n: int) -> float:
    return 2e-6 + 1e-11 * n**3


def gpu_model(n: int) -> float:
    return 3e-5 + 2e-13 * n**3


MODELS = {"CPU:0": cpu_model, "GPU:0": gpu_model}
N_STAR = (2.8e-5 / 9.8e-12) ** (1 / 3)  # where the two cost models meet: n ≈ 141.9


def model_measure(log: list[list[RefineCell]]) -> Callable[[list[RefineCell]], tuple[pd.DataFrame, pd.DataFrame]]:
    """A fake runner: every requested cell is 'measured' exactly by the cost model (no samples: a bare table)."""

    def measure(cells: list[RefineCell]) -> tuple[pd.DataFrame, pd.DataFrame]:
        log.append(list(cells))
        return frame(
            row(c.size, d, MODELS[d](c.size), op=c.op, dtype=c.dtype, mode=c.mode) for c in cells for d in c.devices
        ), pd.DataFrame(columns=list(SAMPLE_COLUMNS))

    return measure


def test_refine_converges_on_a_cost_model_to_within_5_percent() -> None:
    coarse = from_model(MODELS, grid(32, 4096))
    start = only(crossover_frame(coarse))
    assert (start["bracket_low"], start["bracket_high"]) == (128, 256)

    log: list[list[RefineCell]] = []
    outcome = refine(coarse, model_measure(log), max_rounds=10)
    assert outcome.converged
    assert outcome.pending == []
    r = only(crossover_frame(outcome.results))
    assert abs(r["crossover_size"] - N_STAR) / N_STAR < 0.05
    assert r["bracket_high"] - r["bracket_low"] <= 0.05 * r["crossover_size"]
    assert r["bracket_low"] <= N_STAR <= r["bracket_high"]
    sizes = [c.size for cells in log for c in cells]
    assert len(sizes) == len(set(sizes)) == outcome.rounds
    assert all(128 < n < 256 for n in sizes)
    assert outcome.rounds <= 5
    assert len(outcome.results) == len(coarse) + 2 * outcome.rounds


def test_refine_stops_when_out_of_rounds_and_reports_what_is_pending() -> None:
    coarse = from_model(MODELS, grid(32, 4096))
    outcome = refine(coarse, model_measure([]), max_rounds=1)
    assert outcome.rounds == 1
    assert not outcome.converged
    assert len(outcome.pending) == 1
    assert 128 < outcome.pending[0].size < 256


def test_refine_stops_when_measure_returns_nothing() -> None:
    calls: list[int] = []

    def measure(cells: list[RefineCell]) -> tuple[pd.DataFrame, pd.DataFrame]:
        calls.append(len(cells))
        return frame([]), pd.DataFrame(columns=list(SAMPLE_COLUMNS))

    outcome = refine(cubic_vs_linear(), measure, max_rounds=5)
    assert calls == [1]
    assert not outcome.converged
    assert outcome.rounds == 1


def test_refine_without_crossings_is_converged_at_once() -> None:
    outcome = refine(by_exponent([1, 2], [64, 128]), model_measure([]), max_rounds=3)
    assert outcome.converged
    assert outcome.rounds == 0


# ---------------------------------------------------------------------------------------------------------
# crossover_frame with samples: the device ratio paired by round

Model = Callable[[int], float]


class Drifting:
    """A synthetic machine whose speed drifts between rounds: in round r, every visit of size n runs at
    ``model(n) · drift[r, n]`` (the factor shared by all devices of that size, measured back to back), times
    a lognormal within-round noise per sample. Seconds per call; fixed seed."""

    def __init__(self, models: Mapping[str, Model], *, seed: int, rounds: int = 5, per_round: int = 10,
                 drift: float = 0.3, noise: float = 0.05) -> None:
        self.models, self.rounds, self.per_round = models, rounds, per_round
        self.drift, self.noise = drift, noise
        self.rng = np.random.default_rng(seed)

    def measure(self, sizes: list[int], devices: list[str] | None = None, *, op: str = "matmul",
                dtype: str = "float32", mode: str = "eager") -> tuple[pd.DataFrame, pd.DataFrame]:
        """(result rows, sample rows) for every device at every size; the rows' CIs are one-level order
        statistics of the pooled samples (what a table without rounds would carry)."""
        rows: list[dict[str, Any]] = []
        samples: list[dict[str, Any]] = []
        for n in sizes:
            shared = np.exp(self.rng.normal(0.0, self.drift, self.rounds))
            for device in devices or list(self.models):
                times = self.models[device](n) * shared[:, None] * np.exp(
                    self.rng.normal(0.0, self.noise, (self.rounds, self.per_round)))
                pooled = np.sort(times.ravel())
                half = 1.96 * math.sqrt(pooled.size) / 2  # the classic order-statistic CI of the median
                lo, hi = int(pooled.size / 2 - half), math.ceil(pooled.size / 2 + half)
                rows.append(row(n, device, float(np.median(pooled)), ci_low_s=float(pooled[lo]),
                                ci_high_s=float(pooled[min(hi, pooled.size - 1)]), op=op, dtype=dtype,
                                mode=mode))
                samples.extend(
                    {"run_id": "synthetic", "op": op, "size": n, "dtype": dtype, "device": device, "mode": mode,
                     "sync": "scalar", "round": r + 1, "sample": i, "number": 10, "per_call_s": float(t)}
                    for r in range(self.rounds) for i, t in enumerate(times[r]))
        return frame(rows), pd.DataFrame(samples, columns=list(SAMPLE_COLUMNS))


def same_speed(n: int) -> float:
    return 1e-9 * float(n) ** 2


def three_times_either_way(n: int) -> float:
    """3.3× faster than ``same_speed`` at n=64, 2.8× slower at n=4096, crossing it at n=600."""
    return float(same_speed(n) * (n / 600) ** (math.log(9) / math.log(64)))


IDENTICAL = {"CPU:0": same_speed, "CPU:1": same_speed}
CROSSING = {"CPU:0": same_speed, "GPU:0": three_times_either_way}
SEEDS = range(20)


def test_identical_devices_with_drift_never_cross_decisively() -> None:
    """Two names for the same cores (DEVBENCH_LOGICAL_CPUS=2): over 20 seeds the medians cross often, and
    paired rounds never call a crossing decisive."""
    crossings, decisive = 0, 0
    for seed in SEEDS:
        results, samples = Drifting(IDENTICAL, seed=seed).measure(grid(64, 4096))
        paired = crossover_frame(results, samples)
        found = paired[np.isfinite(paired["crossover_size"])]
        crossings += len(found)
        decisive += int(found["decisive"].sum())
        assert set(found["ratio_basis"]) <= {"rounds"}
    assert crossings >= len(SEEDS)  # the medians do cross: the test has something to reject
    assert decisive == 0


def test_a_real_crossing_under_drift_is_decisive_for_every_seed() -> None:
    for seed in SEEDS:
        results, samples = Drifting(CROSSING, seed=seed).measure(grid(64, 4096))
        r = only(crossover_frame(results, samples))
        assert r["decisive"], r["note"]
        assert (r["bracket_low"], r["bracket_high"]) == (512, 1024)
        assert (r["faster_below"], r["faster_above"]) == ("GPU:0", "CPU:0")
        assert r["ratio_below"] > 1 > r["ratio_above"]  # CPU:0/GPU:0: GPU:0 faster below, slower above
        for side in ("ratio_below", "ratio_above"):
            assert r[f"{side}_ci_low"] < r[side] < r[f"{side}_ci_high"]
        assert r["n_rounds"] == 5
        assert r["low"] <= r["crossover_size"] <= r["high"]
        assert r["note"].startswith("CPU:0 faster above n≈")
        assert ", decisive; CPU:0/GPU:0 = " in r["note"]
        assert "paired over 5 rounds" in r["note"]


def test_a_within_noise_crossing_says_so_with_its_range() -> None:
    results, samples = Drifting(IDENTICAL, seed=3).measure(grid(64, 4096))
    rows = records(crossover_frame(results, samples))
    assert rows
    for r in rows:
        assert not r["decisive"]
        if math.isfinite(r["crossover_size"]):
            assert ", within noise; the ratio's interval holds 1 at " in r["note"]
            assert r["low"] <= r["crossover_size"] <= r["high"]
            assert r["ratio_below_ci_low"] <= 1 <= r["ratio_below_ci_high"] or (
                r["ratio_above_ci_low"] <= 1 <= r["ratio_above_ci_high"])


def test_the_same_table_gives_the_same_intervals() -> None:
    results, samples = Drifting(CROSSING, seed=1).measure(grid(64, 4096))
    first, second = crossover_frame(results, samples), crossover_frame(results, samples)
    pd.testing.assert_frame_equal(first, second)


def test_one_round_cannot_be_decisive_and_says_why() -> None:
    results, samples = Drifting(CROSSING, seed=0, rounds=1).measure(grid(64, 4096))
    r = only(crossover_frame(results, samples))
    assert not r["decisive"]
    assert math.isnan(r["ratio_below_ci_low"])
    assert "the ratio has no interval at any size (1 round: cannot see drift between rounds)" in r["note"]
    assert (r["low"], r["high"]) == (512, 1024)  # no interval anywhere: the measured bracket


def test_empty_samples_fall_back_to_the_cells_cis() -> None:
    results, _ = Drifting(CROSSING, seed=0).measure(grid(64, 4096))
    for samples in (None, pd.DataFrame(), pd.DataFrame(columns=list(SAMPLE_COLUMNS))):
        r = only(crossover_frame(results, samples))
        assert r["ratio_basis"] == "cell CIs"
        assert r["n_rounds"] == 0
        assert "no rounds in the data" in r["note"]


def test_sentence_says_decisive_or_within_noise() -> None:
    from devbench.analysis import crossover_sentence

    assert crossover_sentence("GPU:0", 724, 690, 760, decisive=True) == (
        "GPU:0 faster above n≈724 (range 690–760), decisive")
    assert crossover_sentence("CPU:1", 116, 64, 1024, than="CPU:0", decisive=False) == (
        "CPU:1 faster than CPU:0 above n≈116 (range 64–1024), within noise")
    assert crossover_sentence("GPU:0", 724, 724, 724) == "GPU:0 faster above n≈724"


def drifting_measure(machine: Drifting, log: list[list[RefineCell]]
                     ) -> Callable[[list[RefineCell]], tuple[pd.DataFrame, pd.DataFrame]]:
    """A fake runner measuring each requested cell on the drifting machine, rounds and all."""

    def measure(cells: list[RefineCell]) -> tuple[pd.DataFrame, pd.DataFrame]:
        log.append(list(cells))
        parts = [machine.measure([c.size], list(c.devices), op=c.op, dtype=c.dtype, mode=c.mode) for c in cells]
        return (pd.concat([p[0] for p in parts], ignore_index=True),
                pd.concat([p[1] for p in parts], ignore_index=True))

    return measure


def test_refine_skips_crossings_of_identical_devices_within_noise() -> None:
    machine = Drifting(IDENTICAL, seed=3)
    results, samples = machine.measure(grid(64, 4096))
    found = crossover_frame(results, samples)
    assert np.isfinite(found["crossover_size"]).any()
    assert refine_plan(results, samples) == []
    log: list[list[RefineCell]] = []
    outcome = refine(results, drifting_measure(machine, log), max_rounds=5, samples=samples)
    assert log == []
    assert outcome.converged
    assert len(outcome.skipped) == int(np.isfinite(found["crossover_size"]).sum())
    assert all(s.describe().startswith("matmul float32 eager CPU:0 vs CPU:1 at n≈") for s in outcome.skipped)
    assert all(" (range " in s.describe() for s in outcome.skipped)


def test_refine_bisects_a_decisive_crossing_under_drift() -> None:
    machine = Drifting(CROSSING, seed=5)
    results, samples = machine.measure(grid(64, 4096))
    log: list[list[RefineCell]] = []
    outcome = refine(results, drifting_measure(machine, log), max_rounds=10, samples=samples)
    assert outcome.converged
    assert outcome.skipped == []
    assert outcome.samples is not None
    assert set(outcome.samples["size"]) == set(outcome.results["size"])
    r = only(crossover_frame(outcome.results, outcome.samples))
    assert r["decisive"]
    assert r["bracket_high"] - r["bracket_low"] <= 0.05 * r["crossover_size"]
    assert all(512 < c.size < 1024 for cells in log for c in cells)


# ---------------------------------------------------------------------------------------------------------
# store.load_any: run directories and bare tables


def test_load_any_reads_a_run_directory(tmp_path: Path) -> None:
    results = cubic_vs_linear()
    store.write_json(tmp_path / store.META, {"schema_version": 1, "command": "devbench sweep"})
    store.write_tables(tmp_path, results, pd.DataFrame(columns=list(SAMPLE_COLUMNS)))
    loaded = store.load_any(tmp_path)
    assert loaded.meta["command"] == "devbench sweep"
    assert len(loaded.results) == len(results)


def test_load_any_reads_devbench_own_csv_unchanged(tmp_path: Path) -> None:
    results = pd.concat(
        [cubic_vs_linear(), frame([row(64, "GPU:1", 1.0, status="oom", reason="OOM")])], ignore_index=True
    )
    results.loc[0, "noisy"] = True
    path = tmp_path / "results.csv"
    results.to_csv(path, index=False)
    loaded = store.load_any(path).results
    assert list(loaded.columns) == list(RESULT_COLUMNS)
    pd.testing.assert_frame_equal(loaded, results.reset_index(drop=True), check_exact=False)


def test_load_any_fills_defaults_for_a_minimal_table(tmp_path: Path) -> None:
    path = tmp_path / "timings.csv"
    pd.DataFrame(
        {
            "op": ["matmul"] * 4,
            "size": [512, 1024, 512, 1024],
            "dtype": ["float32"] * 4,
            "device": ["CPU:0", "CPU:0", "GPU:0", "GPU:0"],
            "median_s": [1e-12 * 512**3, 1e-12 * 1024**3, 1e-6 * 512, 1e-6 * 1024],
            "other_tool_col": 1,
        }
    ).to_csv(path, index=False)
    run = store.load_any(path)
    assert run.meta == {}
    assert run.samples.empty
    results = run.results
    assert list(results.columns) == list(RESULT_COLUMNS)
    assert set(results["mode"]) == {"eager"}
    assert set(results["status"]) == {"ok"}
    assert set(results["sync"]) == {"scalar"}
    assert results["size"].dtype == np.int64
    assert results["ci_low_s"].isna().all()
    assert not results["noisy"].any()
    assert not results["unsynchronized"].any()
    r = only(crossover_frame(results))
    assert r["crossover_size"] == pytest.approx(1000.0)
    assert (r["low"], r["high"]) == (512.0, 1024.0)


def test_load_any_uses_quartiles_and_cis_when_present(tmp_path: Path) -> None:
    path = tmp_path / "timings.parquet"
    pd.DataFrame(
        {
            "op": ["matmul"] * 2,
            "size": [64, 128],
            "dtype": ["float32"] * 2,
            "device": ["CPU:0"] * 2,
            "median_s": [1.0, 2.0],
            "q1_s": [0.9, 1.5],
            "q3_s": [1.1, 2.5],
            "ci_low_s": [0.95, 1.9],
            "ci_high_s": [1.05, 2.1],
            "sync": ["none", "scalar"],
            "flops": [2e9, 4e9],
        }
    ).to_parquet(path)
    results = store.load_any(path).results
    assert list(results["rel_iqr"]) == pytest.approx([0.2, 0.5])
    assert list(results["noisy"]) == [True, True]
    assert list(results["unsynchronized"]) == [True, False]
    assert list(results["gflops"]) == pytest.approx([2.0, 2.0])
    assert list(results["ci_high_s"]) == pytest.approx([1.05, 2.1])


def test_load_any_names_the_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame({"op": ["matmul"], "size": [64], "dtype": ["float32"]}).to_csv(path, index=False)
    with pytest.raises(UsageError, match=r"lacks the columns device, median_s"):
        store.load_any(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "does not exist"),
        ("empty.csv", b"", "cannot read"),
        ("corrupt.parquet", b"\x00not parquet at all\xff", "cannot read"),
        ("table.xlsx", b"whatever", "neither a run directory nor a results table"),
        ("header.csv", b"op,size,dtype,device,median_s\n", "holds no rows"),
        ("badsize.csv", b"op,size,dtype,device,median_s\nmatmul,1k,float32,CPU:0,0.1\n", "positive integers"),
        ("badtime.csv", b"op,size,dtype,device,median_s\nmatmul,64,float32,CPU:0,fast\n", "must be numeric"),
    ],
)
def test_load_any_rejects_bad_input_with_one_line(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError, match=message) as info:
        store.load_any(path)
    assert "\n" not in str(info.value)


def test_transfer_timings_are_analysed_as_their_own_mode() -> None:
    """--include-transfer measures each cell twice; the two timings must not be mixed in one curve."""
    from devbench.analysis import split_mode, transfer_as_mode, winners

    resident = from_model({"CPU:0": lambda n: 1e-12 * n**3, "GPU:0": lambda n: 1e-3},
                                    [256, 512, 1024, 2048, 4096])
    moved = resident.copy()
    moved["sync"] = "transfer"
    moved.loc[moved["device"] == "GPU:0", "median_s"] *= 8  # the copies cost the GPU: it wins only later
    both = pd.concat([resident, moved], ignore_index=True)
    frame = crossover_frame(both).set_index("mode")
    assert frame.loc["eager", "crossover_size"] == pytest.approx(1000, rel=0.02)
    assert frame.loc["eager+transfer", "crossover_size"] == pytest.approx(2000, rel=0.02)
    assert set(winners(both)["mode"]) == {"eager", "eager+transfer"}
    assert transfer_as_mode(transfer_as_mode(both)).equals(transfer_as_mode(both))
    assert split_mode("xla+transfer") == ("xla", "transfer")
    assert split_mode("eager") == ("eager", None)


def test_numpy_baseline_is_a_host_device_not_an_accelerator() -> None:
    """numpy:CPU runs on the host: the overview must not colour its win over CPU:0 as "accelerator wins"."""
    results = frame(
        [
            row(64, "CPU:0", 2e-6),
            row(64, "numpy:CPU", 1e-6),
            row(4096, "CPU:0", 1e-2),
            row(4096, "numpy:CPU", 5e-3),
            row(4096, "GPU:0", 1e-4),
        ]
    )
    table = winners(results).set_index("size")
    assert table.loc[64, "device"] == "numpy:CPU"
    assert table.loc[64, "best_accelerator"] == ""
    assert math.isnan(table.loc[64, "accelerator_speedup"])
    assert table.loc[4096, "best_accelerator"] == "GPU:0"
    assert table.loc[4096, "accelerator_speedup"] == pytest.approx(100.0)
    assert [is_accelerator(d) for d in ("CPU:0", "CPU:1", "numpy:CPU", "GPU:0", "/device:GPU:1", "TPU:0")] == [
        False, False, False, True, True, True,
    ]
