"""The CLI end to end in a subprocess: a real small sweep, the listing commands, and bad input."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.cli_helpers import SRC, run_cli

pytestmark = pytest.mark.slow


def test_help_and_version_do_not_import_tensorflow() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from devbench.cli import main\n"
        "for argv in (['--help'], ['--version'], ['sweep', '--help'], ['ops']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main(argv)\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": SRC, "PATH": ""})
    assert proc.returncode == 0, proc.stderr


def test_every_subcommand_dispatches_through_a_handler() -> None:
    from devbench.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"sweep", "devices", "ops", "calibrate", "crossover", "plot", "report", "refine",
                                "compare", "merge", "fleet", "export", "dataset", "advise", "history"}
    for name, parser in sub.choices.items():
        assert callable(parser.get_default("handler")), name


def test_ops_lists_every_op_with_what_n_means() -> None:
    proc = run_cli("ops")
    assert proc.returncode == 0
    for name in ("matmul", "conv2d", "add", "reduce_sum", "softmax_xent_grad", "dense_step"):
        assert name in proc.stdout


def test_devices_lists_the_logical_cpus() -> None:
    proc = run_cli("devices", env={"DEVBENCH_LOGICAL_CPUS": "2"})
    assert proc.returncode == 0, proc.stderr
    assert "CPU:0" in proc.stdout
    assert "CPU:1" in proc.stdout
    assert proc.stderr == ""  # TensorFlow's start-up chatter is kept off the terminal


def test_sweep_end_to_end_on_two_devices(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli("sweep", "--sizes", "32..64", "--ops", "matmul,add", "--dtypes", "float32,int32",
                   "--devices", "CPU:0,cpu:1", "--max-cell-time", "0.2", "--out", str(out),
                   env={"DEVBENCH_LOGICAL_CPUS": "2"})
    assert proc.returncode == 0, proc.stderr
    assert f"results: {out}" in proc.stdout
    assert "Fastest device" in proc.stdout
    for name in ("meta.json", "cells.jsonl", "results.parquet", "results.csv", "samples.parquet"):
        assert (out / name).is_file(), name
    results = pd.read_parquet(out / "results.parquet")
    assert len(results) == 2 * 2 * 2 * 2  # sizes x ops x dtypes x devices
    assert not results.duplicated(["op", "size", "dtype", "device", "mode", "sync"]).any()
    assert set(results["status"]) == {"ok"}
    assert (results["placed_device"] == results["device"]).all()
    assert (results["median_s"] > 0).all()
    assert (results["gflops"] > 0).all()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "complete"
    assert meta["spec"]["devices"] == ["CPU:0", "CPU:1"]
    assert meta["machine"]["tensorflow"]["version"]
    assert {d["name"] for d in meta["machine"]["devices"]} == {"CPU:0", "CPU:1"}
    samples = pd.read_parquet(out / "samples.parquet")
    assert (samples.groupby(["op", "size", "dtype", "device"]).size() >= 1).all()
    assert len(pd.read_csv(out / "results.csv")) == len(results)


def test_unsupported_combination_is_a_row_not_a_crash(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli("sweep", "--sizes", "16", "--ops", "softmax_xent_grad,add", "--dtypes", "int32",
                   "--devices", "CPU:0", "--max-cell-time", "0.1", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    results = pd.read_parquet(out / "results.parquet").set_index("op")
    assert results.loc["softmax_xent_grad", "status"] == "unsupported"
    assert results.loc["add", "status"] == "ok"


# The table of bad inputs lives in tests/test_bad_input.py (the one place for it).


FAIL_ON_TENSORFLOW = """
import sys


class FailOnTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise SystemExit("tensorflow was imported")
        return None


sys.meta_path.insert(0, FailOnTensorFlow())
"""


def test_out_that_is_a_file_is_refused_before_importing_tensorflow(tmp_path: Path) -> None:
    # Importing TensorFlow ends the process with its own message, so the check holds however slow the machine
    # (a time limit standing in for "before the import" failed once under load).
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FAIL_ON_TENSORFLOW)
    target = tmp_path / "file.txt"
    target.write_text("")
    proc = run_cli("sweep", "--out", str(target), env={"PYTHONPATH": f"{site}:{SRC}"})
    assert "tensorflow was imported" not in proc.stderr
    assert proc.returncode == 2
    assert "is a file" in proc.stderr
