"""Effective ceilings: the best sustained rate of the calibration and the sweep's own cells, so that
``pct_of_peak`` never exceeds 100 %, with the source and interval of the rate that set each ceiling."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devbench.ceilings import (
    CEILING_COLUMNS,
    CEILINGS_SENTENCE,
    annotate,
    ceiling,
    ceilings_for,
    ceilings_frame,
    effective_ceilings,
    pct_of_peak,
    render_ceilings,
    with_pct_of_peak,
)
from devbench.schema import Record
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
        dtype: str = "float32", flops: float | None = None, nbytes: float | None = None,
        spread: float = 0.05) -> dict[str, Any]:
    """A result row of an n×n op; ``rate`` (FLOP/s for matmul, bytes/s for add) sets its median time."""
    flops = flops if flops is not None else (matmul_flops(size) if op == "matmul" else float(size * size))
    nbytes = nbytes if nbytes is not None else matmul_bytes(size)
    if median_s is None:
        assert rate is not None
        median_s = (flops if op == "matmul" else nbytes) / rate
    return {"op": op, "size": size, "dtype": dtype, "device": device, "mode": mode, "sync": sync,
            "status": status, "flops": flops, "bytes": nbytes, "median_s": median_s,
            "ci_low_s": median_s * (1 - spread), "ci_high_s": median_s * (1 + spread)}


def test_a_cell_above_the_calibrated_peak_raises_the_ceiling_to_itself() -> None:
    results = pd.DataFrame([row(size=2048, rate=110 * GFLOP), row(size=512, rate=55 * GFLOP)])
    frame = effective_ceilings(CAL, results)
    cpu = frame[(frame["device"] == "CPU:0") & (frame["dtype"] == "float32")].iloc[0]
    assert cpu["peak_flops"] == pytest.approx(110 * GFLOP)
    assert cpu["peak_source"] == "sweep: matmul n=2048 on CPU:0 (eager)"
    assert cpu["calibrated_peak_flops"] == 100 * GFLOP
    # its interval is the work over the median's interval: slow end of the time, low end of the rate
    assert cpu["peak_low"] == pytest.approx(matmul_flops(2048) / (matmul_flops(2048) / (110 * GFLOP) * 1.05))
    assert cpu["peak_high"] == pytest.approx(matmul_flops(2048) / (matmul_flops(2048) / (110 * GFLOP) * 0.95))
    assert cpu["peak_low"] < cpu["peak_flops"] < cpu["peak_high"]
    pct = with_pct_of_peak(results, CAL)["pct_of_peak"].tolist()
    assert pct[0] == 100.0
    assert pct[1] == pytest.approx(50.0)
    # against the probe alone the same cell was above its ceiling: that is what the tables no longer say
    assert pct_of_peak(matmul_flops(2048), matmul_bytes(2048), results["median_s"].iloc[0], device="CPU:0",
                       dtype="float32", calibration=CAL) == pytest.approx(110)


def test_cells_below_the_calibrated_peak_leave_it_and_its_source_alone() -> None:
    results = pd.DataFrame([row(rate=80 * GFLOP)])
    frame = effective_ceilings(CAL, results)
    cpu = frame[frame["device"] == "CPU:0"].iloc[0]
    assert cpu["peak_flops"] == 100 * GFLOP
    assert cpu["peak_source"] == "calibration GEMM tensorflow n=2048"
    assert math.isnan(cpu["peak_low"])
    assert with_pct_of_peak(results, CAL)["pct_of_peak"].iloc[0] == pytest.approx(80)


def test_the_host_ceiling_is_the_best_across_logical_cpus_and_numpy() -> None:
    results = pd.DataFrame([row(device="numpy:CPU", rate=120 * GFLOP), row(device="CPU:1", rate=60 * GFLOP),
                            row(device="GPU:0", rate=5_000 * GFLOP)])
    frame = effective_ceilings(CAL, results).set_index(["device", "dtype"])
    for device in ("CPU:0", "numpy:CPU", "CPU:1"):
        assert frame.loc[(device, "float32"), "peak_flops"] == pytest.approx(120 * GFLOP)
        assert frame.loc[(device, "float32"), "peak_source"] == "sweep: matmul n=2048 on numpy:CPU (eager)"
    # a GPU is its own device: the host's cells do not touch it
    assert frame.loc[("GPU:0", "float32"), "peak_flops"] == 10_000 * GFLOP
    pct = with_pct_of_peak(results, CAL)["pct_of_peak"].tolist()
    assert pct == pytest.approx([100.0, 50.0, 50.0])
    # what the throughput chart draws: a logical CPU no cell ran on still gets the host's ceiling
    peak, bandwidth = ceilings_for(CAL, results).of("CPU:7", "float32")
    assert peak is not None
    assert peak.source == "sweep: matmul n=2048 on numpy:CPU (eager)"
    assert bandwidth is not None
    assert bandwidth.value == 10e9
    # the calibration-only lookup still gives an uncalibrated logical CPU the host's numbers
    assert ceiling(CAL, "CPU:3", "float32") == (100 * GFLOP, 10e9)


def test_a_memory_bound_cell_raises_the_bandwidth_for_every_dtype_and_names_its_own() -> None:
    results = pd.DataFrame([row(op="add", size=4096, rate=14e9, dtype="float64"), row(op="add", rate=7e9)])
    frame = effective_ceilings(CAL, results).set_index(["device", "dtype"])
    assert frame.loc[("CPU:0", "float32"), "bandwidth"] == pytest.approx(14e9)
    assert frame.loc[("CPU:0", "float32"), "bandwidth_source"] == "sweep: add n=4096 float64 on CPU:0 (eager)"
    assert frame.loc[("CPU:0", "float32"), "calibrated_bandwidth"] == 10e9
    assert frame.loc[("CPU:0", "float32"), "ridge"] == pytest.approx(100 * GFLOP / 14e9)
    pct = with_pct_of_peak(results, CAL)["pct_of_peak"].tolist()
    assert pct[0] == pytest.approx(100.0)
    assert pct[0] <= 100.0
    assert pct[1] == pytest.approx(50.0)


def test_unsynchronized_and_failed_rows_set_no_ceiling_and_get_no_pct() -> None:
    results = pd.DataFrame([row(rate=900 * GFLOP, sync="none"), row(rate=900 * GFLOP, status="wrong"),
                            row(rate=50 * GFLOP, sync="transfer")])
    frame = effective_ceilings(CAL, results)
    assert frame[frame["device"] == "CPU:0"]["peak_flops"].iloc[0] == 100 * GFLOP
    pct = with_pct_of_peak(results, CAL)["pct_of_peak"].tolist()
    assert math.isnan(pct[0])
    assert math.isnan(pct[1])
    assert pct[2] == pytest.approx(50.0)


def test_without_a_calibration_no_row_gets_a_pct() -> None:
    results = pd.DataFrame([row(rate=50 * GFLOP)])
    assert with_pct_of_peak(results, None)["pct_of_peak"].isna().all()


def test_the_calibration_alone_keeps_the_old_columns_and_says_where_it_came_from() -> None:
    frame = ceilings_frame(CAL)
    assert list(frame.columns) == CEILING_COLUMNS
    assert list(frame["device"]) == ["CPU:0", "numpy:CPU", "GPU:0"]
    assert frame["peak_source"].iloc[2] == "calibration GEMM tensorflow n=8192"
    assert frame["bandwidth_source"].iloc[0] == "calibration copy numpy 128 MiB"
    assert frame["ridge"].iloc[0] == pytest.approx(10.0)
    # a calibrated device with no GEMM (every dtype failed) still shows its bandwidth
    bare = ceilings_frame({"devices": {"GPU:1": {"peak_flops": {}, "bandwidth": 2e12}}})
    assert list(bare["dtype"]) == [""]
    assert bare["bandwidth"].iloc[0] == 2e12
    assert math.isnan(bare["peak_flops"].iloc[0])


def test_a_record_above_the_calibrated_peak_is_annotated_at_100() -> None:
    fields = row(rate=130 * GFLOP)
    del fields["ci_low_s"], fields["ci_high_s"]
    record = Record(run_id="r", **fields)
    assert annotate(record, CAL).pct_of_peak == 100.0
    assert math.isnan(annotate(Record(run_id="r", **{**fields, "sync": "none"}), CAL).pct_of_peak)


def test_the_report_lines_name_the_source_the_interval_and_the_calibrated_value() -> None:
    results = pd.DataFrame([row(size=2048, rate=110 * GFLOP)])
    lines = render_ceilings(effective_ceilings(CAL, results))
    assert lines[0] == CEILINGS_SENTENCE
    cpu = next(line for line in lines if line.startswith("- CPU:0 float32"))
    assert "peak 110 GFLOP/s (95 % CI 105–116) from sweep: matmul n=2048 on CPU:0 (eager)" in cpu
    assert "(the calibration measured 100)" in cpu
    assert "bandwidth 10 GB/s from calibration copy numpy 128 MiB" in cpu


# ---------------------------------------------------------------------------------------------------------
# Never above 100 %, whatever the table


DEVICES = ["CPU:0", "CPU:1", "numpy:CPU", "GPU:0", "GPU:1"]
positive = st.floats(min_value=1e-9, max_value=1e15, allow_nan=False, allow_infinity=False)
maybe = st.one_of(positive, positive, positive, st.sampled_from([math.nan, 0.0]))
"""Mostly a real number, sometimes missing or zero: enough cells are usable for a ceiling to be exceeded."""


@st.composite
def tables(draw: st.DrawFn) -> tuple[dict[str, Any] | None, pd.DataFrame]:
    calibration: dict[str, Any] | None = {"devices": {
        device: {"peak_flops": {"float32": draw(maybe), "float64": draw(maybe)}, "bandwidth": draw(maybe)}
        for device in draw(st.lists(st.sampled_from(DEVICES), min_size=1, unique=True))
    }}
    rows = [
        {"op": "matmul", "size": 64, "device": draw(st.sampled_from(DEVICES)),
         "dtype": draw(st.sampled_from(["float32", "float64"])), "mode": "eager",
         "sync": draw(st.sampled_from(["scalar", "none", "transfer"])),
         "status": draw(st.sampled_from(["ok", "ok", "error"])), "flops": draw(maybe), "bytes": draw(maybe),
         "median_s": draw(maybe), "ci_low_s": draw(maybe), "ci_high_s": draw(maybe)}
        for _ in range(draw(st.integers(min_value=0, max_value=12)))
    ]
    columns = ["op", "size", "device", "dtype", "mode", "sync", "status", "flops", "bytes", "median_s",
               "ci_low_s", "ci_high_s"]
    return calibration, pd.DataFrame(rows, columns=columns)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(tables())
def test_pct_of_peak_never_exceeds_100_on_any_table(case: tuple[dict[str, Any] | None, pd.DataFrame]) -> None:
    calibration, results = case
    pct = with_pct_of_peak(results, calibration)["pct_of_peak"]
    finite = pct[pct.notna()]
    assert (finite <= 100.0).all()
    assert (finite > 0).all()
    frame = effective_ceilings(calibration, results)
    # every finite ceiling names where it came from
    assert (frame.loc[frame["peak_flops"].notna(), "peak_source"] != "").all()
    assert (frame.loc[frame["bandwidth"].notna(), "bandwidth_source"] != "").all()


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


def test_a_sweep_faster_than_its_calibration_reports_100_not_130(tmp_path: Path) -> None:
    from devbench.sweep import execute

    spec = SweepSpec(ops=("matmul",), sizes=(1024, 2048))
    run = execute(spec, tmp_path / "run", backend=_FastBackend(), calibrate=lambda _spec: CAL,
                  handle_signals=False)
    by_size = run.results.set_index("size")["pct_of_peak"]
    assert by_size[2048] == 100.0
    assert by_size[1024] == pytest.approx(50.0)
    source = effective_ceilings(run.meta["calibration"], run.results).set_index("device").loc["CPU:0", "peak_source"]
    assert source == "sweep: matmul n=2048 on CPU:0 (eager)"
