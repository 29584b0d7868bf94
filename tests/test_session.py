"""The one run writer (devbench.session.RunSession) as sweep, resume and refine use it.

Each test here failed before the session existed: refine sent numpy:CPU cells to TensorFlow, took no lock and
left pct_of_peak empty; two resumes planned from an unlocked read of the log could both measure the same
cells; numpy:CPU cells were measured once per mode and sync.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from devbench.errors import UsageError
from devbench.guards import MemoryGuard
from devbench.refine import refine_run
from devbench.session import RunSession
from devbench.spec import NUMPY_DEVICE, Cell, SweepSpec, TimingPolicy
from devbench.store import RunLock, read_cell_log
from devbench.sweep import execute, plan_resume, run_plan
from devbench.timer import Measurement
from tests.test_runner import FakeBackend, FakeOutcome

ROOMY = MemoryGuard(host_available=lambda: 2**40, device_free=lambda d: None)
FAST = TimingPolicy(max_cell_time=0.05, min_samples=3, max_samples=5, warmup_time=0.0)
CALIBRATION = {"devices": {"CPU:0": {"peak_flops": {"float32": 1e11}, "bandwidth": 1e10},
                           NUMPY_DEVICE: {"peak_flops": {"float32": 1e11}, "bandwidth": 1e10}}}


class CrossingBackend(FakeBackend):
    """numpy:CPU is faster below n=32, CPU:0 above: one crossover between the sizes swept (16, 64)."""

    def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int) -> FakeOutcome:
        self.seen.append(cell)
        per_call = (1e-7 * cell.size**2) if cell.device == NUMPY_DEVICE else (3.2e-6 * cell.size)
        m: Measurement[Any] = Measurement(cold_s=per_call, samples=[per_call] * 3, number=1, warmup_calls=2,
                                          sync_overhead_s=0.0, stop_reason="converged")
        return FakeOutcome(m, cell.device, flops=2.0 * cell.size**3, bytes=12.0 * cell.size**2)


def _crossing_run(tmp_path: Path, calibration: Any = None) -> Path:
    spec = SweepSpec(ops=("matmul",), sizes=(16, 64), devices=("CPU:0", NUMPY_DEVICE), policy=FAST)
    run_dir = tmp_path / "run"
    execute(spec, run_dir, backend=CrossingBackend(), guard=ROOMY, calibrate=lambda s: calibration)
    return run_dir


def test_refine_of_a_numpy_baseline_run_measures_numpy_cells_with_numpy(tmp_path: Path) -> None:
    """Was: ``refine`` on a ``--baseline numpy`` run wrote ``error`` rows ("invalid literal for int() with base
    10: 'CPU'"): every refined cell went to TensorFlow."""
    pytest.importorskip("tensorflow")
    run_dir = _crossing_run(tmp_path)
    outcome = refine_run(run_dir, max_rounds=1, guard=ROOMY)
    assert outcome.measured, "a bracket between 16 and 64 must be refined"
    results = pd.read_parquet(run_dir / "results.parquet")
    refined = results[~results["size"].isin([16, 64])]
    assert set(refined["device"]) == {"CPU:0", NUMPY_DEVICE}
    assert set(refined["status"]) == {"ok"}, refined[["device", "status", "reason"]].to_string()
    assert set(refined.loc[refined["device"] == NUMPY_DEVICE, "placed_device"]) == {NUMPY_DEVICE}


def test_refined_cells_get_pct_of_peak_from_the_runs_calibration(tmp_path: Path) -> None:
    run_dir = _crossing_run(tmp_path, CALIBRATION)
    refine_run(run_dir, max_rounds=1, backend=CrossingBackend(), guard=ROOMY)
    results = pd.read_parquet(run_dir / "results.parquet")
    refined = results[~results["size"].isin([16, 64])]
    assert not refined.empty
    assert refined["pct_of_peak"].map(math.isfinite).all()
    assert (refined["pct_of_peak"] > 0).all()


def test_refine_keeps_the_run_status_and_records_itself(tmp_path: Path) -> None:
    run_dir = _crossing_run(tmp_path)
    refine_run(run_dir, max_rounds=1, backend=CrossingBackend(), guard=ROOMY)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "complete"
    [entry] = meta["refinements"]
    assert entry["sizes"]


def test_refine_is_refused_while_another_process_writes_the_run(tmp_path: Path) -> None:
    run_dir = _crossing_run(tmp_path)
    backend = CrossingBackend()
    with RunLock(run_dir), pytest.raises(UsageError, match="being written by another devbench process"):
        refine_run(run_dir, max_rounds=1, backend=backend, guard=ROOMY)
    assert backend.seen == []


def test_a_stale_resume_plan_does_not_measure_cells_again(tmp_path: Path) -> None:
    """Two resumes that both planned before either took the lock: the second must see, under the lock, what
    the first measured, instead of measuring its stale plan's cells a second time."""
    spec = SweepSpec(ops=("matmul",), sizes=(16, 32, 64), devices=("CPU:0",), policy=FAST, rounds=1)
    run_dir = tmp_path / "run"
    execute(spec, run_dir, backend=FakeBackend(fail={}), guard=ROOMY, calibrate=False)
    lines = (run_dir / "cells.jsonl").read_bytes().splitlines(keepends=True)
    (run_dir / "cells.jsonl").write_bytes(lines[0])  # as if a crash left one cell
    first, second = plan_resume(run_dir), plan_resume(run_dir)
    assert len(first.cells_left()) == len(second.cells_left()) == 2
    run_plan(first, backend=FakeBackend(), guard=ROOMY)
    late = FakeBackend()
    run = run_plan(second, backend=late, guard=ROOMY)
    assert late.seen == []
    assert len(read_cell_log(run_dir).records) == 3
    assert run.meta["status"] == "complete"


def test_a_session_refuses_a_locked_run_before_reading_it(tmp_path: Path) -> None:
    run_dir = _crossing_run(tmp_path)
    with RunLock(run_dir), pytest.raises(UsageError, match="another devbench process"), \
            RunSession.reopen(run_dir, handle_signals=False):
        pass  # pragma: no cover - never entered


def test_the_numpy_baseline_is_planned_once_whatever_the_modes_and_syncs() -> None:
    spec = SweepSpec(ops=("matmul", "add"), sizes=(16, 32), devices=("CPU:0", NUMPY_DEVICE),
                     modes=("eager", "function"), include_transfer=True)
    cells = list(spec.cells())
    numpy_cells = [c for c in cells if c.device == NUMPY_DEVICE]
    assert len(numpy_cells) == 2 * 2  # ops x sizes, not x modes x syncs
    assert {(c.mode, c.sync) for c in numpy_cells} == {("eager", "scalar")}
    assert len([c for c in cells if c.device == "CPU:0"]) == 2 * 2 * 2 * 2
    assert spec.n_cells() == len(cells) == len(set(cells))


def test_a_sweep_with_the_baseline_measures_it_once(tmp_path: Path) -> None:
    spec = SweepSpec(ops=("add",), sizes=(16,), devices=("CPU:0", NUMPY_DEVICE), modes=("eager", "function"),
                     policy=FAST, rounds=1)
    backend = FakeBackend()
    run = execute(spec, tmp_path / "run", backend=backend, guard=ROOMY, calibrate=False)
    assert [c.device for c in backend.seen].count(NUMPY_DEVICE) == 1
    assert len(run.results[run.results["device"] == NUMPY_DEVICE]) == 1
