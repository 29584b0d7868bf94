"""pct_of_peak against the calibrated ceiling only (may exceed 100 %: flagged, never clipped; NaN with a reason
without a calibration) and pct_of_best against the run's own best rate (<= 100 % by construction)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devbench.ceilings import (
    ABOVE_PEAK_NOTE,
    CEILING_COLUMNS,
    CEILINGS_SENTENCE,
    NO_CALIBRATION,
    annotate,
    ceiling,
    ceilings_frame,
    op_bound,
    pct_of_peak,
    render_ceilings,
    with_pct_columns,
)
from devbench.schema import PCT_COLUMNS, RESULT_COLUMNS, VisitRecord
from devbench.simulation import GRIDS, Noise, simulate_run
from devbench.spec import Cell, SweepSpec, TimingPolicy
from devbench.timer import Measurement

GFLOP = 1e9
HOST = {"peak_flops": {"float32": 100 * GFLOP}, "peak_source": {"float32": "tensorflow n=2048"},
        "bandwidth": 10e9, "bandwidth_source": "numpy 128 MiB"}
CAL: dict[str, Any] = {"devices": {"CPU:0": HOST, "numpy:CPU": HOST,
                                   "GPU:0": {"peak_flops": {"float32": 10_000 * GFLOP},
                                             "peak_source": {"float32": "tensorflow n=8192"},
                                             "bandwidth": 1e12, "bandwidth_source": "tensorflow 1024 MiB"}}}


def matmul_flops(n: int) -> float:
    return 2.0 * n**3


def matmul_bytes(n: int) -> float:
    return 3.0 * n * n * 4


def row(op: str = "matmul", size: int = 2048, device: str = "CPU:0", *, rate: float | None = None,
        median_s: float | None = None, status: str = "ok", sync: str = "scalar", mode: str = "eager",
        dtype: str = "float32", spread: float = 0.05) -> dict[str, Any]:
    """A result row of an n×n op; ``rate`` (FLOP/s for matmul, bytes/s for add) sets its median time."""
    flops = matmul_flops(size) if op == "matmul" else float(size * size)
    nbytes = matmul_bytes(size)
    if median_s is None:
        assert rate is not None
        median_s = (flops if op == "matmul" else nbytes) / rate
    return {"op": op, "size": size, "dtype": dtype, "device": device, "mode": mode, "sync": sync,
            "status": status, "flops": flops, "bytes": nbytes, "median_s": median_s,
            "ci_low_s": median_s * (1 - spread), "ci_high_s": median_s * (1 + spread)}


# ---------------------------------------------------------------------------------------------------------
# The issue: a uniform slowdown must show in pct_of_peak, and only there


def simulated_table(seed: int) -> pd.DataFrame:
    """A seeded run of matmul and add on the host (CPU:0 and numpy) and a GPU over the doubling grid up to
    4096: true rates that saturate with n, medians of noisy samples (devbench.simulation), some cells a
    little above the calibration's probe as real sweeps have."""
    rng = np.random.default_rng(seed)
    sizes = [n for n in GRIDS["x2"] if n <= 4096]
    plan = [(op, device, n) for op in ("matmul", "add") for device in ("CPU:0", "numpy:CPU", "GPU:0") for n in sizes]
    truths = []
    for op, device, n in plan:
        limit = (120 * GFLOP if device != "GPU:0" else 11_000 * GFLOP) if op == "matmul" else \
            (12e9 if device != "GPU:0" else 1.1e12)
        saturation = n / (n + 256.0)  # small cells underuse the device
        work = matmul_flops(n) if op == "matmul" else matmul_bytes(n)
        truths.append(math.log(work / (limit * saturation)))
    cells = simulate_run(rng, truths, rounds=3, noise=Noise())
    medians = [float(np.median(np.concatenate(cell))) for cell in cells]
    rows = [row(op, n, device, median_s=median) for (op, device, n), median in zip(plan, medians, strict=True)]
    table: pd.DataFrame = pd.DataFrame(rows)
    return table


