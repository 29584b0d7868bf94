"""The crossover rule (a simultaneous band over the curve, one question per curve) and refining, on synthetic
results with known answers, and the seeded rates of :mod:`devbench.simulation.crossovers`."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

from devbench.analysis import render_crossovers
from devbench.crossover import (
    ALPHA,
    CROSSOVER_COLUMNS,
    RefineCell,
    bracket_converged,
    crossover_frame,
    refine,
    refine_plan,
)
from devbench.errors import UsageError
from devbench.schema import SAMPLE_COLUMNS
from devbench.selection import records
from devbench.simulation import crossovers as simulated
from devbench.t_intervals import log_resolution, mean_of_units, t_interval
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


def test_one_crossing_is_interpolated_in_log_log_and_bounded_by_the_decisive_sizes() -> None:
    r = only(crossover_frame(cubic_vs_linear(ci_rel=0.01)))
    assert (r["device_a"], r["device_b"]) == ("CPU:0", "GPU:0")
    assert r["crossover_size"] == pytest.approx(1000.0, rel=1e-9)
    # Every size is decisive (±1 % CIs): the range is the two decisive sizes around the crossing.
    assert (r["low"], r["high"]) == (512.0, 1024.0)
    assert (r["faster_below"], r["faster_above"]) == ("CPU:0", "GPU:0")
    assert (r["bracket_low"], r["bracket_high"]) == (512, 1024)
    assert r["speedup_min"] == pytest.approx(1e-6 * 64**2)  # GPU:0 over CPU:0 at n=64: 0.004×
    assert r["speedup_max"] == pytest.approx(1e-6 * 4096**2)
    assert (r["min_size"], r["max_size"]) == (64, 4096)
    assert r["decisive"]
    assert r["ratio_basis"] == "cell CIs"
    assert r["note"].startswith("GPU:0 faster above n≈1000 (range 512–1024), decisive; CPU:0/GPU:0 = ")
    assert "per size, not simultaneous" in r["note"]


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
    assert (r["low"], r["high"]) == (128, 512)  # the tie at 256 is within noise: the decisive sizes around it
    assert r["decisive"]
    assert r["note"].startswith("GPU:0 faster above n≈256 (range 128–512)")


def test_a_crossing_inside_noisy_cis_spans_the_within_noise_sizes_to_the_nearest_decisive_ones() -> None:
    # CI ±60 %: at 512 and 1024 the ratio's interval holds 1; at 256 (0.066×, ×/÷ 4) and 2048 (4.2×) it does
    # not, on opposite sides: one decisive crossing whose range is those two sizes.
    r = only(crossover_frame(cubic_vs_linear(ci_rel=0.6)))
    assert r["crossover_size"] == pytest.approx(1000.0)
    assert r["decisive"]
    assert (r["low"], r["high"]) == (256.0, 2048.0)
    assert (r["bracket_low"], r["bracket_high"]) == (512, 1024)
    assert "at n=256 and " in r["note"]
    assert "at n=2048" in r["note"]
    assert r["ratio_below"] == pytest.approx(256**2 * 1e-6)  # the ratio at the decisive sizes, not the bracket
    assert r["ratio_above"] == pytest.approx(2048**2 * 1e-6)


def test_cis_overlapping_over_the_whole_range_give_the_whole_range_and_say_so() -> None:
    r = only(crossover_frame(cubic_vs_linear(ci_rel=0.999)))
    assert not r["decisive"]
    assert ", within noise; the ratio's interval holds 1 from n=64 to n=4096" in r["note"]
    assert (r["low"], r["high"]) == (64.0, 4096.0)
    assert "may lie below n=64" in r["note"]
    assert "may lie above n=4096" in r["note"]


def test_without_cis_nothing_is_decisive_and_the_range_is_the_curve() -> None:
    results = cubic_vs_linear().assign(ci_low_s=math.nan, ci_high_s=math.nan)
    r = only(crossover_frame(results))
    assert r["crossover_size"] == pytest.approx(1000.0)
    assert (r["bracket_low"], r["bracket_high"]) == (512, 1024)
    assert (r["low"], r["high"]) == (64.0, 4096.0)
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


def test_empty_results_give_an_empty_frame() -> None:
    result = crossover_frame(frame([]))
    assert result.empty
    assert "no crossovers" in render_crossovers(result, "table")


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
    assert crossings >= len(SEEDS) // 2  # the mean ratios do cross: the test has something to reject
    assert decisive == 0


def test_a_real_crossing_under_drift_is_decisive_for_every_seed() -> None:
    for seed in SEEDS:
        results, samples = Drifting(CROSSING, seed=seed).measure(grid(64, 4096))
        r = only(crossover_frame(results, samples))
        assert r["decisive"], r["note"]
        assert (r["faster_below"], r["faster_above"]) == ("GPU:0", "CPU:0")
        assert r["ratio_below"] > 1 > r["ratio_above"]  # CPU:0/GPU:0: GPU:0 faster below, slower above
        for side in ("ratio_below", "ratio_above"):
            assert r[f"{side}_ci_low"] < r[side] < r[f"{side}_ci_high"]
        assert r["n_rounds"] == 5
        assert r["low"] <= r["bracket_low"] <= r["crossover_size"] <= r["bracket_high"] <= r["high"]
        assert r["low"] <= 600 <= r["high"]
        assert r["note"].startswith("CPU:0 faster above n≈")
        assert ", decisive; CPU:0/GPU:0 = " in r["note"]
        assert "paired over 5 rounds; band simultaneous over 7 sizes (99.3 % each)" in r["note"]


def test_a_within_noise_crossing_says_so_with_its_range() -> None:
    results, samples = Drifting(IDENTICAL, seed=3).measure(grid(64, 4096))
    rows = records(crossover_frame(results, samples))
    assert rows
    for r in rows:
        assert not r["decisive"]
        if math.isfinite(r["crossover_size"]):
            assert ", within noise; the ratio's interval holds 1 " in r["note"]
            assert "band simultaneous over 7 sizes" in r["note"]
            assert r["low"] <= r["bracket_low"] <= r["crossover_size"] <= r["bracket_high"] <= r["high"]
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
    assert (r["low"], r["high"]) == (64, 4096)  # no interval anywhere: nothing bounds it but the curve


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


def paired(ratios: Mapping[int, Sequence[float]], per_round: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CPU:0 against CPU:1 where round r at size n has the ratio CPU:0/CPU:1 of ``ratios[n][r]`` exactly:
    CPU:1 takes 1 µs·n per call (samples ×0.99 … ×1.01, the same each round), CPU:0 that times the ratio."""
    rows: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    spread = np.linspace(0.99, 1.01, per_round)
    for n, by_round in ratios.items():
        for device, factors in (("CPU:0", list(by_round)), ("CPU:1", [1.0] * len(by_round))):
            times = [1e-6 * n * f * spread for f in factors]
            rows.append(row(n, device, float(np.median(np.concatenate(times)))))
            samples.extend({"run_id": "synthetic", "op": "matmul", "size": n, "dtype": "float32", "device": device,
                            "mode": "eager", "sync": "scalar", "round": r + 1, "sample": i, "number": 1,
                            "per_call_s": float(t)} for r, ts in enumerate(times) for i, t in enumerate(ts))
    return frame(rows), pd.DataFrame(samples, columns=list(SAMPLE_COLUMNS))


