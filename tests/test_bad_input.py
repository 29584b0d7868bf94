"""Every bad input a user can type, in one table: exit code 2, exactly one line on stderr that starts with
``devbench: error: `` and names the bad value, never a traceback.

Rows run in-process through ``devbench.cli.main`` (fast: most fail before TensorFlow or pandas would even be
imported); the rows marked ``SUBPROCESS`` also run as a real ``python -m devbench`` process, as a user types
them. ``{name}`` in a row is a path from the ``paths`` fixture: missing, empty, corrupt or foreign runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from devbench.cli import main
from devbench.schema import VisitRecord
from devbench.spec import SweepSpec
from devbench.store import CellLog, finalize, new_meta, write_json
from tests.cli_helpers import run_cli

READERS = ("crossover", "plot", "report")
"""Subcommands that read one run directory or results table."""

BAD_RUNS = [
    ("{missing}", "{missing}' does not exist"),
    ("{empty}", "{empty}' is not a devbench run directory (no meta.json)"),
    ("{corrupt}", "{corrupt}/meta.json' is corrupt"),
    ("{schema}", "{schema}' has schema version 99; this devbench reads versions 1 and 2"),
    ("{badmeta}", "{badmeta}/meta.json' is corrupt: field 'machine' is text"),
    ("{badresults}", "cannot read '{badresults}/results.parquet'"),
    ("{badcolumn}", "{badcolumn}/results.parquet': column median_s must be numeric, found 'fast'"),
    ("{badcsv}", "{badcsv}' lacks the columns"),
]
"""A run directory (or table) that is missing, empty, corrupt, of another schema version, or holds a corrupt
results file; each is given to every reader, and to compare as either side."""

BAD_INPUT: list[tuple[list[str], str]] = [
    # sweep: sizes, each malformed form
    (["sweep", "--sizes", "64..32"], "size range '64..32' is reversed"),
    (["sweep", "--sizes", "abc"], "bad size 'abc'"),
    (["sweep", "--sizes", "0"], "size '0' must be positive"),
    (["sweep", "--rounds", "0"], "--rounds '0' must be at least 1"),
    (["sweep", "--rounds", "two"], "--rounds 'two' is not a whole number"),
    (["sweep", "--sizes", "1.5"], "size '1.5' is not a whole number"),
    (["sweep", "--sizes", "64..128:x1"], "size range '64..128:x1' has factor 1, which never advances"),
    (["sweep", "--sizes", "64..128:+0"], "size range '64..128:+0' has step 0, which never advances"),
    (["sweep", "--sizes", "64..128:+2.5"], "size range '64..128:+2.5' has a fractional step"),
    (["sweep", "--sizes", "1..100000:+1"], "size range '1..100000:+1' expands to about 100000 sizes"),
    (["sweep", "--sizes", "64,,128"], "empty item in size list '64,,128'"),
    (["sweep", "--sizes", " "], "empty size list"),
    (["sweep", "--sizes", "64..128:y2"], "bad size '64..128:y2'"),
    # sweep: choices, with "did you mean"
    (["sweep", "--ops", "matmull"], "unknown op 'matmull' (did you mean 'matmul'?)"),
    (["sweep", "--ops", "matmul,,add"], "empty op in 'matmul,,add'"),
    (["sweep", "--ops", "fft"], "unknown op 'fft'; allowed: matmul"),
    (["sweep", "--dtypes", "float128"], "unknown dtype 'float128'"),
    (["sweep", "--dtypes", "flaot32"], "unknown dtype 'flaot32' (did you mean 'float32'?)"),
    (["sweep", "--modes", "graph"], "unknown mode 'graph'"),
    (["sweep", "--modes", "eagre"], "unknown mode 'eagre' (did you mean 'eager'?)"),
    (["sweep", "--sync", "never"], "unknown sync mode 'never'"),
    (["sweep", "--sync", "scaler"], "unknown sync mode 'scaler' (did you mean 'scalar'?)"),
    # sweep: devices
    (["sweep", "--devices", "GPU:7", "--sizes", "16"], "device 'GPU:7' does not exist here; available: CPU:0"),
    (["sweep", "--devices", "tpu:x"], "bad device name 'tpu:x'"),
    (["sweep", "--devices", "CPU:0,,CPU:1"], "bad device name ''"),
    # sweep: budgets
    (["sweep", "--max-cell-time", "0"], "--max-cell-time '0' must be a positive"),
    (["sweep", "--max-cell-time", "-1"], "--max-cell-time '-1' must be a positive"),
    (["sweep", "--max-cell-time", "soon"], "--max-cell-time 'soon' is not a number"),
    (["sweep", "--max-cell-time", "inf"], "--max-cell-time 'inf' must be a positive, finite number"),
    (["sweep", "--max-call-time", "0"], "--max-call-time '0' must be a positive"),
    (["sweep", "--max-call-time", "-5"], "--max-call-time '-5' must be a positive"),
    (["sweep", "--max-call-time", "nan"], "--max-call-time 'nan' must be a positive"),
    (["sweep", "--max-call-time", "1m"], "--max-call-time '1m' is not a number"),
    (["sweep", "--min-samples", "0"], "--min-samples '0' must be at least 1"),
    (["sweep", "--min-samples", "2.5"], "--min-samples '2.5' is not a whole number"),
    (["sweep", "--seed", "x"], "--seed 'x' is not a whole number"),
    # sweep: where the results go
    (["sweep", "--out", "{file}"], "--out '{file}' is a file"),
    (["sweep", "--out", "{file}/sub"], "--out '{file}/sub' is below the file '{file}'"),
    (["sweep", "--out", "/proc/devbench-run"], "--out '/proc/devbench-run' is not writable"),
    (["sweep", "--out", "{good}"], "--out '{good}' already holds a run"),
    # sweep --resume
    (["sweep", "--resume", "{missing}"], "--resume '{missing}': no such run directory"),
    (["sweep", "--resume", "{empty}"], "--resume '{empty}' is not a devbench run directory (no meta.json)"),
    (["sweep", "--resume", "{corrupt}"], "{corrupt}/meta.json' is corrupt"),
    (["sweep", "--resume", "{schema}"], "{schema}' has schema version 99"),
    (["sweep", "--resume", "{badmeta}"], "{badmeta}/meta.json' is corrupt: field 'machine' is text"),
    (["sweep", "--resume", "{file}"], "--resume '{file}' is not a directory"),
    (["sweep", "--resume", "{nospec}"], "{nospec}/meta.json' holds no valid sweep spec (unknown op 'matmull'"),
    (["sweep", "--resume", "{metadir}"], "cannot read '{metadir}/meta.json': Is a directory"),
    (["sweep", "--resume", "{cellsdir}"], "cannot read '{cellsdir}/cells.jsonl': Is a directory"),
    (["sweep", "--resume", "{gpurun}"], "cannot resume '{gpurun}' here: device 'GPU:0' does not exist here"),
    (["sweep", "--resume", "{good}", "--sizes", "64"], "--sizes cannot be combined with --resume"),
    (["sweep", "--resume", "{good}", "--max-call-time=5"], "--max-call-time cannot be combined with --resume"),
    (["sweep", "--resume"], "argument --resume: expected one argument"),
    # parsing
    (["sweep", "--bogus"], "unrecognized arguments: --bogus"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    # the readers and compare: bad run directories and tables
    *[([command, run], message) for command in READERS for run, message in BAD_RUNS],
    *[(["compare", run, "{good}"], message) for run, message in BAD_RUNS],
    *[(["compare", "{good}", run], message) for run, message in BAD_RUNS[:5]],
    (["crossover", "{metadir}"], "cannot read '{metadir}/meta.json': Is a directory"),
    (["report", "{cellsdir}"], "cannot read '{cellsdir}/cells.jsonl': Is a directory"),
    (["refine", "{missing}"], "run directory '{missing}' does not exist"),
    (["refine", "{schema}"], "{schema}' has schema version 99"),
    # their options
    (["crossover", "{good}", "--format", "xml"], "unknown format 'xml'"),
    (["compare", "{good}", "{good}", "--threshold", "2"], "--threshold '2' must be in [0, 1)"),
    (["compare", "{good}", "{good}", "--alpha", "0"], "--alpha '0' must be in (0, 1)"),
    (["refine", "{good}", "--steps", "0"], "--steps '0' must be at least 1"),
    (["plot", "{good}", "--out", "{file}"], "'{file}' is a file"),
    (["calibrate", "--dtypes", "float128"], "unknown dtype 'float128'"),
    (["calibrate", "--devices", "tpu:x"], "bad device name 'tpu:x'"),
]

SUBPROCESS = [
    (["sweep", "--sizes", "64..32"], "size range '64..32' is reversed"),
    (["sweep", "--ops", "matmull"], "unknown op 'matmull' (did you mean 'matmul'?)"),
    (["sweep", "--max-call-time", "0"], "--max-call-time '0' must be a positive"),
    (["sweep", "--resume", "{corrupt}"], "{corrupt}/meta.json' is corrupt"),
    (["crossover", "{schema}"], "{schema}' has schema version 99; this devbench reads versions 1 and 2"),
    (["compare", "{badresults}", "{good}"], "cannot read '{badresults}/results.parquet'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]
"""A handful of rows as a user really runs them (each one pays a Python start, none imports TensorFlow)."""


def _write_meta(run: Path, **changes: object) -> None:
    run.mkdir()
    spec = SweepSpec(ops=("matmul",), sizes=(64, 128), devices=("CPU:0", "CPU:1"))
    write_json(run / "meta.json", {**new_meta(spec.to_dict(), {}, run.name, ["sweep"]), **changes})


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad")
    (root / "empty").mkdir()
    (root / "corrupt").mkdir()
    (root / "corrupt" / "meta.json").write_text('{"schema_version": 1, "spec": {"ops": [')
    _write_meta(root / "schema", schema_version=99)
    _write_meta(root / "badmeta", machine="my laptop")
    _write_meta(root / "badresults")
    (root / "badresults" / "results.parquet").write_bytes(b"PAR1 this is not parquet")
    _write_meta(root / "nospec", spec={"ops": ["matmull"], "sizes": [64]})
    (root / "metadir" / "meta.json").mkdir(parents=True)
    _write_meta(root / "cellsdir")
    (root / "cellsdir" / "cells.jsonl").mkdir()
    _write_meta(root / "gpurun", spec={"ops": ["add"], "sizes": [64], "devices": ["CPU:0", "GPU:0"]})
    (root / "file.txt").write_text("not a directory\n")
    (root / "broken.csv").write_text("\x00\x01 not,a table\n1,2\n")

    good = root / "good"
    _write_meta(good)
    log = CellLog(good)
    for size in (64, 128):
        for device in ("CPU:0", "CPU:1"):
            median = 1e-6 * size * (2 if device == "CPU:1" else 1)
            log.append(VisitRecord(run_id="good", op="matmul", size=size, dtype="float32", device=device,
                                   mode="eager", sync="scalar", status="ok", n_samples=3, number=1, median_s=median,
                                   q1_s=median, q3_s=median, ci_low_s=median, ci_high_s=median, rel_iqr=0.0,
                                   flops=2.0 * size**3, bytes=12.0 * size**2), [median] * 3)
    results, _ = finalize(good)

    badcolumn = root / "badcolumn"
    _write_meta(badcolumn)
    frame = results.astype(object)
    frame["median_s"] = "fast"
    frame.to_parquet(badcolumn / "results.parquet", index=False)
    assert isinstance(pd.read_parquet(badcolumn / "results.parquet"), pd.DataFrame)

    names = ("missing", "empty", "corrupt", "schema", "badmeta", "badresults", "badcolumn", "nospec", "gpurun",
             "metadir", "cellsdir", "good")
    return {**{name: str(root / name) for name in names}, "badcsv": str(root / "broken.csv"),
            "file": str(root / "file.txt")}


def _fill(text: str, paths: dict[str, str]) -> str:
    return text.format(**paths)


def _check(code: int, err: str, message: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith("devbench: error: "), err
    assert message in err, err


def test_the_table_is_large_enough() -> None:
    assert len(BAD_INPUT) >= 30
    commands = {argv[0] for argv, _ in BAD_INPUT}
    assert {"sweep", "crossover", "plot", "report", "compare"} <= commands


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str, paths: dict[str, str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main([_fill(arg, paths) for arg in argv])
    captured = capsys.readouterr()
    _check(code, captured.err, _fill(message, paths))


@pytest.mark.slow
@pytest.mark.parametrize(("argv", "message"), SUBPROCESS, ids=[" ".join(a) for a, _ in SUBPROCESS])
def test_bad_input_as_a_user_types_it(argv: list[str], message: str, paths: dict[str, str]) -> None:
    proc = run_cli(*[_fill(arg, paths) for arg in argv], timeout=60)
    _check(proc.returncode, proc.stderr, _fill(message, paths))


def test_nothing_is_created_by_a_refused_sweep(paths: dict[str, str], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new" / "run"
    assert main(["sweep", "--sizes", "64..32", "--out", str(out)]) == 2
    assert not (tmp_path / "new").exists()
    assert main(["sweep", "--resume", paths["good"], "--ops", "add"]) == 2
    capsys.readouterr()
    meta = json.loads((Path(paths["good"]) / "meta.json").read_text())
    assert "resumed" not in meta  # the run was not touched
