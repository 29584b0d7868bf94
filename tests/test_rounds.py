"""Rounds: every cell visited R times, interleaved; one log line per visit; one table row per cell.

A fake backend with an exact, drifting time base stands in for the machine: its per-call time is the cell's
cost times a drift factor that changes with every visit made, as a shared machine's does between cells.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from devbench import runner as runner_module
from devbench.guards import MemoryGuard
from devbench.runner import run_visits
from devbench.spec import NUMPY_DEVICE, Cell, SweepSpec, TimingPolicy, Visit, interleaved_visits
from devbench.store import read_cell_log
from devbench.sweep import SweepInterrupted, execute, plan_resume, resume
from devbench.timer import Measurement
from tests.test_runner import FakeBackend, FakeOutcome

pytestmark = pytest.mark.usefixtures("ctrl_c_delivered")

ROOMY = MemoryGuard(host_available=lambda: 2**40, device_free=lambda d: None)
SPEC = SweepSpec(ops=("matmul",), sizes=(16, 32), devices=("CPU:0", "CPU:1"), rounds=3,
                 policy=TimingPolicy(max_cell_time=0.3))


class DriftingBackend(FakeBackend):
    """Per-call time = n µs × a drift factor that follows the visit count (1.0, 1.3, 0.8, 1.1, ...), with 1 %
    noise inside a visit; optionally sends a signal during the ``signal_at``-th visit (1-based)."""

    DRIFT = (1.0, 1.3, 0.8, 1.1, 0.9, 1.25)

    def __init__(self, signal_at: int = 0) -> None:
        super().__init__()
        self.signal_at = signal_at

    def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int) -> FakeOutcome:
        self.seen.append(cell)
        if len(self.seen) == self.signal_at:
            os.kill(os.getpid(), signal.SIGINT)
        factor = self.DRIFT[(len(self.seen) - 1) % len(self.DRIFT)]
        base = cell.size * 1e-6 * factor
        samples = [base * (1 + 0.01 * k) for k in (-1, 0, 1, 0)]
        m: Measurement[Any] = Measurement(cold_s=20 * base, samples=samples, number=4, warmup_calls=2,
                                          sync_overhead_s=0.0, stop_reason="converged")
        return FakeOutcome(m, cell.device, flops=2.0 * cell.size**3, bytes=12.0 * cell.size**2)


def test_visits_ascend_in_size_each_round_and_rotate_the_devices() -> None:
    visits = SPEC.visits()
    assert len(visits) == SPEC.n_visits() == 2 * 2 * 3
    by_round = [[(v.cell.size, v.cell.device) for v in visits if v.round == r] for r in (1, 2, 3)]
    assert by_round[0] == [(16, "CPU:0"), (16, "CPU:1"), (32, "CPU:0"), (32, "CPU:1")]
    assert by_round[1] == [(16, "CPU:1"), (16, "CPU:0"), (32, "CPU:1"), (32, "CPU:0")]
    assert by_round[2] == by_round[0]
    assert [v.round for v in visits] == [1] * 4 + [2] * 4 + [3] * 4  # every cell once, round after round


def test_the_numpy_baseline_is_visited_with_the_devices_of_its_size() -> None:
    spec = SweepSpec(ops=("add",), sizes=(16,), devices=("CPU:0", NUMPY_DEVICE), modes=("eager", "function"),
                     rounds=2)
    first = [v.cell.device + "/" + v.cell.mode for v in spec.visits() if v.round == 1]
    assert first == ["CPU:0/eager", "numpy:CPU/eager", "CPU:0/function"]


def test_a_visit_gets_its_share_of_the_cells_budget() -> None:
    policy = TimingPolicy(max_cell_time=2.0, min_samples=5, max_samples=50, warmup_time=0.1)
    visit = policy.per_visit(4)
    assert visit.max_cell_time == pytest.approx(0.5)
    assert visit.warmup_time == pytest.approx(0.025)
    assert (visit.min_samples, visit.max_samples) == (2, 13)
    assert policy.per_visit(1) == policy


def test_a_cell_whose_visit_failed_is_not_visited_again() -> None:
    backend = FakeBackend(fail={32: RuntimeError("no kernel")})
    results = run_visits(interleaved_visits([Cell(16, "add", "float32", "CPU:0"), Cell(32, "add", "float32",
                                                                                        "CPU:0")], 3),
                         backend, "run", TimingPolicy(), 0)
    assert [(r.record.size, r.round, r.record.status) for r in results] == [
        (16, 1, "ok"), (32, 1, "error"), (16, 2, "ok"), (16, 3, "ok")]
    assert math.isfinite(results[0].record.cold_s)
    assert math.isnan(results[2].record.cold_s)  # a later visit's first call is not a cold call


def test_a_sweep_logs_each_visit_and_tables_one_row_per_cell(tmp_path: Path) -> None:
    run = execute(SPEC, tmp_path / "run", backend=DriftingBackend(), guard=ROOMY, calibrate=False)
    contents = read_cell_log(tmp_path / "run")
    assert len(contents.records) == 12
    assert contents.rounds == [1] * 4 + [2] * 4 + [3] * 4
    results = run.results
    assert len(results) == 4
    assert results["n_rounds"].tolist() == [3, 3, 3, 3]
    assert results["n_samples"].tolist() == [12, 12, 12, 12]
    assert not results["incomplete"].any()
    assert (results["between_round_rel"] > 0.2).all()  # the drift (0.8-1.3) shows between the visits
    assert (results["ci_low_s"] <= results["median_s"]).all()
    assert (results["median_s"] <= results["ci_high_s"]).all()
    assert results["cold_s"].notna().all()
    samples = pd.read_parquet(tmp_path / "run" / "samples.parquet")
    assert sorted(samples["round"].unique()) == [1, 2, 3]
    assert len(samples) == 4 * 12
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["spec"]["rounds"] == 3


def test_an_interrupted_round_is_marked_incomplete_and_resume_goes_on_at_the_next_visit(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(SweepInterrupted) as info:
        execute(SPEC, run_dir, backend=DriftingBackend(signal_at=7), guard=ROOMY, calibrate=False)
    assert "4 of 4 cells (6 of 12 visits) are saved" in info.value.message
    saved = pd.read_parquet(run_dir / "results.parquet")
    assert saved["n_rounds"].tolist() == [2, 2, 1, 1]  # round 2 reached the 16s, not the 32s
    assert saved["incomplete"].all()
    left = plan_resume(run_dir).visits_left()
    assert [(v.cell.size, v.cell.device, v.round) for v in left][:2] == [(32, "CPU:1", 2), (32, "CPU:0", 2)]
    backend = FakeBackend()
    run = resume(run_dir, backend=backend, guard=ROOMY)
    assert len(backend.seen) == 6
    assert run.results["n_rounds"].tolist() == [3, 3, 3, 3]
    assert not run.results["incomplete"].any()


def test_one_round_gives_no_interval_and_says_why(tmp_path: Path) -> None:
    run = execute(replace(SPEC, rounds=1), tmp_path / "run", backend=DriftingBackend(), guard=ROOMY,
                  calibrate=False)
    assert run.results["ci_low_s"].isna().all()
    assert run.results["ci_reason"].str.contains("1 round: cannot see drift").all()
    assert run.results["between_round_rel"].isna().all()


def test_a_log_of_schema_version_1_reads_as_one_round(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    execute(replace(SPEC, rounds=1), run_dir, backend=DriftingBackend(), guard=ROOMY, calibrate=False)
    lines = [json.loads(line) for line in (run_dir / "cells.jsonl").read_text().splitlines()]
    (run_dir / "cells.jsonl").write_text("".join(json.dumps({"record": line["record"], "samples": line["samples"]})
                                                 + "\n" for line in lines))
    meta = json.loads((run_dir / "meta.json").read_text())
    meta["schema_version"] = 1
    del meta["spec"]["rounds"]
    (run_dir / "meta.json").write_text(json.dumps(meta))
    plan = plan_resume(run_dir)
    assert plan.spec.rounds == 1
    assert plan.visits_left() == []
    contents = read_cell_log(run_dir)
    assert contents.rounds == [1, 1, 1, 1]


def test_visit_keys_are_unique() -> None:
    keys = [v.key() for v in SPEC.visits()]
    assert len(set(keys)) == len(keys)
    assert Visit(Cell(16, "add", "float32", "CPU:0"), 2).key()[1] == 2


class SetUpHeavy(FakeBackend):
    """Its size-32 cell sleeps past the floor per visit (making inputs costs far more than the cell's budget)."""

    def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int) -> FakeOutcome:
        if cell.size == 32:
            time.sleep(0.05 + runner_module.VISITED_ONCE_MIN_S)
        return super().run_cell(cell, policy, seed)


