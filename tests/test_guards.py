"""The memory guard decides from estimates and injected free-memory readings, without filling memory."""

from __future__ import annotations

import pytest

from devbench.guards import MemoryGuard, combine, estimated_bytes
from devbench.spec import Cell

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
