"""report.md: machine, command, crossover table, winners, chart links and warnings."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from devbench import store
from devbench.report import md_cell, render_report, write_report
from tests import synthetic
from tests.synthetic import MACHINE, frame, from_model, grid, row, run


def results() -> pd.DataFrame:
    """matmul: GPU:0 faster above n = 1000; one noisy cell, one unsynchronized op, and failed cells."""
    good = from_model({"CPU:0": lambda n: 1e-12 * n**3, "GPU:0": lambda n: 1e-6 * n}, grid(64, 4096))
    good.loc[(good["device"] == "GPU:0") & (good["size"] == 2048), "rel_iqr"] = 0.25
    unsync = from_model({"CPU:0": lambda n: 1e-12 * n**3, "GPU:0": lambda n: 8e-6}, [64, 128], op="add", sync="none")
    failed = frame(
        [
            row(8192, "GPU:0", 1.0, status="oom", reason="OOM when allocating tensor | shape [8192,8192]"),
            row(8192, "CPU:0", 1.0, status="skipped", reason="time guard: cell would take > 60 s"),
            row(64, "GPU:0", 1.0, op="conv2d", status="fallback", reason="output on CPU:0"),
            row(64, "GPU:0", 1.0, op="reduce_sum", dtype="int32", status="unsupported", reason="no int32 kernel"),
            row(64, "CPU:0", 1.0, op="softmax_xent_grad", status="wrong", reason="rel. error 3e-2 > 1e-4"),
            row(64, "CPU:0", 1.0, op="dense_step", status="error", reason="RuntimeError: boom"),
        ]
    )
    return pd.concat([good, unsync, failed], ignore_index=True)


def test_report_holds_machine_command_crossovers_and_winners(tmp_path: Path) -> None:
    meta = {
        "run_id": "20250101T000000Z-host",
        "command": "devbench sweep --ops matmul --sizes 64..4096",
        "machine": {**MACHINE, "hostname": "host"},
        "started_at": "2025-01-01T00:00:00+00:00",
    }
    path = write_report(run(results(), meta=meta), tmp_path)
    assert path == tmp_path / "report.md"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# devbench report: 20250101T000000Z-host\n")
    assert "devbench sweep --ops matmul --sizes 64..4096" in text
    assert "Synthetic CPU 9000 (8 cores) · GPU: Synthetic GPU X1 · TF 2.99.0" in text
    assert "- **device GPU:0**: Synthetic GPU X1" in text
    assert "- **host**: host" in text
    assert "- **OS**" not in text  # not recorded, so not shown as '?'
    assert "- **started**: 2025-01-01T00:00:00+00:00" in text

    assert "## Crossovers" in text
    header = "| op dtype mode | pair (a vs b) | crossover | range | faster below | faster above | evidence |"
    assert header in text
    crossover_row = next(line for line in text.splitlines() if line.startswith("| matmul float32 eager |"))
    assert "| CPU:0 vs GPU:0 | n≈1000 | 512–1024 | CPU:0 | GPU:0 | decisive |" in crossover_row
    assert "GPU:0 faster above n≈1000 (range 512–1024), decisive" in crossover_row
    assert "*decisive*" in text  # the section says what the word means

    assert "## Fastest device per op × size" in text
    winner_row = next(
        line for line in text.splitlines() if line.startswith("| matmul float32 eager |") and "n≈" not in line
    )
    assert winner_row.startswith("| matmul float32 eager | CPU:0 (")
    assert "GPU:0 16777216×" not in winner_row  # large ratios stay readable
    assert "GPU:0 16.8×" in winner_row  # n=4096: 1e-6·4096² ≈ 16.8
    assert "GPU:0* 4.19×" in winner_row  # the noisy cell at n=2048 is flagged


def test_report_lists_every_kind_of_warning_with_reasons(tmp_path: Path) -> None:
    text = render_report(run(results()), tmp_path)
    warnings = text.split("## Warnings", 1)[1]
    assert "### Noisy cells (IQR over 10% of the median) (1)" in warnings
    assert "- matmul float32 eager on GPU:0 at n=2048: rel. IQR 25%" in warnings
    assert "### Unsynchronized cells (4)" in warnings
    assert "- add float32 eager on CPU:0 at n=64: sync=none, measures launch, not work" in warnings
    assert "- matmul float32 eager on GPU:0 at n=8192: OOM when allocating tensor \\| shape [8192,8192]" in warnings
    assert "time guard: cell would take > 60 s" in warnings
    for heading in ("### Fallback", "### Unsupported", "### Wrong", "### Out of memory", "### Skipped", "### Error"):
        assert heading in warnings
    assert "no int32 kernel" in warnings
    assert "RuntimeError: boom" in warnings


def test_report_links_charts_relative_to_the_run_dir(tmp_path: Path) -> None:
    plots = tmp_path / "plots"
    plots.mkdir()
    for name in ("overview.png", "crossover-matmul-float32-eager.png", "cold-vs-warm.png"):
        (plots / name).write_bytes(b"\x89PNG\r\n\x1a\n")
    text = render_report(run(results()), tmp_path)
    links = [line for line in text.splitlines() if line.startswith("![")]
    assert links == [
        "![crossover-matmul-float32-eager](plots/crossover-matmul-float32-eager.png)",
        "![overview](plots/overview.png)",
        "![cold-vs-warm](plots/cold-vs-warm.png)",
    ]
    explicit = render_report(run(results()), tmp_path, charts=[plots / "overview.png"])
    assert "![overview](plots/overview.png)" in explicit
    assert "cold-vs-warm" not in explicit


def test_report_without_charts_or_problems_says_so(tmp_path: Path) -> None:
    clean = from_model({"CPU:0": lambda n: 1e-12 * n**3}, [64, 128])
    text = render_report(run(clean), tmp_path)
    assert "No charts yet" in text
    assert "None: every cell is ok, synchronized and quiet." in text
    assert "no crossover to find" in text


def test_report_of_a_bare_table_has_no_machine(tmp_path: Path) -> None:
    table = tmp_path / "timings.csv"
    pd.DataFrame(
        {
            "op": ["matmul"] * 4,
            "size": [512, 1024, 512, 1024],
            "dtype": ["float32"] * 4,
            "device": ["CPU:0", "CPU:0", "GPU:0", "GPU:0"],
            "median_s": [1e-12 * 512**3, 1e-12 * 1024**3, 1e-6 * 512, 1e-6 * 1024],
        }
    ).to_csv(table, index=False)
    text = write_report(store.load_any(table), tmp_path / "out").read_text(encoding="utf-8")
    assert text.startswith("# devbench report: timings.csv")
    assert "No machine fingerprint" in text
    assert "n≈1000 | 512–1024 |" in text
    assert "no CI in the data" in text


def test_torn_lines_are_reported(tmp_path: Path) -> None:
    torn = run(results())
    torn.torn_lines = 1
    assert "cells.jsonl had 1 unreadable line(s)" in render_report(torn, tmp_path)


def test_md_cell_escapes_table_syntax() -> None:
    assert md_cell("a|b\nc") == "a\\|b c"


def test_report_shows_limits_dispatch_gap_and_transfer_cost(tmp_path: Path) -> None:
    eager = synthetic.from_medians({"CPU:0": {64: 40e-6, 128: 90e-6}})
    loop = eager.assign(mode="graph_loop", median_s=eager["median_s"] - 25e-6)
    moved = eager.assign(sync="transfer", median_s=eager["median_s"] * 2)
    calibration = {"devices": {"CPU:0": {"peak_flops": {"float32": 2e11}, "bandwidth": 2.5e10,
                                         "ridge": {"float32": 8.0}}}, "duration_s": 3.5}
    run = synthetic.run(pd.concat([eager, loop, moved], ignore_index=True), meta={"calibration": calibration})
    text = render_report(run, tmp_path)
    assert "## Machine limits" in text
    assert "200.0" in text  # GFLOP/s
    assert "## Dispatch overhead (eager − graph_loop)" in text
    assert "25 µs (n=64)" in text
    assert "## Cost of moving data" in text
    assert "no bus to cross" in text
    assert "calibrated peak 200 GFLOP/s" in text
    plain = render_report(synthetic.run(eager), tmp_path)
    # not calibrated: the limits section says why pct_of_peak is empty and lists the run's best (pct_of_best)
    assert "## Machine limits" in plain
    assert "- CPU:0 float32: no calibrated peak (the run was not calibrated" in plain
    assert "the run's best" in plain
    assert "The calibration probes" not in plain
    assert "Dispatch overhead" not in plain
    assert "moving data" not in plain


def test_report_pairs_devices_by_round_when_the_run_has_samples(tmp_path: Path) -> None:
    from devbench.store import Run
    from tests.test_crossover import IDENTICAL, Drifting

    results, samples = Drifting(IDENTICAL, seed=3).measure(grid(64, 4096))
    text = render_report(Run(path=None, meta={}, results=results, samples=samples), tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| matmul float32 eager | CPU:0 vs CPU:1 | n≈")]
    assert rows
    assert all("| within noise |" in line for line in rows)
