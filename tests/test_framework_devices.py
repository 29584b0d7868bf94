"""Device names of every framework, the default device list, and what routes by name (memory guard,
calibration), all without importing a framework."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from devbench.ceilings import ceiling
from devbench.cli import build_parser
from devbench.cli.sweep import no_gpu_note, spec_from_args
from devbench.devices import canonical, check_names, default_devices, framework_of, is_host_device, resolve
from devbench.errors import UsageError
from devbench.guards import MemoryGuard
from devbench.spec import NUMPY_DEVICE, Cell

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.mark.parametrize(("spelling", "name"), [
    ("jax:cpu", "jax:cpu:0"),
    ("JAX:GPU:1", "jax:gpu:1"),
    ("jax:cuda:2", "jax:gpu:2"),
    ("torch:cpu", "torch:cpu"),
    ("torch:cuda", "torch:cuda:0"),
    (" torch:cuda:3 ", "torch:cuda:3"),
    ("torch:mps", "torch:mps"),
    ("tf:CPU:0", "CPU:0"),
    ("tf:gpu:1", "GPU:1"),
    ("/device:GPU:1", "GPU:1"),
    ("numpy", NUMPY_DEVICE),
])
def test_every_framework_has_one_canonical_spelling(spelling: str, name: str) -> None:
    assert canonical(spelling) == name


@pytest.mark.parametrize(("bad", "message"), [
    ("jax:fpga:0", "bad JAX device name 'jax:fpga:0'; write it like jax:cpu:0 or jax:gpu:1"),
    ("torch:cpu:1", "bad PyTorch device name 'torch:cpu:1'"),
    ("torch:xpu", "bad PyTorch device name 'torch:xpu'"),
    ("tf:", "bad device name 'tf:'"),
])
def test_bad_names_are_one_clear_line(bad: str, message: str) -> None:
    with pytest.raises(UsageError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        canonical(bad)


def test_checking_names_imports_no_framework() -> None:
    code = ("import sys\nfrom devbench.devices import check_names\ncheck_names('jax:cpu:0,torch:cuda:1,tf:GPU:0')\n"
            "assert not {'tensorflow', 'jax', 'torch'} & set(sys.modules), 'a framework was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": str(SRC), "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(UsageError):
        check_names("CPU:0,jax:nope")


def test_host_devices_and_frameworks() -> None:
    assert [is_host_device(d) for d in ("CPU:1", "jax:cpu:0", "torch:cpu", NUMPY_DEVICE)] == [True] * 4
    assert [is_host_device(d) for d in ("GPU:0", "jax:gpu:0", "torch:cuda:0", "torch:mps")] == [False] * 4
    assert [framework_of(d) for d in ("GPU:0", "jax:gpu:0", "torch:cpu", NUMPY_DEVICE)] == ["tf", "jax", "torch",
                                                                                           "numpy"]


@pytest.mark.parametrize(("available", "default"), [
    (["CPU:0", "CPU:1", "jax:cpu:0", "torch:cpu"], ("CPU:0",)),
    (["CPU:0", "GPU:0", "GPU:1", "jax:cpu:0", "jax:gpu:0"], ("CPU:0", "GPU:0", "GPU:1")),
    (["CPU:0", "jax:cpu:0", "jax:gpu:0", "torch:cpu", "torch:cuda:0"], ("CPU:0", "torch:cuda:0")),
    (["jax:cpu:0", "jax:gpu:0"], ("jax:cpu:0", "jax:gpu:0")),
    (["torch:cpu", "jax:cpu:0"], ("torch:cpu",)),
    ([], ()),
])
def test_default_devices_are_one_host_cpu_plus_each_gpu_once(available: list[str], default: tuple[str, ...]) -> None:
    """TensorFlow's CPU when it is there; the GPUs of the first framework that sees any (a CPU-only TF next to a
    CUDA torch still gets the GPU), never the same GPU once per framework."""
    assert default_devices(available) == default
    assert resolve(None, available) == default


def test_resolve_refuses_a_device_that_is_not_here() -> None:
    with pytest.raises(UsageError, match="device 'GPU:3' does not exist here"):
        resolve("GPU:3", ["CPU:0"])


def _sweep_args(*argv: str) -> object:
    return build_parser().parse_args(["sweep", "--sizes", "64", *argv])


def test_a_default_sweep_without_gpu_adds_the_numpy_baseline() -> None:
    spec = spec_from_args(_sweep_args(), ["CPU:0", "jax:cpu:0"])  # type: ignore[arg-type]
    assert spec.devices == ("CPU:0", NUMPY_DEVICE)


def test_a_default_sweep_with_a_gpu_stays_cpu_plus_gpus() -> None:
    spec = spec_from_args(_sweep_args(), ["CPU:0", "GPU:0", "torch:cpu", "torch:cuda:0"])  # type: ignore[arg-type]
    assert spec.devices == ("CPU:0", "GPU:0")


def test_devices_asked_for_get_no_baseline_added() -> None:
    spec = spec_from_args(_sweep_args("--devices", "CPU:0"), ["CPU:0", "jax:cpu:0"])  # type: ignore[arg-type]
    assert spec.devices == ("CPU:0",)


def test_the_no_gpu_note_says_how_to_add_another_framework() -> None:
    assert no_gpu_note("CPU:0", ["CPU:0", "jax:cpu:0"]) == (
        "no GPU found: measuring CPU:0 and the numpy baseline (numpy:CPU); compare another framework's CPU with "
        "--devices CPU:0,jax:cpu:0")
    assert 'pip install "devbench[jax]", then --devices CPU:0,jax:cpu:0' in no_gpu_note("CPU:0", ["CPU:0"])


def test_the_memory_guard_asks_each_accelerator_and_never_a_host_device() -> None:
    asked: list[str] = []

    def free(device: str) -> int:
        asked.append(device)
        return 1  # one byte free: any accelerator cell is skipped

    guard = MemoryGuard(host_available=lambda: 2**40, device_free=free)
    for device in ("jax:cpu:0", "torch:cpu", "CPU:0"):
        assert guard(Cell(size=64, op="matmul", dtype="float32", device=device)) is None
    for device in ("jax:gpu:0", "torch:cuda:1", "GPU:0"):
        reason = guard(Cell(size=64, op="matmul", dtype="float32", device=device))
        assert reason is not None
        assert f"on {device}" in reason
    assert asked == ["jax:gpu:0", "torch:cuda:1", "GPU:0"]


def test_other_frameworks_cpus_share_the_hosts_calibration() -> None:
    calibration = {"devices": {"CPU:0": {"kind": "CPU", "peak_flops": {"float32": 1e11}, "bandwidth": 2e10}}}
    for device in ("jax:cpu:0", "torch:cpu", "CPU:1"):
        assert ceiling(calibration, device, "float32") == (1e11, 2e10)
    assert all(math.isnan(v) for v in ceiling(calibration, "torch:cuda:0", "float32"))
