"""``--shape`` and ``--fuzz`` (devbench.shapes): grammar, expansion into op names, the spec's round trip, the
shape columns of new and old tables, the fuzz's seeded draws, the map of winners, and a tiny real sweep."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from devbench.cli import main
from devbench.errors import UsageError
from devbench.guards import MemoryGuard, estimated_bytes
from devbench.schema import RESULT_COLUMNS, CellRow, results_frame
from devbench.shapes import (
    axis_label,
    axis_name,
    expand,
    fuzz_points,
    fuzz_shapes,
    parse_shape,
    shape_columns,
    size_header,
)
from devbench.spec import NUMPY_DEVICE, Cell, SweepSpec, TimingPolicy
from devbench.store import load_any

# ---------------------------------------------------------------------------------------------------------
# Grammar and expansion


def test_each_dimension_takes_the_sizes_grammar_and_its_commas() -> None:
    shape = parse_shape("m=64..256, k=256,n=8,16")
    assert shape.dims == (("m", (64, 128, 256)), ("k", (256,)), ("n", (8, 16)))
    assert shape.swept == "m"
    assert parse_shape("k=1k,m=2").swept == "k"  # no dimension with several values: the first is swept
    assert parse_shape("n=4,k=3,m=2..8:+2").swept == "m"


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty --shape"),
    ("64..128", "does not start with dim=SIZES"),
    ("m=64,m=128", "gives m twice"),
    ("m=64..32,k=1,n=1", "reversed"),
    ("m=0,k=1,n=1", "must be positive"),
    ("m=,k=1,n=1", "empty size list"),
    ("1m=4,k=1", "not a dimension name"),
    ("cache=4", "not a dimension name"),
])
def test_bad_shapes_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_shape(text)


def test_the_swept_dimension_is_the_size_and_the_others_give_one_curve_each() -> None:
    names, sizes = expand(["matmul"], parse_shape("k=256,m=64..256,n=32,64"))
    assert sizes == (64, 128, 256)
    assert names == ("matmul[m=*,k=256,n=32]", "matmul[m=*,k=256,n=64]")  # the op's dimension order


@pytest.mark.parametrize(("ops", "shape", "message"), [
    (["add"], "m=64,k=1,n=1", "op 'add' has none"),
    (["matmul"], "m=64..128,k=1", "--shape names m,k but op matmul has the dimensions m,k,n"),
    (["matmul"], "m=64,k=1,n=1,batch=2", "has the dimensions m,k,n"),
])
def test_ops_without_exactly_these_dimensions_are_refused(ops: list[str], shape: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        expand(ops, parse_shape(shape))


@pytest.mark.parametrize(("argv", "message"), [
    (["--shape", "m=64..128,k=8,n=8", "--sizes", "64"], "cannot both be given"),
    (["--fuzz", "5"], "give --shape too"),
    (["--shape", "m=64,k=8,n=8", "--ops", "add"], "op 'add' has none"),
    (["--shape", "m=64,k=8", "--ops", "matmul"], "has the dimensions m,k,n"),
    (["--shape", "m=a,k=8,n=8"], "--shape m=a: bad size 'a'"),
    (["--shape", "m=64..128,k=8,n=8", "--fuzz", "0"], "--fuzz"),
])
def test_the_sweep_command_refuses_bad_shape_options_with_one_line(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "--devices", "numpy:CPU", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("devbench: error: ")
    assert message in err


def test_the_cli_builds_the_spec_of_a_shape_and_of_a_fuzz() -> None:
    from devbench.cli import build_parser
    from devbench.cli.sweep import spec_from_args

    args = build_parser().parse_args(["sweep", "--shape", "m=64..256,k=32,n=8", "--devices", "numpy:CPU"])
    spec = spec_from_args(args, ["CPU:0"])
    assert spec.ops == ("matmul[m=*,k=32,n=8]",)  # --ops defaults to the ops with dimensions
    assert spec.sizes == (64, 128, 256)
    assert spec.sizes_by_op == ()
    args = build_parser().parse_args(["sweep", "--shape", "m=8..64,k=8..64,n=4", "--fuzz", "6", "--seed", "3",
                                      "--devices", "numpy:CPU"])
    fuzzed = spec_from_args(args, ["CPU:0"])
    assert len(fuzzed.sizes_by_op) == len(fuzzed.ops)
    assert fuzzed.n_cells() == 6
    assert set(fuzzed.sizes) == {s for _, sizes in fuzzed.sizes_by_op for s in sizes}


# ---------------------------------------------------------------------------------------------------------
# The spec


def test_a_spec_with_per_op_sizes_round_trips_and_an_old_spec_still_reads() -> None:
    points = (("matmul[m=*,k=10,n=4]", (8, 20)), ("matmul[m=*,k=30,n=4]", (12,)))
    spec = SweepSpec(ops=tuple(op for op, _ in points), sizes=(8, 12, 20), sizes_by_op=points,
                     devices=("CPU:0", NUMPY_DEVICE), rounds=2)
    data = json.loads(json.dumps(spec.to_dict()))
    assert SweepSpec.from_dict(data) == spec
    assert sorted((c.op, c.size) for c in spec.cells() if c.device == "CPU:0") == [
        ("matmul[m=*,k=10,n=4]", 8), ("matmul[m=*,k=10,n=4]", 20), ("matmul[m=*,k=30,n=4]", 12)]
    plain = SweepSpec(ops=("add",), sizes=(8,))
    assert "sizes_by_op" not in plain.to_dict()  # meta.json of a sweep without --fuzz is as before
    assert SweepSpec.from_dict(plain.to_dict()) == plain


# ---------------------------------------------------------------------------------------------------------
# Shape columns, axis names


def test_shape_columns_come_from_the_op_name() -> None:
    columns = shape_columns(["matmul[m=*,k=256,n=64]", "add", "my op (from elsewhere)"], [512, 8, 3])
    assert columns["shape"] == ["m=512,k=256,n=64", "", ""]
    assert columns["dim_m"][0] == 512.0
    assert columns["dim_k"][0] == 256.0
    assert columns["dim_n"][0] == 64.0
    assert all(math.isnan(v) for v in (columns["dim_m"][1], columns["dim_n"][2]))  # type: ignore[arg-type]


def test_every_results_table_gets_the_shape_columns_after_the_schema_2_ones() -> None:
    rows = [CellRow(run_id="r", op=op, size=size, dtype="float32", device="CPU:0", mode="eager", sync="scalar",
                    status="ok", median_s=1e-3).as_dict() for op, size in (("matmul[m=*,k=8,n=4]", 16), ("add", 8))]
    table = results_frame(rows)
    assert list(table.columns[:len(RESULT_COLUMNS)]) == list(RESULT_COLUMNS)
    assert list(table.columns[len(RESULT_COLUMNS):]) == ["shape", "dim_m", "dim_k", "dim_n"]
    assert table["shape"].tolist() == ["m=16,k=8,n=4", ""]
    assert table["dim_k"].dtype == "float64"
    again = results_frame(table)  # derived again, never doubled
    assert list(again.columns) == list(table.columns)


def test_old_tables_and_bare_tables_load_with_shape_columns(tmp_path: Path) -> None:
    old = tmp_path / "old.csv"  # a schema-2 results table written before shapes: no shape columns
    pd.DataFrame({"op": ["matmul", "matmul[m=*,k=8,n=4]"], "size": [64, 32], "dtype": "float32",
                  "device": "CPU:0", "median_s": [1e-3, 2e-4]}).to_csv(old, index=False)
    run = load_any(old)
    assert run.results["shape"].tolist() == ["", "m=32,k=8,n=4"]
    assert run.results["dim_m"].tolist()[1] == 32.0
    bare = tmp_path / "bare.csv"  # shape columns in a file are derived again, never trusted
    pd.DataFrame({"op": ["add"], "size": [8], "dtype": "float32", "device": "CPU:0", "median_s": [1e-6],
                  "shape": ["nonsense"], "dim_q": [3]}).to_csv(bare, index=False)
    loaded = load_any(bare).results
    assert loaded["shape"].tolist() == [""]
    assert "dim_q" not in loaded.columns


def test_tables_and_charts_name_the_swept_axis_and_the_fixed_dimensions() -> None:
    assert axis_name("matmul[m=*,k=256,n=256]") == "m"
    assert axis_name("matmul") == "n"
    assert axis_label("matmul[m=*,k=256,n=64]") == "m (k=256, n=64)"
    assert axis_label("add") == "size n (matrix side)"
    assert size_header(["matmul[m=*,k=2,n=2]", "matmul[m=*,k=4,n=2]"]) == "m"
    assert size_header(["add", "matmul"]) == "n"
    assert size_header(["add", "matmul[m=*,k=4,n=2]"]) == "size"


def test_the_memory_guard_stages_a_shaped_op_at_its_shape_not_n_squared() -> None:
    tall = Cell(size=65536, op="matmul[m=*,k=16,n=16]", dtype="float32", device=NUMPY_DEVICE)
    square_staging = 2.0 * 65536 * 65536 * 8
    assert estimated_bytes(tall) < 0.01 * square_staging  # 65536×16 inputs, not 65536² ones
    assert MemoryGuard(host_available=lambda: 2**30, device_free=lambda d: None)(tall) is None
    square = Cell(size=64, op="matmul", dtype="float32", device=NUMPY_DEVICE)
    assert estimated_bytes(square) == 64 * 64 * 4 * 4 + 2.0 * 64 * 64 * 8  # the square op as before


# ---------------------------------------------------------------------------------------------------------
# Fuzz


def test_fuzzed_shapes_are_seeded_distinct_whole_and_within_bounds() -> None:
    bounds = parse_shape("m=64..4096,k=64..4096,n=256")
    first = fuzz_shapes(bounds, 200, seed=7)
    assert first == fuzz_shapes(bounds, 200, seed=7)
    assert first != fuzz_shapes(bounds, 200, seed=8)
    assert len(first) == 200
    assert len({tuple(s.values()) for s in first}) == 200
    for shape in first:
        assert 64 <= shape["m"] <= 4096
        assert 64 <= shape["k"] <= 4096
        assert shape["n"] == 256
    # log-uniform: about as many draws below the geometric middle (512) as above it
    below = sum(s["m"] < 512 for s in first) / len(first)
    assert 0.38 < below < 0.62
    assert len(fuzz_shapes(parse_shape("m=1..2,k=1,n=1"), 10, seed=0)) == 2  # only two whole shapes exist


def test_fuzz_points_name_one_curve_per_fixed_combination() -> None:
    points = fuzz_points(["matmul"], parse_shape("m=8..64,k=8..64,n=4"), 12, seed=1)
    drawn = fuzz_shapes(parse_shape("m=8..64,k=8..64,n=4"), 12, seed=1)
    cells = sorted((name, size) for name, sizes in points for size in sizes)
    assert cells == sorted((f"matmul[m=*,k={s['k']},n=4]", s["m"]) for s in drawn)


# ---------------------------------------------------------------------------------------------------------
# The map of winners, and a real sweep


def _fuzzed_results() -> pd.DataFrame:
    """Two devices over fuzzed shapes: numpy wins small m·k, CPU:0 large; one point within noise."""
    rng = np.random.default_rng(0)
    rows = []
    for i, shape in enumerate(fuzz_shapes(parse_shape("m=8..4096,k=8..4096,n=64"), 30, seed=2)):
        op = f"matmul[m=*,k={shape['k']},n=64]"
        work = 2.0 * shape["m"] * shape["k"] * 64
        for device, fixed, rate in (("CPU:0", 2e-5, 1e11), (NUMPY_DEVICE, 2e-6, 2e10)):
            median = fixed + work / rate * (1 + 0.01 * rng.standard_normal())
            spread = 0.6 if i == 0 else 0.01
            rows.append(CellRow(run_id="r", op=op, size=shape["m"], dtype="float32", device=device, mode="eager",
                                sync="scalar", status="ok", median_s=median, ci_low_s=median * (1 - spread),
                                ci_high_s=median * (1 + spread), flops=work, bytes=4.0 * shape["m"] * 64).as_dict())
    return results_frame(rows)


def test_the_winner_map_colours_each_shape_by_its_fastest_device() -> None:
    from devbench.plots.winners import map_axes, map_worth_drawing, render_map, winner_points, winners_figure

    results = _fuzzed_results()
    points = winner_points(results)
    assert len(points) == 30
    assert map_worth_drawing(results)
    assert map_axes(points)[:3] == ("dim_m", "dim_k", "m (n=64)")
    small = points["dim_m"] * points["dim_k"] < 1e3
    assert (points.loc[small, "winner"] == NUMPY_DEVICE).all()
    assert (points.loc[points["dim_m"] * points["dim_k"] > 1e6, "winner"] == "CPU:0").all()
    assert points["within_noise"].sum() >= 1
    fig = winners_figure(results, machine="test machine")
    [ax] = fig.axes
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert ax.get_xlabel() == "m (n=64)"
    gids = {c.get_gid() for c in ax.collections}
    assert {"winner:CPU:0:clear", f"winner:{NUMPY_DEVICE}:clear"} <= gids
    assert any(g.endswith(":noise") for g in gids)  # type: ignore[union-attr]
    square = results.assign(op="matmul")
    assert winner_points(square).empty
    assert not map_worth_drawing(square)
    text = render_map(points, width=200)
    assert "Where each device wins (30 shapes; clear wins: " in text
    assert "within noise" in text


def test_the_html_report_and_the_charts_hold_the_map(tmp_path: Path) -> None:
    from devbench.html_report.run_page import render_html_report
    from devbench.plots import figures
    from devbench.store import Run

    run = Run(path=None, meta={}, results=_fuzzed_results(), samples=pd.DataFrame())
    stems = [stem for stem, _ in figures(run)]
    assert "winners" in stems
    curves = run.results.groupby("op")["size"].nunique()
    crossover_charts = [stem for stem in stems if stem.startswith("crossover-")]
    assert len(crossover_charts) == (curves > 1).sum() < 30  # a one-point curve is a point on the map, no chart
    html = render_html_report(run)
    assert 'id="winners-map"' in html
    assert "30 shapes" in html


def test_a_real_shaped_sweep_gives_rows_with_shape_columns(tmp_path: Path) -> None:
    from devbench.backends.numpy import NumpyBackend
    from devbench.sweep import execute

    fast = TimingPolicy(max_cell_time=0.02, min_samples=2, max_samples=3, warmup_time=0.0, min_block_time=0.001)
    names, sizes = expand(["matmul"], parse_shape("m=8..32,k=16,n=4"))
    spec = SweepSpec(ops=names, sizes=sizes, devices=(NUMPY_DEVICE,), policy=fast, rounds=1)
    run = execute(spec, tmp_path / "run", backend=NumpyBackend(), calibrate=False, handle_signals=False,
                  guard=MemoryGuard(host_available=lambda: 2**40, device_free=lambda d: None))
    table = run.results.sort_values("size")
    assert table["status"].tolist() == ["ok"] * 3
    assert table["shape"].tolist() == ["m=8,k=16,n=4", "m=16,k=16,n=4", "m=32,k=16,n=4"]
    assert table["dim_m"].tolist() == [8.0, 16.0, 32.0]
    assert table["flops"].tolist() == [2.0 * m * 16 * 4 for m in (8, 16, 32)]
    written = pd.read_csv(tmp_path / "run" / "results.csv")
    assert written["shape"].tolist()[0].startswith("m=")
    fuzz_spec = replace(spec, ops=("matmul[m=*,k=5,n=4]",), sizes=(7, 9), sizes_by_op=(("matmul[m=*,k=5,n=4]", (9,)),))
    resumed = SweepSpec.from_dict(json.loads((tmp_path / "run" / "meta.json").read_text())["spec"])
    assert resumed == spec
    assert [c.size for c in fuzz_spec.cells()] == [9]


def test_a_fuzzed_runs_stored_spec_is_what_a_resume_reads_back(tmp_path: Path) -> None:
    from devbench.prepare import spec_from_meta

    points = fuzz_points(["matmul"], parse_shape("m=8..64,k=8..64,n=4"), 5, seed=4)
    spec = SweepSpec(ops=tuple(op for op, _ in points), sizes=tuple(sorted({s for _, ss in points for s in ss})),
                     sizes_by_op=points, devices=(NUMPY_DEVICE,))
    meta = json.loads(json.dumps({"spec": spec.to_dict()}))
    assert spec_from_meta(meta, tmp_path) == spec
    meta["spec"]["sizes_by_op"][0][1] = []
    with pytest.raises(UsageError, match="holds no valid sweep spec"):
        spec_from_meta(meta, tmp_path)
