"""A cell's row from its visits (devbench.visits), and the two types they are (devbench.schema): a visit record
per cells.jsonl line, a cell row per results-table row; old logs, where one type served both, still read."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from devbench.schema import (
    CACHE_COLUMNS,
    ENERGY_COLUMNS,
    RESULT_COLUMNS,
    TELEMETRY_COLUMNS,
    VISIT_FIELDS,
    CellRow,
    EnergyColumns,
    GpuTelemetry,
    VisitRecord,
    visit_record,
)
from devbench.store import finalize, new_meta, read_cell_log, validate_record, write_json
from devbench.visits import LoggedVisit, cell_row, latest_visits

BASE: dict[str, Any] = {"run_id": "r", "op": "add", "size": 16, "dtype": "float32", "device": "CPU:0",
                        "mode": "eager", "sync": "scalar", "status": "ok", "reason": ""}

RESULT_COLUMNS_OF_SCHEMA_2 = (
    "run_id", "op", "size", "dtype", "device", "mode", "sync", "status", "reason", "placed_device", "n_samples",
    "number", "warmup_calls", "stop_reason", "cold_s", "median_s", "q1_s", "q3_s", "iqr_s", "mean_s", "std_s",
    "min_s", "max_s", "ci_low_s", "ci_high_s", "rel_iqr", "flops", "bytes", "gflops", "gbps", "noisy",
    "unsynchronized", "finished_at", "traces", "pct_of_peak", "above_peak", "pct_of_best", "n_rounds",
    "between_round_rel", "ci_reason", "incomplete", "sm_clock_start_mhz", "sm_clock_end_mhz",
    "mem_clock_start_mhz", "mem_clock_end_mhz", "temperature_start_c", "temperature_end_c", "power_start_w",
    "power_end_w", "throttle_reasons", "throttled",
    "cpu_mhz_start", "cpu_mhz_end", "cpu_freq_moved", "cpu_freq_moved_visits",
    # Energy per op (issue 19), appended: a table without them still reads (devbench.store).
    "joules_per_call", "joules_ci_low", "joules_ci_high", "energy_check_rel", "energy_disagrees", "energy_reason",
)
"""The results table of schema version 2, as written before the split: the contract stays the same (the CPU
clock columns, devbench.hostcheck, were added at its end later; older tables read without them)."""


def visit(round_: int, samples: list[float], **changes: Any) -> LoggedVisit:
    return LoggedVisit(visit_record({**BASE, **changes}), samples, round_)


def test_the_results_columns_are_the_schema_2_contract_and_each_type_has_only_its_fields() -> None:
    # Columns added since are optional to readers (an older table lacks them): cache state's flush_bytes.
    assert tuple(c for c in RESULT_COLUMNS if c not in CACHE_COLUMNS) == RESULT_COLUMNS_OF_SCHEMA_2
    row_only = set(RESULT_COLUMNS) - set(VISIT_FIELDS)
    assert row_only == {"pct_of_best", "n_rounds", "between_round_rel", "ci_reason", "incomplete",
                        "cpu_freq_moved_visits"}
    assert set(VISIT_FIELDS) - set(RESULT_COLUMNS) == {"visited_once"}
    assert tuple(f.name for f in fields(GpuTelemetry)) == TELEMETRY_COLUMNS
    for cls in (VisitRecord, CellRow):  # declared once, inherited by both
        assert issubclass(cls, GpuTelemetry)
        assert issubclass(cls, EnergyColumns)
        names = [f.name for f in fields(cls)]
        start = names.index(TELEMETRY_COLUMNS[0])
        assert names[start:start + len(TELEMETRY_COLUMNS)] == list(TELEMETRY_COLUMNS)
        assert names[-len(ENERGY_COLUMNS):] == list(ENERGY_COLUMNS)


def test_visits_of_one_cell_are_one_row_whatever_order_the_log_has() -> None:
    lines = [visit(2, [2.0, 2.0], cold_s=1.0), visit(1, [1.0, 1.0], cold_s=5.0),
             visit(2, [3.0, 3.0], cold_s=1.0)]  # round 2 measured again: its last line counts
    [visits] = latest_visits(lines).values()
    assert [v.round for v in visits] == [1, 2]
    row = cell_row(visits, rounds_planned=3)
    assert isinstance(row, CellRow)
    assert row.n_rounds == 2
    assert row.incomplete
    assert row.cold_s == 5.0
    assert row.median_s == pytest.approx(2.0)  # median of 1, 1, 3, 3


def test_a_cells_median_weighs_its_visits_alike_however_many_samples_they_took() -> None:
    """A visit that took 9 samples (a disturbed one, slow to converge) and two quiet visits of 3: half the
    weight is reached at 1.04, inside the quiet visits, where the pooled median (8th of 15) is the disturbed
    visit's; the quartiles stay over the 15 samples pooled."""
    disturbed = [1.3, 1.31, 1.29, 1.3, 1.32, 1.3, 1.28, 1.33, 1.3]
    row = cell_row([visit(1, disturbed), visit(2, [1.0, 1.01, 1.02]), visit(3, [1.03, 1.04, 1.05])],
                   rounds_planned=3)
    assert row.median_s == pytest.approx(1.04)
    assert row.q1_s == pytest.approx(1.035)  # type 7 over the pooled 15: between the 4th and 5th value
    assert row.n_samples == 15
    assert row.ci_reason == ""


