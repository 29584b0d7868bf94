"""Rounds in fresh worker processes (``devbench sweep --processes P``, devbench.workers).

Real small sweeps on the numpy baseline (a worker then imports no framework): the sweep's own process is the
test's (it imports TensorFlow once, for the machine fingerprint), each worker a fresh interpreter. The tests
assert structure, never timings: which process made which visit, the same table as in one process, an
interruption and a crashed worker that keep what was reported and resume, bad values refused in one line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devbench.errors import UsageError
from devbench.plan import check_processes
from devbench.runner import CellResult, run_visits
from devbench.spec import NUMPY_DEVICE, Cell, SweepSpec, TimingPolicy, interleaved_visits
from devbench.store import read_cell_log, read_meta
from devbench.sweep import SweepInterrupted, WorkerCrashed, execute, plan_resume, resume
from devbench.workers import TEST_EXIT_ENV, rounds_text, split_rounds
from tests.cli_helpers import SRC, run_cli
from tests.test_runner import FakeBackend, FakeOutcome

FAST = TimingPolicy(max_cell_time=0.05, min_samples=3, max_samples=5, warmup_time=0.0)
SPEC = SweepSpec(ops=("add",), sizes=(64, 128), devices=(NUMPY_DEVICE,), rounds=2, policy=FAST)
"""The brief's sweep: --devices numpy:CPU --ops add --sizes 64,128 --rounds 2."""


def _lines(run_dir: Path) -> list[tuple[int, int, int, str]]:
    """(process, round, size, status) of every cells.jsonl line, in log order."""
    log = read_cell_log(run_dir)
    return [(p, r, rec["size"], rec["status"])
            for p, r, rec in zip(log.processes, log.rounds, log.records, strict=True)]


# ---------------------------------------------------------------------------------------------------------
# The split and its checks (no process started)


@pytest.mark.parametrize(("rounds", "processes", "groups"), [
    (5, 1, [(1, 5)]),
    (5, 5, [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]),
    (5, 2, [(1, 3), (4, 5)]),
    (7, 3, [(1, 3), (4, 5), (6, 7)]),
    (2, 2, [(1, 1), (2, 2)]),
])
def test_rounds_are_split_into_contiguous_groups_as_even_as_possible(
        rounds: int, processes: int, groups: list[tuple[int, int]]) -> None:
    assert split_rounds(rounds, processes) == groups


@pytest.mark.parametrize(("processes", "rounds", "message"), [
    (0, 5, "--processes 0 must be a whole number >= 1"),
    (6, 5, "--processes 6 is more than --rounds 5: each worker process measures whole rounds; give 1 to 5"),
])
def test_impossible_process_counts_are_usage_errors(processes: int, rounds: int, message: str) -> None:
    with pytest.raises(UsageError, match="^" + message + "$"):
        check_processes(processes, rounds)


def test_rounds_are_named_as_ranges() -> None:
    assert rounds_text([4]) == "round 4"
    assert rounds_text([5, 1, 2, 3, 2]) == "rounds 1-3, 5"


def test_a_workers_lines_are_checked_as_the_log_checks_them() -> None:
    from devbench.workers import _message

    record = {"run_id": "r", "op": "add", "size": 64, "dtype": "float32", "device": NUMPY_DEVICE,
              "mode": "eager", "sync": "scalar", "status": "ok", "median_s": float("nan")}
    kind, result = _message(json.dumps({"visit": {"round": 2, "record": record, "samples": [1e-6]}}).encode(), 3)
    assert kind == "visit"
    assert (result.process, result.round, result.record.size, result.samples) == (3, 2, 64, [1e-6])
    assert _message(b'{"start": {"size": 64, "op": "add", "dtype": "float32", "device": "numpy:CPU"}}\n', 1) == (
        "start", Cell(64, "add", "float32", NUMPY_DEVICE))
    for bad, why in [(b"hello\n", "not JSON"), (b'{"shout": 1}', "unknown message 'shout'"),
                     (b'{"start": {"size": 64}}', "not a cell"),
                     (json.dumps({"visit": {"round": 0, "record": record, "samples": []}}).encode(), "round"),
                     (json.dumps({"visit": {"round": 1, "record": record, "samples": [-1.0]}}).encode(), "samples"),
                     (json.dumps({"visit": {"round": 1, "record": {**record, "status": "fine"}, "samples": []}}
                                 ).encode(), "status 'fine'")]:
        with pytest.raises(ValueError, match=why):
            _message(bad, 1)


class PolicyRecorder(FakeBackend):
    def __init__(self) -> None:
        super().__init__()
        self.first_call_warms: list[bool] = []

    def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int) -> FakeOutcome:
        self.first_call_warms.append(policy.first_call_warms)
        return super().run_cell(cell, policy, seed)


