"""devbench compare: synthetic runs with known answers (no TensorFlow, deterministic, seeded)."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from devbench.compare import (
    CROSSOVER_COLUMNS,
    CSV_COLUMNS,
    MIN_SAMPLES,
    CellKey,
    Comparison,
    bootstrap_medians,
    compare_runs,
    crossover_side_by_side,
    has_regression,
    verdict_for,
)
from devbench.compare_render import render_comparison
from devbench.errors import UsageError
from devbench.machine import fingerprint_diff, incomparable_changes
from devbench.plots.compare import compare_figure, write_compare_chart
from devbench.schema import IDENTITY, RESULT_COLUMNS, SAMPLE_COLUMNS, Record
from devbench.store import Run

TIGHT = 0.005
"""Log-space spread of 'tight' samples: IQR about 0.7 % of the median."""
NOISY = 0.6
"""Log-space spread of 'very noisy' samples: IQR about 80 % of the median."""


def spread_samples(median: float, sigma: float, n: int = 30) -> list[float]:
    """n per-call times (s) at the quantiles of a log-normal with this median: deterministic, no seed."""
    quantiles = (np.arange(n) + 0.5) / n
    values = median * np.exp(sigma * sps.norm.ppf(quantiles))
    # Interleave so the sample order is not sorted (as real samples are not).
    order = np.argsort((np.arange(n) * 7919) % n)
    return [float(v) for v in values[order]]


@dataclass
class FakeCell:
    """One cell of a synthetic run: identity, status and raw per-call samples (s)."""

    op: str = "matmul"
    size: int = 256
    dtype: str = "float32"
    device: str = "CPU:0"
    mode: str = "eager"
    sync: str = "scalar"
    status: str = "ok"
    samples: list[float] = field(default_factory=lambda: spread_samples(1e-3, TIGHT))
    median_s: float | None = None
    reason: str = ""


def machine(**overrides: Any) -> dict[str, Any]:
    """A meta["machine"] fingerprint as machine.py/devices.py lay it out."""
    data: dict[str, Any] = {
        "hostname": "laptop",
        "os": {"system": "Linux", "release": "6.8.0", "platform": "Linux-6.8.0-x86_64"},
        "python": {"version": "3.12.3", "implementation": "CPython"},
        "cpu": {"model": "AMD EPYC 7B13", "arch": "x86_64", "physical_cores": 1, "logical_cores": 2},
        "memory": {"total_bytes": 8 * 2**30, "available_bytes": 6 * 2**30},
        "packages": {"devbench": "0.1.0", "tensorflow": "2.21.0", "numpy": "2.1.0", "pandas": "2.2.3"},
        "tensorflow": {"version": "2.21.0",
                       "build_info": {"cuda_version": "12.5.1", "cudnn_version": "9", "is_cuda_build": True}},
        "devices": [{"name": "CPU:0", "kind": "CPU", "details": {}}],
    }
    for path, value in overrides.items():
        target = data
        *parents, last = path.split("__")
        for part in parents:
            target = target[part]
        target[last] = value
    return data


def make_run(cells: Iterable[FakeCell], *, run_id: str = "base", meta: Mapping[str, Any] | None = None,
             with_samples: bool = True) -> Run:
    """A Run as load_run returns it: results with RESULT_COLUMNS, samples with SAMPLE_COLUMNS."""
    records: list[dict[str, Any]] = []
    sample_rows: list[dict[str, Any]] = []
    for cell in cells:
        median = cell.median_s if cell.median_s is not None else (
            float(np.median(cell.samples)) if cell.samples else math.nan)
        ok = cell.status == "ok"
        record = Record(run_id=run_id, op=cell.op, size=cell.size, dtype=cell.dtype, device=cell.device,
                        mode=cell.mode, sync=cell.sync, status=cell.status, reason=cell.reason,
                        n_samples=len(cell.samples) if ok else 0, number=10,
                        median_s=median if ok else math.nan, unsynchronized=cell.sync == "none")
        records.append(record.as_dict())
        if with_samples and ok:
            ident = {name: getattr(cell, name) for name in IDENTITY}
            sample_rows.extend({"run_id": run_id, **ident, "sample": i, "number": 10, "per_call_s": s}
                               for i, s in enumerate(cell.samples))
    return Run(
        path=None,
        meta={"schema_version": 1, "run_id": run_id, "machine": machine() if meta is None else meta},
        results=pd.DataFrame(records, columns=list(RESULT_COLUMNS)),
        samples=pd.DataFrame(sample_rows, columns=list(SAMPLE_COLUMNS)),
    )


def grid(scale: Mapping[int, float] | None = None, sigma: float = TIGHT,
         sizes: Sequence[int] = (64, 256, 1024)) -> list[FakeCell]:
    """matmul and add cells on CPU:0; size -> factor applied to that size's matmul times."""
    scale = scale or {}
    cells = []
    for op in ("matmul", "add"):
        for size in sizes:
            factor = scale.get(size, 1.0) if op == "matmul" else 1.0
            cells.append(FakeCell(op=op, size=size, samples=spread_samples(1e-6 * size * factor, sigma)))
    return cells