@pytest.mark.parametrize("seed", range(5))
def test_a_uniform_slowdown_lowers_pct_of_peak_by_its_size_and_leaves_pct_of_best_alone(seed: int) -> None:
    table = simulated_table(seed)
    slow = table.assign(median_s=table["median_s"] / 0.9, ci_low_s=table["ci_low_s"] / 0.9,
                        ci_high_s=table["ci_high_s"] / 0.9)  # every rate 10 % lower
    fast, slowed = with_pct_columns(table, CAL), with_pct_columns(slow, CAL)
    assert fast["pct_of_peak"].notna().all()
    np.testing.assert_allclose(slowed["pct_of_peak"], 0.9 * fast["pct_of_peak"], rtol=1e-12)
    np.testing.assert_allclose(slowed["pct_of_best"], fast["pct_of_best"], rtol=1e-12)
    # the table's large matmuls outran the probe: over 100 %, flagged, and what the slowdown brought back under
    assert fast["above_peak"].any()
    assert (fast["pct_of_peak"] > 100).equals(fast["above_peak"])
    assert fast["pct_of_peak"].max() > 100.0
    assert slowed["above_peak"].sum() < fast["above_peak"].sum()
    # pct_of_best: at most 100, and exactly 100 for the best cell of each (host or GPU, bound)
    assert (fast["pct_of_best"] <= 100.0).all()
    best = fast.assign(group=fast["device"].replace({"numpy:CPU": "CPU:0"})).groupby(["group", "op"])["pct_of_best"]
    assert (best.max() == 100.0).all()


def test_pct_of_peak_uses_the_ops_bound_and_pct_of_best_the_runs_best_of_that_bound() -> None:
    results = pd.DataFrame([row(size=2048, rate=80 * GFLOP), row(size=512, rate=40 * GFLOP),
                            row(op="add", size=4096, rate=5e9), row(op="add", size=1024, rate=2.5e9)])
    out = with_pct_columns(results, CAL)
    assert out["pct_of_peak"].tolist() == pytest.approx([80.0, 40.0, 50.0, 25.0])
    assert out["pct_of_best"].tolist() == pytest.approx([100.0, 50.0, 100.0, 50.0])
    assert not out["above_peak"].any()
    assert [op_bound(op, [], []) for op in ("matmul", "add")] == ["compute", "memory"]
    # another tool's op: by its cells' median intensity (FLOP/byte), the throughput chart's rule
    assert op_bound("my_op", [1.0, 2.0], [4.0, 4.0]) == "memory"
    assert op_bound("my_op", [100.0], [4.0]) == "compute"


# ---------------------------------------------------------------------------------------------------------
# Above the calibrated ceiling: flagged, never clipped


def test_a_cell_above_the_calibrated_ceiling_is_flagged_not_clipped() -> None:
    results = pd.DataFrame([row(size=2048, rate=110 * GFLOP), row(size=512, rate=55 * GFLOP)])
    out = with_pct_columns(results, CAL)
    assert out["pct_of_peak"].tolist() == pytest.approx([110.0, 55.0])
    assert out["above_peak"].tolist() == [True, False]
    assert out["pct_of_best"].tolist() == pytest.approx([100.0, 50.0])
    assert pct_of_peak(matmul_flops(2048), matmul_bytes(2048), results["median_s"].iloc[0], device="CPU:0",
                       dtype="float32", bound="compute", calibration=CAL) == pytest.approx(110)
    # the ceilings stay the calibration's: a sweep cell never raises them; the run's best is listed beside them
    frame = ceilings_frame(CAL, results).set_index(["device", "dtype"])
    assert frame.loc[("CPU:0", "float32"), "peak_flops"] == 100 * GFLOP
    assert frame.loc[("CPU:0", "float32"), "peak_source"] == "calibration GEMM tensorflow n=2048"
    assert frame.loc[("CPU:0", "float32"), "best_flops"] == pytest.approx(110 * GFLOP)
    assert frame.loc[("CPU:0", "float32"), "best_flops_source"] == "sweep: matmul n=2048 on CPU:0 (eager)"
    # its interval is the work over the median's interval: slow end of the time, low end of the rate
    assert frame.loc[("CPU:0", "float32"), "best_flops_low"] == pytest.approx(110 * GFLOP / 1.05)
    assert frame.loc[("CPU:0", "float32"), "best_flops_high"] == pytest.approx(110 * GFLOP / 0.95)


def test_a_record_above_the_calibrated_peak_is_annotated_above_100_and_flagged() -> None:
    fields = row(rate=130 * GFLOP)
    del fields["ci_low_s"], fields["ci_high_s"]
    record = annotate(VisitRecord(run_id="r", **fields), CAL)
    assert record.pct_of_peak == pytest.approx(130.0)
    assert record.above_peak
    assert not hasattr(record, "pct_of_best")  # a row's: the run's best is only known when the table is built
    unsynchronized = annotate(VisitRecord(run_id="r", **{**fields, "sync": "none"}), CAL)
    assert math.isnan(unsynchronized.pct_of_peak)
    assert not unsynchronized.above_peak


