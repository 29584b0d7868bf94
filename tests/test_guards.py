"""The memory guard decides from estimates and injected free-memory readings, without filling memory."""

from __future__ import annotations

import math

import pytest

from devbench.guards import MemoryGuard, TimeGuard, combine, estimated_bytes
from devbench.schema import VisitRecord
from devbench.spec import Cell, SweepSpec, TimingPolicy

GIB = 2**30


def cell(op: str, size: int, device: str = "CPU:0", dtype: str = "float32") -> Cell:
    return Cell(size=size, op=op, dtype=dtype, device=device)


def test_estimates_grow_with_size_and_itemsize() -> None:
    assert estimated_bytes(cell("matmul", 2048)) < estimated_bytes(cell("matmul", 4096))
    assert estimated_bytes(cell("matmul", 4096, dtype="float16")) < estimated_bytes(cell("matmul", 4096))
    # The case that was OOM-killed at 24 GiB: conv2d at 8192² float32 must be estimated above that.
    assert estimated_bytes(cell("conv2d", 8192)) > 24 * GIB
    # ...while 4096², which ran in about 11 GiB, fits a 24 GiB machine.
    assert estimated_bytes(cell("conv2d", 4096)) < 0.85 * 22 * GIB


def test_host_guard_skips_what_cannot_fit_and_says_how_much() -> None:
    guard = MemoryGuard(host_available=lambda: 22 * GIB, device_free=lambda d: None)
    assert guard(cell("conv2d", 4096)) is None
    reason = guard(cell("matmul", 65536, dtype="float64"))
    assert reason is not None
    assert reason.startswith("memory guard: needs about 192.0 GiB")  # 4 n² x 8 B on device + 2 n² x 8 B staging
    assert "22.0 GiB available" in reason


def test_gpu_cells_are_checked_against_the_device_free_memory() -> None:
    guard = MemoryGuard(host_available=lambda: 100 * GIB, device_free=lambda d: 8 * GIB)
    assert guard(cell("matmul", 8192, device="GPU:0")) is None  # 1 GiB on the GPU
    reason = guard(cell("matmul", 32768, device="GPU:0"))  # 16 GiB on the GPU
    assert reason is not None
    assert "on GPU:0, 8.0 GiB free there" in reason


@pytest.mark.parametrize("free", [None, 0])
def test_unknown_device_memory_falls_back_to_host_checks(free: int | None) -> None:
    guard = MemoryGuard(host_available=lambda: 100 * GIB, device_free=lambda d: free)
    verdict = guard(cell("matmul", 8192, device="GPU:0"))
    assert (verdict is None) == (free is None)


def test_combine_takes_the_first_objection() -> None:
    guard = combine(lambda c: None, lambda c: "second", lambda c: "third")
    assert guard(cell("add", 64)) == "second"
    assert combine(lambda c: None)(cell("add", 64)) is None


# ---------------------------------------------------------------------------------------------------------
# Learning from finished cells: OOM in a series, and the time guard


def record(op: str, size: int, median: float = math.nan, *, status: str = "ok", device: str = "CPU:0",
           dtype: str = "float32") -> VisitRecord:
    return VisitRecord(run_id="r", op=op, size=size, dtype=dtype, device=device, mode="eager", sync="scalar",
                       status=status, median_s=median)


def test_after_an_oom_larger_sizes_of_that_series_are_skipped() -> None:
    guard = MemoryGuard(host_available=lambda: 100 * GIB, device_free=lambda d: None)
    guard.observe(record("matmul", 4096, status="oom", device="GPU:0"))
    reason = guard(cell("matmul", 8192, device="GPU:0"))
    assert reason is not None
    assert "ran out of memory at n=4096 on GPU:0" in reason
    assert guard(cell("matmul", 2048, device="GPU:0")) is None  # smaller: still tried
    assert guard(cell("matmul", 8192, device="CPU:0")) is None  # another device: its own series
    assert guard(cell("add", 8192, device="GPU:0")) is None


