"""The runner with a fake backend: order, failures become statuses, results handed over as they finish.

The fake only measures; its failures are classified by the real shared rules (``backends.base.classify``) or,
for TensorFlow's errors, by the real ``backends.tf.classify``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from devbench.backends.base import CellFailure, UnsupportedCombination, classify
from devbench.runner import CellResult, run_sweep
from devbench.spec import Cell, SweepSpec, TimingPolicy
from devbench.timer import Measurement


@dataclass
class FakeOutcome:
    measurement: Measurement[Any]
    placed_device: str
    flops: float
    bytes: float
    traces: int = 0
    note: str = ""


class FakeBackend:
    def __init__(self, fail: dict[int, Exception] | None = None) -> None:
        self.fail = fail or {}
        self.seen: list[Cell] = []
        self.releases = 0

    def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int) -> FakeOutcome:
        self.seen.append(cell)
        if cell.size in self.fail:
            raise self.fail[cell.size]
        per_call = cell.size * 1e-6
        m: Measurement[Any] = Measurement(cold_s=10 * per_call, samples=[per_call, per_call * 1.01, per_call],
                                          number=4, warmup_calls=2, sync_overhead_s=0.0,
                                          stop_reason="converged")
        return FakeOutcome(m, cell.device, flops=2.0 * cell.size**3, bytes=12.0 * cell.size**2)

    def classify(self, exc: BaseException) -> tuple[str, str]:
        return classify(exc)

    def release(self) -> None:
        self.releases += 1


SPEC = SweepSpec(ops=("matmul",), sizes=(256, 64, 128), devices=("CPU:0", "CPU:1"), rounds=1)
"""One round: visits of many rounds are tests/test_rounds.py's."""


def test_every_cell_smallest_first_with_stats_and_throughput() -> None:
    backend = FakeBackend()
    handed: list[CellResult] = []
    results = run_sweep(SPEC, backend, "run", on_result=handed.append)
    assert [r.record.size for r in results] == [64, 64, 128, 128, 256, 256]
    assert handed == results
    assert backend.releases == 6
    rec = results[0].record
    assert rec.status == "ok"
    assert rec.median_s == pytest.approx(64e-6)
    assert rec.cold_s == pytest.approx(640e-6)
    assert rec.gflops == pytest.approx(2 * 64**3 / 64e-6 / 1e9)
    assert rec.gbps == pytest.approx(12 * 64**2 / 64e-6 / 1e9)
    assert results[0].samples == [64e-6, 64e-6 * 1.01, 64e-6]
    assert not rec.unsynchronized


def test_a_failing_cell_becomes_a_status_and_the_sweep_goes_on() -> None:
    backend = FakeBackend(fail={128: UnsupportedCombination("no int32 kernel\nmore context"),
                                64: RuntimeError("boom")})
    results = run_sweep(SPEC, backend, "run")
    statuses = [(r.record.size, r.record.status) for r in results]
    assert statuses == [(64, "error"), (64, "error"), (128, "unsupported"), (128, "unsupported"),
                        (256, "ok"), (256, "ok")]
    assert results[2].record.reason == "no int32 kernel"  # the first line only
    assert results[0].record.reason == "RuntimeError: boom"
    assert results[2].samples == []
    assert backend.releases == 6


def test_keyboard_interrupt_is_not_swallowed() -> None:
    backend = FakeBackend(fail={128: KeyboardInterrupt()})  # type: ignore[dict-item]
    done: list[CellResult] = []
    with pytest.raises(KeyboardInterrupt):
        run_sweep(SPEC, backend, "run", on_result=done.append)
    assert [r.record.size for r in done] == [64, 64]


def test_done_cells_are_skipped() -> None:
    backend = FakeBackend()
    done = {v.key() for v in SPEC.visits() if v.cell.size == 64}
    results = run_sweep(SPEC, backend, "run", done=done)
    assert [r.record.size for r in results] == [128, 128, 256, 256]


