"""The one preparation of the machine (devbench.prepare), and a refine that measures like the sweep it refines.

Each refine test here failed before refine prepared itself with :func:`devbench.prepare.prepare_machine`:
refine applied no TF32 setting, had no time guard (it measured a cell the run's ``--max-call-time`` skips),
no cell budget (a cell too slow to repeat was visited every round), initialised no device and did not check
that the run's devices are here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from devbench import runner as runner_module
from devbench.errors import UsageError
from devbench.guards import MemoryGuard, TimeGuard
from devbench.prepare import RunSettings, prepare_machine, time_guard_for
from devbench.refine import prepare_refine, refine_run
from devbench.spec import NUMPY_DEVICE, Cell, SweepSpec, TimingPolicy
from devbench.store import load_run, read_meta
from devbench.sweep import execute, plan_resume
from devbench.timer import Measurement
from tests.test_runner import FakeBackend, FakeOutcome

SIZES = (16, 64)
ROOMY = MemoryGuard(host_available=lambda: 2**40, device_free=lambda d: None)
FAST = TimingPolicy(max_cell_time=0.05, min_samples=3, max_samples=5, warmup_time=0.0)
MAX_CALL_TIME = 7.0
"""The runs' ``--max-call-time`` (not the default, to show where a refine's comes from)."""


class CrossingBackend(FakeBackend):
    """numpy:CPU is faster below n=32, CPU:0 above: one crossover between the sizes swept (16, 64), refined at
    n=32. ``slow_refined`` sleeps through the visits of refined sizes on numpy:CPU (as if making its inputs
    cost far more than the cell's budget)."""

    def __init__(self, slow_refined: float = 0.0) -> None:
        super().__init__()
        self.slow_refined = slow_refined

    def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int) -> FakeOutcome:
        self.seen.append(cell)
        per_call = (1e-7 * cell.size**2) if cell.device == NUMPY_DEVICE else (3.2e-6 * cell.size)
        if cell.device == NUMPY_DEVICE and cell.size not in SIZES and self.slow_refined:
            time.sleep(self.slow_refined)
        m: Measurement[Any] = Measurement(cold_s=per_call, samples=[per_call] * 3, number=1, warmup_calls=2,
                                          sync_overhead_s=0.0, stop_reason="converged")
        return FakeOutcome(m, cell.device, flops=2.0 * cell.size**3, bytes=12.0 * cell.size**2)


def _set_max_call_time(run_dir: Path, seconds: float) -> None:
    """As if the run had been made with ``--max-call-time seconds`` (what a refine reads is meta.json)."""
    meta = read_meta(run_dir)
    meta["guards"]["max_call_time"] = seconds
    (run_dir / "meta.json").write_text(json.dumps(meta))


def _run(tmp_path: Path, devices: tuple[str, ...] = ("CPU:0", NUMPY_DEVICE), *, tf32: str = "default",
         rounds: int = 5) -> Path:
    spec = SweepSpec(ops=("matmul",), sizes=SIZES, devices=devices, policy=FAST, rounds=rounds)
    run_dir = tmp_path / "run"
    execute(spec, run_dir, backend=CrossingBackend(), guard=ROOMY, calibrate=False, max_call_time=MAX_CALL_TIME,
            tf32=tf32)
    assert set(load_run(run_dir).results["status"]) == {"ok"}  # no cell skipped by the sweep's own guard
    return run_dir


def _rows(run_dir: Path, size: int) -> dict[str, dict[str, Any]]:
    results = load_run(run_dir).results
    return {str(row["device"]): dict(row) for _, row in results[results["size"] == size].iterrows()}


def test_a_refine_applies_the_runs_time_guard_taught_by_its_log(tmp_path: Path) -> None:
    """numpy:CPU at n=32 is predicted from the log's n=64 (410 µs / 8 = 51 µs), over a --max-call-time of
    40 µs; CPU:0's (205 µs / 8 = 26 µs) is not."""
    run_dir = _run(tmp_path)
    assert prepare_refine(run_dir, backend=CrossingBackend(), guard=ROOMY).time_guard.max_call_time == MAX_CALL_TIME
    _set_max_call_time(run_dir, 4e-5)
    backend = CrossingBackend()
    refine_run(run_dir, max_rounds=1, backend=backend, guard=ROOMY)
    rows = _rows(run_dir, 32)
    assert rows[NUMPY_DEVICE]["status"] == "skipped"
    assert rows[NUMPY_DEVICE]["reason"].startswith("time guard: predicted")
    assert "from n=64" in rows[NUMPY_DEVICE]["reason"]
    assert "over --max-call-time" in rows[NUMPY_DEVICE]["reason"]
    assert rows["CPU:0"]["status"] == "ok"
    assert [c.device for c in backend.seen if c.size == 32] == ["CPU:0"] * 5  # numpy:CPU never ran


def test_a_refine_visits_a_cell_too_slow_to_repeat_once_as_the_sweep_would(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "VISITED_ONCE_MIN_S", 0.5)  # far above a fake visit of a few ms
    run_dir = _run(tmp_path)
    prepared = prepare_refine(run_dir, backend=CrossingBackend(), guard=ROOMY)
    assert prepared.cell_budget == FAST.max_cell_time
    assert prepared.policy == FAST.per_visit(5)
    backend = CrossingBackend(slow_refined=0.05 + runner_module.VISITED_ONCE_MIN_S)
    refine_run(run_dir, max_rounds=1, backend=backend, guard=ROOMY)
    rows = _rows(run_dir, 32)
    assert rows[NUMPY_DEVICE]["n_rounds"] == 1
    assert rows[NUMPY_DEVICE]["reason"].startswith("visited once: its first visit took")
    assert rows["CPU:0"]["n_rounds"] == 5


