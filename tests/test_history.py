"""devbench history: runs of one machine in order, steps in the medians with their attribution, crossovers that
moved, and the table, chart and page; rates on seeded synthetic series of whole runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from devbench.cli import main
from devbench.errors import UsageError
from devbench.history import build_history, crossover_moves, key_value, one_machine, order_runs, render_history
from devbench.html_report.history_page import render_history_html
from devbench.plots.history import history_figure
from devbench.schema import SAMPLE_COLUMNS, SCHEMA_VERSION
from devbench.simulation import GRIDS, Noise
from devbench.simulation.crossovers import curve_tables
from devbench.simulation.history import SETTINGS, SIZES, rates, synthetic_runs
from devbench.store import META, Run, write_json, write_tables

QUIET = SETTINGS["quiet (1 % per run, 3 rounds)"][0]


def _run(meta: dict[str, Any], results: pd.DataFrame | None = None) -> Run:
    frame = results if results is not None else pd.DataFrame()
    return Run(path=None, meta=meta, results=frame, samples=pd.DataFrame())


@pytest.fixture(scope="module")
def stepped() -> list[Run]:
    """30 synthetic runs, the cell n=256 10 % slower from run 15 on, where TF_NUM_INTRAOP_THREADS=1 appears."""
    return synthetic_runs(np.random.default_rng(7), noise=QUIET, rounds=3)


def test_a_real_step_is_found_at_its_run_with_its_interval_and_attribution(stepped: list[Run]) -> None:
    history = build_history(stepped)
    assert len(history.runs) == 30
    steps = history.steps
    assert list(steps["size"]) == [SIZES[0]]
    step = steps.iloc[0]
    assert int(step["run"]) == 15
    assert step["run_id"] == "sim-015"
    assert step["ci_low"] <= 1.10 <= step["ci_high"]
    assert step["ci_low"] > 1.0
    assert step["attribution"] == "env – → TF_NUM_INTRAOP_THREADS=1"
    assert (int(step["runs_before"]), int(step["runs_after"])) == (15, 15)
    text = render_history(history)
    assert "▲" in text
    assert "TF_NUM_INTRAOP_THREADS=1" in text


def test_thirty_a_a_runs_give_no_step() -> None:
    runs = synthetic_runs(np.random.default_rng(8), noise=SETTINGS["drift (3 % per run, 3 rounds)"][0], step=1.0)
    history = build_history(runs)
    assert history.steps.empty
    assert "No step in any cell." in render_history(history)


def test_rates_on_a_few_seeded_series() -> None:
    """The bench's figures at a small size (bench/history_rates.py prints them over 100 series a setting)."""
    quiet = rates("quiet (1 % per run, 3 rounds)", 4, seed=0)
    assert quiet.near == 1.0
    assert quiet.detected >= 3 / 4
    assert quiet.false_cells <= 1 / 12
    assert quiet.aa_false_cells <= 1 / 16


def _meta(i: int, **machine: Any) -> dict[str, Any]:
    return {"run_id": f"r{i}", "started_at": f"2026-12-{10 + i:02d}T00:00:00+00:00",
            "machine": {"hostname": "box", **machine}}


def test_order_by_time_by_a_meta_key_and_by_commit() -> None:
    runs = [_run({**_meta(i, packages={"tensorflow": v}), "commit": c})
            for i, (v, c) in enumerate([("2.10.0", "b"), ("2.9.1", "c"), ("2.9.0", "a")])]
    assert [h.run_id for h in order_runs(runs)] == ["r0", "r1", "r2"]
    assert [h.run_id for h in order_runs(runs, "machine.packages.tensorflow")] == ["r2", "r1", "r0"]
    assert [h.label for h in order_runs(runs, "commit")] == ["a", "b", "c"]
    assert key_value(runs[0], "machine.packages") is None  # an object orders nothing
    with pytest.raises(UsageError, match=r"no 'machine\.packages\.torch'"):
        order_runs(runs, "machine.packages.torch")