def test_a_budget_cut_is_explained_in_the_reason() -> None:
    class Slow(FakeBackend):
        def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int) -> FakeOutcome:
            outcome = super().run_cell(cell, policy, seed)
            outcome.measurement.samples = outcome.measurement.samples[:1]
            outcome.measurement.stop_reason = "budget"
            return outcome

    results = run_sweep(SweepSpec(ops=("matmul",), sizes=(64,), rounds=1), Slow(), "run")
    assert results[0].record.status == "ok"
    assert "cut short by the cell time budget" in results[0].record.reason


def test_a_guard_skips_a_cell_with_its_reason_and_allocates_nothing() -> None:
    backend = FakeBackend()

    def guard(cell: Cell) -> str | None:
        return "memory guard: needs about 44.0 GiB" if cell.size == 256 else None

    results = run_sweep(SPEC, backend, "run", guard=guard)
    skipped = [r.record for r in results if r.record.status == "skipped"]
    assert [(r.size, r.reason) for r in skipped] == [(256, "memory guard: needs about 44.0 GiB")] * 2
    assert all(c.size != 256 for c in backend.seen)


@pytest.mark.tf
def test_tf_out_of_memory_is_a_status_memory_is_released_and_the_sweep_goes_on(tf: Any) -> None:
    """The GPU OOM path without a GPU: TF's own ResourceExhaustedError, classified by the real backend."""
    from devbench.backends.tf import classify as tf_classify
    from devbench.guards import MemoryGuard

    class OutOfMemory(FakeBackend):
        def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int) -> FakeOutcome:
            if cell.size == 128 and cell.device == "CPU:0":
                self.seen.append(cell)
                raise tf.errors.ResourceExhaustedError(
                    None, None, "OOM when allocating tensor with shape[128,128] on /device:GPU:0")
            return super().run_cell(cell, policy, seed)

        def classify(self, exc: BaseException) -> tuple[str, str]:
            return tf_classify(exc)

    backend = OutOfMemory()
    memory = MemoryGuard(host_available=lambda: 2**40, device_free=lambda d: None)
    results: list[CellResult] = []

    def learn(result: CellResult) -> None:
        memory.observe(result.record)
        results.append(result)

    run_sweep(SPEC, backend, "run", on_result=learn, guard=memory)
    by_cell = {(r.record.size, r.record.device): r.record for r in results}
    oom = by_cell[(128, "CPU:0")]
    assert oom.status == "oom"
    assert oom.reason.startswith("ResourceExhaustedError: OOM when allocating")
    assert backend.releases == len(backend.seen)  # released after every cell run, the failed one included
    assert by_cell[(128, "CPU:1")].status == "ok"  # the very next cell runs
    assert by_cell[(256, "CPU:1")].status == "ok"
    # the same series at a larger size is not attempted again
    assert by_cell[(256, "CPU:0")].status == "skipped"
    assert "ran out of memory at n=128" in by_cell[(256, "CPU:0")].reason


def test_host_memory_error_is_oom_too() -> None:
    """MemoryError (a host allocation in numpy) is ``oom`` by the shared rules every backend uses."""
    backend = FakeBackend(fail={64: MemoryError("cannot allocate 8 GiB")})
    results = run_sweep(SPEC, backend, "run")
    assert [r.record.status for r in results] == ["oom", "oom", "ok", "ok", "ok", "ok"]
    assert results[0].record.reason == "MemoryError: cannot allocate 8 GiB"
    assert backend.releases == 6


def test_a_failed_check_keeps_its_status_reason_and_placement() -> None:
    failure = CellFailure("fallback", "output placed on CPU:0, not on the requested GPU:0", "CPU:0")
    results = run_sweep(SPEC, FakeBackend(fail={64: failure}), "run")
    assert (results[0].record.status, results[0].record.placed_device) == ("fallback", "CPU:0")
    assert results[0].record.reason == failure.reason
