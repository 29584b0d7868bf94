"""Exports, each checked by its consumer (pytest-benchmark's own compare command) or its documented schema
(Bencher Metric Format's JSON schema; github-action-benchmark's BenchmarkResult for customSmallerIsBetter)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from devbench.errors import UsageError
from devbench.export import EXPORT_FORMATS, benchmark_name, export
from devbench.spec import SweepSpec
from devbench.store import Run, load_any, load_run
from tests.test_merge import MACHINE, model_seconds, write_run

SPEC = SweepSpec(ops=("matmul", "add"), sizes=(64, 128, 256), devices=("CPU:0", "CPU:1"),
                 include_transfer=True)
NAME = "matmul/float32/eager/CPU:1/128"
TRANSFER_NAME = "matmul/float32/eager+transfer/CPU:1/128"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    path = write_run(tmp_path_factory.mktemp("export") / "run", SPEC)
    loaded = load_run(path)
    # one cell that was not measured ok must stay out of every export
    results = loaded.results.copy()
    skipped = (results["op"] == "add") & (results["size"] == 256) & (results["device"] == "CPU:0") & (
        results["sync"] == "scalar")
    results.loc[skipped, ["status", "median_s"]] = ["skipped", math.nan]
    return Run(path=loaded.path, meta=loaded.meta, results=results, samples=loaded.samples)


def _row(run: Run, name: str) -> pd.Series[Any]:
    op, dtype, mode, device, size = name.split("/")
    sync = "transfer" if mode.endswith("+transfer") else "scalar"
    frame = run.results
    match = frame[(frame["op"] == op) & (frame["dtype"] == dtype) & (frame["mode"] == mode.split("+")[0])
                  & (frame["device"] == device) & (frame["size"] == int(size)) & (frame["sync"] == sync)]
    assert len(match) == 1
    row: pd.Series[Any] = match.iloc[0]
    return row


def _expected_names(run: Run) -> set[str]:
    ok = run.results[run.results["status"] == "ok"]
    return {f"{r.op}/{r.dtype}/{r.mode}{'+transfer' if r.sync == 'transfer' else ''}/{r.device}/{r.size}"
            for r in ok.itertuples()}


def test_names_are_op_dtype_mode_device_n() -> None:
    assert benchmark_name({"op": "matmul", "dtype": "float32", "mode": "eager", "device": "GPU:0",
                           "size": 1024}) == "matmul/float32/eager/GPU:0/1024"


# --- pytest-benchmark, read by its own command -------------------------------------------------------------


@pytest.mark.slow
def test_pytest_benchmark_compare_loads_and_tabulates_the_export(run: Run, tmp_path: Path) -> None:
    data = json.loads(export(run, "pytest-benchmark"))
    assert {b["name"] for b in data["benchmarks"]} == _expected_names(run)
    path = tmp_path / "0001_devbench.json"
    path.write_text(export(run, "pytest-benchmark"))
    command = shutil.which("pytest-benchmark", path=os.path.dirname(sys.executable)) or "pytest-benchmark"
    done = subprocess.run([command, "compare", str(path), "--group-by=group", "--columns=min,median,iqr,rounds"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "Failed to load" not in done.stdout + done.stderr
    out = done.stdout
    # one table per group (op dtype mode n), both devices side by side
    assert "benchmark 'matmul float32 eager n=128': 2 tests" in out
    line = next(line for line in out.splitlines() if line.startswith(NAME + " "))
    # pytest-benchmark's median (scaled to its unit) is devbench's median per call
    row = _row(run, NAME)
    unit = out.split("Name (time in ")[1].split(")")[0]
    scale = {"ns": 1e9, "us": 1e6, "ms": 1e3, "s": 1.0}[unit]
    name, _min, median, _iqr, rounds = (t for t in line.split() if not t.startswith("("))  # drop "(1.43)"
    assert name == NAME
    assert float(median.replace(",", "")) == pytest.approx(float(row["median_s"]) * scale, rel=1e-3)
    assert rounds == str(int(row["n_samples"]))  # rounds = samples
    assert "add/float32/eager/CPU:0/256 " not in out  # skipped: not exported


def test_pytest_benchmark_stats_come_from_the_raw_samples(run: Run) -> None:
    data = json.loads(export(run, "pytest-benchmark"))
    bench = next(b for b in data["benchmarks"] if b["name"] == TRANSFER_NAME)
    row = _row(run, TRANSFER_NAME)
    assert bench["stats"]["median"] == pytest.approx(float(row["median_s"]))
    assert bench["stats"]["rounds"] == int(row["n_samples"]) == len(bench["stats"]["data"])
    assert bench["stats"]["iterations"] == int(row["number"])
    assert bench["params"]["sync"] == "transfer"
    assert data["machine_info"]["devbench"] == MACHINE


def test_pytest_benchmark_needs_raw_samples(tmp_path: Path, run: Run) -> None:
    table = tmp_path / "bare.csv"
    run.results.to_csv(table, index=False)
    with pytest.raises(UsageError, match="raw samples"):
        export(load_any(table), "pytest-benchmark")


# --- Bencher Metric Format ---------------------------------------------------------------------------------


def _check_bmf_schema(data: object) -> None:
    """Bencher's published BMF JSON schema: an object of benchmarks, each an object of measures, each an
    object with a required numeric ``value`` and optional numeric ``lower_value``/``upper_value``."""
    assert isinstance(data, dict)
    assert data
    for name, measures in data.items():
        assert isinstance(name, str)
        assert 0 < len(name) <= 1024
        assert isinstance(measures, dict)
        assert measures
        for measure, metric in measures.items():
            assert isinstance(measure, str)
            assert 0 < len(measure) <= 64
            assert isinstance(metric, dict)
            assert set(metric) <= {"value", "lower_value", "upper_value"}
            assert "value" in metric
            assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in metric.values())


def test_bmf_follows_the_schema_in_nanoseconds_with_the_interval(run: Run) -> None:
    data = json.loads(export(run, "bmf"))
    _check_bmf_schema(data)
    assert set(data) == _expected_names(run)
    row = _row(run, NAME)
    latency = data[NAME]["latency"]
    assert latency["value"] == pytest.approx(float(row["median_s"]) * 1e9)
    assert latency["lower_value"] == pytest.approx(float(row["ci_low_s"]) * 1e9)
    assert latency["upper_value"] == pytest.approx(float(row["ci_high_s"]) * 1e9)
    throughput = data[NAME]["throughput"]
    assert throughput["value"] == pytest.approx(float(row["flops"]) / float(row["median_s"]))
    assert throughput["lower_value"] <= throughput["value"] <= throughput["upper_value"]
    assert latency["lower_value"] <= latency["value"] <= latency["upper_value"]


def test_bmf_without_flops_or_interval_omits_what_is_unknown(run: Run) -> None:
    results = run.results.copy()
    results["flops"] = math.nan
    results["ci_low_s"] = math.nan
    data = json.loads(export(Run(path=None, meta={}, results=results, samples=run.samples), "bmf"))
    _check_bmf_schema(data)
    assert set(data[NAME]) == {"latency"}
    assert set(data[NAME]["latency"]) == {"value"}


# --- github-action-benchmark -------------------------------------------------------------------------------


def test_github_action_benchmark_custom_smaller_is_better(run: Run) -> None:
    """Its BenchmarkResult: name, value (number), unit (string), optional range and extra (strings); the unit
    is one the action converts between (s, ms, us, ns)."""
    data = json.loads(export(run, "github-action-benchmark"))
    assert isinstance(data, list)
    for entry in data:
        assert set(entry) <= {"name", "value", "unit", "range", "extra"}
        assert isinstance(entry["name"], str)
        assert isinstance(entry["unit"], str)
        assert isinstance(entry["value"], (int, float))
        assert not isinstance(entry["value"], bool)
        assert isinstance(entry.get("range", ""), str)
        assert isinstance(entry.get("extra", ""), str)
        assert entry["unit"] in ("s", "ms", "us", "ns")
    names = [entry["name"] for entry in data]
    assert len(names) == len(set(names))
    assert set(names) == _expected_names(run)
    entry = next(e for e in data if e["name"] == NAME)
    row = _row(run, NAME)
    assert entry["value"] == pytest.approx(float(row["median_s"]) * 1e9)
    half = (float(row["ci_high_s"]) - float(row["ci_low_s"])) * 1e9 / 2
    assert float(entry["range"].removeprefix("± ")) == pytest.approx(half, rel=1e-3)


# --- shared rules ------------------------------------------------------------------------------------------


def test_names_are_the_same_for_the_same_cell_on_another_machine(run: Run, tmp_path: Path) -> None:
    other = load_run(write_run(tmp_path / "other", SPEC, machine={**MACHINE, "hostname": "elsewhere"},
                               model=lambda c: 2 * model_seconds(c)))
    for fmt in ("bmf", "github-action-benchmark"):
        here = json.loads(export(run, fmt))
        there = json.loads(export(other, fmt))
        names_here = set(here) if fmt == "bmf" else {e["name"] for e in here}
        names_there = set(there) if fmt == "bmf" else {e["name"] for e in there}
        assert names_here - names_there == set()


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_a_run_with_no_ok_cell_is_a_usage_error(run: Run, fmt: str) -> None:
    results = run.results.assign(status="skipped")
    with pytest.raises(UsageError, match="no ok cells"):
        export(Run(path=Path("r"), meta={}, results=results, samples=run.samples), fmt)


def test_unknown_format_is_a_usage_error_with_a_suggestion(run: Run) -> None:
    with pytest.raises(UsageError, match="did you mean 'bmf'"):
        export(run, "bmff")
