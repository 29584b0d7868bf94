"""Real signals to a real ``devbench sweep`` subprocess, at seeded points after at least one cell finished.

One run is stopped three times (a double Ctrl-C, SIGTERM, SIGKILL), resumed after each, and finally completed
by a last resume. (A single SIGINT takes the same path as SIGTERM, and is sent for real in-process by
test_resume.py.) After every stop: the exit code is the signal's, every cell that was in
cells.jsonl before the signal is still there, byte for byte; at the end every one of them is in the results
with the very numbers it had, and there is one row per cell.

Same verdict every run: the kill points come from a fixed seed (``DEVBENCH_KILL_SEED`` tries another one), and
a kill point can never land after the sweep's end: each signal is sent only while at least
:data:`MIN_CELLS_LEFT` cells are still missing from the log, and each of them takes at least its warm-up, so
the sweep cannot finish in the microseconds between that check and the signal.
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.cli_helpers import SRC

pytestmark = pytest.mark.slow

SWEEP = ["--sizes", "16..128:+16", "--ops", "add,matmul", "--devices", "CPU:0,CPU:1", "--max-cell-time", "0.05",
         "--rounds", "1", "--quiet"]
"""One round: one cells.jsonl line per cell, so the lines counted here are cells (visits: test_rounds.py)."""
N_CELLS = 8 * 2 * 2
MIN_CELLS_LEFT = 8
"""Cells that must still be missing when a signal is sent: at ~0.1 s each, the sweep is a second from its end."""
KILL_SEED = 20261202


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "TF_CPP_MIN_LOG_LEVEL": "2", "DEVBENCH_LOGICAL_CPUS": "2"}


DEVBENCH_WITH_CTRL_C = (
    "import runpy, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "sys.argv[0] = 'devbench'\n"
    "runpy.run_module('devbench', run_name='__main__', alter_sys=True)\n"
)
"""``python -m devbench`` with Ctrl-C enabled: a child of a non-interactive shell's background job inherits
SIGINT *ignored*, and devbench (like every Unix tool) keeps an ignored signal ignored; this test wants a
user's Ctrl-C whatever started pytest."""


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", DEVBENCH_WITH_CTRL_C, "sweep", *args], env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _complete_lines(log: Path) -> list[bytes]:
    """Lines of cells.jsonl that end in a newline (a line being written right now is not counted)."""
    if not log.exists():
        return []
    data = log.read_bytes()
    return data[: data.rfind(b"\n") + 1].splitlines(keepends=True)


