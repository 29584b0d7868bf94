"""Interruption and resume in-process, with a fake backend: fast and deterministic.

Real signals are sent to this very process from inside a cell (``os.kill(os.getpid(), ...)``), so the handler
installed by the sweep really runs; the subprocess tests in test_interrupt.py do the same from outside.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from devbench import session as session_module
from devbench import sweep as sweep_module
from devbench.errors import UsageError
from devbench.guards import MemoryGuard
from devbench.runner import CellResult
from devbench.schema import IDENTITY
from devbench.session import Signals as _Signals
from devbench.spec import Cell, SweepSpec, TimingPolicy
from devbench.store import CellLog, read_cell_log, write_json
from devbench.sweep import SweepInterrupted, execute, plan_resume, resume
from tests.test_runner import FakeBackend, FakeOutcome

SPEC = SweepSpec(ops=("matmul", "add"), sizes=(16, 32, 64, 128), devices=("CPU:0", "CPU:1"),
                 policy=TimingPolicy(max_cell_time=0.1), rounds=1)
"""One round: these tests are about cells surviving signals and resumes (tests/test_rounds.py: visits)."""
N_CELLS = 16
pytestmark = pytest.mark.usefixtures("ctrl_c_delivered")

ROOMY = MemoryGuard(host_available=lambda: 2**40, device_free=lambda d: None)


class SignalAt(FakeBackend):
    """Sends ``signum`` to this process while measuring the ``at``-th cell (1-based), once."""

    def __init__(self, at: int, signum: int = signal.SIGINT) -> None:
        super().__init__()
        self.at = at
        self.signum = signum

    def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int) -> FakeOutcome:
        if len(self.seen) + 1 == self.at:
            self.seen.append(cell)
            os.kill(os.getpid(), self.signum)
            raise AssertionError("the signal handler should have interrupted the cell")  # pragma: no cover
        return super().run_cell(cell, policy, seed)


def _identity(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in frame[list(IDENTITY)].itertuples(index=False)]


def _warnings() -> tuple[list[str], Any]:
    seen: list[str] = []
    return seen, seen.append


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_abandons_the_cell_and_saves_everything_measured(tmp_path: Path, signum: int,
                                                                  code: int) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    run_dir = tmp_path / "run"
    with pytest.raises(SweepInterrupted) as info:
        execute(SPEC, run_dir, backend=SignalAt(6, signum), guard=ROOMY)
    stopped = info.value
    assert stopped.exit_code == code
    assert f"resume with: devbench sweep --resume {run_dir}" in stopped.message
    assert "5 of 16 cells are saved" in stopped.message
    assert {s: signal.getsignal(s) for s in before} == before  # handlers restored
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "interrupted"
    assert meta["n_cells"] == 5
    results = pd.read_parquet(run_dir / "results.parquet")
    assert len(results) == 5  # the abandoned 6th cell is not recorded
    assert len(pd.read_csv(run_dir / "results.csv")) == 5
    assert len(pd.read_parquet(run_dir / "samples.parquet")) == 5 * 3
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_resume_finishes_with_the_files_of_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = execute(SPEC, tmp_path / "straight", backend=FakeBackend(), guard=ROOMY)
    run_dir = tmp_path / "run"
    with pytest.raises(SweepInterrupted):
        execute(SPEC, run_dir, backend=SignalAt(4), guard=ROOMY, argv=["sweep", "--out", str(run_dir)])
    kept = read_cell_log(run_dir).records
    assert len(kept) == 3
    backend = FakeBackend()
    seen, warn = _warnings()
    run = resume(run_dir, backend=backend, guard=ROOMY, argv=["sweep", "--resume", str(run_dir)], warn=warn)
    assert seen == []  # same machine, clean log: nothing to warn about
    assert len(backend.seen) == N_CELLS - 3  # only what was missing
    assert run.meta["status"] == "complete"
    results = pd.read_parquet(run_dir / "results.parquet")
    assert _identity(results) == _identity(straight.results)  # one row per cell, in the same order
    assert list(results.columns) == list(straight.results.columns)
    assert results.dtypes.equals(straight.results.dtypes)
    assert len(pd.read_parquet(run_dir / "samples.parquet")) == len(straight.samples)
    # nothing measured before the interruption was lost or re-measured
    first = results.head(3)
    assert first["finished_at"].tolist() == [r["finished_at"] for r in kept]
    assert first["median_s"].tolist() == [r["median_s"] for r in kept]
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "complete"
    assert meta["command"] == f"devbench sweep --out {run_dir}"  # the original command is kept
    assert meta["spec"] == json.loads((tmp_path / "straight" / "meta.json").read_text())["spec"]
    [entry] = meta["resumed"]
    assert entry["previous_status"] == "interrupted"
    assert entry["cells_before"] == 3
    assert entry["argv"] == ["sweep", "--resume", str(run_dir)]
    assert entry["machine_changes"] == {}


def test_resume_after_resume_and_of_a_complete_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(SweepInterrupted):
        execute(SPEC, run_dir, backend=SignalAt(2), guard=ROOMY)
    with pytest.raises(SweepInterrupted):
        resume(run_dir, backend=SignalAt(5, signal.SIGTERM), guard=ROOMY)
    assert len(read_cell_log(run_dir).records) == 1 + 4
    resume(run_dir, backend=FakeBackend(), guard=ROOMY)
    backend = FakeBackend()
    run = resume(run_dir, backend=backend, guard=ROOMY)  # nothing left: measures nothing, stays complete
    assert backend.seen == []
    assert run.meta["status"] == "complete"
    assert len(run.results) == N_CELLS
    assert [e["previous_status"] for e in run.meta["resumed"]] == ["interrupted", "interrupted", "complete"]
    assert len(plan_resume(run_dir).cells_left()) == 0


def test_a_crashed_run_with_a_torn_line_resumes_with_a_warning(tmp_path: Path) -> None:
    """What the OOM killer or kill -9 leaves: meta.json still 'running', maybe half a line at the end."""
    run_dir = tmp_path / "run"
    with pytest.raises(SweepInterrupted):
        execute(SPEC, run_dir, backend=SignalAt(5), guard=ROOMY)
    meta = json.loads((run_dir / "meta.json").read_text())
    meta["status"] = "running"
    write_json(run_dir / "meta.json", meta)
    for name in ("results.parquet", "results.csv", "samples.parquet"):
        (run_dir / name).unlink()
    with open(run_dir / "cells.jsonl", "ab") as handle:
        handle.write(b'{"record": {"run_id": "run", "op": "add", "si')
    seen, warn = _warnings()
    run = resume(run_dir, backend=FakeBackend(), guard=ROOMY, warn=warn)
    assert len(seen) == 1
    assert "torn line" in seen[0]
    assert len(run.results) == N_CELLS
    contents = read_cell_log(run_dir)
    assert contents.torn_lines == 0  # the fragment was cut off, every new record on its own line
    assert len(contents.records) == N_CELLS
    assert run.meta["resumed"][0]["previous_status"] == "running"
    assert run.meta["resumed"][0]["torn_bytes_dropped"] == len(b'{"record": {"run_id": "run", "op": "add", "si')


def test_invalid_lines_in_the_log_are_warned_about_and_their_cells_measured(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(SweepInterrupted):
        execute(SPEC, run_dir, backend=SignalAt(3), guard=ROOMY)
    with open(run_dir / "cells.jsonl", "a") as handle:
        handle.write('{"record": {"size": "huge"}, "samples": []}\n')
    seen, warn = _warnings()
    run = resume(run_dir, backend=FakeBackend(), guard=ROOMY, warn=warn)
    assert len(seen) == 1
    assert "1 line(s) that are not valid cell records" in seen[0]
    assert len(run.results) == N_CELLS


def test_a_different_machine_warns_loudly_and_both_are_recorded(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(SweepInterrupted):
        execute(SPEC, run_dir, backend=SignalAt(3), guard=ROOMY)
    meta = json.loads((run_dir / "meta.json").read_text())
    original_host = meta["machine"]["hostname"]
    meta["machine"]["hostname"] = "laptop"
    meta["machine"]["tensorflow"] = {"version": "2.15.0"}
    write_json(run_dir / "meta.json", meta)
    seen, warn = _warnings()
    run = resume(run_dir, backend=FakeBackend(), guard=ROOMY, warn=warn)
    assert len(seen) == 1
    assert "RESUMING ON A DIFFERENT MACHINE" in seen[0]
    assert "hostname 'laptop' -> " in seen[0]
    installed = run.meta["resumed"][0]["machine"]["packages"].get("tensorflow")  # what the fake-backend run sees
    assert f"tensorflow '2.15.0' -> {installed!r}" in seen[0]
    entry = run.meta["resumed"][0]
    assert entry["machine_changes"]["hostname"] == ["laptop", original_host]
    assert entry["machine_changes"]["tensorflow"] == ["2.15.0", installed]
    assert entry["machine"]["hostname"] == original_host  # the new fingerprint, beside the old one
    assert run.meta["machine"]["hostname"] == "laptop"


def test_a_bug_marks_the_run_failed_keeps_its_traceback_and_stays_resumable(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"

    def explode(result: CellResult) -> None:
        if result.record.size == 64:
            raise RuntimeError("bug in a callback")

    with pytest.raises(RuntimeError, match="bug in a callback"):
        execute(SPEC, run_dir, backend=FakeBackend(), guard=ROOMY, on_result=explode)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "failed"
    assert meta["error"] == "RuntimeError: bug in a callback"
    assert meta["n_cells"] == 9  # the cell whose callback failed was appended first
    run = resume(run_dir, backend=FakeBackend(), guard=ROOMY)
    assert run.meta["status"] == "complete"
    assert "error" not in run.meta
    assert len(run.results) == N_CELLS


def test_the_time_guard_skips_predicted_slow_calls_and_learns_across_a_resume(tmp_path: Path) -> None:
    # FakeBackend: per-call time = n µs. From n=32, add (n²) predicts 128 µs at 64 and matmul (n³) 256 µs.
    spec = SweepSpec(ops=("add", "matmul"), sizes=(32, 64, 128), rounds=1)
    run_dir = tmp_path / "run"
    with pytest.raises(SweepInterrupted):  # add32, matmul32 measured; stopped in add64
        execute(spec, run_dir, backend=SignalAt(3), guard=ROOMY, max_call_time=2e-4)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["guards"] == {"max_call_time": 2e-4}
    plan = plan_resume(run_dir)
    assert plan.time_guard.max_call_time == 2e-4
    assert "3 cells predicted over --max-call-time" in plan.describe()  # matmul 64, 128 and add 128, from n=32
    backend = FakeBackend()
    run = resume(run_dir, backend=backend, guard=ROOMY)
    assert [(c.op, c.size) for c in backend.seen] == [("add", 64)]
    rows = run.results.set_index(["op", "size"])
    assert rows.loc[("matmul", 64), "status"] == "skipped"
    assert rows.loc[("matmul", 64), "reason"] == (
        "time guard: predicted 0.00026 s per call, from n=32 (3.2e-05 s) scaled by FLOPs x8, "
        "over --max-call-time 0.0002 s")
    assert rows.loc[("add", 128), "status"] == "skipped"  # learned from add 64, measured after the resume
    assert "from n=64" in rows.loc[("add", 128), "reason"]
    assert rows.loc[("matmul", 128), "status"] == "skipped"


def test_plan_describes_cells_and_a_rough_estimate(tmp_path: Path) -> None:
    plan = sweep_module.plan_new(SPEC, tmp_path / "new")
    text = plan.describe()
    assert text.startswith("plan: 16 cells × 1 round (one round cannot see drift between rounds: intervals will "
                           "be empty), rough estimate 9.6 s (per cell: 0.1 s budget shared by its visits, ~0.5 s "
                           "set-up")
    assert "\n" not in text
    five = sweep_module.plan_new(replace(SPEC, rounds=5), tmp_path / "five").describe()
    assert five.startswith("plan: 16 cells × 5 rounds, rough estimate")


@pytest.mark.parametrize(("setup", "message"), [
    ("missing", "no such run directory"),
    ("file", "is not a directory"),
    ("empty", "is not a devbench run directory (no meta.json)"),
    ("corrupt", "not valid JSON"),
    ("version", "has schema version 0"),
    ("nospec", "holds no valid sweep spec ('spec' is NoneType"),
    ("badop", "holds no valid sweep spec (unknown op 'matmull' (did you mean 'matmul'?)"),
    ("badsize", "holds no valid sweep spec (sizes must be positive"),
    ("badpolicy", "holds no valid sweep spec (--max-cell-time must be positive"),
    ("badguard", "guards.max_call_time -1 is not positive seconds"),
])
def test_resume_refuses_what_it_cannot_resume(tmp_path: Path, setup: str, message: str) -> None:
    run_dir = tmp_path / "run"
    if setup == "file":
        run_dir.write_text("")
    elif setup != "missing":
        run_dir.mkdir()
    if setup not in ("missing", "file", "empty"):
        execute(SPEC, tmp_path / "good", backend=FakeBackend(), guard=ROOMY)
        meta = json.loads((tmp_path / "good" / "meta.json").read_text())
        if setup == "corrupt":
            (run_dir / "meta.json").write_text('{"schema_version": 1, "spec": ')
        else:
            meta = {
                "version": {**meta, "schema_version": 0},
                "nospec": {k: v for k, v in meta.items() if k != "spec"},
                "badop": {**meta, "spec": {**meta["spec"], "ops": ["matmull"]}},
                "badsize": {**meta, "spec": {**meta["spec"], "sizes": [0, 64]}},
                "badpolicy": {**meta, "spec": {**meta["spec"], "policy": {"max_cell_time": -1}}},
                "badguard": {**meta, "guards": {"max_call_time": -1}},
            }[setup]
            write_json(run_dir / "meta.json", meta)
    with pytest.raises(UsageError) as info:
        plan_resume(run_dir)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_run_another_process_is_writing_cannot_be_resumed(tmp_path: Path) -> None:
    from devbench.store import RunLock

    run_dir = tmp_path / "run"
    with pytest.raises(SweepInterrupted):
        execute(SPEC, run_dir, backend=SignalAt(2), guard=ROOMY)
    with RunLock(run_dir), pytest.raises(UsageError, match="being written by another devbench process"):
        plan_resume(run_dir)


# ---------------------------------------------------------------------------------------------------------
# The signal handler itself


def test_a_first_signal_in_a_critical_section_waits_for_its_end(tmp_path: Path) -> None:
    signals = _Signals(enabled=False, run_dir=tmp_path)
    with signals.deferred():
        signals._handle(signal.SIGTERM, None)  # e.g. while a cell is appended: no exception inside
        assert signals.pending
    with pytest.raises(SweepInterrupted) as info:
        signals.check()
    assert info.value.exit_code == 143
    signals.check()  # raised once only


class Exited(BaseException):
    def __init__(self, code: int) -> None:
        self.code = code


def test_a_second_signal_exits_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capfd: pytest.CaptureFixture[str]) -> None:
    def fake_exit(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(os, "_exit", fake_exit)
    signals = _Signals(enabled=False, run_dir=tmp_path / "run")
    with pytest.raises(SweepInterrupted):
        signals._handle(signal.SIGINT, None)
    with signals.deferred(), pytest.raises(Exited) as info:  # even inside a critical section
        signals._handle(signal.SIGINT, None)
    assert info.value.code == 130
    err = capfd.readouterr().err
    assert "second SIGINT: exiting at once" in err
    assert f"devbench sweep --resume {tmp_path / 'run'}" in err


def test_a_signal_while_the_final_files_are_written_still_stops_with_its_code(tmp_path: Path) -> None:
    """A signal during the final write waits for it: the run is whole, and the exit code says what happened."""
    class LastCellSignals(FakeBackend):
        pass

    run_dir = tmp_path / "run"
    real_finalize = session_module.__dict__["finalize"]

    def finalize_with_a_signal(path: Path, meta: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)  # deferred: the write goes on
        return real_finalize(path, meta)

    mp = pytest.MonkeyPatch()
    mp.setattr(session_module, "finalize", finalize_with_a_signal)
    try:
        with pytest.raises(SweepInterrupted) as info:
            execute(SPEC, run_dir, backend=LastCellSignals(), guard=ROOMY)
    finally:
        mp.undo()
    assert info.value.exit_code == 143
    assert "the run was already complete" in info.value.message
    assert json.loads((run_dir / "meta.json").read_text())["status"] == "complete"
    assert len(pd.read_parquet(run_dir / "results.parquet")) == N_CELLS


def test_an_existing_log_line_is_never_rewritten(tmp_path: Path) -> None:
    """Resume only appends: the bytes of every line written before the interruption stay as they were."""
    run_dir = tmp_path / "run"
    with pytest.raises(SweepInterrupted):
        execute(SPEC, run_dir, backend=SignalAt(7), guard=ROOMY)
    before = (run_dir / "cells.jsonl").read_bytes()
    resume(run_dir, backend=FakeBackend(), guard=ROOMY)
    assert (run_dir / "cells.jsonl").read_bytes().startswith(before)
    assert len(CellLog(run_dir).path.read_text().splitlines()) == N_CELLS
