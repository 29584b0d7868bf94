"""Winners, crossover rendering and bare-table loading on synthetic results with known answers (the crossover
rule itself and refining: tests/test_crossover.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from devbench import store
from devbench.analysis import (
    crossover_frame,
    device_order,
    is_accelerator,
    ok_cells,
    render_crossovers,
    render_winners,
    winners,
)
from devbench.errors import UsageError
from devbench.schema import RESULT_COLUMNS, SAMPLE_COLUMNS
from tests.synthetic import frame, from_medians, from_model, grid, row
from tests.test_crossover import by_exponent, cubic_vs_linear, only

# ---------------------------------------------------------------------------------------------------------
# selection


def test_device_order_puts_cpu0_first_and_sorts_indices_numerically() -> None:
    ordered = device_order(["GPU:10", "GPU:2", "CPU:1", "CPU:0", "GPU:2"])
    assert ordered == ["CPU:0", "CPU:1", "GPU:2", "GPU:10"]


def test_unsynchronized_cells_are_flagged_and_synchronized_duplicates_win() -> None:
    synced = cubic_vs_linear()
    # The same CPU cells timed without sync "take" 1 µs: they must not replace the synchronized ones.
    unsynced = from_medians({"CPU:0": dict.fromkeys(grid(64, 4096), 1e-6)}, sync="none")
    r = only(crossover_frame(pd.concat([unsynced, synced])))
    assert r["crossover_size"] == pytest.approx(1000.0)
    assert not r["unsynchronized"]
    only_unsynced = from_model(
        {"CPU:0": lambda n: 1e-12 * n**3, "GPU:0": lambda n: 1e-6 * n}, grid(64, 4096), sync="none"
    )
    r = only(crossover_frame(only_unsynced))
    assert r["unsynchronized"]
    assert "unsynchronized cells: measures launch, not work" in r["note"]


def test_ok_cells_drops_nan_and_non_positive_medians() -> None:
    results = from_medians({"CPU:0": {64: 1e-3, 128: math.nan, 256: 0.0}})
    assert list(ok_cells(results)["size"]) == [64]


# ---------------------------------------------------------------------------------------------------------
# rendering


def test_render_table_shows_the_sentence() -> None:
    text = render_crossovers(crossover_frame(cubic_vs_linear()), "table", width=200)
    assert "GPU:0 faster above n≈1000 (range 512–1024)" in text
    assert "CPU:0 vs GPU:0" in text
    assert "\x1b[" not in text  # no colour codes when not a terminal


def test_render_csv_header_and_json_nulls() -> None:
    result = crossover_frame(pd.concat([cubic_vs_linear(), cubic_vs_linear().assign(op="add")]))
    csv_text = render_crossovers(result, "csv")
    assert csv_text.splitlines()[0].startswith(
        "op,dtype,mode,device_a,device_b,crossover_size,low,high,faster_below,faster_above,decisive,note"
    )
    parsed = json.loads(render_crossovers(crossover_frame(by_exponent([1, 2], [64, 128])), "json"))
    assert parsed[0]["crossover_size"] is None
    assert parsed[0]["faster_below"] == "GPU:0"


def test_render_rejects_an_unknown_format() -> None:
    with pytest.raises(UsageError, match="unknown format 'xml'; allowed: table, csv, json"):
        render_crossovers(crossover_frame(cubic_vs_linear()), "xml")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# winners


def test_winners_pick_the_fastest_ok_device_with_speedup_over_cpu() -> None:
    results = pd.concat(
        [
            cubic_vs_linear(sizes=[64, 4096]),
            frame(
                [
                    row(64, "GPU:1", 1e-9, status="wrong", reason="mismatch"),
                    row(4096, "GPU:1", 1e-2, rel_iqr=0.5),
                ]
            ),
        ]
    )
    table = winners(results).set_index("size")
    assert table.loc[64, "device"] == "CPU:0"
    assert table.loc[64, "speedup_vs_cpu"] == pytest.approx(1.0)
    assert table.loc[64, "best_accelerator"] == "GPU:0"
    assert table.loc[64, "accelerator_speedup"] == pytest.approx(1e-6 * 64**2)
    assert table.loc[4096, "device"] == "GPU:0"
    assert table.loc[4096, "speedup_vs_cpu"] == pytest.approx(1e-6 * 4096**2)
    assert table.loc[4096, "n_devices"] == 3
    assert not table.loc[4096, "noisy"]  # the noisy GPU:1 cell neither won nor is the reference


def test_winners_without_cpu_have_nan_speedup_and_carry_flags() -> None:
    results = from_medians({"GPU:0": {64: 1e-3}, "GPU:1": {64: 2e-3}}, rel_iqr=0.3, sync="none")
    r = only(winners(results))
    assert r["device"] == "GPU:0"
    assert math.isnan(r["speedup_vs_cpu"])
    assert r["noisy"]
    assert r["unsynchronized"]
    text = render_winners(winners(results), "table")
    assert "noisy, UNSYNCHRONIZED" in text
    assert "1 ms" in text


# ---------------------------------------------------------------------------------------------------------
# store.load_any: run directories and bare tables


def test_load_any_reads_a_run_directory(tmp_path: Path) -> None:
    results = cubic_vs_linear()
    store.write_json(tmp_path / store.META, {"schema_version": 1, "command": "devbench sweep"})
    store.write_tables(tmp_path, results, pd.DataFrame(columns=list(SAMPLE_COLUMNS)))
    loaded = store.load_any(tmp_path)
    assert loaded.meta["command"] == "devbench sweep"
    assert len(loaded.results) == len(results)


def test_load_any_reads_devbench_own_csv_unchanged(tmp_path: Path) -> None:
    results = pd.concat(
        [cubic_vs_linear(), frame([row(64, "GPU:1", 1.0, status="oom", reason="OOM")])], ignore_index=True
    )
    results.loc[0, "noisy"] = True
    path = tmp_path / "results.csv"
    results.to_csv(path, index=False)
    loaded = store.load_any(path).results
    assert list(loaded.columns) == [*RESULT_COLUMNS, "shape"]  # the shape column, derived again on reading
    pd.testing.assert_frame_equal(loaded, results.reset_index(drop=True), check_exact=False)


def test_load_any_fills_defaults_for_a_minimal_table(tmp_path: Path) -> None:
    path = tmp_path / "timings.csv"
    pd.DataFrame(
        {
            "op": ["matmul"] * 4,
            "size": [512, 1024, 512, 1024],
            "dtype": ["float32"] * 4,
            "device": ["CPU:0", "CPU:0", "GPU:0", "GPU:0"],
            "median_s": [1e-12 * 512**3, 1e-12 * 1024**3, 1e-6 * 512, 1e-6 * 1024],
            "other_tool_col": 1,
        }
    ).to_csv(path, index=False)
    run = store.load_any(path)
    assert run.meta == {}
    assert run.samples.empty
    results = run.results
    assert list(results.columns) == [*RESULT_COLUMNS, "shape"]
    assert set(results["mode"]) == {"eager"}
    assert set(results["status"]) == {"ok"}
    assert set(results["sync"]) == {"scalar"}
    assert results["size"].dtype == np.int64
    assert results["ci_low_s"].isna().all()
    assert not results["noisy"].any()
    assert not results["unsynchronized"].any()
    r = only(crossover_frame(results))
    assert r["crossover_size"] == pytest.approx(1000.0)
    assert (r["low"], r["high"]) == (512.0, 1024.0)


def test_load_any_uses_quartiles_and_cis_when_present(tmp_path: Path) -> None:
    path = tmp_path / "timings.parquet"
    pd.DataFrame(
        {
            "op": ["matmul"] * 2,
            "size": [64, 128],
            "dtype": ["float32"] * 2,
            "device": ["CPU:0"] * 2,
            "median_s": [1.0, 2.0],
            "q1_s": [0.9, 1.5],
            "q3_s": [1.1, 2.5],
            "ci_low_s": [0.95, 1.9],
            "ci_high_s": [1.05, 2.1],
            "sync": ["none", "scalar"],
            "flops": [2e9, 4e9],
        }
    ).to_parquet(path)
    results = store.load_any(path).results
    assert list(results["rel_iqr"]) == pytest.approx([0.2, 0.5])
    assert list(results["noisy"]) == [True, True]
    assert list(results["unsynchronized"]) == [True, False]
    assert list(results["gflops"]) == pytest.approx([2.0, 2.0])
    assert list(results["ci_high_s"]) == pytest.approx([1.05, 2.1])


def test_load_any_names_the_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame({"op": ["matmul"], "size": [64], "dtype": ["float32"]}).to_csv(path, index=False)
    with pytest.raises(UsageError, match=r"lacks the columns device, median_s"):
        store.load_any(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "does not exist"),
        ("empty.csv", b"", "cannot read"),
        ("corrupt.parquet", b"\x00not parquet at all\xff", "cannot read"),
        ("table.xlsx", b"whatever", "neither a run directory nor a results table"),
        ("header.csv", b"op,size,dtype,device,median_s\n", "holds no rows"),
        ("badsize.csv", b"op,size,dtype,device,median_s\nmatmul,1k,float32,CPU:0,0.1\n", "positive integers"),
        ("badtime.csv", b"op,size,dtype,device,median_s\nmatmul,64,float32,CPU:0,fast\n", "must be numeric"),
    ],
)
def test_load_any_rejects_bad_input_with_one_line(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError, match=message) as info:
        store.load_any(path)
    assert "\n" not in str(info.value)


def test_transfer_timings_are_analysed_as_their_own_mode() -> None:
    """--include-transfer measures each cell twice; the two timings must not be mixed in one curve."""
    from devbench.analysis import split_mode, transfer_as_mode, winners

    resident = from_model({"CPU:0": lambda n: 1e-12 * n**3, "GPU:0": lambda n: 1e-3},
                                    [256, 512, 1024, 2048, 4096])
    moved = resident.copy()
    moved["sync"] = "transfer"
    moved.loc[moved["device"] == "GPU:0", "median_s"] *= 8  # the copies cost the GPU: it wins only later
    both = pd.concat([resident, moved], ignore_index=True)
    frame = crossover_frame(both).set_index("mode")
    assert frame.loc["eager", "crossover_size"] == pytest.approx(1000, rel=0.02)
    assert frame.loc["eager+transfer", "crossover_size"] == pytest.approx(2000, rel=0.02)
    assert set(winners(both)["mode"]) == {"eager", "eager+transfer"}
    assert transfer_as_mode(transfer_as_mode(both)).equals(transfer_as_mode(both))
    assert split_mode("xla+transfer") == ("xla", "transfer")
    assert split_mode("eager") == ("eager", None)


def test_numpy_baseline_is_a_host_device_not_an_accelerator() -> None:
    """numpy:CPU runs on the host: the overview must not colour its win over CPU:0 as "accelerator wins"."""
    results = frame(
        [
            row(64, "CPU:0", 2e-6),
            row(64, "numpy:CPU", 1e-6),
            row(4096, "CPU:0", 1e-2),
            row(4096, "numpy:CPU", 5e-3),
            row(4096, "GPU:0", 1e-4),
        ]
    )
    table = winners(results).set_index("size")
    assert table.loc[64, "device"] == "numpy:CPU"
    assert table.loc[64, "best_accelerator"] == ""
    assert math.isnan(table.loc[64, "accelerator_speedup"])
    assert table.loc[4096, "best_accelerator"] == "GPU:0"
    assert table.loc[4096, "accelerator_speedup"] == pytest.approx(100.0)
    assert [is_accelerator(d) for d in ("CPU:0", "CPU:1", "numpy:CPU", "GPU:0", "/device:GPU:1", "TPU:0")] == [
        False, False, False, True, True, True,
    ]