CPU0_FASTER = [0.70, 0.72, 0.69, 0.71]
CPU1_FASTER = [1.40, 1.45, 1.38, 1.42]
WOBBLE_UP = [1.15, 0.90, 1.00, 0.99]  # mean log ratio +0.006: the ratio's interval holds 1
WOBBLE_DOWN = [0.88, 1.10, 1.00, 0.99]  # -0.011


def band_at(by_round: Sequence[float], k: int) -> tuple[float, float]:
    """The ratio's interval at one size of :func:`paired` data, at the band's 1 - ALPHA / k."""
    spread = np.linspace(0.99, 1.01, 3)
    mean = mean_of_units(np.log(by_round), resolution=log_resolution(
        [*(f * spread for f in by_round), *(spread for _ in by_round)]))
    interval = t_interval(mean, 1 - ALPHA / k)
    return interval.ci_low, interval.ci_high


def test_the_band_is_simultaneous_over_the_sizes_of_the_curve() -> None:
    data = {64: [0.5, 0.52, 0.49, 0.51], 128: CPU0_FASTER, 256: WOBBLE_DOWN, 512: CPU1_FASTER,
            1024: [1.9, 2.0, 1.95, 2.05]}
    r = only(crossover_frame(*paired(data)))
    assert r["decisive"]
    assert (r["low"], r["high"]) == (128, 512)  # the decisive sizes around the within-noise 256
    assert (r["bracket_low"], r["bracket_high"]) == (256, 512)  # the mean ratio crosses 1 between them
    assert r["ratio_below"] == pytest.approx(math.exp(np.mean(np.log(CPU0_FASTER))))
    assert (r["ratio_below_ci_low"], r["ratio_below_ci_high"]) == pytest.approx(band_at(CPU0_FASTER, 5))
    assert (r["ratio_above_ci_low"], r["ratio_above_ci_high"]) == pytest.approx(band_at(CPU1_FASTER, 5))
    assert "paired over 4 rounds; band simultaneous over 5 sizes (99 % each)" in r["note"]


