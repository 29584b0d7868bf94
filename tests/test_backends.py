"""The backends package: placement decisions, routing, the op registry, no import cycles, and the contract every
framework's backend keeps (one parametrised suite over every installed framework)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devbench import frameworks, ops
from devbench.backends import ROUTES, RoutingBackend, target_for
from devbench.backends.base import (
    CellFailure,
    FrameworkBackend,
    check_against_reference,
    classify,
    placement_failure,
)
from devbench.errors import first_line
from devbench.frameworks.base import SYNC_MODES
from devbench.runner import run_cell
from devbench.schema import VisitRecord
from devbench.spec import NUMPY_DEVICE, Cell, TimingPolicy

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


# ---------------------------------------------------------------------------------------------------------
# The contract every framework's backend keeps: one parametrised suite, run against every installed framework
# (the framework-specific tests live in test_<framework>_backend.py)


FRAMEWORK_DEVICES = [
    pytest.param(("tf", "CPU:0"), marks=pytest.mark.tf, id="tf"),
    pytest.param(("jax", "jax:cpu:0"), id="jax"),
    pytest.param(("torch", "torch:cpu"), id="torch"),
    pytest.param(("numpy", NUMPY_DEVICE), id="numpy"),
]
COMPILED_MODE = {"tf": "function", "jax": "jit"}
"""A mode that traces (compiles) the op once per cell, where the framework has one cheap enough to test here
(torch.compile takes a minute: test_torch_backend.py runs it in a process of its own)."""
QUICK = TimingPolicy(max_cell_time=0.1, min_samples=3, max_samples=10, warmup_time=0.01, min_block_time=0.002)
FLOATS = ("float32", "float64", "float16", "bfloat16")


@dataclass
class Contract:
    key: str
    device: str
    backend: FrameworkBackend

    def record(self, backend: FrameworkBackend | None = None, **cell: Any) -> VisitRecord:
        fields: dict[str, Any] = {"size": 16, "op": "matmul", "dtype": "float32", **cell}
        return run_cell(backend or self.backend, "t", Cell(device=self.device, **fields), QUICK, seed=0).record

    def ok(self, **cell: Any) -> VisitRecord:
        record = self.record(**cell)
        assert record.status == "ok", record.reason
        return record


_BACKENDS: dict[str, FrameworkBackend] = {}


@pytest.fixture(params=FRAMEWORK_DEVICES)
def contract(request: pytest.FixtureRequest) -> Contract:
    key, device = request.param
    pytest.importorskip(frameworks.FRAMEWORKS[key].module)
    if key not in _BACKENDS:  # one backend per framework for the session: its checks are remembered
        backend = RoutingBackend().backend_for_device(device)
        assert isinstance(backend, FrameworkBackend)
        _BACKENDS[key] = backend
    return Contract(key, device, _BACKENDS[key])


def _unsupported_here(key: str, op: str, dtype: str) -> str:
    """Why ``op`` at ``dtype`` is ``unsupported`` on framework ``key`` ('' where it must run)."""
    if dtype == "int32" and ops.OPS[op].needs_float:
        return "needs a floating-point dtype"
    if key == "numpy" and dtype == "bfloat16":
        return "numpy has no bfloat16 arithmetic"
    return ""


@pytest.mark.parametrize("dtype", [*FLOATS, "int32"])
@pytest.mark.parametrize("op", list(ops.OPS))
def test_every_op_matches_the_numpy_reference_or_is_unsupported(contract: Contract, op: str, dtype: str) -> None:
    if dtype == "int32" and op not in ("matmul", "add", "reduce_sum", "dense_step", "softmax_xent_grad"):
        pytest.skip("int32 conv2d has no kernel on every framework's CPU: not part of the contract")
    cell = Cell(size=ops.CHECK_SIZE, op=op, dtype=dtype, device=contract.device)
    why = _unsupported_here(contract.key, op, dtype)
    if why:
        record = contract.record(op=op, dtype=dtype)
        assert record.status == "unsupported"
        assert why in record.reason
        return
    contract.backend.check_correctness(cell, seed=0)  # raises CellFailure("wrong") on a miss


def test_a_result_off_the_reference_is_wrong(contract: Contract, monkeypatch: pytest.MonkeyPatch) -> None:
    if contract.key == "numpy":
        pytest.skip("numpy's reference is numpy's own implementation: it cannot be off it")

    def reference_off_by_one(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.add(a, b) + 1.0
        return out

    monkeypatch.setitem(ops.OPS, "add", replace(ops.OPS["add"], numpy=reference_off_by_one))
    record = contract.record(type(contract.backend)(), op="add")  # a fresh backend: nothing checked yet
    assert record.status == "wrong"
    assert "off the numpy float64 reference" in record.reason


def test_a_cell_runs_on_the_requested_device_with_no_traces_in_eager_mode(contract: Contract) -> None:
    record = contract.ok(op="add")
    assert record.placed_device == contract.device
    assert record.median_s > 0
    assert record.cold_s > 0
    assert record.gflops > 0
    assert record.traces == 0
    assert not any(note in record.reason for note in ("retraced", "recompiled", "synchronous"))


@pytest.mark.parametrize("sync", list(SYNC_MODES))
def test_every_sync_runs_and_none_is_flagged(contract: Contract, sync: str) -> None:
    record = contract.ok(op="dense_step", sync=sync)
    assert record.unsynchronized == (sync == "none")
    assert set(contract.backend.SYNCS) == set(frameworks.FRAMEWORKS[contract.key].syncs)


def test_a_mode_the_framework_lacks_is_unsupported_naming_the_ones_it_has(contract: Contract) -> None:
    framework = frameworks.FRAMEWORKS[contract.key]
    others = [mode for mode in frameworks.all_modes() if framework.modes and mode not in framework.modes]
    for mode in others:
        record = contract.record(mode=mode)
        assert record.status == "unsupported"
        assert record.reason == f"mode {mode!r} does not exist on {framework.label} (it has " \
                                f"{', '.join(framework.modes)})"
    if not framework.modes:  # the numpy baseline has no modes of its own: it runs every cell's mode
        assert contract.ok(mode="graph_loop").status == "ok"


@pytest.mark.parametrize("op", ["dense_step", "softmax_xent_grad"])
def test_int32_gradients_are_unsupported_not_crashes(contract: Contract, op: str) -> None:
    record = contract.record(op=op, dtype="int32")
    assert record.status == "unsupported"
    assert "needs a floating-point dtype" in record.reason
    contract.backend.release()  # after a failed cell too


def test_a_compiled_mode_traces_once_per_cell(contract: Contract) -> None:
    mode = COMPILED_MODE.get(contract.key)
    if mode is None:
        pytest.skip(f"{contract.key}: no compiled mode cheap enough to test here")
    record = contract.ok(op="dense_step", mode=mode)
    assert record.traces == 1
    assert "retraced" not in record.reason
    assert "recompiled" not in record.reason


def test_graph_loop_with_transfer_is_unsupported(contract: Contract) -> None:
    if "graph_loop" not in frameworks.FRAMEWORKS[contract.key].modes:
        pytest.skip(f"{contract.key} has no graph_loop")
    record = contract.record(mode="graph_loop", sync="transfer")
    assert record.status == "unsupported"
    assert "graph_loop" in record.reason


def test_initialise_times_the_first_op_once_per_device(contract: Contract) -> None:
    first = contract.backend.initialise(contract.device)
    again = contract.backend.initialise(contract.device)
    assert first.device == contract.device
    assert first.runtime == frameworks.FRAMEWORKS[contract.key].module
    assert first.error == ""
    assert again.already_initialised
    assert again.init_s == first.init_s
    if contract.key == "numpy":
        assert first.init_s is None  # the host's own memory: nothing to initialise
    else:
        assert first.init_s is not None
        assert first.init_s >= 0


def test_the_copy_probe_copies_on_the_device(contract: Contract) -> None:
    seconds = contract.backend.measure_copy(contract.device, 2**20, QUICK)
    assert seconds > 0
