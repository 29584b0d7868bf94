"""The fleet table: each machine's best device and its speed-up over the baseline, crossovers side by side."""

from __future__ import annotations

import json
import math
from io import StringIO
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from devbench.errors import UsageError
from devbench.fleet import (
    FLEET_COLUMNS,
    fleet_crossovers,
    fleet_figure,
    fleet_table,
    machine_names,
    render_fleet,
    write_fleet_chart,
)
from devbench.store import Run
from tests import synthetic

SIZES = synthetic.grid(64, 2048)


def _meta(cpu: str, gpu: str | None = "Synthetic GPU X1") -> dict[str, Any]:
    devices: list[dict[str, Any]] = [{"name": "CPU:0", "kind": "CPU"}]
    if gpu:
        devices.append({"name": "GPU:0", "kind": "GPU", "details": {"device_name": gpu}})
    return {"run_id": cpu, "machine": {"cpu": {"model": cpu, "logical_cores": 8}, "tensorflow": {"version": "2.9"},
                                       "devices": devices}}


def cpu(n: int) -> float:
    return 1e-5 + 1e-10 * n**3


def gpu(n: int) -> float:
    return 1e-4 + 1e-12 * n**3


def _run(cpu_scale: float, gpu_scale: float | None, name: str) -> Run:
    models = {"CPU:0": lambda n: cpu_scale * cpu(n)}
    if gpu_scale is not None:
        models["GPU:0"] = lambda n: gpu_scale * gpu(n)
    return synthetic.run(synthetic.from_model(models, SIZES), meta=_meta(name, None if gpu_scale is None else "X1"))


@pytest.fixture
def runs() -> list[Run]:
    """A baseline with a GPU, the same machine 2x slower everywhere, and a CPU-only box 4x slower."""
    return [_run(1.0, 1.0, "Base CPU"), _run(2.0, 2.0, "Slow CPU"), _run(4.0, None, "Old CPU")]


def test_machine_names_from_fingerprints_labels_and_suffixes(runs: list[Run]) -> None:
    assert machine_names(runs) == ["Base CPU (8 cores) · GPU: X1 · TF 2.9", "Slow CPU (8 cores) · GPU: X1 · TF 2.9",
                                   "Old CPU (8 cores) · TF 2.9"]
    assert machine_names(runs, ["a", None, "c"])[::2] == ["a", "c"]
    assert machine_names([runs[0], runs[0], runs[0]], ["box", "box", None])[:2] == ["box", "box #2"]
    assert machine_names([runs[0], runs[0]]) == [machine_names([runs[0]])[0], machine_names([runs[0]])[0] + " #2"]
    bare = Run(path=Path("results/laptop.csv"), meta={}, results=runs[0].results, samples=runs[0].samples)
    assert machine_names([bare]) == ["laptop"]
    with pytest.raises(UsageError, match="2 labels for 3 runs"):
        machine_names(runs, ["a", "b"])


def test_best_device_and_speedup_over_the_baseline(runs: list[Run]) -> None:
    table = fleet_table(runs, labels=["base", "slow", "old"])
    assert list(table.columns) == list(FLEET_COLUMNS)
    assert len(table) == 3 * len(SIZES)
    for size in SIZES:
        rows = table[table["size"] == size].set_index("machine", drop=False)
        faster = "GPU:0" if gpu(size) < cpu(size) else "CPU:0"
        assert rows.loc["base", "device"] == faster
        assert rows.loc["slow", "device"] == faster  # same machine, twice as slow on both devices
        assert rows.loc["old", "device"] == "CPU:0"
        assert rows.loc["base", "speedup"] == pytest.approx(1.0)
        assert bool(rows.loc["base", "is_baseline"])
        assert rows.loc["slow", "speedup"] == pytest.approx(0.5)
        assert rows.loc["old", "speedup"] == pytest.approx(min(cpu(size), gpu(size)) / (4 * cpu(size)))
        # interval: opposite ends of the two medians' CIs (synthetic CI = median · (1 ∓ 0.01))
        assert rows.loc["slow", "speedup_low"] == pytest.approx(0.5 * 0.99 / 1.01)
        assert rows.loc["slow", "speedup_high"] == pytest.approx(0.5 * 1.01 / 0.99)
    assert [str(m) for m in table["machine"].cat.categories] == ["base", "slow", "old"]