def test_a_wobble_inside_a_decisive_range_is_one_crossing_placed_by_a_fitted_line() -> None:
    data = {64: [0.6, 0.62, 0.58, 0.61], 128: CPU0_FASTER, 256: WOBBLE_UP, 512: WOBBLE_DOWN,
            1024: [1.15, 0.9, 1.02, 1.0], 2048: CPU1_FASTER, 4096: [1.6, 1.62, 1.58, 1.61]}
    r = only(crossover_frame(*paired(data)))
    assert r["decisive"]
    assert (r["low"], r["high"]) == (128, 2048)
    sizes = [128, 256, 512, 1024, 2048]
    slope, intercept = np.polyfit(np.log(sizes), [np.mean(np.log(data[n])) for n in sizes], 1)
    assert r["crossover_size"] == pytest.approx(math.exp(-intercept / slope))
    assert r["bracket_low"] <= r["crossover_size"] <= r["bracket_high"]
    assert "the mean ratio crosses 1 3 times in between" in r["note"]
    assert (r["faster_below"], r["faster_above"]) == ("CPU:0", "CPU:1")


def test_a_wobble_between_decisive_sizes_on_one_side_is_one_crossing_within_noise() -> None:
    data = {64: CPU0_FASTER, 128: WOBBLE_UP, 256: WOBBLE_DOWN, 512: WOBBLE_DOWN, 1024: CPU0_FASTER}
    r = only(crossover_frame(*paired(data)))
    assert not r["decisive"]
    assert (r["low"], r["high"]) == (64, 1024)
    assert r["low"] <= r["bracket_low"] <= r["crossover_size"] <= r["bracket_high"] <= r["high"]
    assert "the ratio's interval holds 1 from n=128 to n=512" in r["note"]
    assert "the mean ratio crosses 1 2 times in this range" in r["note"]
    assert "may lie" not in r["note"]  # decisive on both sides: the range is closed


def test_sizes_with_fewer_than_three_paired_rounds_have_no_interval_and_leave_the_band() -> None:
    data = {64: CPU0_FASTER, 128: [0.9, 0.95], 256: [1.1, 1.05], 512: CPU1_FASTER}
    r = only(crossover_frame(*paired(data)))
    assert r["decisive"]
    assert "band simultaneous over 2 sizes (97.5 % each)" in r["note"]
    assert (r["ratio_below_ci_low"], r["ratio_below_ci_high"]) == pytest.approx(band_at(CPU0_FASTER, 2))
    inner = only(crossover_frame(*paired({64: [0.9, 0.95], 128: [1.1, 1.05]})))
    assert not inner["decisive"]
    assert "the ratio has no interval at any size (2 rounds: too few" in inner["note"]


# ---------------------------------------------------------------------------------------------------------
# Seeded rates (full tables: devbench.simulation.crossovers.table, printed by bench/statistical_rates.py)


@pytest.mark.parametrize(("grid_name", "rounds", "samples"), [("x1.19", 3, 1), ("40 sizes", 5, 2)])
def test_identical_devices_give_a_decisive_crossing_in_at_most_5_percent_of_curves(
        grid_name: str, rounds: int, samples: int) -> None:
    """By construction the band holds everywhere with >= 95 %, so any decisive size is rare on any grid:
    at full size 0-1.7 % (the old per-size search: 9-21 %)."""
    assert simulated.false_decisive_rate(grid_name, rounds, samples, trials=60, seed=0) <= 0.05


@pytest.mark.parametrize(("grid_name", "samples"), [("x2", 10), ("x1.19", 1)])
def test_a_5_percent_per_doubling_crossing_is_found_and_its_range_holds_it(grid_name: str, samples: int) -> None:
    """At R=5, one sample a round on the fine grid included: there the neighbours' pooled variance is what
    finds it (82 % of curves with each size's own R - 1 degrees of freedom, 100 % pooled)."""
    detected, coverage, decisive = simulated.real_crossing_rates(grid_name, 5, samples, trials=60, seed=0)
    assert detected >= 0.9  # at full size: 100 %
    assert coverage >= 0.9  # at full size: 100 %
    assert decisive >= 54


def test_pooling_neighbours_variances_keeps_identical_devices_quiet_when_noise_changes_along_the_curve() -> None:
    """Within-round noise 3x larger at the smallest size: a neighbour's variance is then not quite a size's
    own, and identical devices must still not cross decisively (at full size: 0 %)."""
    rate = simulated.false_decisive_rate("40 sizes", 3, 1, trials=60, seed=1, noisier_small=3.0)
    assert rate <= 0.05


def test_neighbours_within_a_factor_1_5_pool_their_variance_and_add_their_degrees_of_freedom() -> None:
    from devbench.crossover import _pool_neighbours
    from devbench.t_intervals import mean_of_units

    means = [mean_of_units(v) for v in ([0.0, 0.1, 0.2], [0.0, 0.3, 0.6], [0.0, 0.1, 0.2])]
    pooled = _pool_neighbours([100, 140, 400], means)
    first, second, third = pooled
    assert first is not None
    assert second is not None
    assert first.dof == second.dof == 4  # 100 and 140 are neighbours; 400 is alone
    assert third == means[2]
    shared = (0.01 * 2 + 0.09 * 2) / 4  # the two per-round variances, weighted by their dof
    assert first.variance == pytest.approx(shared / 3)
    assert second.variance == pytest.approx(shared / 3)
    assert first.value == means[0].value


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


