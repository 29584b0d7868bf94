"""Run directories: the append-only log, final tables, meta.json, and refusing what is not a valid run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from devbench.errors import UsageError
from devbench.schema import RESULT_COLUMNS, SAMPLE_COLUMNS, SCHEMA_VERSION, VisitRecord
from devbench.store import (
    CellLog,
    RunLock,
    check_new_run_dir,
    check_not_locked,
    default_run_dir,
    finalize,
    load_run,
    new_meta,
    read_cell_log,
    repair_torn_tail,
    write_json,
)


def _record(size: int, status: str = "ok", median: float = 1e-3) -> VisitRecord:
    return VisitRecord(run_id="r", op="matmul", size=size, dtype="float32", device="CPU:0", mode="eager",
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
    assert list(results.columns) == [*RESULT_COLUMNS, "shape"]  # square ops: an empty shape, no dim_ columns
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


# ---------------------------------------------------------------------------------------------------------
# Crash safety and untrusted files


def test_an_append_after_a_torn_line_starts_on_a_new_line(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    log = CellLog(run)
    log.append(_record(64), [1e-3])
    with open(run / "cells.jsonl", "a") as handle:
        handle.write('{"record": {"run_id": "r", "op": "matm')  # kill -9 mid-write
    log.append(_record(128), [2e-3])
    lines = (run / "cells.jsonl").read_text().splitlines()
    assert len(lines) == 3
    assert lines[1].endswith('"op": "matm')  # the fragment stays on its own line
    contents = read_cell_log(run)
    assert [r["size"] for r in contents.records] == [64, 128]
    assert contents.torn_lines == 1
    assert contents.torn_tail == 0
    assert contents.problems[0].startswith("line 2:")


def test_repair_cuts_only_the_torn_tail(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    CellLog(run).append(_record(64), [1e-3])
    whole = (run / "cells.jsonl").read_bytes()
    with open(run / "cells.jsonl", "ab") as handle:
        handle.write(b'{"record": {"run_id": "r", "si')
    contents = read_cell_log(run)
    assert contents.torn_tail > 0
    assert "torn last line" in contents.problems[0]
    assert repair_torn_tail(run) == b'{"record": {"run_id": "r", "si'
    assert (run / "cells.jsonl").read_bytes() == whole
    assert repair_torn_tail(run) == b""  # clean now
    # A whole record that lost only its newline is kept, and the newline added.
    CellLog(run).append(_record(128), [1e-3])
    data = (run / "cells.jsonl").read_bytes()
    (run / "cells.jsonl").write_bytes(data[:-1])
    assert len(read_cell_log(run).records) == 2
    assert repair_torn_tail(run) == b""
    assert (run / "cells.jsonl").read_bytes() == data


BAD_RECORDS = [
    ({"size": "64"}, "size must be a whole number"),
    ({"size": 0}, "size must be a positive"),
    ({"size": 64.5}, "size must be a whole number"),
    ({"status": "great"}, "status 'great' is not one of"),
    ({"median_s": "fast"}, "median_s must be a number"),
    ({"median_s": True}, "median_s must be a number"),
    ({"noisy": "yes"}, "noisy must be true or false"),
    ({"op": 3}, "op must be text"),
    ({"op": ""}, "op is empty"),
]


@pytest.mark.parametrize(("change", "message"), BAD_RECORDS, ids=[m for _, m in BAD_RECORDS])
def test_records_of_the_wrong_type_are_counted_and_ignored(tmp_path: Path, change: dict[str, object],
                                                           message: str) -> None:
    run = _run_dir(tmp_path)
    CellLog(run).append(_record(64), [1e-3])
    bad = {**_record(128).as_dict(), **change}
    with open(run / "cells.jsonl", "a") as handle:
        handle.write(json.dumps({"record": bad, "samples": [1e-3]}) + "\n")
    contents = read_cell_log(run)
    assert [r["size"] for r in contents.records] == [64]
    assert contents.torn_lines == 1
    assert message in contents.problems[0]


@pytest.mark.parametrize("line", [
    '[1, 2, 3]', '{"record": [], "samples": []}', '{"record": {}, "samples": []}', '"text"',
    '{"record": {"run_id": "r"}}', '{"samples": ["x"], "record": null}', '\x00\x01garbage',
])
def test_lines_that_are_not_records_are_ignored(tmp_path: Path, line: str) -> None:
    run = _run_dir(tmp_path)
    CellLog(run).append(_record(64), [1e-3])
    with open(run / "cells.jsonl", "a") as handle:
        handle.write(line + "\n")
    CellLog(run).append(_record(128), [2e-3])
    contents = read_cell_log(run)
    assert [r["size"] for r in contents.records] == [64, 128]
    assert contents.torn_lines == 1


def test_bad_samples_make_the_line_invalid(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    with open(run / "cells.jsonl", "a") as handle:
        handle.write(json.dumps({"record": _record(64).as_dict(), "samples": [1e-3, "x"]}) + "\n")
        handle.write(json.dumps({"record": _record(64).as_dict(), "samples": [-1.0]}) + "\n")
    contents = read_cell_log(run)
    assert contents.records == []
    assert contents.torn_lines == 2


def _tables_only_run(tmp_path: Path, **changes: object) -> Path:
    """A run directory holding final tables but no cells.jsonl (e.g. copied without it)."""
    run = _run_dir(tmp_path)
    CellLog(run).append(_record(64), [1e-3])
    results, _ = finalize(run)
    (run / "cells.jsonl").unlink()
    frame = results.astype(object)
    for column, value in changes.items():
        frame[column] = value
    frame.to_parquet(run / "results.parquet", index=False)
    return run


def test_final_tables_are_read_when_the_log_is_gone(tmp_path: Path) -> None:
    run = _tables_only_run(tmp_path)
    loaded = load_run(run)
    assert loaded.results["size"].tolist() == [64]
    assert loaded.results["median_s"].dtype == "float64"


@pytest.mark.parametrize(("column", "value", "message"), [
    ("median_s", "fast", "column median_s must be numeric, found 'fast'"),
    ("size", "big", "column size must be numeric"),
    ("size", 1.5, "column size must hold whole numbers >= 1"),
    ("size", -4, "column size must hold whole numbers >= 1"),
    ("status", "great", "column status holds 'great'"),
    ("noisy", "maybe", "column noisy must hold true/false"),
])
def test_results_parquet_with_wrong_types_is_refused(tmp_path: Path, column: str, value: object,
                                                     message: str) -> None:
    run = _tables_only_run(tmp_path, **{column: value})
    with pytest.raises(UsageError, match=message) as info:
        load_run(run)
    assert "\n" not in str(info.value)


def test_a_results_parquet_without_a_column_is_refused(tmp_path: Path) -> None:
    run = _tables_only_run(tmp_path)
    pd.read_parquet(run / "results.parquet").drop(columns=["median_s"]).to_parquet(run / "results.parquet")
    with pytest.raises(UsageError, match="lacks the columns median_s"):
        load_run(run)


def test_a_run_being_written_is_locked(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    with RunLock(run):
        with pytest.raises(UsageError, match="being written by another devbench process"):
            RunLock(run).acquire()
        with pytest.raises(UsageError, match="being written by another devbench process"):
            check_not_locked(run)
    check_not_locked(run)  # released
    RunLock(run).acquire().release()


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc")
def test_an_out_that_cannot_be_written_is_refused_even_for_root() -> None:
    with pytest.raises(UsageError, match="is not writable"):
        check_new_run_dir(Path("/proc/devbench-run"))


def test_no_pickle_anywhere() -> None:
    """Result files are data: nothing in devbench may unpickle (pickle, pandas read_pickle, numpy
    allow_pickle, joblib), since a run directory can come from anywhere."""
    src = Path(__file__).resolve().parent.parent / "src" / "devbench"
    forbidden = ("import pickle", "from pickle", "read_pickle", "allow_pickle=True", "joblib", "cloudpickle",
                 "dill", "shelve", "marshal.load")
    hits = [f"{path.name}: {word}" for path in src.glob("*.py") for word in forbidden
            if word in path.read_text(encoding="utf-8")]
    assert not hits


@pytest.mark.parametrize(("changes", "message"), [
    ({"machine": "a laptop"}, "field 'machine' is text"),
    ({"spec": [1, 2]}, "field 'spec' is a list"),
    ({"argv": "sweep"}, "field 'argv' is text"),
    ({"n_cells": True}, "field 'n_cells' is true/false"),
    ({"machine": {"cpu": "fast"}}, "field 'machine.cpu' is text, not an object"),
    ({"machine": {"devices": ["CPU:0"]}}, "field 'machine.devices' is not a list of objects"),
    ({"resumed": ["yesterday"]}, "field 'resumed' is not a list of objects"),
])
def test_meta_json_of_the_wrong_shape_is_refused(tmp_path: Path, changes: dict[str, object], message: str) -> None:
    run = _run_dir(tmp_path)
    CellLog(run).append(_record(64), [1e-3])
    write_json(run / "meta.json", {**new_meta({}, {}, "r", []), **changes})
    with pytest.raises(UsageError, match=re.escape(message)):
        load_run(run)
