"""One dataset of any runs: ``devbench dataset add`` (idempotent, crash-safe, shards merged into whole runs),
reading it back as runs (``dataset.runs_from_paths``) for ``fleet``, DuckDB over it, and ``merge --fleet`` of
whole runs from different machines.

Runs are written as a sweep writes them (tests/test_merge.py's ``write_run``: cells.jsonl through CellLog,
seeded samples from a cost model), so a run read back from the dataset can be checked against its directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from devbench import merge
from devbench.analysis import crossover_frame
from devbench.cli import main
from devbench.dataset import add_runs, listing, machine_of, runs_from_paths, select_machines
from devbench.errors import UsageError
from devbench.merge import CELLS_FILE, PARTITION_FILES, STAGING, content_digest, visits_frame
from devbench.shard import spec_hash
from devbench.spec import SweepSpec
from devbench.store import load_any, load_run
from tests.test_merge import MACHINE, TINY, model_seconds, write_run, write_shards

SMALL = SweepSpec(ops=("matmul",), sizes=(64, 128, 256), devices=("CPU:0", "CPU:1"), rounds=3)
OTHER_BOX = {**MACHINE, "hostname": "box-b", "cpu": {**MACHINE["cpu"], "model": "Other CPU 1"}}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def three_runs(tmp_path: Path) -> list[Path]:
    """Three whole runs from two machines: two on the first, one (slower) on another."""
    return [write_run(tmp_path / "runs" / "a1", SMALL), write_run(tmp_path / "runs" / "a2", SMALL),
            write_run(tmp_path / "runs" / "b1", SMALL, machine=OTHER_BOX, model=lambda c: 2 * model_seconds(c))]


def test_adding_runs_twice_changes_nothing(tmp_path: Path, three_runs: list[Path]) -> None:
    out = tmp_path / "ds"
    first = add_runs(three_runs, out)
    assert [p.added for p in first] == [True, True, True]
    assert [p.path.relative_to(out).as_posix() for p in first] == [
        "machine=Synthetic-CPU-9000-8-cores-TF-2.99.0/run=a1", "machine=Synthetic-CPU-9000-8-cores-TF-2.99.0/run=a2",
        "machine=Other-CPU-1-8-cores-TF-2.99.0/run=b1"]
    assert sorted(p.name for p in first[0].path.iterdir()) == sorted(PARTITION_FILES)
    before = _tree(out)
    again = add_runs([*three_runs, three_runs[0]], out)
    assert [p.added for p in again] == [False, False, False, False]
    assert _tree(out) == before  # not a byte changed
    # Reading the dataset back and adding it to itself is the same runs (the digest survives Parquet).
    assert not any(p.added for p in add_runs([out], out))
    table = listing(out)
    assert list(table["run"]) == ["b1", "a1", "a2"]  # by machine folder, then run
    assert table["machine"].nunique() == 2
    assert not (out / STAGING).exists()


def test_same_run_id_with_other_content_is_refused(tmp_path: Path, three_runs: list[Path]) -> None:
    out = tmp_path / "ds"
    add_runs(three_runs[:1], out)
    impostor = write_run(tmp_path / "other" / "a1", SMALL, model=lambda c: 3 * model_seconds(c))
    with pytest.raises(UsageError, match=r"run 'a1' .* differs from the run of that id already in"):
        add_runs([impostor], out)
    with pytest.raises(UsageError, match=r"already in the dataset under machine=Synthetic"):
        add_runs(three_runs[:1], out, ["another-name"])


def test_a_partition_reads_back_as_its_run(tmp_path: Path, three_runs: list[Path]) -> None:
    out = tmp_path / "ds"
    add_runs(three_runs, out, ["laptop", "laptop", "server"])
    runs = runs_from_paths([out])
    assert [machine_of(r) for r in runs] == ["laptop", "laptop", "server"]
    by_id = {r.meta["run_id"]: r for r in runs}
    for path in three_runs:
        original = load_run(path)
        back = by_id[path.name]
        pd.testing.assert_frame_equal(back.results, original.results)
        pd.testing.assert_frame_equal(back.samples.reset_index(drop=True), original.samples.reset_index(drop=True),
                                      check_dtype=False)
        assert back.meta["dataset"]["source"] == str(path)
        assert content_digest(back.results, visits_frame(back)) == back.meta["dataset"]["digest"]
        pd.testing.assert_frame_equal(crossover_frame(back.results, back.samples),
                                      crossover_frame(original.results, original.samples))
    # a machine folder, a single partition, a run directory and a bare table are read alike
    assert len(runs_from_paths([out / "machine=laptop"])) == 2
    assert len(runs_from_paths([out / "machine=server" / "run=b1", three_runs[0],
                                three_runs[0] / "results.csv"])) == 3
    assert len(load_any(three_runs[0] / "results.csv").results) == SMALL.n_cells()


def test_machine_filter(tmp_path: Path, three_runs: list[Path]) -> None:
    out = tmp_path / "ds"
    add_runs(three_runs, out, ["laptop", "laptop", "big server"])
    assert [r.meta["run_id"] for r in runs_from_paths([out], ["big-server"])] == ["b1"]
    assert len(select_machines(runs_from_paths([out]), ["laptop", "big server"])) == 3
    with pytest.raises(UsageError, match=r"--machine 'laptpo' matches no run \(did you mean 'laptop'\?\); machines "
                                         r"here: big server, laptop"):
        runs_from_paths([out], ["laptpo"])


def test_shards_are_added_as_one_whole_run(tmp_path: Path) -> None:
    shards = write_shards(tmp_path / "shards", TINY, 3)
    out = tmp_path / "ds"
    (part,) = add_runs(shards, out)
    assert part.added
    assert part.n_cells == TINY.n_cells()
    assert part.path.name.startswith(f"run=merged-{spec_hash(TINY)[:12]}-")
    (run,) = runs_from_paths([out])
    whole = load_run(write_run(tmp_path / "whole", TINY))
    cols = ["op", "size", "dtype", "device", "mode", "median_s"]
    pd.testing.assert_frame_equal(run.results[cols].sort_values(cols[:5]).reset_index(drop=True),
                                  whole.results[cols].sort_values(cols[:5]).reset_index(drop=True))
    assert len(pd.read_parquet(part.path / "visits.parquet")) == TINY.n_cells() * TINY.rounds
    assert [p.added for p in add_runs(shards[::-1], out)] == [False]
    with pytest.raises(UsageError, match="missing shard 1/3"):
        add_runs([shards[0], shards[2]], tmp_path / "ds2")


def test_a_write_cut_short_leaves_no_partition(tmp_path: Path, three_runs: list[Path],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "ds"
    real = pq.write_table
    calls = {"n": 0}

    def failing(table: object, where: object, *args: object, **kw: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the second file of the first partition
            raise OSError(28, "No space left on device")
        real(table, where, *args, **kw)

    monkeypatch.setattr(pq, "write_table", failing)
    with pytest.raises(OSError, match="No space left"):
        add_runs(three_runs, out)
    assert not list(out.glob(f"*/*/{CELLS_FILE}"))
    assert not list(out.glob("machine=*/run=*"))
    monkeypatch.setattr(pq, "write_table", real)
    assert [p.added for p in add_runs(three_runs, out)] == [True, True, True]


def test_duckdb_groups_the_dataset_by_machine(tmp_path: Path, three_runs: list[Path]) -> None:
    duckdb = pytest.importorskip("duckdb")
    out = tmp_path / "ds"
    add_runs(three_runs, out, ["laptop", "laptop", "server"])
    add_runs(three_runs, out, ["laptop", "laptop", "server"])
    glob = (out / "*" / "*" / "cells.parquet").as_posix()
    rows = duckdb.sql(f"SELECT machine, count(DISTINCT run) AS runs, count(*) AS cells FROM "
                      f"read_parquet('{glob}', hive_partitioning = true) GROUP BY machine ORDER BY machine"
                      ).fetchall()
    assert rows == [("laptop", 2, 2 * SMALL.n_cells()), ("server", 1, SMALL.n_cells())]
    visits = (out / "*" / "*" / "visits.parquet").as_posix()
    (per_round,) = duckdb.sql(f"SELECT count(DISTINCT round) FROM read_parquet('{visits}', "
                              "hive_partitioning = true) WHERE machine = 'server'").fetchall()
    assert per_round == (SMALL.rounds,)
    (started,) = duckdb.sql(f"SELECT count(*) FROM read_json_auto('{(out / '*' / '*' / 'meta.json').as_posix()}') "
                            "WHERE started_at IS NOT NULL").fetchall()
    assert started == (3,)


def test_cli_add_list_and_fleet_over_the_dataset(tmp_path: Path, three_runs: list[Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    assert main(["dataset", "add", *map(str, three_runs[:2]), "--to", str(out), "--label", "laptop"]) == 0
    assert main(["dataset", "add", *map(str, three_runs), "--to", str(out), "--label", "laptop", "--label",
                 "laptop", "--label", "server"]) == 0
    text = capsys.readouterr().out
    assert "machine=laptop/run=a1: 6 cells, unchanged (already in the dataset)" in text
    assert "dataset " + str(out) + ": 1 run added, 2 unchanged" in text
    assert main(["dataset", "list", str(out)]) == 0
    assert capsys.readouterr().out.count("laptop") == 2
    assert main(["fleet", str(out), "--machine", "laptop", "--machine", "server", "--format", "json",
                 "--chart", str(tmp_path / "fleet.png")]) == 0
    fleet = json.loads(capsys.readouterr().out)
    assert fleet["machines"] == ["laptop", "laptop #2", "server"]
    assert (tmp_path / "fleet.png").is_file()


@pytest.mark.parametrize(("argv", "message"), [
    (["dataset"], "dataset needs a command; allowed: add"),
    (["dataset", "list", "."], "is not a dataset"),
    (["dataset", "add", "RUN0", "RUN1", "--to", "DS", "--label", "a", "--label", "b", "--label", "c"],
     "3 --label for 2 runs"),
    (["fleet", "DS", "--machine", "nope"], "--machine 'nope' matches no run"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, three_runs: list[Path], argv: list[str], message: str,
                                          *, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    add_runs(three_runs, tmp_path / "DS")
    monkeypatch.chdir(tmp_path)
    names = {"RUN0": str(three_runs[0]), "RUN1": str(three_runs[1])}
    assert main([names.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_merge_fleet_of_whole_runs_writes_the_dataset(tmp_path: Path, three_runs: list[Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    a, b = three_runs[0], three_runs[2]  # whole runs, two machines
    with pytest.raises(UsageError, match=r"shard 0/1 given 2 times .*dataset add"):
        merge.merge_runs([load_run(a), load_run(b)])
    assert main(["merge", "--fleet", str(a), str(b), "--out", str(tmp_path / "fleet")]) == 0
    assert "a fleet, not the shards of one sweep" in capsys.readouterr().out
    runs = runs_from_paths([tmp_path / "fleet" / "dataset"])
    assert sorted(r.meta["run_id"] for r in runs) == ["a1", "b1"]
    assert len({machine_of(r) for r in runs}) == 2
    # shards of one sweep with --fleet still merge into one run, and the dataset holds each shard
    shards = write_shards(tmp_path / "shards", TINY, 2)
    assert main(["merge", "--fleet", *map(str, shards), "--out", str(tmp_path / "merged")]) == 0
    assert load_run(tmp_path / "merged").meta["status"] == "complete"
    assert len(runs_from_paths([tmp_path / "merged" / "dataset"])) == 2


def test_a_partition_published_meanwhile_by_another_writer(tmp_path: Path, three_runs: list[Path],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ``dataset add`` of one run at once: the second rename finds the partition there; the same run is
    'unchanged', other content under that id is refused, and no staging folder is left behind."""
    import os
    import shutil

    out = tmp_path / "ds"
    real = os.rename

    def other_writer_first(src: str | Path, dst: str | Path) -> None:
        shutil.copytree(src, dst)  # the other writer's identical partition lands first
        real(src, dst)

    monkeypatch.setattr(os, "rename", other_writer_first)
    (part,) = add_runs(three_runs[:1], out)
    assert not part.added
    assert (part.path / CELLS_FILE).is_file()
    assert not (out / STAGING).exists()


@pytest.mark.slow
def test_the_scale_bench_runs(tmp_path: Path) -> None:
    """bench/dataset_scale.py at a tiny size, as a user types it (a subprocess), so it does not rot."""
    import os
    import subprocess
    import sys

    import devbench

    root = Path(__file__).resolve().parent.parent
    src = str(Path(devbench.__file__).resolve().parent.parent)
    proc = subprocess.run([sys.executable, str(root / "bench" / "dataset_scale.py"), "--runs", "6", "--machines", "2",
                           "--sizes", "2", "--out", str(tmp_path / "ds")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": src}, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "-> 6 runs, fleet table" in proc.stdout
    assert len(runs_from_paths([tmp_path / "ds"])) == 6
