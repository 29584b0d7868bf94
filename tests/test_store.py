"""Run directories: the append-only log, final tables, meta.json, and refusing what is not a valid run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from devbench.errors import UsageError
from devbench.schema import RESULT_COLUMNS, SAMPLE_COLUMNS, SCHEMA_VERSION, Record
from devbench.store import (
    CellLog,
    check_new_run_dir,
    default_run_dir,
    finalize,
    load_run,
    new_meta,
    read_cell_log,
    write_json,
)


def _record(size: int, status: str = "ok", median: float = 1e-3) -> Record:
    return Record(run_id="r", op="matmul", size=size, dtype="float32", device="CPU:0", mode="eager",
                  sync="scalar", status=status, median_s=median, n_samples=3, number=10)


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    write_json(run / "meta.json", new_meta({"ops": ["matmul"]}, {}, "r", ["sweep"]))
    return run


def test_log_to_tables_round_trip(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    log = CellLog(run)
    log.append(_record(64), [1e-3, 1.1e-3, 0.9e-3])
    log.append(_record(128, status="unsupported"), [])
    results, samples = finalize(run)
    assert list(results.columns) == list(RESULT_COLUMNS)
    assert list(samples.columns) == list(SAMPLE_COLUMNS)
    assert results["size"].tolist() == [64, 128]
    assert results["status"].tolist() == ["ok", "unsupported"]
    assert samples["per_call_s"].tolist() == [1e-3, 1.1e-3, 0.9e-3]
    assert samples["sample"].tolist() == [0, 1, 2]
    for name in ("results.parquet", "results.csv", "samples.parquet"):
        assert (run / name).exists()
    assert pd.read_parquet(run / "results.parquet")["size"].dtype == "int64"
    loaded = load_run(run)
    pd.testing.assert_frame_equal(loaded.results, results)
    assert loaded.meta["schema_version"] == SCHEMA_VERSION


def test_torn_last_line_is_ignored_and_counted(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    CellLog(run).append(_record(64), [1e-3])
    with open(run / "cells.jsonl", "a") as handle:
        handle.write('{"record": {"run_id": "r", "op": "matm')  # killed mid-write
    contents = read_cell_log(run)
    assert len(contents.records) == 1
    assert contents.torn_lines == 1
    assert load_run(run).torn_lines == 1


def test_a_remeasured_cell_keeps_only_its_last_row_and_samples(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    log = CellLog(run)
    log.append(_record(64, median=5.0), [5.0])
    log.append(_record(64, median=1.0), [1.0, 1.0])
    results, samples = finalize(run)
    assert results["median_s"].tolist() == [1.0]
    assert samples["per_call_s"].tolist() == [1.0, 1.0]


def test_final_files_leave_no_temporaries(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    CellLog(run).append(_record(64), [1e-3])
    finalize(run)
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "does not exist"),
        ("file", "not a directory"),
        ("empty", "no meta.json"),
        ("corrupt", "not valid JSON"),
        ("version", "schema version 99"),
        ("nocells", "holds no measured cells"),
        ("badparquet", "cannot read"),
    ],
)
def test_load_run_rejects_what_is_not_a_run(tmp_path: Path, setup: str, message: str) -> None:
    run = tmp_path / "run"
    if setup == "file":
        run.write_text("x")
    elif setup != "missing":
        run.mkdir()
    if setup == "corrupt":
        (run / "meta.json").write_text("{not json")
    if setup in ("version", "nocells", "badparquet"):
        meta = new_meta({}, {}, "r", [])
        if setup == "version":
            meta["schema_version"] = 99
        write_json(run / "meta.json", meta)
    if setup == "badparquet":
        (run / "results.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(UsageError, match=message) as info:
        load_run(run)
    assert "\n" not in str(info.value)


def test_new_run_dir_checks(tmp_path: Path) -> None:
    check_new_run_dir(tmp_path / "a" / "b")  # creatable: fine, and nothing is created
    assert not (tmp_path / "a").exists()
    (tmp_path / "f").write_text("")
    with pytest.raises(UsageError, match="is a file"):
        check_new_run_dir(tmp_path / "f")
    with pytest.raises(UsageError, match="below the file"):
        check_new_run_dir(tmp_path / "f" / "sub")
    run = _run_dir(tmp_path)
    with pytest.raises(UsageError, match="already holds a run"):
        check_new_run_dir(run)


def test_default_run_dir_is_unique(tmp_path: Path) -> None:
    first = default_run_dir(tmp_path)
    first.mkdir()
    second = default_run_dir(tmp_path)
    assert first != second
    assert second.name.startswith(first.name)


def test_meta_json_is_plain_json(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["command"] == "devbench sweep"
    assert meta["status"] == "running"