def test_time_guard_predicts_from_the_largest_measured_size_by_flops() -> None:
    guard = TimeGuard(max_call_time=10.0)
    assert guard.predict(cell("matmul", 4096)) is None  # nothing measured: nothing to predict from
    assert guard(cell("matmul", 4096)) is None
    guard.observe(record("matmul", 512, median=0.01))
    guard.observe(record("matmul", 1024, median=0.05))
    guard.observe(record("matmul", 256, median=0.001))  # smaller than the reference: ignored
    guard.observe(record("matmul", 2048, status="error"))  # not ok: ignored
    prediction = guard.predict(cell("matmul", 4096))
    assert prediction is not None
    assert prediction.from_size == 1024
    assert prediction.flops_ratio == pytest.approx(64.0)  # 2n³ scales by 4³
    assert prediction.seconds == pytest.approx(3.2)
    assert guard(cell("matmul", 4096)) is None  # 3.2 s < 10 s
    reason = guard(cell("matmul", 8192))  # 25.6 s
    assert reason is not None
    assert reason.startswith("time guard: predicted 26 s per call, from n=1024")
    assert "--max-call-time 10 s" in reason
    # add scales with n², not n³, and its series is separate
    guard.observe(record("add", 1024, median=0.001))
    add_prediction = guard.predict(cell("add", 8192))
    assert add_prediction is not None
    assert add_prediction.seconds == pytest.approx(0.064)
    assert guard.predict(cell("matmul", 4096, dtype="float64")) is None


def test_time_guard_estimates_whole_cells_for_the_plan() -> None:
    policy = TimingPolicy(max_cell_time=2.0)
    guard = TimeGuard(max_call_time=60.0, policy=policy, overhead_s=0.5)
    assert guard.estimate_cell_seconds(cell("matmul", 64)) == pytest.approx(2.5)  # unknown: budget + overhead
    guard.observe(record("matmul", 1024, median=0.5))
    # 4096: 32 s per call; cold 32 + at least 2 warm-up calls and one sample (96 s) beyond the 2 s budget
    assert guard.estimate_cell_seconds(cell("matmul", 4096)) == pytest.approx(0.5 + 32 + 96)
    assert guard.estimate_cell_seconds(cell("matmul", 8192)) == 0.0  # to be skipped: costs nothing


def test_time_guard_rejects_a_non_positive_limit() -> None:
    with pytest.raises(ValueError, match="positive"):
        TimeGuard(max_call_time=0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_eta_follows_reality() -> None:
    from devbench.progress import SweepProgress
    from devbench.runner import CellResult

    spec = SweepSpec(ops=("add",), sizes=(16, 32, 64, 128), rounds=1)
    clock = FakeClock()
    progress = SweepProgress(spec.visits(), total=spec.n_visits(), enabled=False, estimate=lambda c: 2.0,
                             clock=clock)
    assert progress.eta_seconds() == pytest.approx(8.0)  # the plan's estimate before anything ran
    cells = list(spec.cells())
    progress.start(cells[0])
    clock.now += 0.5  # the visit took a quarter of its estimate
    progress.finish(CellResult(record("add", 16, median=1e-5)))
    clock.now += 10  # past the recompute interval
    assert progress.eta_seconds() == pytest.approx(3 * 2.0 * 0.25)


def test_progress_of_a_resumed_run_starts_at_the_cells_done() -> None:
    from devbench.progress import SweepProgress

    spec = SweepSpec(ops=("add",), sizes=(16, 32, 64, 128), rounds=3)
    left = [v for v in spec.visits() if v.round > 1 or v.cell.size >= 64]  # round 1 of 16 and 32 done
    progress = SweepProgress(left, total=spec.n_visits(), enabled=False, estimate=lambda c: 1.0)
    assert progress.progress.tasks[0].completed == 2
    assert progress.eta_seconds() == pytest.approx(10.0)
