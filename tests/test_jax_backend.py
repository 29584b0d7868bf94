"""The JAX backend for real on the CPU (``jax:cpu:0``): what is JAX's own (float64 really float64, asynchronous
dispatch on the CPU, graph_loop, recompiles, XLA's errors) and a small sweep that compares JAX with TensorFlow.
The contract every backend keeps (correctness in every dtype, placement, syncs, modes, unsupported pairs) is
tests/test_backends.py's, run against JAX there too."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devbench import ops
from devbench.backends import RoutingBackend
from devbench.backends.base import CellFailure
from devbench.runner import run_cell
from devbench.schema import VisitRecord
from devbench.spec import Cell, TimingPolicy

pytest.importorskip("jax", reason="JAX is not installed (pip install 'devbench[jax]')")

from devbench.backends.jax import (  # after the skip: the module needs JAX
    JaxBackend,
    build_jax,
    graph_loop,
    placed_devices,
    sync_scalar,
)
from devbench.devices import jax, jax_device

QUICK = TimingPolicy(max_cell_time=0.2, min_samples=3, max_samples=10, warmup_time=0.02, min_block_time=0.005)
DEVICE = "jax:cpu:0"


@pytest.fixture(scope="module")
def backend() -> JaxBackend:
    return JaxBackend()


def _record(backend: Any, cell: Cell, policy: TimingPolicy = QUICK) -> VisitRecord:
    return run_cell(backend, "test", cell, policy, seed=0).record


def _ok(backend: Any, cell: Cell, policy: TimingPolicy = QUICK) -> VisitRecord:
    record = _record(backend, cell, policy)
    assert record.status == "ok", record.reason
    return record


def _cell(op: str = "matmul", size: int = 32, dtype: str = "float32", **kw: str) -> Cell:
    return Cell(size=size, op=op, dtype=dtype, device=DEVICE, **kw)


# ---------------------------------------------------------------------------------------------------------
# Correctness: the same numbers as numpy's float64 reference, in every dtype


@pytest.mark.parametrize("mode", ["jit", "graph_loop"])
@pytest.mark.parametrize("op", list(ops.OPS))
def test_compiled_modes_match_numpy(backend: JaxBackend, op: str, mode: str) -> None:
    backend.check_correctness(_cell(op, mode=mode), seed=0)


def test_float64_really_is_float64(backend: JaxBackend) -> None:
    """Without jax_enable_x64 JAX would compute a float64 cell in float32 and still pass float32's tolerance."""
    built = build_jax(ops.OPS["matmul"], 8, "float64", 0, jax_device(DEVICE))
    assert str(built.fn(*built.operands).dtype) == "float64"


def test_dense_step_gradient_includes_the_l2_penalty(backend: JaxBackend) -> None:
    """Leave the penalty out of the loss and the kernel gradient misses 2·L2·W: the check must notice."""
    built = build_jax(ops.OPS["dense_step"], ops.CHECK_SIZE, "float64", 0, jax_device(DEVICE))
    total, kernel_grad, _ = built.fn(*built.operands)
    x, y, w, b = (np.asarray(a) for a in built.operands)
    _, without_penalty, _ = ops.dense_step_numpy(x, y, w, b)
    without_penalty = without_penalty - 2.0 * ops.L2 * w
    assert not np.allclose(np.asarray(kernel_grad), without_penalty, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.asarray(kernel_grad), without_penalty + 2.0 * ops.L2 * w, rtol=1e-9)
    assert float(total) > 0


# ---------------------------------------------------------------------------------------------------------
# Placement


def test_placed_devices_reads_every_leaf() -> None:
    built = build_jax(ops.OPS["dense_step"], 8, "float32", 0, jax_device(DEVICE))
    assert placed_devices(built.fn(*built.operands)) == [DEVICE] * 3


# ---------------------------------------------------------------------------------------------------------
# Sync: JAX dispatches asynchronously on the CPU too