def by_key(comparison: Comparison) -> dict[tuple[str, int], Any]:
    return {(c.key.op, c.key.size): c for c in comparison.cells}


# ---------------------------------------------------------------------------------------------- verdicts


def test_identical_runs_are_all_same_and_no_regression() -> None:
    comparison = compare_runs(make_run(grid()), make_run(grid(), run_id="new"))
    assert len(comparison.cells) == 6
    assert {c.verdict for c in comparison.cells} == {"same"}
    assert all(c.ratio == pytest.approx(1.0) for c in comparison.cells)
    assert all(c.p_value == pytest.approx(1.0) for c in comparison.cells)
    assert not has_regression(comparison)
    assert comparison.counts() == {"slower": 0, "faster": 0, "uncertain": 0, "same": 6}
    assert comparison.only_in_base == comparison.only_in_new == ()
    assert comparison.not_compared == ()


def test_one_cell_twenty_percent_slower_with_tight_samples_is_a_regression() -> None:
    comparison = compare_runs(make_run(grid()), make_run(grid({256: 1.2}), run_id="new"))
    cells = by_key(comparison)
    slow = cells[("matmul", 256)]
    assert slow.verdict == "slower"
    assert slow.ratio == pytest.approx(1.2)
    assert slow.ci_low > 1.05
    assert slow.ci_low <= 1.2 <= slow.ci_high
    assert slow.p_value < 1e-6
    assert [c.verdict for k, c in cells.items() if k != ("matmul", 256)] == ["same"] * 5
    assert has_regression(comparison)
    assert comparison.regressions == (slow,)


def test_twenty_percent_slower_but_very_noisy_is_uncertain() -> None:
    base = make_run(grid(sigma=NOISY))
    new = make_run(grid({256: 1.2}, sigma=NOISY), run_id="new")
    cell = by_key(compare_runs(base, new))[("matmul", 256)]
    assert cell.ratio == pytest.approx(1.2)
    assert cell.p_value >= 0.01
    assert cell.verdict == "uncertain"
    assert any(note.startswith("noisy: base IQR") for note in cell.notes)
    assert not has_regression(compare_runs(base, new))


def test_two_percent_change_with_tight_samples_under_five_percent_threshold_is_same() -> None:
    comparison = compare_runs(make_run(grid()), make_run(grid({256: 1.02}), run_id="new"))
    cell = by_key(comparison)[("matmul", 256)]
    assert cell.p_value < 0.01  # the change is real ...
    assert cell.ci_low > 1.0
    assert cell.ci_high < 1.05
    assert cell.verdict == "same"
    assert not has_regression(comparison)


def test_the_same_two_percent_change_counts_under_a_one_percent_threshold() -> None:
    comparison = compare_runs(make_run(grid()), make_run(grid({256: 1.02}), run_id="new"), threshold=0.01)
    assert by_key(comparison)[("matmul", 256)].verdict == "slower"


def test_twenty_percent_faster_is_faster_and_not_a_regression() -> None:
    comparison = compare_runs(make_run(grid()), make_run(grid({1024: 0.8}), run_id="new"))
    cell = by_key(comparison)[("matmul", 1024)]
    assert cell.verdict == "faster"
    assert cell.change == pytest.approx(-0.2)
    assert not has_regression(comparison)