def test_the_report_lists_the_ceilings_and_the_runs_best_and_names_the_cells_above(tmp_path: Path) -> None:
    from devbench.report import render_report
    from tests import synthetic

    results = with_pct_columns(synthetic.frame([synthetic.row(2048, "CPU:0", matmul_flops(2048) / (110 * GFLOP)),
                                                synthetic.row(512, "CPU:0", matmul_flops(512) / (55 * GFLOP))]),
                               CAL)
    lines = render_ceilings(ceilings_frame(CAL, results))
    assert lines[0] == CEILINGS_SENTENCE
    cpu = next(line for line in lines if line.startswith("- CPU:0 float32"))
    assert "calibrated peak 100 GFLOP/s from calibration GEMM tensorflow n=2048" in cpu
    assert "calibrated bandwidth 10 GB/s from calibration copy numpy 128 MiB" in cpu
    assert "the run's best 110 GFLOP/s (95 % CI 109–111) from sweep: matmul n=2048 on CPU:0 (eager)" in cpu
    text = render_report(synthetic.run(results, meta={"calibration": CAL}), tmp_path)
    assert "### Above the calibrated ceiling (1)" in text
    assert f"- matmul float32 eager on CPU:0 at n=2048: 110% of the calibrated peak, {ABOVE_PEAK_NOTE}" in text


# ---------------------------------------------------------------------------------------------------------
# No calibration: NaN, and the reason where the ceilings are listed


def test_without_a_calibration_pct_of_peak_is_nan_with_the_reason_and_pct_of_best_is_still_there() -> None:
    results = pd.DataFrame([row(rate=50 * GFLOP), row(size=512, rate=25 * GFLOP)])
    out = with_pct_columns(results, None)
    assert out["pct_of_peak"].isna().all()
    assert not out["above_peak"].any()
    assert out["pct_of_best"].tolist() == pytest.approx([100.0, 50.0])
    frame = ceilings_frame(None, results)
    assert list(frame.columns) == CEILING_COLUMNS
    assert frame["peak_reason"].tolist() == [NO_CALIBRATION]
    lines = render_ceilings(frame)
    assert f"no calibrated peak ({NO_CALIBRATION}): pct_of_peak is empty for its compute-bound cells" in lines[1]


def test_a_failed_probe_or_an_unprobed_device_is_nan_with_its_reason() -> None:
    calibration = {
        "dtypes": ["float32", "float16"],
        "devices": {"GPU:0": {"peak_flops": {"float32": 1e13}, "bandwidth": math.nan}},
        "measurements": [
            {"what": "gemm", "backend": "tensorflow", "device": "GPU:0", "dtype": "float16", "n": 256,
             "rate": math.nan, "error": "ResourceExhaustedError: OOM"},
            {"what": "copy", "backend": "tensorflow", "device": "GPU:0", "dtype": "float32", "n": 0,
             "rate": math.nan, "error": "no DeepCopy kernel"},
        ],
    }
    results = pd.DataFrame([row(device="GPU:0", dtype="float16", rate=1e12), row(device="GPU:0", rate=5e12),
                            row(op="add", device="GPU:0", rate=1e11), row(device="GPU:1", rate=1e12),
                            row(device="GPU:0", dtype="float64", rate=1e11)])
    out = with_pct_columns(results, calibration)
    assert out["pct_of_peak"].isna().tolist() == [True, False, True, True, True]
    assert out["pct_of_peak"].iloc[1] == pytest.approx(50.0)
    frame = ceilings_frame(calibration, results).set_index(["device", "dtype"])
    assert frame.loc[("GPU:0", "float16"), "peak_reason"] == \
        "the float16 GEMM probe failed: ResourceExhaustedError: OOM"
    assert frame.loc[("GPU:0", "float32"), "peak_reason"] == ""
    assert frame.loc[("GPU:0", "float32"), "bandwidth_reason"] == \
        "the bandwidth probe (a large copy) failed: no DeepCopy kernel"
    assert frame.loc[("GPU:0", "float64"), "peak_reason"] == "the calibration did not probe float64"
    assert frame.loc[("GPU:1", "float32"), "peak_reason"] == "the calibration did not probe GPU:1"


def test_the_host_shares_one_calibrated_ceiling_and_one_best() -> None:
    results = pd.DataFrame([row(device="numpy:CPU", rate=120 * GFLOP), row(device="CPU:1", rate=60 * GFLOP),
                            row(device="GPU:0", rate=5_000 * GFLOP)])
    out = with_pct_columns(results, CAL)
    assert out["pct_of_peak"].tolist() == pytest.approx([120.0, 60.0, 50.0])
    assert out["pct_of_best"].tolist() == pytest.approx([100.0, 50.0, 100.0])
    assert ceiling(CAL, "CPU:3", "float32") == (100 * GFLOP, 10e9)


