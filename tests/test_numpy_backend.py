"""The numpy baseline: every op agrees with TensorFlow's on the same inputs, cells are timed and routed."""

from __future__ import annotations

import sys
from types import ModuleType

import numpy as np
import pytest

from devbench import ops
from devbench.backends import RoutingBackend
from devbench.backends.numpy import NumpyBackend, build_numpy
from devbench.devices import canonical, resolve
from devbench.errors import UsageError
from devbench.guards import MemoryGuard
from devbench.runner import run_cell
from devbench.spec import NUMPY_DEVICE, Cell, TimingPolicy

QUICK = TimingPolicy(max_cell_time=0.05, min_samples=3, max_samples=10, warmup_time=0.005, min_block_time=0.001)


def test_numpy_device_names() -> None:
    assert canonical("numpy") == NUMPY_DEVICE
    assert canonical(" NumPy:cpu ") == NUMPY_DEVICE
    assert resolve("CPU:0,numpy:CPU", ["CPU:0"]) == ("CPU:0", NUMPY_DEVICE)
    with pytest.raises(UsageError, match="does not exist here"):
        resolve("GPU:0", ["CPU:0"])


def test_memory_guard_counts_numpy_cells_as_host_memory() -> None:
    guard = MemoryGuard(host_available=lambda: 2**30, device_free=lambda d: None)
    reason = guard(Cell(size=8192, op="matmul", dtype="float32", device=NUMPY_DEVICE))
    assert reason is not None
    assert "host memory" in reason


def test_bfloat16_is_unsupported_in_numpy() -> None:
    result = run_cell(NumpyBackend(), "t", Cell(size=16, op="matmul", dtype="bfloat16", device=NUMPY_DEVICE),
                      QUICK, seed=0)
    assert result.record.status == "unsupported"
    assert "bfloat16" in result.record.reason


def test_sync_modes_are_noted_as_no_ops() -> None:
    for sync in ("transfer", "full"):
        cell = Cell(size=16, op="add", dtype="float32", device=NUMPY_DEVICE, sync=sync)
        record = run_cell(NumpyBackend(), "t", cell, QUICK, seed=0).record
        assert record.status == "ok"
        assert record.sync == sync
        assert "numpy is synchronous" in record.reason


def test_routing_sends_numpy_cells_to_numpy_without_starting_tensorflow() -> None:
    backend = RoutingBackend()
    record = run_cell(backend, "t", Cell(size=16, op="matmul", dtype="float32", device=NUMPY_DEVICE), QUICK, 0).record
    assert record.status == "ok"
    assert backend.created == ("devbench.backends.numpy:NumpyBackend",)
    bad = run_cell(backend, "t", Cell(size=16, op="matmul", dtype="bfloat16", device=NUMPY_DEVICE), QUICK, 0).record
    assert bad.status == "unsupported"


def test_same_seed_same_inputs_as_tensorflow_builders() -> None:
    """numpy computes on the op's own seeded host inputs, as every backend does (dense_step's W and b too)."""
    for op in ("matmul", "dense_step"):
        built = build_numpy(op, 8, "float64", 3)
        inputs = ops.OPS[op].host_inputs(8, "float64", 3)
        for got, want in zip((*built.args, *built.params), (*inputs.args, *inputs.params), strict=True):
            np.testing.assert_array_equal(got, want)
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(build_numpy("matmul", 8, "float64", 3).args[0], rng.uniform(-1, 1, (8, 8)))


def _tf_output(tf: ModuleType, op: str, args: tuple[np.ndarray, ...], params: tuple[np.ndarray, ...]
               ) -> list[np.ndarray]:
    """TF's result for ``op`` on exactly these float64 inputs (float64 everywhere: only formulas differ)."""
    tensors = [tf.constant(a) for a in args]
    if op == "dense_step":
        w, b = params
        layer = tf.keras.layers.Dense(w.shape[1], kernel_regularizer=tf.keras.regularizers.L2(ops.L2),
                                      dtype="float64")
        model = tf.keras.Sequential([tf.keras.Input(shape=(w.shape[0],), dtype="float64"), layer])
        layer.kernel.assign(w)
        layer.bias.assign(b)
        x, y = tensors
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            total = tf.reduce_mean(tf.square(pred - y)) + tf.cast(tf.reduce_sum(model.losses), tf.float64)
        kernel_grad, bias_grad = tape.gradient(total, model.trainable_variables)
        return [total.numpy(), kernel_grad.numpy(), bias_grad.numpy()]
    if op == "softmax_xent_grad":
        p, q = tensors
        with tf.GradientTape() as tape:
            tape.watch(q)
            loss = tf.reduce_sum(tf.keras.losses.categorical_crossentropy(p, q, from_logits=False))
        return [tape.gradient(loss, q).numpy()]
    fns = {"matmul": tf.linalg.matmul, "add": tf.math.add,
           "reduce_sum": lambda a: tf.math.reduce_sum(a, axis=1),
           "conv2d": lambda x, w: tf.nn.conv2d(x, w, strides=1, padding="SAME")}
    return [fns[op](*tensors).numpy()]


@pytest.mark.tf
@pytest.mark.parametrize("op", list(ops.OPS))
def test_numpy_ops_agree_with_tensorflow(tf: ModuleType, op: str) -> None:
    built = build_numpy(op, 12, "float64", 5)
    got = built.fn(*built.args, *built.params)
    got_leaves = list(got) if isinstance(got, tuple) else [got]
    with tf.device("/device:CPU:0"):
        want = _tf_output(tf, op, built.args, built.params)
    assert len(got_leaves) == len(want)
    for g, w in zip(got_leaves, want, strict=True):
        # float64 throughout; dense_step's loss differs by Keras' float32 L2 factor (see ops.TOLERANCE)
        assert ops.relative_error(np.asarray(g), w) <= ops.TOLERANCE["float64"]


def test_numpy_backend_does_not_import_tensorflow() -> None:
    import subprocess

    from tests.cli_helpers import SRC

    code = ("import sys\nfrom devbench.backends import RoutingBackend\nfrom devbench.runner import run_cell\n"
            "from devbench.spec import Cell, TimingPolicy\n"
            "r = run_cell(RoutingBackend(), 't', Cell(16, 'matmul', 'float32', 'numpy:CPU'), "
            "TimingPolicy(max_cell_time=0.05), 0)\n"
            "assert r.record.status == 'ok', r.record.reason\n"
            "assert 'tensorflow' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": SRC, "PATH": ""})
    assert proc.returncode == 0, proc.stderr