def test_a_cells_first_visit_in_a_new_process_times_its_cold_call_apart() -> None:
    """In a worker, rounds 2-3 of a cell: the first visit there pays the cold costs again, so its first call is
    not taken for a warm-up call; the cell's cold_s stays its first round's (NaN here)."""
    cell = Cell(64, "add", "float32", NUMPY_DEVICE)
    later = [v for v in interleaved_visits([cell], 3) if v.round > 1]
    backend = PolicyRecorder()
    results = run_visits(later, backend, "run", FAST, 0, new_process=True)
    assert backend.first_call_warms == [False, True]
    assert all(r.record.cold_s != r.record.cold_s for r in results)  # NaN: not the cell's cold call
    in_process = PolicyRecorder()
    run_visits(later, in_process, "run", FAST, 0)
    assert in_process.first_call_warms == [True, True]


# ---------------------------------------------------------------------------------------------------------
# Real sweeps in worker processes


@pytest.mark.slow
def test_each_round_group_runs_in_its_own_process_and_the_table_is_the_in_process_one(tmp_path: Path) -> None:
    started: list[Cell] = []
    finished: list[CellResult] = []
    run = execute(SPEC, tmp_path / "workers", calibrate=False, processes=2, on_start=started.append,
                  on_result=finished.append)
    assert _lines(tmp_path / "workers") == [(1, 1, 64, "ok"), (1, 1, 128, "ok"), (2, 2, 64, "ok"), (2, 2, 128, "ok")]
    assert [c.size for c in started] == [64, 128, 64, 128]  # the progress bar hears of every visit
    assert [(r.process, r.round) for r in finished] == [(1, 1), (1, 1), (2, 2), (2, 2)]
    meta = read_meta(tmp_path / "workers")
    assert meta["processes"] == 2
    assert meta["status"] == "complete"
    assert [(w["process"], w["rounds"], w["exit_code"]) for w in meta["workers"]] == [(1, [1, 1], 0), (2, [2, 2], 0)]
    assert all(NUMPY_DEVICE in w["init"]["devices"] for w in meta["workers"])

    alone = execute(SPEC, tmp_path / "alone", calibrate=False)
    assert {p for p, *_ in _lines(tmp_path / "alone")} == {0}
    assert read_meta(tmp_path / "alone")["processes"] == 1
    assert list(run.results.columns) == list(alone.results.columns)
    keys = ["op", "size", "dtype", "device", "mode", "sync", "status", "n_rounds", "incomplete"]
    assert run.results[keys].to_dict("records") == alone.results[keys].to_dict("records")
    assert run.results["cold_s"].notna().all()  # the first visit's, made in the first worker
    assert len(run.samples) > 0
    assert set(run.samples["round"]) == {1, 2}


@pytest.mark.slow
def test_a_cell_that_fails_in_one_worker_is_not_visited_by_the_next(tmp_path: Path) -> None:
    """Failure statuses settle a cell across processes as within one: the int32 gradient is unsupported in
    round 1 and worker 2 does not visit it."""
    spec = SweepSpec(ops=("softmax_xent_grad",), sizes=(16,), dtypes=("float32", "int32"),
                     devices=(NUMPY_DEVICE,), rounds=2, policy=FAST)
    run = execute(spec, tmp_path / "run", calibrate=False, processes=2)
    log = read_cell_log(tmp_path / "run")
    seen = [(p, r, rec["dtype"], rec["status"]) for p, r, rec in zip(log.processes, log.rounds, log.records,
                                                                      strict=True)]
    assert seen == [(1, 1, "float32", "ok"), (1, 1, "int32", "unsupported"), (2, 2, "float32", "ok")]
    assert dict(zip(run.results["dtype"], run.results["status"], strict=True)) == {"float32": "ok",
                                                                                   "int32": "unsupported"}


