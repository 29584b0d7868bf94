"""TF32 state and --tf32 on the real frameworks (JAX and TensorFlow installed here; PyTorch where it is)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import devbench
from devbench.errors import UsageError
from devbench.tf32 import apply_tf32, describe, frameworks_of, tf32_state

SRC = str(Path(devbench.__file__).resolve().parent.parent)


def test_frameworks_of_device_names() -> None:
    assert frameworks_of(["numpy:CPU", "jax:gpu:0", "torch:cuda:0", "CPU:0"]) == ("tf", "torch", "jax")
    assert frameworks_of(["torch:cpu", "jax:cpu:0"]) == ("torch", "jax")
    assert frameworks_of(["tf:GPU:0"]) == ("tf",)
    assert frameworks_of(["numpy:CPU"]) == ()


def test_bad_setting_and_framework_are_usage_errors() -> None:
    with pytest.raises(UsageError, match=r"--tf32 'of' is not one of on, off, default"):
        apply_tf32("of", ["jax"])
    with pytest.raises(UsageError, match="unknown framework 'mxnet'"):
        tf32_state(["mxnet"])


@pytest.mark.slow
def test_tensorflow_is_not_imported_unless_asked() -> None:
    pytest.importorskip("jax")
    code = ("import sys; from devbench.tf32 import apply_tf32, tf32_state; tf32_state(['jax', 'numpy']); "
            "apply_tf32('off', ['jax', 'torch']); print('tensorflow' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_jax_off_forces_highest_and_state_follows(jax_precision: ModuleType) -> None:
    jax_precision.config.update("jax_default_matmul_precision", None)
    assert tf32_state(["jax"])["jax"]["state"] == "enabled"  # JAX's default lets XLA use TF32 on a GPU
    result = apply_tf32("off", ["jax"])["jax"]
    assert jax_precision.config.jax_default_matmul_precision == "highest"
    assert result["applied"] == "off"
    assert result["calls"] == ["jax.config.update('jax_default_matmul_precision', 'highest')"]
    assert result["state"]["state"] == "disabled"
    assert tf32_state(["jax"])["jax"]["settings"] == {"default_matmul_precision": "highest"}


def test_jax_on_and_default(jax_precision: ModuleType) -> None:
    apply_tf32("on", ["jax"])
    assert jax_precision.config.jax_default_matmul_precision == "tensorfloat32"
    jax_precision.config.update("jax_default_matmul_precision", "float32")
    kept = apply_tf32("default", ["jax"])["jax"]
    assert kept["calls"] == []
    assert kept["applied"] == "default"
    assert jax_precision.config.jax_default_matmul_precision == "float32"  # default touches nothing
    assert kept["state"]["state"] == "disabled"


def test_missing_framework_is_unknown_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError, installed or not
    assert tf32_state(["torch"])["torch"]["state"] == "unknown"
    assert "not installed" in tf32_state(["torch"])["torch"]["why"]
    applied = apply_tf32("off", ["torch"])["torch"]
    assert applied["applied"] == "not applied"
    assert applied["calls"] == []


def test_describe_says_what_applied(jax_precision: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    line = describe(apply_tf32("off", ["jax", "torch"]), "off")
    assert line == "TF32 (--tf32 off): jax disabled, torch not applied (torch is not installed)"
    assert describe({}, "on") == "TF32 (--tf32 on): no framework with TF32 in this run"


@pytest.mark.tf
def test_tensorflow_off_and_on(tf: ModuleType) -> None:
    before = tf.config.experimental.tensor_float_32_execution_enabled()
    try:
        result = apply_tf32("off", ["tf"])["tf"]
        assert tf.config.experimental.tensor_float_32_execution_enabled() is False
        assert result["state"]["state"] == "disabled"
        assert result["calls"] == ["tf.config.experimental.enable_tensor_float_32_execution(False)"]
        apply_tf32("on", ["tf"])
        assert tf.config.experimental.tensor_float_32_execution_enabled() is True
        assert tf32_state(["tf"])["tf"] == {
            "state": "enabled", "why": "tf.config.experimental.tensor_float_32_execution_enabled() is True",
            "settings": {"tensor_float_32_execution": True}}
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(before)


def test_torch_off_sets_all_three_flags() -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed here")

    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision())
    try:
        result = apply_tf32("off", ["torch"])["torch"]
        assert torch.backends.cuda.matmul.allow_tf32 is False
        assert torch.backends.cudnn.allow_tf32 is False
        assert torch.get_float32_matmul_precision() == "highest"
        assert result["state"]["state"] == "disabled"
        apply_tf32("on", ["torch"])
        assert tf32_state(["torch"])["torch"]["state"] == "enabled"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[0], saved[1]
        torch.set_float32_matmul_precision(saved[2])
