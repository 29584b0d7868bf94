"""Device initialisation as its own number: the first op per device is timed once per process, before anything
else of devbench runs there, and a second request says it was already done instead of timing a warm op."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devbench.backends import NOT_INITIALISED, RoutingBackend, initialise
from devbench.backends.base import DeviceInit, FirstOps
from devbench.backends.numpy import NumpyBackend

SRC = str(Path(__file__).resolve().parents[1] / "src")


class StepClock:
    """Each reading advances by the next step (seconds), so a timed op lasts exactly what the test says."""

    def __init__(self, *steps: float) -> None:
        self.now = 100.0
        self.steps = list(steps)

    def __call__(self) -> float:
        reading = self.now
        if self.steps:
            self.now += self.steps.pop(0)
        return reading


def test_the_first_op_is_timed_once_and_a_repeat_is_flagged_not_retimed() -> None:
    calls: list[str] = []
    first_ops = FirstOps(clock=StepClock(2.5, 1.0, 1.0))
    first = first_ops.time("tensorflow", "GPU:0", lambda: calls.append("GPU:0"), "a tiny add")
    assert first == DeviceInit("GPU:0", "tensorflow", 2.5, "a tiny add")
    again = first_ops.time("tensorflow", "GPU:0", lambda: calls.append("GPU:0"), "a tiny add")
    assert calls == ["GPU:0"]
    assert again.already_initialised
    assert again.init_s == 2.5
    # the same name under another framework is another device
    other = first_ops.time("jax", "GPU:0", lambda: calls.append("jax GPU:0"), "a tiny add")
    assert not other.already_initialised
    assert other.init_s == 1.0
    assert calls == ["GPU:0", "jax GPU:0"]


def test_a_first_op_that_fails_is_recorded_with_its_error_not_raised() -> None:
    def broken() -> None:
        raise RuntimeError("CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected\nmore")

    first_ops = FirstOps(clock=StepClock(0.1))
    result = first_ops.time("tensorflow", "GPU:1", broken, "a tiny add")
    assert result.init_s is None
    assert result.error == "RuntimeError: CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected"
    assert first_ops.time("tensorflow", "GPU:1", broken, "a tiny add").already_initialised


def test_numpy_has_nothing_to_initialise() -> None:
    result = NumpyBackend.initialise("numpy:CPU")
    assert result.init_s is None
    assert result.runtime == "numpy"
    assert "nothing" in result.what
    assert NumpyBackend.runtime_init() is None
    assert NumpyBackend.initialise("numpy:CPU").already_initialised


class _FakeFramework:
    """A backend whose first op takes the time its clock says, with a start-up cost of its own."""

    def __init__(self, first_ops: FirstOps) -> None:
        self.first_ops = first_ops
        self.ran: list[str] = []

    def initialise(self, device: str) -> DeviceInit:
        return self.first_ops.time("fake", device, lambda: self.ran.append(device), "one add")

    @staticmethod
    def runtime_init() -> dict[str, Any] | None:
        return {"runtime_init_s": 3.0}

    def run_cell(self, cell: object, policy: object, seed: int) -> object:
        raise AssertionError("initialise must not run cells")

    def classify(self, exc: BaseException) -> tuple[str, str]:
        return "error", str(exc)

    def release(self) -> None:
        pass


class _NoInit:
    def run_cell(self, cell: object, policy: object, seed: int) -> object:
        raise AssertionError("not called")

    def classify(self, exc: BaseException) -> tuple[str, str]:
        return "error", str(exc)

    def release(self) -> None:
        pass


def test_initialise_reports_every_device_and_each_runtime_once() -> None:
    framework = _FakeFramework(FirstOps(clock=StepClock(0.5, 0.25, 0.125)))
    router = RoutingBackend(backends={"devbench.backends.tf:TFBackend": framework,  # type: ignore[dict-item]
                                      "devbench.backends.numpy:NumpyBackend": _NoInit()})  # type: ignore[dict-item]
    report = initialise(["CPU:0", "GPU:0", "numpy:CPU"], router)
    assert framework.ran == ["CPU:0", "GPU:0"]
    assert report["devices"]["CPU:0"]["init_s"] == 0.5
    assert report["devices"]["GPU:0"]["init_s"] == 0.125
    assert report["devices"]["GPU:0"]["already_initialised"] is False
    assert report["devices"]["numpy:CPU"]["init_s"] is None
    assert report["devices"]["numpy:CPU"]["what"] == NOT_INITIALISED
    assert report["runtimes"] == {"fake": {"runtime_init_s": 3.0}}
    json.dumps(report)  # goes into meta.json as is
    again = initialise(["GPU:0"], router)
    assert again["devices"]["GPU:0"]["already_initialised"] is True
    assert again["devices"]["GPU:0"]["init_s"] == 0.125
    assert framework.ran == ["CPU:0", "GPU:0"]


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": SRC, **env})


def test_a_numpy_only_initialise_never_imports_tensorflow() -> None:
    proc = _python("import sys, json\n"
                   "from devbench.backends import initialise\n"
                   "report = initialise(['numpy:CPU'])\n"
                   "print(json.dumps([report, 'tensorflow' in sys.modules]))")
    assert proc.returncode == 0, proc.stderr
    report, imported = json.loads(proc.stdout)
    assert imported is False
    assert report["devices"]["numpy:CPU"]["init_s"] is None
    assert report["runtimes"] == {}


# ---------------------------------------------------------------------------------------------------------
# Real TensorFlow


@pytest.mark.tf
@pytest.mark.slow
def test_a_fresh_process_times_tensorflow_start_up_and_each_devices_first_op() -> None:
    # A process of its own, so that the first op really is the first thing run on each device.
    proc = _python("import json\n"
                   "from devbench.backends import initialise\n"
                   "print(json.dumps([initialise(['CPU:0', 'CPU:1', 'numpy:CPU']), initialise(['CPU:0'])]))",
                   DEVBENCH_LOGICAL_CPUS="2")
    assert proc.returncode == 0, proc.stderr
    first, second = json.loads(proc.stdout.splitlines()[-1])
    for device in ("CPU:0", "CPU:1"):
        entry = first["devices"][device]
        assert entry["init_s"] > 0
        assert entry["runtime"] == "tensorflow"
        assert entry["already_initialised"] is False
        assert entry["error"] == ""
    assert first["devices"]["numpy:CPU"]["init_s"] is None
    runtime = first["runtimes"]["tensorflow"]
    assert runtime["runtime_init_s"] > 0
    assert runtime["runtime_init_s"] == pytest.approx(runtime["import_s"] + runtime["context_s"])
    assert runtime["imported_before"] is False
    assert second["devices"]["CPU:0"]["already_initialised"] is True
    assert second["devices"]["CPU:0"]["init_s"] == first["devices"]["CPU:0"]["init_s"]


@pytest.mark.tf
def test_a_cell_initialises_its_device_before_its_correctness_check(monkeypatch: pytest.MonkeyPatch,
                                                                    tf: Any) -> None:
    import devbench.backends.tf as tf_backend
    from devbench.spec import Cell, TimingPolicy

    fresh = FirstOps()
    monkeypatch.setattr(tf_backend, "FIRST_OPS", fresh)
    seen_at_check: list[bool] = []
    real_check = tf_backend.TFBackend.check_correctness

    def check(self: tf_backend.TFBackend, cell: Cell, seed: int) -> None:
        seen_at_check.append(("tensorflow", cell.device) in fresh.seen)
        real_check(self, cell, seed)

    monkeypatch.setattr(tf_backend.TFBackend, "check_correctness", check)
    policy = TimingPolicy(max_cell_time=0.05, min_samples=1, max_samples=2, warmup_time=0.0, min_block_time=0.001)
    tf_backend.TFBackend().run_cell(Cell(size=8, op="add", dtype="float32", device="CPU:1"), policy, seed=0)
    assert seen_at_check == [True]
    init = fresh.seen[("tensorflow", "CPU:1")]
    assert init.init_s is not None
    assert init.init_s > 0
    assert init.what == tf_backend.FIRST_OP
    # and the backend's own initialise now reports it as done
    assert tf_backend.TFBackend.initialise("CPU:1").already_initialised