@pytest.mark.slow
@pytest.mark.usefixtures("ctrl_c_delivered")
def test_an_interrupt_stops_the_worker_keeps_its_visits_and_resume_starts_a_new_one(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"

    def ctrl_c_after_the_first_visit_of_worker_2(result: CellResult) -> None:
        if result.process == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(SweepInterrupted) as stopped:
        execute(SPEC, run_dir, calibrate=False, processes=2, on_result=ctrl_c_after_the_first_visit_of_worker_2)
    assert stopped.value.exit_code == 130
    assert _lines(run_dir) == [(1, 1, 64, "ok"), (1, 1, 128, "ok"), (2, 2, 64, "ok")]
    meta = read_meta(run_dir)
    assert meta["status"] == "interrupted"
    assert meta["workers"][-1]["exit_code"] == -signal.SIGTERM  # the parent ended it
    assert plan_resume(run_dir).processes == 2

    run = resume(run_dir)
    assert _lines(run_dir)[3:] == [(3, 2, 128, "ok")]  # the unfinished group, in a new process
    assert read_meta(run_dir)["status"] == "complete"
    assert set(run.results["n_rounds"]) == {2}
    assert not run.results["incomplete"].any()


@pytest.mark.slow
@pytest.mark.parametrize(("how", "said"), [("exit", "exited with code 3"), ("kill", "was killed by SIGKILL")])
def test_a_crashed_worker_keeps_its_visits_says_what_is_lost_and_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], how: str,
        said: str) -> None:
    run_dir = tmp_path / "run"
    spec = SweepSpec(ops=("add",), sizes=(64, 128), devices=(NUMPY_DEVICE,), rounds=3, policy=FAST)
    monkeypatch.setenv(TEST_EXIT_ENV, f"2,1,{how}")
    with pytest.raises(WorkerCrashed) as crashed:
        execute(spec, run_dir, calibrate=False, processes=3)
    assert _lines(run_dir) == [(1, 1, 64, "ok"), (1, 1, 128, "ok"), (2, 2, 64, "ok")]
    message = crashed.value.message
    assert message == (f"devbench: worker 2 (2 of 3: round 2) {said} after 1 visit; rounds 2-3 not finished "
                       f"(3 visits left); every visit reported before is saved in {run_dir}\n"
                       f"devbench: resume with: devbench sweep --resume {run_dir}")
    assert crashed.value.run is not None
    assert crashed.value.run.meta["status"] == "failed"
    meta = read_meta(run_dir)
    assert meta["error"].startswith("WorkerCrashed: worker 2 (2 of 3: round 2)")
    if how == "exit":  # what a worker writes on stderr reaches the user's
        assert f"leaving as {TEST_EXIT_ENV} asks" in capfd.readouterr().err

    monkeypatch.delenv(TEST_EXIT_ENV)
    resume(run_dir)
    assert _lines(run_dir)[3:] == [(3, 2, 128, "ok"), (4, 3, 64, "ok"), (4, 3, 128, "ok")]
    assert read_meta(run_dir)["status"] == "complete"


def test_a_worker_whose_parent_is_gone_leaves_at_once(tmp_path: Path) -> None:
    """An orphan must not measure beside whatever runs next (a resume): it leaves before reading anything."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "devbench.workers", str(tmp_path / "nothing"), "--rounds", "1-1",
                           "--process", "1", "--parent", "1"], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", "")


# ---------------------------------------------------------------------------------------------------------
# The command line


@pytest.mark.slow
def test_the_command_line_reports_a_crashed_worker_without_a_traceback(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli("sweep", "--devices", "numpy:CPU", "--ops", "add", "--sizes", "64,128", "--rounds", "2",
                   "--processes", "2", "--no-calibrate", "--max-cell-time", "0.05", "--quiet", "--out", str(run_dir),
                   env={TEST_EXIT_ENV: "2,1"})
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"devbench: resume with: devbench sweep --resume {run_dir}" in proc.stderr
    assert json.loads((run_dir / "meta.json").read_text())["status"] == "failed"
    resume(run_dir)  # (in this process: a second command line would pay TensorFlow's import again)
    assert [p for p, *_ in _lines(run_dir)] == [1, 1, 2, 3]


@pytest.mark.parametrize(("args", "message"), [
    (["--processes", "0"], "devbench: error: --processes '0' must be at least 1"),
    (["--processes", "two"], "devbench: error: --processes 'two' is not a whole number; give an integer >= 1"),
    (["--processes", "3", "--rounds", "2"],
     "devbench: error: --processes 3 is more than --rounds 2: each worker process measures whole rounds; "
     "give 1 to 2"),
])
def test_bad_process_counts_exit_2_with_one_line(args: list[str], message: str) -> None:
    proc = run_cli("sweep", "--devices", "numpy:CPU", "--ops", "add", "--sizes", "64", *args)
    assert proc.returncode == 2
    assert proc.stderr.strip() == message


def test_a_resume_keeps_the_runs_own_process_count(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    meta: dict[str, Any] = {"schema_version": 2, "status": "interrupted", "spec": SPEC.to_dict(), "processes": 2}
    (run_dir / "meta.json").write_text(json.dumps(meta))
    assert plan_resume(run_dir).processes == 2
    proc = run_cli("sweep", "--resume", str(run_dir), "--processes", "2")
    assert proc.returncode == 2
    assert proc.stderr.startswith("devbench: error: --processes cannot be combined with --resume")
    (run_dir / "meta.json").write_text(json.dumps({**meta, "processes": 3}))
    with pytest.raises(UsageError, match="processes 3 is not a whole number from 1 to the run's 2 rounds"):
        plan_resume(run_dir)