@pytest.mark.parametrize(
    ("ratio", "ci", "p", "expected"),
    [
        (1.20, (1.15, 1.25), 1e-9, "slower"),
        (0.80, (0.75, 0.85), 1e-9, "faster"),
        (1.20, (0.70, 1.90), 0.30, "uncertain"),  # beyond threshold, not significant
        (1.02, (1.01, 1.03), 1e-9, "same"),  # significant, within threshold, CI inside the band
        (1.00, (0.99, 1.01), 0.90, "same"),
        (1.04, (1.02, 1.07), 1e-9, "uncertain"),  # significant, point inside, CI straddles the band edge
        (1.00, (0.90, 1.10), 0.90, "uncertain"),  # no evidence either way
        (1.05, (1.04, 1.06), 1e-9, "uncertain"),  # exactly at the threshold: not "larger than"
        (1.06, (1.055, 1.065), 0.01, "uncertain"),  # p == alpha is not significant
        (1.0, (math.nan, math.nan), math.nan, "uncertain"),
    ],
)
def test_verdict_rules(ratio: float, ci: tuple[float, float], p: float, expected: str) -> None:
    assert verdict_for(ratio, ci[0], ci[1], p, threshold=0.05, alpha=0.01) == expected


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
    assert "without a bootstrap" in comparison.overall.note


def test_too_few_samples_is_uncertain_with_a_note() -> None:
    few = spread_samples(1e-3, TIGHT, n=MIN_SAMPLES - 1)
    base = make_run([FakeCell(samples=few)])
    new = make_run([FakeCell(samples=[s * 1.5 for s in few])], run_id="new")
    cell = compare_runs(base, new).cells[0]
    assert cell.verdict == "uncertain"
    assert cell.ratio == pytest.approx(1.5)
    assert "too few samples" in cell.notes[0]


def test_small_samples_note_that_alpha_is_unreachable() -> None:
    base = make_run([FakeCell(samples=spread_samples(1e-3, TIGHT, n=4))])
    new = make_run([FakeCell(samples=spread_samples(1.5e-3, TIGHT, n=4))], run_id="new")
    cell = compare_runs(base, new).cells[0]
    assert cell.p_value >= 2 / math.comb(8, 4)
    assert cell.verdict == "uncertain"
    assert any("smallest possible p" in note for note in cell.notes)


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
    new_cells[1] = FakeCell(op="matmul", size=256, status="oom", samples=[], reason="OOM at 256")
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
    future = Run(path=None, meta={**run.meta, "schema_version": 2}, results=run.results, samples=run.samples)
    with pytest.raises(UsageError, match=r"different schema versions \(base 1, new 2\)"):
        compare_runs(run, future)


def test_a_results_table_without_identity_columns_is_a_usage_error() -> None:
    run = make_run(grid())
    broken = Run(path=None, meta={}, results=run.results.drop(columns=["device"]), samples=run.samples)
    with pytest.raises(UsageError, match="base run's results lack the columns device"):
        compare_runs(broken, run)


# -------------------------------------------------------------------------------------------- statistics


def test_bootstrap_medians_match_the_exact_odd_n_distribution() -> None:
    # n = 3: the bootstrap median is the smallest value iff at least 2 of 3 draws pick it: 7/27.
    reps = bootstrap_medians([1.0, 2.0, 3.0], 200_000, np.random.default_rng(1))
    assert set(np.unique(reps)) == {1.0, 2.0, 3.0}
    assert np.mean(reps == 1.0) == pytest.approx(7 / 27, abs=0.005)
    assert np.mean(reps == 2.0) == pytest.approx(13 / 27, abs=0.005)


@pytest.mark.parametrize("n", [4, 7, 10])
def test_bootstrap_medians_match_brute_force_resampling(n: int) -> None:
    values = np.array(spread_samples(1.0, 0.3, n=n))
    rng = np.random.default_rng(2)
    fast = bootstrap_medians(values, 100_000, rng)
    brute = np.median(values[rng.integers(0, n, size=(100_000, n))], axis=1)
    for q in (0.025, 0.25, 0.5, 0.75, 0.975):
        assert np.quantile(fast, q) == pytest.approx(np.quantile(brute, q), rel=0.02)
    # The same support: every replicate is a value or the mean of two values of the sample.
    support = {(a + b) / 2 for a in values for b in values}
    assert set(np.unique(fast)) <= support


