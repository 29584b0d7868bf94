"""Isolation between cells, on real TensorFlow: a cell that fails half-way leaves nothing behind that changes
the next cell's result (variables, tensors it allocated, tf.function traces)."""

from __future__ import annotations

import weakref
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from devbench.ops import OPS, BuiltOp, OpDef
from devbench.runner import run_cell
from devbench.spec import Cell, TimingPolicy

pytestmark = pytest.mark.tf

HOG = 512
"""Side of the float32 matrix the exploding op allocates on every call (1 MiB each)."""

EXPLODE_AT_CALL = 5
"""The exploding op passes its cold call and the correctness check, then raises during warm-up."""


def _explode_op(tf: ModuleType, handles: dict[str, Any]) -> OpDef:
    def build(n: int, dtype: str, rng: np.random.Generator) -> BuiltOp:
        a = tf.constant(rng.uniform(-1, 1, (n, n)), dtype=tf.float32)
        b = tf.constant(rng.uniform(-1, 1, (n, n)), dtype=tf.float32)
        state = tf.Variable(tf.zeros((n, n)))  # a variable, like Keras layers create
        hogs: list[Any] = []
        calls = [0]

        def add(x: Any, y: Any) -> Any:
            return x + y

        traced = tf.function(add)  # a trace cache that must not outlive the cell

        def fn(x: Any, y: Any) -> Any:
            calls[0] += 1
            hogs.append(tf.random.uniform((HOG, HOG)))  # memory that is only freed if the cell is
            state.assign_add(x)
            if n > 16 and calls[0] >= EXPLODE_AT_CALL:
                raise RuntimeError(f"exploded at call {calls[0]} holding {len(hogs)} tensors")
            return traced(x, y)

        if n > 16:
            handles["variable"] = weakref.ref(state)
            handles["hogs"] = hogs
        a_host, b_host = a.numpy().astype(np.float64), b.numpy().astype(np.float64)
        return BuiltOp(fn=fn, args=(a, b), reference=lambda: [a_host + b_host], variables=state)

    return OpDef(name="explode", n_means="n×n", summary="allocates, then raises mid-measurement",
                 flops=lambda n: 1.0 * n * n, bytes=lambda n, s: 3.0 * n * n * s,
                 working_set=lambda n, s: 3.0 * n * n * s, build=build, flops_formula="n²",
                 dtypes=("float32",))


def test_a_failing_cell_between_two_identical_cells_leaves_their_medians_consistent(
        tf: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    from devbench.backend import TFBackend

    handles: dict[str, Any] = {}
    monkeypatch.setitem(OPS, "explode", _explode_op(tf, handles))
    backend = TFBackend()
    policy = TimingPolicy(max_cell_time=0.3)
    add = Cell(size=256, op="add", dtype="float32", device="CPU:0")
    before = run_cell(backend, "iso", add, policy, 0).record
    failed = run_cell(backend, "iso", Cell(size=256, op="explode", dtype="float32", device="CPU:0"), policy,
                      0).record
    after = run_cell(backend, "iso", add, policy, 0).record

    assert failed.status == "error"
    assert failed.reason == f"RuntimeError: exploded at call {EXPLODE_AT_CALL} holding {EXPLODE_AT_CALL} tensors"
    assert handles["variable"]() is None  # the failed cell's variable did not survive it
    assert before.status == "ok"
    assert after.status == "ok"
    assert after.placed_device == before.placed_device == "CPU:0"
    ratio = after.median_s / before.median_s
    assert 1 / 3 < ratio < 3, (before.median_s, after.median_s)  # generous: a shared 2-core machine is noisy