def test_runs_of_several_machines_need_a_choice() -> None:
    runs = [_run(_meta(0)), _run({**_meta(1), "machine": {"hostname": "other"}}), _run(_meta(2))]
    with pytest.raises(UsageError, match=r"2 machines: 'box' \(2 runs\), 'other' \(1 run\); pick one with --machine"):
        one_machine(runs)
    name, mine = one_machine(runs, "box")
    assert name == "box"
    assert len(mine) == 2
    with pytest.raises(UsageError, match=r"--machine 'nope' is not among"):
        one_machine(runs, "nope")


def _crossing_run(rng: np.random.Generator, i: int, crossing: float, torch: str) -> Run:
    sizes = GRIDS["x1.19"]
    log_ratio = [math.log(1.25) * math.log2(n / crossing) for n in sizes]
    results, samples = curve_tables(rng, sizes, log_ratio, 5, Noise(within=0.02, per_cell=0.01, per_round=0.02))
    return Run(path=None, meta=_meta(i, packages={"torch": torch}), results=results.assign(run_id=f"r{i}"),
               samples=samples)


def test_a_crossover_that_moved_is_reported_with_both_positions() -> None:
    rng = np.random.default_rng(5)
    runs = [_crossing_run(rng, i, 1400.0 if i < 3 else 700.0, "2.11" if i < 3 else "2.12") for i in range(6)]
    history = build_history(runs)
    assert len(history.moves) == 1
    move = history.moves.iloc[0]
    assert int(move["run"]) == 3
    assert move["faster_above"] == "GPU:0"
    assert move["low"] <= 700 <= move["high"]
    assert move["was_low"] <= 1400 <= move["was_high"]
    assert move["high"] <= move["was_low"]
    sentence = str(move["sentence"])
    assert sentence.startswith("GPU:0 overtakes CPU:0 for matmul float32 eager at n≈")
    assert "was n≈" in sentence
    assert sentence.endswith(": torch 2.11 → 2.12")
    assert "moved: GPU:0 overtakes" in render_history(history)
    # the same crossing run after run: nothing moved
    assert crossover_moves(history.crossovers[history.crossovers["run"] < 3], history.runs).empty


def _write_run(path: Path, run: Run) -> Path:
    path.mkdir(parents=True)
    write_json(path / META, {"schema_version": SCHEMA_VERSION, "status": "complete", **run.meta})
    write_tables(path, run.results, pd.DataFrame(columns=list(SAMPLE_COLUMNS)))
    return path


