"""The fidelity features end to end, as a user types them: calibrate, --baseline numpy, --include-transfer,
graph_loop, --no-calibrate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from tests.cli_helpers import run_cli

pytestmark = pytest.mark.slow


def test_calibrate_prints_the_ceilings_as_json() -> None:
    proc = run_cli("calibrate", "--devices", "CPU:0", "--json")
    assert proc.returncode == 0, proc.stderr
    cal = json.loads(proc.stdout)
    host = cal["devices"]["CPU:0"]
    assert host["peak_flops"]["float32"] > 0
    assert host["bandwidth"] > 0
    assert host["ridge"]["float32"] == pytest.approx(host["peak_flops"]["float32"] / host["bandwidth"])
    # the host's ceiling is the better of its two real backends, and the source names the winner
    by_backend = host["peak_by_backend"]["float32"]
    assert set(by_backend) == {"numpy", "tensorflow"}
    winner = max(by_backend, key=by_backend.get)
    assert host["peak_flops"]["float32"] == by_backend[winner]
    assert host["peak_source"]["float32"].startswith(f"{winner} n=")
    assert cal["numpy_gemm"]["float32"] == by_backend["numpy"]


def test_sweep_with_baseline_transfer_graph_loop_and_calibration(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli("sweep", "--sizes", "32,64", "--ops", "matmul,add", "--modes", "eager,graph_loop",
                   "--baseline", "numpy", "--include-transfer", "--max-cell-time", "0.05", "--out", str(out),
                   "--quiet")
    assert proc.returncode == 0, proc.stderr
    results = pd.read_parquet(out / "results.parquet")
    # CPU:0: 2 sizes x 2 ops x 2 modes x 2 syncs; numpy:CPU (no modes, synchronous): 2 sizes x 2 ops, once
    assert len(results) == 16 + 4
    assert set(results["device"]) == {"CPU:0", "numpy:CPU"}
    assert set(results["sync"]) == {"scalar", "transfer"}
    loop_transfer = results[(results["mode"] == "graph_loop") & (results["sync"] == "transfer")
                            & (results["device"] == "CPU:0")]
    assert set(loop_transfer["status"]) == {"unsupported"}
    ok = results[results["status"] == "ok"]
    assert len(ok) == 20 - len(loop_transfer)
    assert (ok[(ok["mode"] == "graph_loop") & (ok["device"] == "CPU:0")]["traces"] == 1).all()
    assert (ok[ok["device"] == "numpy:CPU"]["traces"] == 0).all()
    assert (ok[ok["device"] == "numpy:CPU"]["placed_device"] == "numpy:CPU").all()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["spec"]["include_transfer"] is True
    assert "numpy:CPU" in meta["spec"]["devices"]
    assert meta["calibration"]["devices"]["CPU:0"]["peak_flops"]["float32"] > 0
    assert ok["pct_of_peak"].notna().all()
    assert (ok["pct_of_peak"] > 0).all()


def test_no_calibrate_leaves_pct_of_peak_empty(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli("sweep", "--sizes", "16", "--ops", "add", "--max-cell-time", "0.05", "--no-calibrate",
                   "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "meta.json").read_text())["calibration"] is None
    results = pd.read_parquet(out / "results.parquet")
    assert all(math.isnan(v) for v in results["pct_of_peak"])


def test_unknown_baseline_is_a_usage_error() -> None:
    proc = run_cli("sweep", "--baseline", "torch")
    assert proc.returncode == 2
    assert "invalid choice: 'torch'" in proc.stderr
