"""Real TensorFlow at tiny sizes: sync really waits, placement and correctness checks, every op runs.

No absolute times are asserted: only ratios with generous margins, signs and structure.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from devbench import ops
from devbench.backend import SYNCS, TFBackend, sync_scalar
from devbench.runner import run_cell
from devbench.spec import Cell, TimingPolicy

pytestmark = pytest.mark.tf

QUICK = TimingPolicy(max_cell_time=0.3, min_samples=3, max_samples=10, warmup_time=0.02, min_block_time=0.005)


def _measure(backend: TFBackend, cell: Cell, policy: TimingPolicy = QUICK) -> Any:
    result = run_cell(backend, "test", cell, policy, seed=0)
    assert result.record.status == "ok", result.record.reason
    return result.record


def test_async_executor_makes_unsynced_timing_meaningless(tf: ModuleType, async_executor: None) -> None:
    with tf.device("/device:CPU:0"):
        x = tf.random.uniform([1024, 1024])
        sync_scalar(tf.linalg.matmul(x, x))  # the cold call (kernel creation) is not what this test is about
        start = time.perf_counter()
        for _ in range(5):
            y = tf.linalg.matmul(x, x)
        enqueued = time.perf_counter() - start
        sync_scalar(y)
        finished = time.perf_counter() - start
    assert enqueued * 10 < finished


def test_default_sync_agrees_with_synchronous_execution_and_none_does_not(
    tf: ModuleType, async_executor: None
) -> None:
    backend = TFBackend()
    policy = TimingPolicy(max_cell_time=1.0, min_samples=3, max_samples=8, warmup_time=0.05)
    cell = Cell(size=512, op="matmul", dtype="float32", device="CPU:0")
    scalar_async = _measure(backend, cell, policy).median_s
    unsynced = _measure(backend, Cell(**{**cell.__dict__, "sync": "none"}), policy)
    tf.config.experimental.set_synchronous_execution(True)
    reference = _measure(backend, cell, policy).median_s
    assert 1 / 3 < scalar_async / reference < 3
    assert unsynced.median_s < reference / 5
    assert unsynced.unsynchronized


def test_two_devices_are_measured_where_asked(tf: ModuleType) -> None:
    backend = TFBackend()
    for device in ("CPU:0", "CPU:1"):
        record = _measure(backend, Cell(size=64, op="matmul", dtype="float32", device=device))
        assert record.placed_device == device
        assert record.median_s > 0
        assert record.cold_s > 0
        assert record.n_samples >= 1
        assert record.gflops > 0


@pytest.mark.parametrize("sync", list(SYNCS))
def test_every_sync_mode_runs(tf: ModuleType, sync: str) -> None:
    record = _measure(TFBackend(), Cell(size=32, op="add", dtype="float32", device="CPU:1", sync=sync))
    assert record.unsynchronized == (sync == "none")


@pytest.mark.parametrize("op", list(ops.OPS))
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_every_float_op_matches_numpy(tf: ModuleType, op: str, dtype: str) -> None:
    cell = Cell(size=ops.CHECK_SIZE, op=op, dtype=dtype, device="CPU:0")
    TFBackend().check_correctness(cell, seed=1)  # raises CellFailure('wrong') on a miss


@pytest.mark.parametrize("mode", ["function", "xla"])
@pytest.mark.parametrize("op", ["matmul", "softmax_xent_grad", "dense_step"])
def test_compiled_modes_match_numpy_and_run(tf: ModuleType, op: str, mode: str) -> None:
    record = _measure(TFBackend(), Cell(size=32, op=op, dtype="float32", device="CPU:1", mode=mode))
    assert record.placed_device == "CPU:1"


def test_int32_ops_with_gradients_are_unsupported_not_crashes(tf: ModuleType) -> None:
    backend = TFBackend()
    for op in ("softmax_xent_grad", "dense_step"):
        result = run_cell(backend, "t", Cell(size=16, op=op, dtype="int32", device="CPU:0"), QUICK, 0)
        assert result.record.status == "unsupported"
        assert "floating-point" in result.record.reason
    ok = run_cell(backend, "t", Cell(size=16, op="matmul", dtype="int32", device="CPU:0"), QUICK, 0)
    assert ok.record.status == "ok"


def test_seed_question_gradient(tf: ModuleType) -> None:
    """The seed's third question: Keras normalises q, so the gradient is [-0.25, 1, 1], not [-1.25, 0, 0]."""
    q = tf.Variable([[0.8, 0.1, 0.1]])
    p = tf.constant([[1.0, 0.0, 0.0]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.keras.losses.categorical_crossentropy(p, q, from_logits=False))
    np.testing.assert_allclose(tape.gradient(loss, q).numpy(), [[-0.25, 1.0, 1.0]], rtol=1e-6)


def test_a_result_off_the_reference_is_wrong(tf: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    original = ops.OPS["add"]

    def build_off_by_one(n: int, dtype: str, rng: np.random.Generator) -> ops.BuiltOp:
        built = original.build(n, dtype, rng)
        reference = built.reference
        return ops.BuiltOp(fn=built.fn, args=built.args, reference=lambda: [r + 1 for r in reference()])

    monkeypatch.setitem(ops.OPS, "add", ops.OpDef(**{**original.__dict__, "build": build_off_by_one}))
    result = run_cell(TFBackend(), "t", Cell(size=64, op="add", dtype="float32", device="CPU:0"), QUICK, 0)
    assert result.record.status == "wrong"
    assert "reference" in result.record.reason


def test_output_on_another_device_is_a_fallback(tf: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    original = ops.OPS["add"]

    def build_escaping(n: int, dtype: str, rng: np.random.Generator) -> ops.BuiltOp:
        built = original.build(n, dtype, rng)

        def add_then_move(a: Any, b: Any) -> Any:
            with tf.device("/device:CPU:0"):
                return tf.identity(built.fn(a, b))

        return ops.BuiltOp(fn=add_then_move, args=built.args, reference=built.reference)

    monkeypatch.setitem(ops.OPS, "add", ops.OpDef(**{**original.__dict__, "build": build_escaping}))
    result = run_cell(TFBackend(), "t", Cell(size=64, op="add", dtype="float32", device="CPU:1"), QUICK, 0)
    assert result.record.status == "fallback"
    assert result.record.placed_device == "CPU:0"
    assert "CPU:1" in result.record.reason