def test_a_refine_applies_the_runs_tf32_setting(tmp_path: Path, jax_precision: ModuleType) -> None:
    before = jax_precision.config.jax_default_matmul_precision
    run_dir = _run(tmp_path, ("jax:cpu:0", NUMPY_DEVICE), tf32="off")
    meta = read_meta(run_dir)
    assert meta["tf32_setting"] == "off"
    assert meta["tf32"]["jax"]["applied"] == "off"
    jax_precision.config.update("jax_default_matmul_precision", before)  # as a new process would find it
    refine_run(run_dir, max_rounds=1, backend=CrossingBackend(), guard=ROOMY)
    assert jax_precision.config.jax_default_matmul_precision == "highest"
    [entry] = read_meta(run_dir)["refinements"]
    assert entry["tf32"]["jax"]["applied"] == "off"
    assert entry["tf32"]["jax"]["state"]["state"] == "disabled"
    assert entry["machine_changes"] == {}  # the same (fake) machine as the sweep's


def test_a_refine_teaches_the_memory_guard_the_runs_log(tmp_path: Path) -> None:
    """A series that ran out of memory in the sweep stays skipped above that size in the refine."""
    run_dir = _run(tmp_path)
    guard = MemoryGuard(host_available=lambda: 2**40, device_free=lambda d: None)
    log = run_dir / "cells.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    for line in lines:
        if line["record"]["device"] == NUMPY_DEVICE and line["record"]["size"] == 16:
            line["record"].update(status="oom", reason="out of memory", median_s=float("nan"))
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    refine_run(run_dir, max_rounds=1, backend=CrossingBackend(), guard=guard)
    assert guard.oom_at == {("matmul", "float32", NUMPY_DEVICE, "eager", "scalar"): 16}


def test_a_refine_with_the_real_backends_initialises_its_devices(tmp_path: Path) -> None:
    """numpy only: initialisation, fingerprint and guards of a real refine, without a framework's start-up."""
    spec = SweepSpec(ops=("add",), sizes=(16,), devices=(NUMPY_DEVICE,), policy=FAST, rounds=2)
    run_dir = tmp_path / "run"
    execute(spec, run_dir, calibrate=False, max_call_time=7.0)
    prepared = prepare_refine(run_dir)
    assert isinstance(prepared.memory_guard, MemoryGuard)
    assert prepared.time_guard.max_call_time == 7.0
    assert prepared.init is not None
    assert set(prepared.init["devices"]) == {NUMPY_DEVICE}
    assert prepared.machine is not None
    assert prepared.machine["hostname"] == read_meta(run_dir)["machine"]["hostname"]
    outcome = refine_run(run_dir, max_rounds=1)
    assert outcome.measured == []  # one device: no crossover to refine
    [entry] = read_meta(run_dir)["refinements"]
    assert set(entry["init"]["devices"]) == {NUMPY_DEVICE}
    assert entry["machine_changes"] == {}


def test_a_refine_of_a_run_whose_device_is_not_here_is_a_usage_error(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    run_dir = _run(tmp_path, ("CPU:0", "GPU:7"))
    with pytest.raises(UsageError, match="device 'GPU:7' does not exist here"):
        refine_run(run_dir, max_rounds=1, guard=ROOMY)
    assert "refinements" not in read_meta(run_dir)


def test_a_run_settings_read_back_from_meta_json(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, tf32="on")
    settings = RunSettings.from_meta(read_meta(run_dir), run_dir)
    assert settings == RunSettings(spec=settings.spec, max_call_time=MAX_CALL_TIME, tf32="on")
    assert plan_resume(run_dir).settings == settings
    meta = {**read_meta(run_dir), "tf32_setting": "maybe"}
    with pytest.raises(UsageError, match="tf32_setting 'maybe' is not one of on, off, default; the run cannot "
                       "be refined"):
        RunSettings.from_meta(meta, run_dir, cannot="the run cannot be refined")
    old = {k: v for k, v in read_meta(run_dir).items() if k not in ("tf32_setting", "guards")}
    assert RunSettings.from_meta(old, run_dir) == RunSettings(spec=settings.spec)  # runs from before: defaults


def test_prepare_machine_keeps_the_plans_time_guard_and_refuses_another(tmp_path: Path) -> None:
    spec = SweepSpec(ops=("add",), sizes=(16,), devices=(NUMPY_DEVICE,), policy=FAST, rounds=2)
    settings = RunSettings(spec=spec, max_call_time=5.0)
    guard = time_guard_for(spec, 5.0)
    prepared = prepare_machine(settings, time_guard=guard, backend=FakeBackend(), memory_guard=ROOMY,
                               fingerprint=False)
    assert prepared.time_guard is guard
    assert prepared.machine is None
    assert prepared.init is None
    assert prepared.learners == [guard.observe, ROOMY.observe]
    with pytest.raises(ValueError, match="max_call_time"):
        prepare_machine(settings, time_guard=TimeGuard(6.0), backend=FakeBackend(), fingerprint=False)
    with pytest.raises(UsageError, match="--tf32 'maybe' is not one of"):
        RunSettings(spec=spec, tf32="maybe")