def test_unsynchronized_and_failed_rows_get_no_pct_and_set_no_best() -> None:
    results = pd.DataFrame([row(rate=900 * GFLOP, sync="none"), row(rate=900 * GFLOP, status="wrong"),
                            row(rate=50 * GFLOP, sync="transfer")])
    out = with_pct_columns(results, CAL)
    assert out["pct_of_peak"].isna().tolist() == [True, True, False]
    assert out["pct_of_best"].isna().tolist() == [True, True, False]
    assert out["pct_of_best"].iloc[2] == 100.0
    assert not out["above_peak"].any()


def test_the_calibration_alone_lists_its_ceilings_and_says_where_they_came_from() -> None:
    frame = ceilings_frame(CAL)
    assert list(frame["device"]) == ["CPU:0", "numpy:CPU", "GPU:0"]
    assert frame["peak_source"].iloc[2] == "calibration GEMM tensorflow n=8192"
    assert frame["bandwidth_source"].iloc[0] == "calibration copy numpy 128 MiB"
    assert frame["ridge"].iloc[0] == pytest.approx(10.0)
    assert frame["best_flops"].isna().all()
    # a calibrated device with no GEMM (every dtype failed) still shows its bandwidth
    bare = ceilings_frame({"devices": {"GPU:1": {"peak_flops": {}, "bandwidth": 2e12}}})
    assert list(bare["dtype"]) == [""]
    assert bare["bandwidth"].iloc[0] == 2e12
    assert math.isnan(bare["peak_flops"].iloc[0])


# ---------------------------------------------------------------------------------------------------------
# Older results tables still read


def test_an_older_results_table_without_the_new_columns_still_reads(tmp_path: Path) -> None:
    from devbench.store import RESULTS_PARQUET, load_any, load_run
    from tests import synthetic

    old = synthetic.frame([synthetic.row(512, "CPU:0", 1e-3), synthetic.row(1024, "CPU:0", 5e-3)])
    old = old.drop(columns=list(PCT_COLUMNS))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "meta.json").write_text('{"schema_version": 2, "run_id": "old", "status": "complete"}')
    old.to_parquet(run_dir / RESULTS_PARQUET)
    loaded = load_run(run_dir).results
    assert list(loaded.columns) == [*RESULT_COLUMNS, "shape"]
    assert not loaded["above_peak"].any()
    assert loaded["pct_of_best"].isna().all()
    old.to_csv(tmp_path / "old.csv", index=False)
    bare = load_any(tmp_path / "old.csv").results
    assert list(bare.columns) == [*RESULT_COLUMNS, "shape"]
    assert not bare["above_peak"].any()
    # another tool's table with a pct_of_peak over 100 gets its flag derived
    over = old.assign(pct_of_peak=[120.0, 80.0])
    over.to_csv(tmp_path / "over.csv", index=False)
    assert load_any(tmp_path / "over.csv").results["above_peak"].tolist() == [True, False]


# ---------------------------------------------------------------------------------------------------------
# On any table


DEVICES = ["CPU:0", "CPU:1", "numpy:CPU", "GPU:0", "GPU:1"]
positive = st.floats(min_value=1e-9, max_value=1e15, allow_nan=False, allow_infinity=False)
maybe = st.one_of(positive, positive, positive, st.sampled_from([math.nan, 0.0]))
"""Mostly a real number, sometimes missing or zero."""


@st.composite
def tables(draw: st.DrawFn) -> tuple[dict[str, Any] | None, pd.DataFrame]:
    calibration: dict[str, Any] | None = {"devices": {
        device: {"peak_flops": {"float32": draw(maybe), "float64": draw(maybe)}, "bandwidth": draw(maybe)}
        for device in draw(st.lists(st.sampled_from(DEVICES), min_size=1, unique=True))
    }}
    rows = [
        {"op": draw(st.sampled_from(["matmul", "add", "my_op"])), "size": 64, "device": draw(st.sampled_from(DEVICES)),
         "dtype": draw(st.sampled_from(["float32", "float64"])), "mode": "eager",
         "sync": draw(st.sampled_from(["scalar", "none", "transfer"])),
         "status": draw(st.sampled_from(["ok", "ok", "error"])), "flops": draw(maybe), "bytes": draw(maybe),
         "median_s": draw(maybe), "ci_low_s": draw(maybe), "ci_high_s": draw(maybe)}
        for _ in range(draw(st.integers(min_value=0, max_value=12)))
    ]
    columns = ["op", "size", "device", "dtype", "mode", "sync", "status", "flops", "bytes", "median_s",
               "ci_low_s", "ci_high_s"]
    return calibration, pd.DataFrame(rows, columns=columns)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(tables())
