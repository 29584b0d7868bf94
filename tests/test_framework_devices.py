"""Device names of every framework, the registry that parses them (devbench.frameworks), the default device
list, and what routes by name (memory guard, calibration, the overview's accelerator), all without importing a
framework; and the README's "Add a framework" example, run with a fake backend."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from devbench import analysis, devices, frameworks, spec
from devbench.backends import ROUTES, check_mode, target_for
from devbench.backends.base import UnsupportedCombination
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


# ---------------------------------------------------------------------------------------------------------
# The registry (devbench.frameworks): one parser, one is_accelerator, one list of modes


@pytest.mark.parametrize(("device", "accelerator"), [
    ("GPU:0", True), ("tf:GPU:0", True), ("jax:gpu:0", True), ("torch:cuda:0", True), ("torch:mps", True),
    ("CPU:0", False), ("tf:CPU:0", False), ("jax:cpu:0", False), ("torch:cpu", False), ("numpy:CPU", False),
])
def test_is_accelerator_is_one_rule_for_every_framework(device: str, accelerator: bool) -> None:
    """The rule the overview, the default devices and the memory guard share (devices and analysis re-export
    the registry's function itself)."""
    assert frameworks.is_accelerator(device) is accelerator
    assert devices.is_accelerator is frameworks.is_accelerator
    assert analysis.is_accelerator is frameworks.is_accelerator


@pytest.mark.parametrize(("name", "framework", "kind", "ordinal", "native"), [
    ("/job:localhost/replica:0/task:0/device:GPU:1", "tf", "GPU", 1, "GPU:1"),
    ("jax:cuda:2", "jax", "GPU", 2, "gpu"),
    ("jax:tpu:1", "jax", "TPU", 1, "tpu"),
    ("torch:cuda", "torch", "GPU", 0, "cuda:0"),
    ("torch:mps", "torch", "MPS", None, "mps"),
    ("numpy", "numpy", "CPU", None, "cpu"),
])
def test_a_parsed_name_says_framework_kind_ordinal_and_native_spelling(
        name: str, framework: str, kind: str, ordinal: int | None, native: str) -> None:
    parsed = frameworks.parse(name)
    assert (parsed.framework, parsed.kind, parsed.ordinal, parsed.native) == (framework, kind, ordinal, native)
    assert frameworks.framework_of(name) == framework


def test_a_name_with_an_unknown_framework_prefix_is_refused() -> None:
    with pytest.raises(UsageError, match=r"^unknown framework 'mxnet' in device name 'mxnet:cpu:0'; known: tf, "):
        frameworks.parse("mxnet:cpu:0")
    assert not frameworks.is_accelerator("mxnet:cpu:0")
    assert not frameworks.is_host("mxnet:cpu:0")


def test_the_questions_once_parsed_elsewhere_are_answered_by_the_registry() -> None:
    from devbench.calibrate import device_kind
    from devbench.telemetry import nvml_index
    from devbench.tf32 import frameworks_of as tf32_frameworks

    names = ["numpy:CPU", "jax:gpu:0", "torch:cuda:0", "tf:GPU:0", "CPU:1"]
    assert frameworks.frameworks_of(names) == tf32_frameworks(names) == devices.frameworks_of(names) == (
        "tf", "torch", "jax")
    assert [device_kind(d) for d in (*names, "torch:mps")] == ["CPU", "GPU", "GPU", "GPU", "CPU", "MPS"]
    assert [nvml_index(d, env={}) for d in (*names, "jax:cuda:3")] == [None, 0, 0, 0, None, 3]
    assert [target_for(d).rsplit(":", 1)[1] for d in ("numpy:CPU", "GPU:0", "jax:gpu:0", "torch:mps")] == [
        "NumpyBackend", "TFBackend", "JaxBackend", "TorchBackend"]


def test_modes_and_syncs_are_declared_once_per_framework() -> None:
    import devbench.backends.jax as jax_backend
    import devbench.backends.tf as tf_backend
    import devbench.backends.torch as torch_backend

    assert spec.MODES is frameworks.MODES == ("eager", "function", "xla", "graph_loop", "jit", "compile")
    assert spec.SYNC_MODES is frameworks.SYNC_MODES
    assert jax_backend.MODES is frameworks.get("jax").modes
    assert torch_backend.MODES is frameworks.get("torch").modes
    assert [route.modes for route in ROUTES] == [f.modes for f in frameworks.FRAMEWORKS.values()]
    for key, backend in (("tf", tf_backend), ("jax", jax_backend), ("torch", torch_backend)):
        assert list(backend.SYNCS) == list(frameworks.get(key).syncs) == list(frameworks.SYNC_MODES), key
    assert set(frameworks.get("numpy").syncs) == set(frameworks.SYNC_MODES)


@pytest.mark.parametrize("gpu", ["jax:gpu:0", "torch:cuda:0"])
def test_winners_name_a_jax_or_torch_gpu_as_the_best_accelerator(gpu: str) -> None:
    """A GPU machine running JAX or PyTorch (bench/gpu_check.sh): the GPU, not the numpy baseline, is the best
    accelerator, and what the overview colours."""
    from tests.synthetic import from_medians

    results = from_medians({"CPU:0": {64: 4e-6, 4096: 1e-2}, "numpy:CPU": {64: 2e-6, 4096: 1e-2},
                            gpu: {64: 8e-6, 4096: 1e-4}})
    table = analysis.winners(results).set_index("size")
    assert list(table["best_accelerator"]) == [gpu, gpu]
    assert list(table["contender"]) == [gpu, gpu]
    assert list(table["contender_speedup"]) == pytest.approx([0.5, 100.0])
    assert list(table["device"]) == ["numpy:CPU", gpu]


def test_winners_of_a_cpu_only_run_compare_the_fastest_other_device() -> None:
    from tests.synthetic import from_medians

    results = from_medians({"CPU:0": {64: 2e-6, 4096: 1e-3}, "numpy:CPU": {64: 1e-6, 4096: 4e-3}})
    table = analysis.winners(results).set_index("size")
    assert list(table["best_accelerator"]) == ["", ""]
    assert list(table["contender"]) == [NUMPY_DEVICE, NUMPY_DEVICE]
    assert list(table["contender_speedup"]) == pytest.approx([2.0, 0.25])
    assert list(table["margin"]) == pytest.approx([2.0, 4.0])  # the winner's speed-up over the slower one
    assert analysis.contender_name(analysis.winners(results)) == "fastest other device"


def _readme_framework_example() -> list[str]:
    readme = (SRC.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Add a framework\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.+?)\n```$", section, flags=re.MULTILINE | re.DOTALL)


def test_the_readmes_add_a_framework_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's CuPy sketch, run as written: its module registers at run time, the registry parses its
    names, calls its GPU an accelerator and knows its modes, and the router sends its cell to its backend (a
    fake module here: no CuPy needed)."""
    from devbench.backends import RoutingBackend
    from devbench.spec import TimingPolicy

    blocks = _readme_framework_example()
    assert len(blocks) == 2
    ran: list[str] = []
    backend_module = types.ModuleType("devbench.backends.cupy")

    class CupyBackend:
        def __init__(self, clock: object = None) -> None:
            del clock

        def run_cell(self, cell: Cell, policy: object, seed: int) -> str:
            ran.append(cell.device)
            return "outcome"

        def classify(self, exc: BaseException) -> tuple[str, str]:
            return "error", str(exc)

        def release(self) -> None:
            pass

    backend_module.CupyBackend = CupyBackend  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "devbench.backends.cupy", backend_module)
    namespace: dict[str, object] = {"__name__": "devbench.frameworks.cupy"}
    try:
        for block in blocks:
            exec(compile(block, "README.md", "exec"), namespace)  # the README's own example
        assert frameworks.parse("cupy:cuda:3") == frameworks.Device("cupy:3", "cupy", "GPU", 3, "cuda:3")
        assert frameworks.is_accelerator("cupy:0")
        assert not frameworks.is_host("cupy:0")
        assert frameworks.modes_of("cupy") == ("eager",)
        assert "eager" in frameworks.all_modes()
        with pytest.raises(UsageError, match=r"^bad CuPy device name 'cupy:gpu'"):
            frameworks.parse("cupy:gpu")
        router = RoutingBackend()
        cell = Cell(size=64, op="matmul", dtype="float32", device="cupy:0")
        assert router.run_cell(cell, TimingPolicy(), 0) == "outcome"  # type: ignore[comparison-overlap]
        assert ran == ["cupy:0"]
        with pytest.raises(UnsupportedCombination, match="mode 'jit' does not exist on CuPy"):
            check_mode(Cell(size=64, op="matmul", dtype="float32", device="cupy:0", mode="jit"))
    finally:
        frameworks.unregister("cupy")
    assert "cupy" not in frameworks.FRAMEWORKS
