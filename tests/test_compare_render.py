"""devbench compare's output: fingerprint differences, the table, CSV and JSON, and the chart."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from devbench.compare import (
    CSV_COLUMNS,
    Comparison,
    compare_runs,
)
from devbench.compare_render import render_comparison
from devbench.errors import UsageError
from devbench.machine import fingerprint_diff, incomparable_changes
from devbench.plots.compare import compare_figure, write_compare_chart
from tests.compare_fixtures import (
    FakeCell,
    grid,
    machine,
    make_run,
)

# ------------------------------------------------------------------------------------------ fingerprints


def test_fingerprint_differences_are_found() -> None:
    gpu_box = machine(
        hostname="gpubox",
        cpu__model="Intel Xeon Platinum 8480+",
        cpu__logical_cores=32,
        memory__total_bytes=512 * 2**30,
        tensorflow__version="2.22.0",
        tensorflow__build_info={"cuda_version": "12.8", "cudnn_version": "9"},
        devices=[{"name": "CPU:0", "kind": "CPU", "details": {}},
                 {"name": "GPU:0", "kind": "GPU",
                  "details": {"device_name": "NVIDIA H100 80GB HBM3", "compute_capability": [9, 0]}}],
    )
    diffs = fingerprint_diff({"machine": machine()}, {"machine": gpu_box})
    assert [(d.field, d.base, d.new) for d in diffs] == [
        ("hostname", "laptop", "gpubox"),
        ("cpu.model", "AMD EPYC 7B13", "Intel Xeon Platinum 8480+"),
        ("cpu.logical_cores", 2, 32),
        ("memory", "8.0 GiB", "512.0 GiB"),
        ("tensorflow", "2.21.0", "2.22.0"),
        ("cuda", "12.5.1", "12.8"),
        ("devices", "CPU:0", "CPU:0, GPU:0"),
        ("gpu.names", None, "NVIDIA H100 80GB HBM3"),
        ("gpu.compute_capability", None, "9.0"),
    ]
    assert diffs[0] == ("hostname", "laptop", "gpubox")  # plain (field, base, new) tuples


def test_resume_asks_only_for_the_changes_that_make_cells_incomparable() -> None:
    moved = machine(hostname="gpubox", python__version="3.11.9", memory__total_bytes=64 * 2**30,
                    tensorflow__version="2.22.0")
    assert [(d.field, d.base, d.new) for d in incomparable_changes(machine(), moved)] == [
        ("hostname", "laptop", "gpubox"),
        ("tensorflow", "2.21.0", "2.22.0"),
    ]
    assert len(fingerprint_diff(machine(), moved)) == 4  # compare lists python and memory as well
    assert incomparable_changes(machine(), machine(python__version="3.11.9")) == []
    with pytest.raises(ValueError, match="unknown fingerprint fields"):
        fingerprint_diff(machine(), moved, ["hostnmae"])


def test_identical_fingerprints_have_no_differences_and_memory_noise_is_ignored() -> None:
    assert fingerprint_diff({"machine": machine()}, {"machine": machine()}) == []
    nearly = machine(memory__total_bytes=8 * 2**30 - 3 * 2**20)
    assert fingerprint_diff({"machine": machine()}, {"machine": nearly}) == []
    # The machine dict itself is accepted too.
    assert fingerprint_diff(machine(), machine(python__version="3.11.9")) == [
        ("python", "3.12.3", "3.11.9")]


def test_a_run_without_fingerprint_shows_every_field_as_missing() -> None:
    diffs = fingerprint_diff({"machine": machine()}, {})
    assert ("hostname", "laptop", None) in diffs
    assert all(d.new is None for d in diffs)
    assert fingerprint_diff({}, {}) == []


def test_fingerprint_differences_are_printed_first() -> None:
    base = make_run(grid())
    new = make_run(grid(), run_id="new", meta=machine(hostname="gpubox"))
    comparison = compare_runs(base, new)
    text = render_comparison(comparison, "table")
    assert text.index("Machine differences") < text.index("Cells")
    assert "gpubox" in text
    same = render_comparison(compare_runs(base, base), "table")
    assert "Machine differences: none" in same


# ----------------------------------------------------------------------------------------------- output


@functools.cache
def _mixed_comparison() -> Comparison:
    """Seven compared cells (one slower, one without raw samples), one cell only in new, a new hostname."""
    base = make_run([*grid(), FakeCell(op="matmul", size=4096, rounds=[], median_s=0.5)])
    new_cells = [*grid({256: 1.2}), FakeCell(op="matmul", size=4096, rounds=[], median_s=0.6),
                 FakeCell(op="conv", size=32)]
    return compare_runs(base, make_run(new_cells, run_id="new", meta=machine(hostname="gpubox")))


def test_json_output_parses_and_has_no_nan() -> None:
    comparison = _mixed_comparison()
    text = render_comparison(comparison, "json")

    def refuse(constant: str) -> None:
        raise AssertionError(f"JSON holds {constant}")

    data = json.loads(text, parse_constant=refuse)
    assert data["base"] == "base"
    assert data["new"] == "new"
    assert data["settings"] == {"threshold": 0.05, "alpha": 0.05, "confidence": 0.95, "n_boot": 2000,
                                "seed": 0, "gate_method": "holm", "baseline_window": 0}
    assert data["summary"]["gate_fails"] == 1
    assert data["summary"]["slower"] == 1
    assert data["summary"]["regression"] is True
    assert data["fingerprint_diff"] == [{"field": "hostname", "base": "laptop", "new": "gpubox"}]
    untested = next(c for c in data["cells"] if c["size"] == 4096)
    assert untested["p_value"] is None
    assert untested["ci_low"] is None
    assert untested["ratio"] == pytest.approx(1.2)
    assert untested["verdict"] == "uncertain"
    assert set(CSV_COLUMNS) <= set(data["cells"][0])
    assert [c["op"] for c in data["only_in_new"]] == ["conv"]
    assert data["overall"]["ci_low"] is None
    assert data["crossovers"] is None


def test_csv_output_has_the_documented_columns() -> None:
    comparison = _mixed_comparison()
    frame = pd.read_csv(__import__("io").StringIO(render_comparison(comparison, "csv")))
    assert tuple(frame.columns) == CSV_COLUMNS
    assert len(frame) == len(comparison.cells) == 7
    slow = frame[(frame["op"] == "matmul") & (frame["size"] == 256)].iloc[0]
    assert slow["verdict"] == "slower"
    assert slow["ratio"] == pytest.approx(1.2)
    untested = frame[frame["size"] == 4096].iloc[0]
    assert math.isnan(untested["p_value"])
    assert "no raw samples" in untested["notes"]
    pd.testing.assert_frame_equal(comparison.to_frame()[["op", "size", "verdict"]],
                                  frame[["op", "size", "verdict"]])


def test_table_output_shows_cells_geomeans_and_summary() -> None:
    text = render_comparison(_mixed_comparison(), "table", width=200)
    assert "SLOWER" in text  # a regression stands out
    assert "1.200×" in text
    assert "Geometric-mean ratio" in text
    assert "overall" in text
    assert "Only in new (1)" in text
    assert "1 slower" in text
    assert "REGRESSION" in text
    assert "\x1b[" not in text  # plain text, no terminal codes


def test_unknown_format_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown format 'yaml'; allowed: table, csv, json"):
        render_comparison(_mixed_comparison(), "yaml")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ chart


def test_compare_figure_has_one_panel_per_op_with_reference_line_and_band() -> None:
    comparison = _mixed_comparison()
    fig = compare_figure(comparison)
    axes = fig.axes
    assert [ax.get_title(loc="left") for ax in axes] == ["add", "matmul"]
    for ax in axes:
        assert ax.get_xscale() == "log"
        assert any(np.array_equal(np.asarray(line.get_ydata()), [1.0, 1.0]) for line in ax.get_lines())
        assert ax.get_ylabel() == "new / base"
        legend = ax.get_legend()
        assert legend is not None
        labels = [text.get_text() for text in legend.get_texts()]
        assert "float32 CPU:0 eager" in labels
        assert "±5% threshold" in labels
    matmul = axes[1]
    matmul_legend = matmul.get_legend()
    assert matmul_legend is not None
    matmul_labels = [text.get_text() for text in matmul_legend.get_texts()]
    assert "slower" in matmul_labels
    assert "same" in matmul_labels
    # Error bars: one errorbar container per (series, verdict) present.
    assert len(matmul.containers) == len({c.verdict for c in comparison.cells if c.key.op == "matmul"})
    assert "new vs base" in fig.get_suptitle()


def test_write_compare_chart_writes_a_png(tmp_path: Path) -> None:
    written = write_compare_chart(_mixed_comparison(), tmp_path)
    assert written == tmp_path / "compare.png"
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chart_of_a_comparison_without_cells_says_so(tmp_path: Path) -> None:
    comparison = compare_runs(make_run([FakeCell(status="oom", rounds=[])]),
                              make_run([FakeCell(status="oom", rounds=[])], run_id="new"))
    fig = compare_figure(comparison)
    assert "no cells measured ok" in fig.axes[0].texts[0].get_text()
    assert write_compare_chart(comparison, tmp_path / "c.png").exists()