def test_another_baseline_and_a_bad_one(runs: list[Run]) -> None:
    table = fleet_table(runs, labels=["base", "slow", "old"], baseline=1)
    row = table[(table["size"] == 64) & (table["machine"] == "base")].iloc[0]
    assert row["speedup"] == pytest.approx(2.0)
    assert not bool(row["is_baseline"])
    with pytest.raises(UsageError, match="baseline 3"):
        fleet_table(runs, baseline=3)
    with pytest.raises(UsageError, match="no runs"):
        fleet_table([])
    failed = Run(path=None, meta=_meta("Broken CPU"), samples=runs[0].samples,
                 results=synthetic.frame([synthetic.row(64, "CPU:0", 1.0, status="error")]))
    with pytest.raises(UsageError, match=r"baseline 'Broken CPU .* has no ok cells"):
        fleet_table([failed, *runs])
    assert len(fleet_table([*runs, failed])) == len(fleet_table(runs))


def test_a_cell_the_baseline_lacks_has_no_speedup(runs: list[Run]) -> None:
    base = runs[0]
    trimmed = Run(path=None, meta=base.meta, results=base.results[base.results["size"] != 2048],
                  samples=base.samples)
    table = fleet_table([trimmed, runs[1]], labels=["base", "slow"])
    row = table[table["size"] == 2048].iloc[0]
    assert row["machine"] == "slow"
    assert math.isnan(row["speedup"])
    assert math.isnan(row["speedup_low"])


def test_crossovers_side_by_side(runs: list[Run]) -> None:
    crossovers = fleet_crossovers(runs, labels=["base", "slow", "old"])
    found = crossovers[crossovers["crossover_size"].notna()].set_index("machine")
    # both machines with a GPU cross where 1e-5 + 1e-10 n³ = 1e-4 + 1e-12 n³, n ≈ 97; the old box has no pair
    expected = (9e-5 / (1e-10 - 1e-12)) ** (1 / 3)
    assert found.loc["base", "crossover_size"] == pytest.approx(expected, rel=0.1)
    assert found.loc["slow", "crossover_size"] == pytest.approx(expected, rel=0.1)
    assert found["decisive"].all()  # no samples: the cells' CIs (±1 %) decide
    assert "old" not in set(crossovers["machine"].astype(str))
    text = render_fleet(fleet_table(runs, labels=["base", "slow", "old"]), "table", crossovers)
    cross_line = next(line for line in text.splitlines() if "CPU:0" in line and "GPU:0 above" in line)
    assert cross_line.count("GPU:0 above") == 2
    assert cross_line.count("(decisive)") == 2
    assert cross_line.rstrip("│ ").endswith("–")  # the old box: no such pair


def test_render_formats(runs: list[Run]) -> None:
    labels = ["base", "slow", "old"]
    table = fleet_table(runs, labels=labels)
    crossovers = fleet_crossovers(runs, labels=labels)
    text = render_fleet(table, "table", crossovers)
    assert "speed-up over base" in text
    assert "(baseline)" in text
    assert "0.5× [0.49–0.51]" in text
    markdown = render_fleet(table, "markdown", crossovers)
    assert "| op | dtype | mode | n | base | slow | old |" in markdown
    assert markdown.count("\n| matmul | float32 | eager | 64 |") == 1
    csv = pd.read_csv(StringIO(render_fleet(table, "csv")))
    assert list(csv.columns) == list(FLEET_COLUMNS)
    assert len(csv) == len(table)
    data = json.loads(render_fleet(table, "json", crossovers))
    assert data["machines"] == labels
    assert data["baseline"] == "base"
    assert len(data["cells"]) == len(table)
    assert {c["machine"] for c in data["crossovers"]} == {"base", "slow"}
    with pytest.raises(UsageError, match="unknown format 'html'"):
        render_fleet(table, "html")  # type: ignore[arg-type]


def test_figure_has_a_panel_per_op_dtype_mode_and_a_line_per_machine(runs: list[Run], tmp_path: Path) -> None:
    add = synthetic.from_model({"CPU:0": cpu}, SIZES, op="add")
    first = Run(path=None, meta=runs[0].meta, results=pd.concat([runs[0].results, add]), samples=runs[0].samples)
    table = fleet_table([first, runs[1], runs[2]], labels=["base", "slow", "old"])
    fig = fleet_figure(table)
    axes = fig.get_axes()
    assert [ax.get_title(loc="left") for ax in axes] == ["add float32 eager", "matmul float32 eager"]
    legend = axes[1].get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["base", "slow", "old"]
    path = write_fleet_chart(table, tmp_path)
    assert path == tmp_path / "fleet.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_crossovers_of_identical_devices_are_within_noise_from_the_samples() -> None:
    from tests.test_crossover import IDENTICAL, Drifting

    results, samples = Drifting(IDENTICAL, seed=3).measure(synthetic.grid(64, 4096))
    crossovers = fleet_crossovers([Run(path=None, meta=_meta("Twin CPU", None), results=results, samples=samples)])
    found = crossovers[crossovers["crossover_size"].notna()]
    assert len(found) > 0
    assert not found["decisive"].any()
