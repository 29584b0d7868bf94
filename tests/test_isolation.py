"""Isolation between cells, on real TensorFlow: a cell that fails half-way leaves nothing behind that changes
the next cell's result (variables, tensors it allocated, tf.function traces)."""

from __future__ import annotations

import weakref
from dataclasses import replace
from types import ModuleType
from typing import Any

import pytest

from devbench.ops import OPS, Expression, OpDef
from devbench.runner import run_cell
from devbench.spec import Cell, TimingPolicy

pytestmark = pytest.mark.tf

HOG = 512
"""Side of the float32 matrix the exploding op allocates on every call (1 MiB each)."""

EXPLODE_AT_CALL = 5
"""The exploding op passes its cold call and the correctness check, then raises during warm-up."""


def _explode_op(handles: dict[str, Any]) -> OpDef:
    def expression(tf: Any, params: tuple[Any, ...]) -> Expression:
        held: dict[str, Any] = {}
        hogs: list[Any] = []
        calls = [0]

        def add(x: Any, y: Any) -> Any:
            return x + y

        traced = tf.function(add)  # a trace cache that must not outlive the cell

        def fn(x: Any, y: Any) -> Any:
            n = int(x.shape[0])
            if "variable" not in held:
                held["variable"] = tf.Variable(tf.zeros_like(x))  # a variable, like Keras layers create
                if n > 16:
                    handles["variable"] = weakref.ref(held["variable"])
                    handles["hogs"] = hogs
            calls[0] += 1
            hogs.append(tf.random.uniform((HOG, HOG)))  # memory that is only freed if the cell is
            held["variable"].assign_add(x)
            if n > 16 and calls[0] >= EXPLODE_AT_CALL:
                raise RuntimeError(f"exploded at call {calls[0]} holding {len(hogs)} tensors")
            return traced(x, y)

        return Expression(fn, state=held)

    return replace(OPS["add"], name="explode", summary="allocates, then raises mid-measurement", tf=expression)


def test_a_failing_cell_between_two_identical_cells_leaves_their_medians_consistent(
        tf: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    from devbench.backends.tf import TFBackend

    handles: dict[str, Any] = {}
    monkeypatch.setitem(OPS, "explode", _explode_op(handles))
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