def test_cli_table_chart_and_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(11)
    runs = synthetic_runs(rng, runs=5, step_at=1, step=2.0, noise=QUIET, rounds=3)
    # runs 1 and 2 are twice as slow in the first cell (TF_NUM_INTRAOP_THREADS=1), runs 3 and 4 fast again
    back = synthetic_runs(rng, runs=5, step_at=99, noise=QUIET, rounds=3)
    paths = []
    for i in range(5):
        run = runs[i] if i in (1, 2) else back[i]
        meta = {**run.meta, "started_at": f"2026-12-06T2{i}:00:00+00:00", "run_id": f"run{i}"}
        paths.append(_write_run(tmp_path / f"run{i}", Run(None, meta, run.results, run.samples)))
    chart, page = tmp_path / "history.png", tmp_path / "history.html"
    assert main(["history", *map(str, paths), "--format", "markdown", "--chart", str(chart), "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "| matmul float32 eager CPU:0 n=256 | 1: run1 |" not in out  # steps are in their own table
    steps = [line for line in out.splitlines() if line.startswith("| matmul float32 eager CPU:0 n=256 | ")]
    assert [line.split(" | ")[1] for line in steps[1:]] == ["1: 2026-12-06T21:00:00", "3: 2026-12-06T23:00:00"]
    assert "- steps at run 1 (2026-12-06T21:00:00): 1 of 4 cells slower (median 1.93×), 0 faster; env" in out
    assert "env – → TF_NUM_INTRAOP_THREADS=1" in out
    assert "env TF_NUM_INTRAOP_THREADS=1 → –" in out
    assert chart.stat().st_size > 10_000
    html = page.read_text(encoding="utf-8")
    assert "Steps in the medians (2)" in html
    assert "TF_NUM_INTRAOP_THREADS=1 → –" in html
    assert main(["history", *map(str, paths), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["run"] for s in data["steps"]] == [1, 3]
    assert len(data["runs"]) == 5


def test_history_reads_a_dataset_of_the_runs_as_it_reads_their_directories(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(13)
    runs = synthetic_runs(rng, runs=4, step_at=2, step=2.0, noise=QUIET, rounds=3)
    paths = [_write_run(tmp_path / f"run{i}", Run(None, {**run.meta, "run_id": f"run{i}",
                                                          "started_at": f"2026-12-06T2{i}:00:00+00:00"},
                                                  run.results, run.samples))
             for i, run in enumerate(runs)]
    assert main(["history", *map(str, paths), "--format", "json"]) == 0
    from_dirs = json.loads(capsys.readouterr().out)
    dataset = tmp_path / "dataset"
    # added newest first: the dataset's order is the runs' start times, not the order they were added in
    assert main(["dataset", "add", *map(str, reversed(paths)), "--to", str(dataset), "--label", "box"]) == 0
    capsys.readouterr()
    assert main(["history", str(dataset), "--format", "json"]) == 0
    from_dataset = json.loads(capsys.readouterr().out)
    assert [s["run"] for s in from_dataset["steps"]] == [s["run"] for s in from_dirs["steps"]] == [2]
    assert len(from_dataset["runs"]) == 4
    assert main(["history", str(dataset), "--machine", "elsewhere"]) == 2
    assert "box" in capsys.readouterr().err


def test_cli_refuses_runs_of_several_machines_and_bad_formats(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    runs = synthetic_runs(np.random.default_rng(12), runs=2, noise=QUIET, step=1.0)
    a = _write_run(tmp_path / "a", runs[0])
    b = _write_run(tmp_path / "b", Run(None, {**runs[1].meta, "machine": {"hostname": "elsewhere"}},
                                       runs[1].results, runs[1].samples))
    assert main(["history", str(a), str(b)]) == 2
    assert "2 machines: 'simulated' (1 run), 'elsewhere' (1 run); pick one with --machine" in capsys.readouterr().err
    assert main(["history", str(a), str(b), "--machine", "elsewhere", "--format", "csv"]) == 2
    assert "format" in capsys.readouterr().err


def test_chart_and_page_of_the_steps(stepped: list[Run]) -> None:
    history = build_history(stepped)
    fig = history_figure(history)
    assert len(fig.axes) == 1  # one (op, dtype, mode, device); no pair of devices, so no crossover panel
    assert any(line.get_linestyle() == "--" for line in fig.axes[0].get_lines())
    html = render_history_html(history)
    assert "Steps in the medians (1)" in html
    assert "No decisive crossover moved" in html


def test_the_fingerprint_records_the_performance_environment_and_a_change_is_named(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from devbench.machine import PERFORMANCE_ENV, fingerprint_diff, host_fingerprint

    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)
    before = host_fingerprint()
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")
    after = host_fingerprint()
    assert "TF_NUM_INTRAOP_THREADS" in PERFORMANCE_ENV
    assert after["env"]["TF_NUM_INTRAOP_THREADS"] == "1"
    assert isinstance(after["cpu"]["flags"], list)
    diffs = fingerprint_diff({"machine": before}, {"machine": after})
    env = [d for d in diffs if d.field == "env"]
    assert len(env) == 1
    assert "TF_NUM_INTRAOP_THREADS=1" in str(env[0].new)  # beside any other variable the test run has set
    flags = {**before, "cpu": {**before["cpu"], "flags": ["avx2", "fma"]}}
    assert [d.field for d in fingerprint_diff({"machine": flags}, {"machine": {**flags, "cpu": {
        **flags["cpu"], "flags": ["avx2", "avx512f", "fma"]}}})] == ["cpu.flags"]