def test_a_cell_whose_visit_costs_far_more_than_its_budget_is_visited_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "VISITED_ONCE_MIN_S", 0.5)  # far above a fake visit of a few ms
    from devbench.runner import run_visits as visit_all

    visits = interleaved_visits([Cell(16, "add", "float32", "CPU:0"), Cell(32, "add", "float32", "CPU:0")], 3)
    backend = SetUpHeavy()
    results = visit_all(visits, backend, "run", TimingPolicy(), 0, cell_budget=0.01)
    assert [(r.record.size, r.round) for r in results] == [(16, 1), (32, 1), (16, 2), (16, 3)]
    assert [r.record.visited_once for r in results] == [False, True, False, False]
    assert results[1].record.reason.startswith("visited once: its first visit took")
    spec = SweepSpec(ops=("add",), sizes=(16, 32), devices=("CPU:0",), rounds=3,
                     policy=TimingPolicy(max_cell_time=0.01))
    run = execute(spec, tmp_path / "run", backend=SetUpHeavy(), guard=ROOMY, calibrate=False)
    rows = run.results.set_index("size")
    assert rows.loc[32, "n_rounds"] == 1
    assert not rows.loc[32, "incomplete"]  # not interrupted: visited once on purpose, and the reason says why
    assert plan_resume(tmp_path / "run").visits_left() == []