def test_pct_of_best_never_exceeds_100_and_pct_of_peak_is_flagged_exactly_above_100(
        case: tuple[dict[str, Any] | None, pd.DataFrame]) -> None:
    calibration, results = case
    out = with_pct_columns(results, calibration)
    best = out["pct_of_best"][out["pct_of_best"].notna()]
    assert (best <= 100.0).all()
    assert (best > 0).all()
    peak = out["pct_of_peak"]
    assert (peak[peak.notna()] > 0).all()
    assert out["above_peak"].tolist() == (peak > 100.0).tolist()
    # a row has pct_of_peak only where it has pct_of_best (a rate), and then the two differ by the ratio of
    # the run's best to the calibrated ceiling
    assert not (peak.notna() & out["pct_of_best"].isna()).any()
    frame = ceilings_frame(calibration, results)
    assert (frame.loc[frame["peak_flops"].notna(), "peak_source"] != "").all()
    assert (frame.loc[frame["peak_flops"].isna() & (frame["dtype"] != ""), "peak_reason"] != "").all()
    assert (frame.loc[frame["best_flops"].notna(), "best_flops_source"] != "").all()


# ---------------------------------------------------------------------------------------------------------
# In a sweep: the table is built from the cell log with the run's calibration


@dataclass
class _Outcome:
    measurement: Measurement[Any]
    placed_device: str
    flops: float
    bytes: float
    traces: int = 0
    note: str = ""


class _FastBackend:
    """matmul at 130 GFLOP/s at n=2048 and 65 at n=1024: faster than CAL's 100 GFLOP/s host probe."""

    def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int) -> _Outcome:
        rate = 130 * GFLOP if cell.size == 2048 else 65 * GFLOP
        median = matmul_flops(cell.size) / rate
        m: Measurement[Any] = Measurement(cold_s=2 * median, samples=[median] * 5, number=1, warmup_calls=2,
                                          sync_overhead_s=0.0, stop_reason="converged")
        return _Outcome(m, cell.device, flops=matmul_flops(cell.size), bytes=matmul_bytes(cell.size))

    def classify(self, exc: BaseException) -> tuple[str, str]:
        return "error", str(exc)

    def release(self) -> None:
        pass


def test_a_sweep_faster_than_its_calibration_reports_130_flagged(tmp_path: Path) -> None:
    from devbench.store import load_run
    from devbench.sweep import execute

    spec = SweepSpec(ops=("matmul",), sizes=(1024, 2048))
    run = execute(spec, tmp_path / "run", backend=_FastBackend(), calibrate=lambda _spec: CAL,
                  handle_signals=False)
    by_size = run.results.set_index("size")
    assert by_size.loc[2048, "pct_of_peak"] == pytest.approx(130.0)
    assert by_size.loc[1024, "pct_of_peak"] == pytest.approx(65.0)
    assert by_size["above_peak"].tolist() == [False, True]
    assert by_size["pct_of_best"].tolist() == pytest.approx([50.0, 100.0])
    # the same in results.parquet and results.csv as read back
    written = pd.read_csv(tmp_path / "run" / "results.csv").set_index("size")
    assert written.loc[2048, "above_peak"]
    assert written.loc[1024, "pct_of_best"] == pytest.approx(50.0)
    assert load_run(tmp_path / "run").results["above_peak"].tolist() == run.results["above_peak"].tolist()
    # a cell log written before the new fields (and its old, capped pct_of_peak) is rebuilt with them
    log = tmp_path / "run" / "cells.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    for line in lines:
        line["record"].pop("pct_of_best", None)  # (a visit record has none: it is a cell row's)
        del line["record"]["above_peak"]
        line["record"]["pct_of_peak"] = min(100.0, line["record"]["pct_of_peak"])
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    rebuilt = load_run(tmp_path / "run").results.set_index("size")
    assert rebuilt["pct_of_peak"].tolist() == pytest.approx([65.0, 130.0])
    assert rebuilt["above_peak"].tolist() == [False, True]
    assert rebuilt["pct_of_best"].tolist() == pytest.approx([50.0, 100.0])