def _wait_for_lines(proc: subprocess.Popen[str], log: Path, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(_complete_lines(log)) < count:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the sweep ended (rc {proc.returncode}) before {count} cells:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {count} cells within {timeout} s")
        time.sleep(0.01)


def _stop(proc: subprocess.Popen[str], log: Path, rng: random.Random, signals: Sequence[int]
          ) -> tuple[list[bytes], int, str]:
    """Wait for 1-2 more finished cells, then a random moment inside the next one, then send ``signals``
    (a short random pause between them). Returns the complete log lines before the first signal, the exit
    code and stderr."""
    _wait_for_lines(proc, log, len(_complete_lines(log)) + rng.randint(1, 2))
    time.sleep(rng.uniform(0.0, 0.3))  # anywhere in a cell: measuring, releasing memory, appending
    before = _complete_lines(log)
    assert N_CELLS - len(before) >= MIN_CELLS_LEFT, (
        f"only {N_CELLS - len(before)} cells left before the signal: it could land after the sweep's end")
    for i, signum in enumerate(signals):
        if i:
            time.sleep(rng.uniform(0.02, 0.3))
        proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    return before, proc.returncode, err


def _records(lines: list[bytes]) -> dict[tuple[Any, ...], dict[str, Any]]:
    out = {}
    for line in lines:
        record = json.loads(line)["record"]
        out[(record["op"], record["size"], record["dtype"], record["device"])] = record
    return out


def test_kill_points_lose_no_cell_and_resume_completes(tmp_path: Path) -> None:
    seed = int(os.environ.get("DEVBENCH_KILL_SEED", KILL_SEED))
    print(f"kill-point seed: {seed} (DEVBENCH_KILL_SEED={seed} replays it)")
    rng = random.Random(seed)
    run_dir = tmp_path / "run"
    log = run_dir / "cells.jsonl"
    finished: dict[tuple[Any, ...], dict[str, Any]] = {}
    kill_points = 0

    proc = _start(*SWEEP, "--out", str(run_dir))
    stops = [([signal.SIGINT, signal.SIGINT], 130), ([signal.SIGTERM], 143), ([signal.SIGKILL], -9)]
    for signals_sent, expected in stops:
        before, code, err = _stop(proc, log, rng, signals_sent)
        kill_points += 1
        label = "+".join(signal.Signals(s).name for s in signals_sent)
        assert code == expected, f"{label}: rc {code}\n{err}"
        assert "Traceback" not in err, err
        after = log.read_bytes()
        assert after.startswith(b"".join(before)), f"{label}: a finished cell's line changed"
        finished.update(_records(before))
        meta = json.loads((run_dir / "meta.json").read_text())  # always whole JSON, whatever the signal
        if signals_sent == [signal.SIGKILL]:
            assert meta["status"] == "running"  # no chance to say more: the log is the truth
        else:
            assert f"devbench sweep --resume {run_dir}" in err, err
        if len(signals_sent) == 1 and expected > 0:
            assert meta["status"] == "interrupted"
            results = pd.read_parquet(run_dir / "results.parquet")
            assert len(results) == len(_complete_lines(log))  # everything measured is in the final table
        elif expected > 0:
            assert "second SIGINT: exiting at once" in err or meta["status"] == "interrupted", err
        for name in ("results.parquet", "samples.parquet"):
            if (run_dir / name).exists():
                pd.read_parquet(run_dir / name)  # whole files only, never half written
        proc = _start("--resume", str(run_dir), "--quiet")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert f"results: {run_dir}" in out

    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "complete"
    assert len(meta["resumed"]) == kill_points
    results = pd.read_parquet(run_dir / "results.parquet")
    assert len(results) == N_CELLS
    assert not results.duplicated(["op", "size", "dtype", "device", "mode", "sync"]).any()
    assert set(results["status"]) == {"ok"}
    rows = results.set_index(["op", "size", "dtype", "device"])
    lost = [key for key, record in finished.items()
            if key not in rows.index or rows.loc[key, "finished_at"] != record["finished_at"]
            or rows.loc[key, "median_s"] != record["median_s"]]
    print(f"kill points: {kill_points}; cells finished before a signal: {len(finished)}; lost: {len(lost)}")
    assert lost == []
    assert len(pd.read_csv(run_dir / "results.csv")) == N_CELLS


def test_memory_guard_skips_a_matmul_that_cannot_fit_without_allocating(tmp_path: Path) -> None:
    """65536² float64 matmul needs ~192 GiB; it must be a skipped row, not an OOM kill, and the process must
    never have held anything near that (its peak resident memory is what TensorFlow itself takes)."""
    out_dir = tmp_path / "D"
    proc = subprocess.run([sys.executable, "-m", "devbench", "sweep", "--sizes", "65536", "--dtypes", "float64",
                           "--devices", "CPU:0", "--ops", "matmul", "--out", str(out_dir)], env=_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    results = pd.read_parquet(out_dir / "results.parquet")
    assert results["status"].tolist() == ["skipped"]
    assert results["reason"].iloc[0].startswith("memory guard: needs about 192.0 GiB")
    peak_bytes = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux reports KiB
    assert peak_bytes < 8 * 2**30  # the largest child so far: a few GiB at most, not the 192 GiB asked for
