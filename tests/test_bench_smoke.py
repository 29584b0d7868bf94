"""The benchmark suites in bench/ are not run by ``pytest`` (``testpaths = ["tests"]``); these runs keep them
from rotting: one tiny parametrization, as a user types it, in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import devbench

ROOT = Path(__file__).resolve().parent.parent
SRC = str(Path(devbench.__file__).resolve().parent.parent)

pytestmark = pytest.mark.slow


def run_bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``pytest bench ARGS`` from the repository root, with results stored under ``tmp_path``."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider",
         f"--benchmark-storage={tmp_path / 'storage'}", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def test_bench_suite_runs_with_benchmarks_disabled(tmp_path: Path) -> None:
    result = run_bench(tmp_path, "--benchmark-disable", "--devbench-sizes", "16", "--devbench-ops", "matmul",
                       "--devbench-devices", "all", "-v")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bench/test_ops.py::test_op[matmul-16-float32-CPU:0] PASSED" in result.stdout
    assert "bench/test_ops.py::test_op[matmul-16-float32-CPU:1] PASSED" in result.stdout
    assert "2 passed" in result.stdout


def test_a_saved_run_says_which_cell_and_which_machine(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    result = run_bench(tmp_path, "--devbench-sizes", "16", "--devbench-ops", "add", "--devbench-devices", "CPU:1",
                       "--benchmark-max-time=0.01", "--benchmark-min-rounds=3", f"--benchmark-json={out}", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    saved = json.loads(out.read_text())
    (bench,) = saved["benchmarks"]
    assert bench["fullname"] == "bench/test_ops.py::test_op[add-16-float32-CPU:1]"
    assert bench["group"] == "add float32 n=   16"
    assert bench["params"] == {"op": "add", "size": 16, "dtype": "float32", "device": "CPU:1", "mode": "eager"}
    info = bench["extra_info"]
    assert info["placed_device"] == "CPU:1"
    assert info["flops"] == 16 * 16
    assert bench["stats"]["iterations"] == info["number"]
    assert bench["stats"]["rounds"] >= 3
    assert info["gflops"] > 0
    machine = saved["machine_info"]["devbench"]
    assert machine["version"] == devbench.__version__
    assert machine["tensorflow"]["version"]
    assert [d["name"] for d in machine["devices"]] == ["CPU:0", "CPU:1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--devbench-sizes", "10..abc"), "ERROR: --devbench-sizes: bad size '10..abc'"),
        (("--devbench-ops", "matmull"), "ERROR: --devbench-ops: unknown op 'matmull' (did you mean 'matmul'?)"),
    ],
    ids=["sizes", "ops"],
)
def test_bad_option_is_a_pytest_usage_error(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = run_bench(tmp_path, *args)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
