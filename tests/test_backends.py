"""The backends package without a framework: placement decisions, routing, the op registry, no import cycles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from devbench import ops
from devbench.backends import ROUTES, RoutingBackend, target_for
from devbench.backends.base import CellFailure, check_against_reference, classify
from devbench.backends.tf import placement_failure
from devbench.errors import first_line
from devbench.spec import NUMPY_DEVICE

SRC = Path(__file__).resolve().parents[1] / "src"


# ---------------------------------------------------------------------------------------------------------
# Placement: device and backing_device


def test_outputs_on_the_requested_device_in_name_and_memory_pass() -> None:
    assert placement_failure("GPU:0", [("GPU:0", "GPU:0"), ("GPU:0", "GPU:0")]) is None


def test_a_gpu_tensor_backed_by_host_memory_is_a_fallback() -> None:
    """int32 add/reduce_sum: GPU kernels that keep their data on the host; ``device`` alone says GPU:0."""
    failure = placement_failure("GPU:0", [("GPU:0", "CPU:0")])
    assert failure is not None
    assert failure.status == "fallback"
    assert failure.placed_device == "CPU:0"
    assert "GPU:0 in name but its memory is on CPU:0" in failure.reason


def test_one_leaf_backed_by_host_memory_is_enough_for_a_fallback() -> None:
    failure = placement_failure("GPU:0", [("GPU:0", "GPU:0"), ("GPU:0", "CPU:0")])
    assert failure is not None
    assert failure.status == "fallback"


def test_every_cpu_device_is_the_same_host_memory() -> None:
    """TF backs int32 results of a tf.function on CPU:1 with CPU:0's allocator: the same memory, no fallback."""
    assert placement_failure("CPU:1", [("CPU:1", "CPU:0")]) is None


def test_an_output_on_another_device_is_a_fallback_naming_it() -> None:
    failure = placement_failure("GPU:0", [("CPU:0", "CPU:0")])
    assert failure is not None
    assert failure.reason == "output placed on CPU:0, not on the requested GPU:0"
    assert failure.placed_device == "CPU:0"


# ---------------------------------------------------------------------------------------------------------
# Shared classification and correctness


def test_shared_classification() -> None:
    assert classify(CellFailure("wrong", "off by 1")) == ("wrong", "off by 1")
    assert classify(ops.UnsupportedCombination("no bfloat16\ncontext")) == ("unsupported", "no bfloat16")
    assert classify(MemoryError()) == ("oom", "MemoryError")
    assert classify(RuntimeError("\n  boom  \nstack")) == ("error", "RuntimeError: boom")


def test_first_line_skips_blank_lines_and_cuts() -> None:
    assert first_line("\n\n  one \ntwo") == "one"
    assert first_line("x" * 400) == "x" * 300
    assert first_line("abc", limit=2) == "ab"


def test_reference_check_names_the_leaf_and_the_tolerance() -> None:
    ref = [np.ones(4), np.zeros(2)]
    assert check_against_reference([np.ones(4), np.zeros(2)], ref, "float32") is None
    failure = check_against_reference([np.ones(4) * 1.01, np.zeros(2)], ref, "float32", who="numpy")
    assert failure is not None
    assert failure.status == "wrong"
    assert failure.reason.startswith("numpy output 0 at n=")
    assert "float32 allows 0.0001" in failure.reason
    short = check_against_reference([np.ones(4)], ref, "float32")
    assert short is not None
    assert "1 outputs where the reference has 2" in short.reason


# ---------------------------------------------------------------------------------------------------------
# Routing


@pytest.mark.parametrize(("device", "target"), [
    (NUMPY_DEVICE, "devbench.backends.numpy:NumpyBackend"),
    ("CPU:0", "devbench.backends.tf:TFBackend"),
    ("GPU:3", "devbench.backends.tf:TFBackend"),
    ("jax:cpu:0", "devbench.backends.jax:JaxBackend"),
    ("jax:gpu:1", "devbench.backends.jax:JaxBackend"),
    ("torch:cpu", "devbench.backends.torch:TorchBackend"),
    ("torch:cuda:0", "devbench.backends.torch:TorchBackend"),
])
def test_device_names_route_to_their_backend(device: str, target: str) -> None:
    assert target_for(device) == target


