"""devbench where TensorFlow cannot be imported: it lists and sweeps the other frameworks' devices, and says
TensorFlow's are missing instead of raising.

TensorFlow's absence is simulated in a subprocess: a ``sitecustomize`` puts a meta-path finder first that
makes ``import tensorflow`` (and its submodules) raise ImportError, as on a machine without it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli

pytestmark = pytest.mark.slow
pytest.importorskip("jax", reason="JAX is not installed (pip install 'devbench[jax]')")

HIDE_TENSORFLOW = '''
import sys


class HideTensorFlow:
    """Makes ``import tensorflow`` fail as it does where TensorFlow is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, HideTensorFlow())
'''


@pytest.fixture
def no_tf(tmp_path: Path) -> dict[str, str]:
    """Environment for run_cli in which TensorFlow is unimportable."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDE_TENSORFLOW)
    return {"PYTHONPATH": f"{site}:{Path(__file__).resolve().parents[1] / 'src'}"}


def test_the_simulation_hides_tensorflow(no_tf: dict[str, str]) -> None:
    check = subprocess.run([sys.executable, "-c", "import tensorflow"], env=no_tf, capture_output=True, text=True,
                           check=False)
    assert check.returncode == 1
    assert "ModuleNotFoundError" in check.stderr or "ImportError" in check.stderr


def test_devices_lists_jax_and_says_tensorflow_is_missing(no_tf: dict[str, str]) -> None:
    proc = run_cli("devices", env=no_tf)
    assert proc.returncode == 0, proc.stderr
    assert "jax:cpu:0" in proc.stdout
    assert "TensorFlow: not installed" in proc.stdout
    assert "pip install tensorflow" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_a_jax_sweep_runs_without_tensorflow(no_tf: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli("sweep", "--devices", "jax:cpu:0", "--ops", "add", "--sizes", "16", "--rounds", "1",
                   "--no-calibrate", "--max-cell-time", "0.05", "--out", str(out), env=no_tf)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert meta["spec"]["devices"] == ["jax:cpu:0"]
    assert meta["machine"]["tensorflow"] == {"missing": "not installed"}
    cells = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    assert [(c["record"]["device"], c["record"]["status"]) for c in cells] == [("jax:cpu:0", "ok")]


def test_asking_for_a_tensorflow_device_is_one_clear_error(no_tf: dict[str, str], tmp_path: Path) -> None:
    proc = run_cli("sweep", "--devices", "CPU:0", "--ops", "add", "--sizes", "16", "--rounds", "1",
                   "--no-calibrate", "--out", str(tmp_path / "run"), env=no_tf)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("devbench: error: device 'CPU:0' does not exist here (TensorFlow is not available")
    assert not (tmp_path / "run").exists()
