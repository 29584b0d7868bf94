"""The pytest-benchmark adapter: ids and groups, options, rounds, sync-terminated blocks, the machine_info hook.

The pure parts run without TensorFlow; the two ``tf`` tests run the real hook and one real tiny case. Tests that
start pytest in a subprocess (to load plugins exactly as a user's session does) are marked ``slow``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import devbench
from devbench.backends import RoutingBackend
from devbench.machine import cpu_model
from devbench.pytest_plugin import (
    MAX_ROUNDS,
    BenchCase,
    Rounds,
    SyncEvery,
    bench_cases,
    parse_options,
    pytest_benchmark_update_machine_info,
    resolve_devices,
    run_case,
)

SRC = str(Path(devbench.__file__).resolve().parent.parent)

# ---------------------------------------------------------------------------------------------------------
# Ids, groups, cases


def test_id_reads_as_op_size_dtype_device() -> None:
    assert BenchCase("matmul", 1024, "float32", "GPU:0").id == "matmul-1024-float32-GPU:0"
    assert BenchCase("add", 64, "float16", "CPU:1", mode="xla").id == "add-64-float16-CPU:1-xla"


def test_group_holds_every_device_of_one_op_dtype_and_size() -> None:
    on_cpu = BenchCase("matmul", 1024, "float32", "CPU:0")
    on_gpu = BenchCase("matmul", 1024, "float32", "GPU:0", mode="function")
    assert on_cpu.group == on_gpu.group == "matmul float32 n= 1024"
    assert BenchCase("matmul", 1024, "float16", "CPU:0").group != on_cpu.group


def test_groups_sort_by_size_as_text() -> None:
    """pytest-benchmark orders group tables by name: 64 must come before 1024."""
    sizes = [8192, 64, 1024, 256, 100]
    groups = sorted(BenchCase("add", n, "float32", "CPU:0").group for n in sizes)
    assert groups == [BenchCase("add", n, "float32", "CPU:0").group for n in sorted(sizes)]


def test_cases_put_devices_side_by_side_and_leave_out_undefined_dtypes() -> None:
    cases = bench_cases(["softmax_xent_grad", "matmul"], [32, 16], ["int32", "float32"], ["CPU:0", "CPU:1"])
    assert [c.id for c in cases] == [
        "softmax_xent_grad-32-float32-CPU:0", "softmax_xent_grad-32-float32-CPU:1",
        "softmax_xent_grad-16-float32-CPU:0", "softmax_xent_grad-16-float32-CPU:1",
        "matmul-32-int32-CPU:0", "matmul-32-int32-CPU:1", "matmul-32-float32-CPU:0", "matmul-32-float32-CPU:1",
        "matmul-16-int32-CPU:0", "matmul-16-int32-CPU:1", "matmul-16-float32-CPU:0", "matmul-16-float32-CPU:1",
    ]


# ---------------------------------------------------------------------------------------------------------
# Options


def test_options_use_devbench_grammar() -> None:
    options = parse_options(ops="matmul,ADD", sizes="64..256,1k", dtypes="float32,bfloat16", modes="eager,xla",
                            devices="cpu:0,/GPU:1")
    assert options.ops == ("matmul", "add")
    assert options.sizes == (64, 128, 256, 1024)
    assert options.dtypes == ("float32", "bfloat16")
    assert options.modes == ("eager", "xla")
    assert options.devices == "cpu:0,/GPU:1"


@pytest.mark.parametrize(
    ("option", "kwargs", "shown"),
    [
        ("--devbench-sizes", {"sizes": "10..abc"}, "'10..abc'"),
        ("--devbench-sizes", {"sizes": "0"}, "'0'"),
        ("--devbench-ops", {"ops": "matmull"}, "'matmull' (did you mean 'matmul'?)"),
        ("--devbench-dtypes", {"dtypes": "float33"}, "'float33'"),
        ("--devbench-modes", {"modes": "graph_loop"}, "'graph_loop'"),
        ("--devbench-devices", {"devices": "CPU:0,,"}, "bad device name ''"),
        ("--devbench-devices", {"devices": "gpu:x"}, "bad device name 'gpu:x'"),
    ],
)
def test_bad_option_is_a_usage_error_naming_option_and_value(option: str, kwargs: dict[str, str],
                                                             shown: str) -> None:
    arguments = {"ops": "matmul", "sizes": "64", "dtypes": "float32", **kwargs}
    with pytest.raises(pytest.UsageError) as raised:
        parse_options(**arguments)
    message = str(raised.value)
    assert message.startswith(f"{option}: ")
    assert shown in message


def test_default_devices_are_cpu0_and_every_gpu() -> None:
    available = ["CPU:0", "CPU:1", "GPU:0", "GPU:1"]
    assert resolve_devices(None, available) == ("CPU:0", "GPU:0", "GPU:1")
    assert resolve_devices("all", available) == tuple(available)
    assert resolve_devices("gpu:1,cpu", available) == ("GPU:1", "CPU:0")


def test_missing_device_is_a_usage_error_listing_the_available_ones() -> None:
    with pytest.raises(pytest.UsageError, match=r"--devbench-devices: device 'GPU:0' does not exist here; "
                                                r"available: CPU:0, CPU:1"):
        resolve_devices("GPU:0", ["CPU:0", "CPU:1"])


# ---------------------------------------------------------------------------------------------------------
# Rounds and blocks


@pytest.mark.parametrize(
    ("block_s", "rounds", "expected"),
    [
        (0.01, Rounds(max_time=1.0, min_rounds=5), 100),
        (0.3, Rounds(max_time=1.0, min_rounds=5), 5),  # min_rounds wins over max_time
        (0.3, Rounds(max_time=1.0, min_rounds=1), 4),
        (0.0, Rounds(max_time=1.0, min_rounds=5), 5),
        (1e-12, Rounds(max_time=10.0, min_rounds=5), MAX_ROUNDS),
    ],
)
def test_rounds_fill_max_time_but_not_below_min_rounds(block_s: float, rounds: Rounds, expected: int) -> None:
    assert rounds.count(block_s) == expected


def _logging_target(number: int) -> tuple[SyncEvery, list[str]]:
    log: list[str] = []

    def call() -> int:
        log.append("c")
        return len(log)

    def sync(output: int) -> None:
        assert output == len(log), "the sync waits on the output of the call just made"
        log.append("s")

    return SyncEvery(call, sync, number), log


def test_sync_ends_every_block_of_number_calls() -> None:
    target, log = _logging_target(3)
    for _ in range(7):
        target()
    target.drain()
    assert "".join(log) == "cccs" "cccs" "cs"


def test_number_must_be_positive() -> None:
    with pytest.raises(ValueError, match="number must be at least 1"):
        SyncEvery(lambda: None, lambda output: None, 0)


def _run_pytest(tmp_path: Path, test_source: str, *args: str, plugins: tuple[str, ...]
                ) -> subprocess.CompletedProcess[str]:
    """pytest in a subprocess with exactly ``plugins`` loaded (no entry-point autoload, whatever is installed)."""
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(test_source))
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    plugin_args = [arg for plugin in plugins for arg in ("-p", plugin)]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *plugin_args, "-W", "error", *args,
         "test_inner.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.mark.slow
def test_every_timed_round_under_pytest_benchmark_is_one_block_ending_in_a_sync(tmp_path: Path) -> None:
    """Against the installed pytest-benchmark: ``iterations=number`` calls per round, the last one synced."""
    result = _run_pytest(tmp_path, """
        from pathlib import Path

        from devbench.pytest_plugin import time_rounds

        def test_rounds(benchmark):
            log = []
            def call():
                log.append("c")
                return len(log)
            time_rounds(benchmark, call, lambda output: log.append("s"), number=4, rounds=3, warmup_rounds=1)
            Path("log.txt").write_text("".join(log))
        """, "--benchmark-json=out.json", "--benchmark-storage=storage", plugins=("pytest_benchmark.plugin",))
    assert result.returncode == 0, result.stdout + result.stderr
    # 1 warm-up round and 3 timed rounds of 4 calls + 1 sync; pedantic's extra untimed call, drained.
    assert (tmp_path / "log.txt").read_text() == "cccc" "s" * 1 + ("cccc" "s") * 3 + "cs"
    (saved,) = json.loads((tmp_path / "out.json").read_text())["benchmarks"]
    assert saved["stats"]["rounds"] == 3
    assert saved["stats"]["iterations"] == 4


@pytest.mark.slow
def test_plugin_is_harmless_without_pytest_benchmark(tmp_path: Path) -> None:
    result = _run_pytest(tmp_path, """
        import sys

        def test_nothing_heavy_was_imported():
            assert not {"tensorflow", "pandas", "matplotlib"} & set(sys.modules)
        """, plugins=("devbench.pytest_plugin",))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


@pytest.mark.slow
def test_importing_the_plugin_imports_no_heavy_package() -> None:
    """pytest imports the plugin in every session once devbench is installed."""
    code = ("import sys, devbench.pytest_plugin; "
            "print(sorted({'tensorflow', 'pandas', 'matplotlib', 'numpy'} & set(sys.modules)))")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                            check=True)
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------------------
# With TensorFlow


@pytest.mark.tf
def test_machine_info_says_what_machine_a_run_came_from(tf: ModuleType, pytestconfig: pytest.Config) -> None:
    machine_info: dict[str, Any] = {"node": "pytest-benchmark's own"}
    pytest_benchmark_update_machine_info(config=pytestconfig, machine_info=machine_info)
    assert machine_info["node"] == "pytest-benchmark's own"
    info = machine_info["devbench"]
    assert info["version"] == devbench.__version__
    assert info["cpu_model"] == cpu_model()
    assert info["tensorflow"]["version"] == tf.__version__
    assert "is_cuda_build" in info["tensorflow"]["build_info"]
    assert [d["name"] for d in info["devices"]] == ["CPU:0", "CPU:1"]
    assert {"name", "kind", "tf_name", "details"} <= set(info["devices"][0])
    assert info["logical_cpus"] == "2"
    assert json.loads(json.dumps(machine_info)) == machine_info, "saved as JSON as it is"


class FakeBenchmark:
    """Calls the target as pedantic does (rounds x iterations), without timing; records what it was given."""

    def __init__(self) -> None:
        self.group: str | None = None
        self.extra_info: dict[str, Any] = {}
        self.stats: Any = None
        self.pedantic_args: dict[str, int] = {}

    def pedantic(self, target: Callable[..., Any], *, rounds: int, warmup_rounds: int, iterations: int) -> Any:
        self.pedantic_args = {"rounds": rounds, "warmup_rounds": warmup_rounds, "iterations": iterations}
        for _ in range((warmup_rounds + rounds) * iterations):
            target()
        return target()


@pytest.mark.tf
def test_a_case_runs_on_its_device_with_the_sweep_protocol(tf: ModuleType) -> None:
    benchmark = FakeBenchmark()
    run_case(benchmark, BenchCase("matmul", 16, "float32", "CPU:1"), RoutingBackend(),
             Rounds(max_time=0.05, min_rounds=3))
    assert benchmark.group == "matmul float32 n=   16"
    info = benchmark.extra_info
    assert {k: info[k] for k in ("op", "size", "dtype", "device", "mode", "sync", "placed_device")} == {
        "op": "matmul", "size": 16, "dtype": "float32", "device": "CPU:1", "mode": "eager", "sync": "scalar",
        "placed_device": "CPU:1"}
    assert info["flops"] == 2 * 16**3
    assert info["bytes"] == 3 * 16 * 16 * 4
    assert info["cold_s"] > 0
    assert benchmark.pedantic_args["iterations"] == info["number"] >= 1
    assert benchmark.pedantic_args["rounds"] >= 3


@pytest.mark.tf
def test_a_combination_the_op_cannot_run_is_skipped_with_the_reason(tf: ModuleType) -> None:
    with pytest.raises(pytest.skip.Exception, match="unsupported: a training step needs a floating-point dtype"):
        run_case(FakeBenchmark(), BenchCase("dense_step", 16, "int32", "CPU:0"), RoutingBackend())


def test_a_jax_case_runs_through_the_router_and_the_one_run_cell() -> None:
    """Any framework's device: the router sends the case to its backend, whose run_cell (the sweep's) measures
    the cold call and calibrates the block, and the rounds time the op it built, each ending in a sync."""
    pytest.importorskip("jax")
    from devbench.backends.base import FrameworkBackend

    router = RoutingBackend()
    benchmark = FakeBenchmark()
    run_case(benchmark, BenchCase("add", 16, "float32", "jax:cpu:0", mode="jit"), router,
             Rounds(max_time=0.02, min_rounds=3))
    info = benchmark.extra_info
    assert (info["device"], info["mode"], info["placed_device"]) == ("jax:cpu:0", "jit", "jax:cpu:0")
    assert info["cold_s"] > 0
    assert benchmark.pedantic_args["iterations"] == info["number"] >= 1
    assert benchmark.pedantic_args["rounds"] >= 3
    assert router.created == ("devbench.backends.jax:JaxBackend",)
    assert isinstance(router.backend_for_device("jax:cpu:0"), FrameworkBackend)
    with pytest.raises(pytest.skip.Exception, match="unsupported: mode 'xla' does not exist on JAX"):
        run_case(FakeBenchmark(), BenchCase("add", 16, "float32", "jax:cpu:0", mode="xla"), router)


def test_a_failure_inside_the_rounds_propagates_unclassified() -> None:
    """Only what fails before the rounds (checks, build, calibration) is a skip or a failure; an out-of-memory
    error raised by pytest-benchmark's rounds is not turned into a skip."""

    class RoundsFail(FakeBenchmark):
        def pedantic(self, target: Callable[..., Any], *, rounds: int, warmup_rounds: int, iterations: int) -> Any:
            raise MemoryError("rounds")

    with pytest.raises(MemoryError, match="rounds"):
        run_case(RoundsFail(), BenchCase("add", 16, "float32", "numpy:CPU"), RoutingBackend())