def test_jax_returns_before_the_work_is_done_on_the_cpu() -> None:
    """What sync ``none`` would time: five 1024² matmuls are enqueued in a small fraction of the time they take
    (seen here: 20-500x; asserted: 5x)."""
    x = jax().device_put(np.ones((1024, 1024), dtype=np.float32), jax_device(DEVICE))
    matmul = jax().numpy.matmul
    sync_scalar(matmul(x, x))  # the cold call is not what this test is about
    start = time.perf_counter()
    for _ in range(5):
        y = matmul(x, x)
    enqueued = time.perf_counter() - start
    sync_scalar(y)
    finished = time.perf_counter() - start
    assert enqueued * 5 < finished


# ---------------------------------------------------------------------------------------------------------
# Modes


def test_jit_compiles_once_per_cell(backend: JaxBackend) -> None:
    record = _ok(backend, _cell("dense_step", mode="jit"))
    assert record.traces == 1
    assert "recompiled" not in record.reason


def test_graph_loop_runs_many_calls_per_block(backend: JaxBackend) -> None:
    record = _ok(backend, _cell("add", size=16, mode="graph_loop"))
    assert record.number > 1
    assert record.traces == 1


def test_graph_loop_keeps_the_op_inside_the_loop() -> None:
    """XLA hoists a loop-invariant op out of a while loop: the compiled loop must still hold a matmul besides the
    first call's (a barrier on the operands alone was optimised away and left one)."""
    x = jax().device_put(np.ones((64, 64), dtype=np.float32), jax_device(DEVICE))
    compiled = graph_loop(jax().numpy.matmul).lower(10, x, x).compile().as_text()
    assert compiled.count(" dot(") >= 2


def test_graph_loop_carries_the_last_output() -> None:
    x = jax().device_put(np.arange(4.0), jax_device(DEVICE))
    loop = graph_loop(jax().numpy.negative)
    np.testing.assert_array_equal(np.asarray(loop(3, x)), -np.arange(4.0))


# ---------------------------------------------------------------------------------------------------------
# Unsupported pairs are a status, not a crash


def test_router_refuses_a_mode_before_loading_the_framework() -> None:
    """``jit`` on a TensorFlow device: unsupported, and TensorFlow's backend is never created for it."""
    router = RoutingBackend()
    record = _record(router, Cell(size=16, op="add", dtype="float32", device="CPU:0", mode="jit"))
    assert record.status == "unsupported"
    assert "does not exist on TensorFlow" in record.reason
    assert router.created == ()


def test_resource_exhausted_is_oom() -> None:
    from devbench.backends.jax import classify

    class XlaRuntimeError(RuntimeError):
        pass

    status, reason = classify(XlaRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 4 GiB"))
    assert status == "oom"
    assert reason.startswith("XlaRuntimeError: RESOURCE_EXHAUSTED")
    assert classify(CellFailure("wrong", "off"))[0] == "wrong"


# ---------------------------------------------------------------------------------------------------------
# Across frameworks


@pytest.mark.tf
@pytest.mark.slow
def test_a_sweep_over_jax_and_tensorflow_gives_one_crossover_frame(tmp_path: Path) -> None:
    from devbench.analysis import crossover_frame
    from devbench.cli import main
    from devbench.store import load_run

    out = tmp_path / "run"
    code = main(["sweep", "--devices", "jax:cpu:0,CPU:0", "--ops", "add", "--sizes", "16,64", "--rounds", "1",
                 "--no-calibrate", "--max-cell-time", "0.05", "--quiet", "--out", str(out)])
    assert code == 0
    run = load_run(out)
    assert set(run.results["device"]) == {"CPU:0", "jax:cpu:0"}
    assert set(run.results["status"]) == {"ok"}
    frame = crossover_frame(run.results)
    assert len(frame) >= 1
    assert {frame.iloc[0]["device_a"], frame.iloc[0]["device_b"]} == {"CPU:0", "jax:cpu:0"}