def test_gpu_state_of_a_cell_spans_its_visits() -> None:
    gpu = {"op": "matmul", "size": 4096, "device": "GPU:0"}
    visits = [
        visit(1, [1.0, 1.0], **gpu, sm_clock_start_mhz=1980.0, sm_clock_end_mhz=1900.0),
        visit(2, [1.2, 1.2], **gpu, sm_clock_start_mhz=1700.0, sm_clock_end_mhz=1500.0,
              throttle_reasons="sw_power_cap", throttled=True),
        visit(3, [1.1, 1.1], **gpu, sm_clock_start_mhz=1600.0, sm_clock_end_mhz=1400.0,
              throttle_reasons="sw_power_cap,hw_thermal_slowdown"),
    ]
    row = cell_row(visits, rounds_planned=3)
    assert row.sm_clock_start_mhz == 1980.0  # the first visit's start
    assert row.sm_clock_end_mhz == 1400.0  # the last visit's end
    assert row.throttle_reasons == "sw_power_cap,hw_thermal_slowdown"
    assert row.throttled is True


def test_a_cell_visited_once_on_purpose_is_not_incomplete_and_a_failed_first_visit_is_its_row() -> None:
    assert not cell_row([visit(1, [1.0, 1.1], visited_once=True)], rounds_planned=3).incomplete
    assert cell_row([visit(1, [1.0, 1.1])], rounds_planned=3).incomplete
    failed = cell_row([visit(1, [], status="oom", reason="out of memory")], rounds_planned=3)
    assert (failed.status, failed.reason, failed.n_rounds, failed.incomplete) == ("oom", "out of memory", 0, False)


def test_the_visited_once_flag_is_read_from_the_field_not_the_words() -> None:
    """A reason that merely mentions the words does not make a new line visited once; an old line (no field)
    whose reason holds them does."""
    words = "visited once: its first visit took 12 s, over 2× the cell's 0.5 s budget"
    assert validate_record({**BASE, "reason": words, "visited_once": False})["visited_once"] is False
    assert validate_record({**BASE, "reason": "", "visited_once": True})["visited_once"] is True
    assert validate_record({**BASE, "reason": words})["visited_once"] is True
    assert validate_record({**BASE, "reason": "cut short by the cell time budget"})["visited_once"] is False
    appended = f"cut short by the cell time budget after 3 samples; {words}"  # the old runner appended its note
    assert visit_record({**BASE, "reason": appended}).visited_once
    assert not visit_record({**BASE, "reason": appended, "visited_once": False}).visited_once


def test_a_log_written_when_one_type_served_both_still_reads(tmp_path: Path) -> None:
    """A schema-2 cells.jsonl line from before the split: every row field in the record (``n_rounds``,
    ``incomplete``, ``pct_of_best``, …) and "visited once" as a reason prefix. It loads, the row fields are
    dropped from the visit, and the cell is visited once, not incomplete."""
    run = tmp_path / "run"
    run.mkdir()
    write_json(run / "meta.json", new_meta({"ops": ["add"], "rounds": 3}, {}, "r", ["sweep"]))
    old = {**BASE, "n_samples": 2, "number": 10, "median_s": 1.0, "n_rounds": 0, "incomplete": False,
           "between_round_rel": None, "ci_reason": "", "pct_of_best": None,
           "reason": "visited once: its first visit took 12 s, over 2× the cell's 0.5 s budget"}
    (run / "cells.jsonl").write_text(json.dumps({"round": 1, "process": 0, "record": old,
                                                 "samples": [1.0, 1.0]}) + "\n")
    contents = read_cell_log(run)
    assert contents.torn_lines == 0
    [record] = contents.records
    assert set(record) == set(VISIT_FIELDS)
    assert record["visited_once"] is True
    results, _ = finalize(run, {"spec": {"rounds": 3}})
    assert results["n_rounds"].tolist() == [1]
    assert results["incomplete"].tolist() == [False]