def test_a_device_no_backend_claims_is_refused() -> None:
    with pytest.raises(ValueError, match="no backend runs device 'mxnet:cpu:0'"):
        target_for("mxnet:cpu:0")


def test_every_route_names_an_existing_backend_class() -> None:
    import importlib

    for route in ROUTES:
        module, _, name = route.target.partition(":")
        assert callable(getattr(importlib.import_module(module), name))


def test_an_injected_backend_is_used_and_nothing_else_is_created() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.cells: list[str] = []

        def run_cell(self, cell: object, policy: object, seed: int) -> object:
            self.cells.append(str(cell))
            return "outcome"

        def classify(self, exc: BaseException) -> tuple[str, str]:
            return "error", "recorded"

        def release(self) -> None:
            pass

    from devbench.spec import Cell, TimingPolicy

    recorder = Recorder()
    routing = RoutingBackend(backends={"devbench.backends.tf:TFBackend": recorder})  # type: ignore[dict-item]
    assert routing.classify(RuntimeError("x")) == ("error", "RuntimeError: x")  # before any cell: shared rules
    routing.run_cell(Cell(size=8, op="add", dtype="float32", device="CPU:0"), TimingPolicy(), 0)
    assert len(recorder.cells) == 1
    assert routing.classify(RuntimeError("x")) == ("error", "recorded")
    assert routing.created == ("devbench.backends.tf:TFBackend",)


# ---------------------------------------------------------------------------------------------------------
# The op registry


def test_every_op_says_whether_it_is_memory_or_compute_bound() -> None:
    bound = {name: op.bound for name, op in ops.OPS.items()}
    assert bound == {"matmul": "compute", "conv2d": "compute", "dense_step": "compute",
                     "add": "memory", "reduce_sum": "memory", "softmax_xent_grad": "memory"}


@pytest.mark.parametrize("op", list(ops.OPS))
def test_host_inputs_are_seeded_and_float64(op: str) -> None:
    first, again = ops.OPS[op].host_inputs(6, "float32", 11), ops.OPS[op].host_inputs(6, "float32", 11)
    other = ops.OPS[op].host_inputs(6, "float32", 12)
    for a, b, _c in zip((*first.args, *first.params), (*again.args, *again.params), (*other.args, *other.params),
                       strict=True):
        assert a.dtype == np.float64
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(first.args, other.args, strict=True))


def test_int32_inputs_are_small_integers_and_gradients_need_floats() -> None:
    (a, _b) = ops.OPS["add"].host_inputs(16, "int32", 0).args
    assert np.array_equal(a, np.rint(a))
    assert np.abs(a).max() <= 3
    with pytest.raises(ops.UnsupportedCombination, match="a gradient needs a floating-point dtype, not int32"):
        ops.OPS["softmax_xent_grad"].host_inputs(16, "int32", 0)


# ---------------------------------------------------------------------------------------------------------
# Imports


MODULES = ("devbench.backends", "devbench.backends.base", "devbench.backends.numpy", "devbench.backends.tf",
           "devbench.ops", "devbench.runner", "devbench.timer", "devbench.calibrate", "devbench.guards",
           "devbench.sweep", "devbench.refine", "devbench.pytest_plugin")


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone_without_tensorflow(module: str) -> None:
    """A fresh interpreter per module: an import cycle would fail one of them (partially initialised module)."""
    code = f"import sys, {module}\nassert 'tensorflow' not in sys.modules, '{module} imported tensorflow'\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": str(SRC), "PATH": ""})
    assert proc.returncode == 0, proc.stderr