def test_comparisons_are_reproducible_for_a_seed() -> None:
    base, new = make_run(grid(sigma=0.05)), make_run(grid({256: 1.1}, sigma=0.05), run_id="new")
    assert compare_runs(base, new, seed=3) == compare_runs(base, new, seed=3)
    assert compare_runs(base, new, seed=3).cells[0].ci_low != compare_runs(base, new, seed=4).cells[0].ci_low


def test_a_cells_interval_does_not_depend_on_the_other_cells() -> None:
    full = compare_runs(make_run(grid(sigma=0.05)), make_run(grid({256: 1.1}, sigma=0.05), run_id="new"))
    alone = compare_runs(make_run(grid(sigma=0.05, sizes=(256,))),
                         make_run(grid({256: 1.1}, sigma=0.05, sizes=(256,)), run_id="new"))
    assert by_key(alone)[("matmul", 256)] == by_key(full)[("matmul", 256)]


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


def test_hundreds_of_cells_compare_quickly() -> None:
    import time

    samples = spread_samples(1e-3, 0.05, n=100)
    cells = [FakeCell(op=f"op{i % 10}", size=2 ** (i // 10), samples=samples) for i in range(200)]
    start = time.perf_counter()
    comparison = compare_runs(make_run(cells), make_run(cells, run_id="new"), n_boot=2000)
    elapsed = time.perf_counter() - start
    assert len(comparison.cells) == 200
    assert elapsed < 5.0  # about 0.4 s here (mostly scipy's mannwhitneyu); generous for slow CI machines


# ------------------------------------------------------------------------------------------ fingerprints


def test_fingerprint_differences_are_found() -> None:
    gpu_box = machine(
        hostname="gpubox",
        cpu__model="Intel Xeon Platinum 8480+",
        cpu__logical_cores=32,
        memory__total_bytes=512 * 2**30,
        tensorflow__version="2.22.0",
        tensorflow__build_info={"cuda_version": "12.8", "cudnn_version": "9"},
        devices=[{"name": "CPU:0", "kind": "CPU", "details": {}},
                 {"name": "GPU:0", "kind": "GPU",
                  "details": {"device_name": "NVIDIA H100 80GB HBM3", "compute_capability": [9, 0]}}],
    )
    diffs = fingerprint_diff({"machine": machine()}, {"machine": gpu_box})
    assert [(d.field, d.base, d.new) for d in diffs] == [
        ("hostname", "laptop", "gpubox"),
        ("cpu.model", "AMD EPYC 7B13", "Intel Xeon Platinum 8480+"),
        ("cpu.logical_cores", 2, 32),
        ("memory", "8.0 GiB", "512.0 GiB"),
        ("tensorflow", "2.21.0", "2.22.0"),
        ("cuda", "12.5.1", "12.8"),
        ("devices", "CPU:0", "CPU:0, GPU:0"),
        ("gpu.names", None, "NVIDIA H100 80GB HBM3"),
        ("gpu.compute_capability", None, "9.0"),
    ]
    assert diffs[0] == ("hostname", "laptop", "gpubox")  # plain (field, base, new) tuples


def test_resume_asks_only_for_the_changes_that_make_cells_incomparable() -> None:
    moved = machine(hostname="gpubox", python__version="3.11.9", memory__total_bytes=64 * 2**30,
                    tensorflow__version="2.22.0")
    assert [(d.field, d.base, d.new) for d in incomparable_changes(machine(), moved)] == [
        ("hostname", "laptop", "gpubox"),
        ("tensorflow", "2.21.0", "2.22.0"),
    ]
    assert len(fingerprint_diff(machine(), moved)) == 4  # compare lists python and memory as well
    assert incomparable_changes(machine(), machine(python__version="3.11.9")) == []
    with pytest.raises(ValueError, match="unknown fingerprint fields"):
        fingerprint_diff(machine(), moved, ["hostnmae"])


def test_identical_fingerprints_have_no_differences_and_memory_noise_is_ignored() -> None:
    assert fingerprint_diff({"machine": machine()}, {"machine": machine()}) == []
    nearly = machine(memory__total_bytes=8 * 2**30 - 3 * 2**20)
    assert fingerprint_diff({"machine": machine()}, {"machine": nearly}) == []
    # The machine dict itself is accepted too.
    assert fingerprint_diff(machine(), machine(python__version="3.11.9")) == [
        ("python", "3.12.3", "3.11.9")]


def test_a_run_without_fingerprint_shows_every_field_as_missing() -> None:
    diffs = fingerprint_diff({"machine": machine()}, {})
    assert ("hostname", "laptop", None) in diffs
    assert all(d.new is None for d in diffs)
    assert fingerprint_diff({}, {}) == []


def test_fingerprint_differences_are_printed_first() -> None:
    base = make_run(grid())
    new = make_run(grid(), run_id="new", meta=machine(hostname="gpubox"))
    comparison = compare_runs(base, new)
    text = render_comparison(comparison, "table")
    assert text.index("Machine differences") < text.index("Cells")
    assert "gpubox" in text
    same = render_comparison(compare_runs(base, base), "table")
    assert "Machine differences: none" in same


# ----------------------------------------------------------------------------------------------- output


@functools.cache
def _mixed_comparison() -> Comparison:
    """Seven compared cells (one slower, one without raw samples), one cell only in new, a new hostname."""
    base = make_run([*grid(), FakeCell(op="matmul", size=4096, samples=[], median_s=0.5)])
    new_cells = [*grid({256: 1.2}), FakeCell(op="matmul", size=4096, samples=[], median_s=0.6),
                 FakeCell(op="conv", size=32)]
    return compare_runs(base, make_run(new_cells, run_id="new", meta=machine(hostname="gpubox")))


def test_json_output_parses_and_has_no_nan() -> None:
    comparison = _mixed_comparison()
    text = render_comparison(comparison, "json")

    def refuse(constant: str) -> None:
        raise AssertionError(f"JSON holds {constant}")

    data = json.loads(text, parse_constant=refuse)
    assert data["base"] == "base"
    assert data["new"] == "new"
    assert data["settings"] == {"threshold": 0.05, "alpha": 0.01, "confidence": 0.95, "n_boot": 2000,
                                "seed": 0}
    assert data["summary"]["slower"] == 1
    assert data["summary"]["regression"] is True
    assert data["fingerprint_diff"] == [{"field": "hostname", "base": "laptop", "new": "gpubox"}]
    untested = next(c for c in data["cells"] if c["size"] == 4096)
    assert untested["p_value"] is None
    assert untested["ci_low"] is None
    assert untested["ratio"] == pytest.approx(1.2)
    assert untested["verdict"] == "uncertain"
    assert set(CSV_COLUMNS) <= set(data["cells"][0])
    assert [c["op"] for c in data["only_in_new"]] == ["conv"]
    assert data["overall"]["ci_low"] is None
    assert data["crossovers"] is None


def test_csv_output_has_the_documented_columns() -> None:
    comparison = _mixed_comparison()
    frame = pd.read_csv(__import__("io").StringIO(render_comparison(comparison, "csv")))
    assert tuple(frame.columns) == CSV_COLUMNS
    assert len(frame) == len(comparison.cells) == 7
    slow = frame[(frame["op"] == "matmul") & (frame["size"] == 256)].iloc[0]
    assert slow["verdict"] == "slower"
    assert slow["ratio"] == pytest.approx(1.2)
    untested = frame[frame["size"] == 4096].iloc[0]
    assert math.isnan(untested["p_value"])
    assert "no raw samples" in untested["notes"]
    pd.testing.assert_frame_equal(comparison.to_frame()[["op", "size", "verdict"]],
                                  frame[["op", "size", "verdict"]])


def test_table_output_shows_cells_geomeans_and_summary() -> None:
    text = render_comparison(_mixed_comparison(), "table", width=200)
    assert "SLOWER" in text  # a regression stands out
    assert "1.200×" in text
    assert "Geometric-mean ratio" in text
    assert "overall" in text
    assert "Only in new (1)" in text
    assert "1 slower" in text
    assert "REGRESSION" in text
    assert "\x1b[" not in text  # plain text, no terminal codes


def test_unknown_format_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown format 'yaml'; allowed: table, csv, json"):
        render_comparison(_mixed_comparison(), "yaml")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- crossovers


def crossover_frame(rows: Sequence[tuple[str, str, str, str, float, str]]) -> pd.DataFrame:
    """Hand-made analysis.crossover_frame output: (op, device_a, device_b, faster_above, size, note)."""
    frame: pd.DataFrame = pd.DataFrame(
        [{"op": op, "dtype": "float32", "mode": "eager", "device_a": a, "device_b": b,
          "crossover_size": size, "low": size / 2 if math.isfinite(size) else math.nan,
          "high": size * 2 if math.isfinite(size) else math.nan,
          "faster_below": a if faster_above == b else b, "faster_above": faster_above, "note": note}
         for op, a, b, faster_above, size, note in rows],
        columns=list(CROSSOVER_COLUMNS),
    )
    return frame


def test_crossovers_side_by_side() -> None:
    base = crossover_frame([("matmul", "CPU:0", "GPU:0", "GPU:0", 512.0, ""),
                            ("add", "CPU:0", "GPU:0", "GPU:0", math.nan, "CPU:0 faster at all sizes")])
    new = crossover_frame([("matmul", "GPU:0", "CPU:0", "GPU:0", 256.0, ""),
                           ("add", "CPU:0", "GPU:0", "GPU:0", 4096.0, ""),
                           ("exp", "CPU:0", "GPU:0", "GPU:0", 1024.0, "")])
    pairs = {p.op: p for p in crossover_side_by_side(base, new)}
    assert set(pairs) == {"add", "exp", "matmul"}
    matmul = pairs["matmul"]
    assert (matmul.device_a, matmul.device_b) == ("CPU:0", "GPU:0")  # matched in either order
    assert (matmul.base_size, matmul.new_size, matmul.moved) == (512.0, 256.0, 0.5)
    assert (matmul.base_low, matmul.new_high) == (256.0, 512.0)
    assert math.isnan(pairs["add"].moved)
    assert pairs["add"].base_note == "CPU:0 faster at all sizes"
    assert pairs["exp"].base_note == "not in base run"
    assert math.isnan(pairs["exp"].base_size)


def test_a_pair_crossing_several_times_keeps_every_crossing() -> None:
    base = crossover_frame([("matmul", "CPU:0", "GPU:0", "GPU:0", 512.0, "")])
    new = crossover_frame([("matmul", "CPU:0", "GPU:0", "CPU:0", 2048.0, ""),
                           ("matmul", "CPU:0", "GPU:0", "GPU:0", 256.0, "")])
    pairs = crossover_side_by_side(base, new)
    assert len(pairs) == 2
    assert (pairs[0].crossing, pairs[0].base_size, pairs[0].new_size) == (0, 512.0, 256.0)
    assert pairs[1].crossing == 1
    assert math.isnan(pairs[1].base_size)
    assert pairs[1].new_size == 2048.0
    assert pairs[1].base_note == "no crossing #2 in base run"


def test_crossovers_are_rendered_when_given() -> None:
    base_frame = crossover_frame([("matmul", "CPU:0", "GPU:0", "GPU:0", 512.0, "")])
    new_frame = crossover_frame([("matmul", "CPU:0", "GPU:0", "GPU:0", 256.0, "")])
    base, new = make_run(grid()), make_run(grid(), run_id="new")
    comparison = compare_runs(base, new, crossovers=(base_frame, new_frame))
    assert comparison.crossovers is not None
    assert len(comparison.crossovers) == 1
    text = render_comparison(comparison, "table", width=200)
    assert "Crossover sizes" in text
    assert "0.5×" in text  # the crossover moved to half the size
    assert "512 [256, 1024]" in text
    data = json.loads(render_comparison(comparison, "json"))
    assert data["crossovers"][0]["moved"] == 0.5
    # A function from a results table to a crossover frame is applied to both runs.
    seen: list[int] = []

    def frame_of(results: pd.DataFrame) -> pd.DataFrame:
        seen.append(len(results))
        return base_frame

    assert compare_runs(base, new, crossovers=frame_of).crossovers is not None
    assert seen == [6, 6]
    assert "Crossover sizes" not in render_comparison(compare_runs(base, new), "table")


def test_a_crossover_frame_missing_columns_is_a_bug_not_a_usage_error() -> None:
    with pytest.raises(ValueError, match="lacks the columns note"):
        crossover_side_by_side(crossover_frame([]).drop(columns=["note"]), crossover_frame([]))


# ------------------------------------------------------------------------------------------------ chart


def test_compare_figure_has_one_panel_per_op_with_reference_line_and_band() -> None:
    comparison = _mixed_comparison()
    fig = compare_figure(comparison)
    axes = fig.axes
    assert [ax.get_title(loc="left") for ax in axes] == ["add", "matmul"]
    for ax in axes:
        assert ax.get_xscale() == "log"
        assert any(np.array_equal(np.asarray(line.get_ydata()), [1.0, 1.0]) for line in ax.get_lines())
        assert ax.get_ylabel() == "new / base"
        legend = ax.get_legend()
        assert legend is not None
        labels = [text.get_text() for text in legend.get_texts()]
        assert "float32 CPU:0 eager" in labels
        assert "±5% threshold" in labels
    matmul = axes[1]
    matmul_legend = matmul.get_legend()
    assert matmul_legend is not None
    matmul_labels = [text.get_text() for text in matmul_legend.get_texts()]
    assert "slower" in matmul_labels
    assert "same" in matmul_labels
    # Error bars: one errorbar container per (series, verdict) present.
    assert len(matmul.containers) == len({c.verdict for c in comparison.cells if c.key.op == "matmul"})
    assert "new vs base" in fig.get_suptitle()


def test_write_compare_chart_writes_a_png(tmp_path: Path) -> None:
    written = write_compare_chart(_mixed_comparison(), tmp_path)
    assert written == tmp_path / "compare.png"
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chart_of_a_comparison_without_cells_says_so(tmp_path: Path) -> None:
    comparison = compare_runs(make_run([FakeCell(status="oom", samples=[])]),
                              make_run([FakeCell(status="oom", samples=[])], run_id="new"))
    fig = compare_figure(comparison)
    assert "no cells measured ok" in fig.axes[0].texts[0].get_text()
    assert write_compare_chart(comparison, tmp_path / "c.png").exists()


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
        write_json(run_dir / META, new_meta({}, machine(hostname=name), name, ["sweep"]))
        log = CellLog(run_dir)
        for cell in grid({256: factor}):
            samples = cell.samples
            log.append(Record(run_id=name, op=cell.op, size=cell.size, dtype=cell.dtype, device=cell.device,
                              mode=cell.mode, sync=cell.sync, status="ok", n_samples=len(samples), number=10,
                              median_s=float(np.median(samples))), samples)
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


def test_crossovers_from_the_analysis_module_side_by_side() -> None:
    from devbench import analysis

    def cells(gpu_scale: float) -> list[FakeCell]:
        out = []
        for size in (64, 128, 256, 512, 1024):
            out.append(FakeCell(size=size, device="CPU:0", samples=spread_samples(1e-9 * size**2, 0.01)))
            gpu = gpu_scale * (2e-5 + 1e-11 * size**2)
            out.append(FakeCell(size=size, device="GPU:0", samples=spread_samples(gpu, 0.01)))
        return out

    comparison = compare_runs(make_run(cells(1.0)), make_run(cells(0.5), run_id="new"),
                              crossovers=analysis.crossover_frame)
    assert comparison.crossovers is not None
    (pair,) = comparison.crossovers
    assert (pair.device_a, pair.device_b) == ("CPU:0", "GPU:0")
    assert 128 <= pair.base_size <= 256
    assert pair.new_size < pair.base_size  # a faster GPU crosses over earlier
    assert pair.new_faster_above == "GPU:0"
