"""crossover, plot, report, compare and refine as a user calls them, on synthetic runs with known answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from devbench.cli import main
from devbench.refine import refine_run
from devbench.schema import VisitRecord
from devbench.spec import Cell, SweepSpec, TimingPolicy
from devbench.store import CellLog, load_run, new_meta, write_json
from devbench.timer import Measurement
from tests.synthetic import MACHINE

SIZES = (64, 128, 256, 512, 1024, 2048, 4096)
# CPU time grows as n³, the "GPU" pays a fixed launch cost: they cross at exactly n = 1000.
MODELS: dict[str, Callable[[int], float]] = {"CPU:0": lambda n: 1e-12 * n**3, "GPU:0": lambda n: 1e-3}


def make_run(path: Path, slowdown: float = 1.0, sizes: tuple[int, ...] = SIZES, jitter: float = 0.002, *,
             rounds: int = 1, drift: float = 0.0, seed: int = 0) -> Path:
    """A run directory as devbench writes it: meta.json and cells.jsonl with raw samples, ``rounds``
    visits per cell (one line each, visits of a round taken together) whose medians move by a round effect
    shared by the whole run (lognormal of sigma ``drift``, from ``seed``), as interleaved visits see it."""
    path.mkdir(parents=True)
    spec = SweepSpec(ops=("matmul",), sizes=sizes, devices=tuple(MODELS), rounds=rounds)
    write_json(path / "meta.json", new_meta(spec.to_dict(), MACHINE, path.name, ["sweep"]))
    rng = np.random.default_rng(seed)
    effects = np.exp(drift * rng.standard_normal(rounds))
    log = CellLog(path)
    for round_ in range(1, rounds + 1):
        for size in sizes:
            for device, model in MODELS.items():
                samples = list(model(size) * slowdown * effects[round_ - 1] * (1 + jitter * rng.standard_normal(20)))
                q1, med, q3 = np.percentile(samples, [25, 50, 75])
                log.append(VisitRecord(run_id=path.name, op="matmul", size=size, dtype="float32", device=device,
                                       mode="eager", sync="scalar", status="ok", n_samples=20, number=1, median_s=med,
                                       q1_s=q1, q3_s=q3, ci_low_s=med * 0.999, ci_high_s=med * 1.001,
                                       cold_s=med * 10, rel_iqr=(q3 - q1) / med, flops=2.0 * size**3,
                                       bytes=12.0 * size**2, gflops=2.0 * size**3 / med / 1e9,
                                       gbps=12.0 * size**2 / med / 1e9), samples, round_)
    return path


def test_crossover_table_csv_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path / "run")
    assert main(["crossover", str(run)]) == 0
    assert "n≈1000" in capsys.readouterr().out  # the note column wraps, the crossover column does not
    assert main(["crossover", str(run), "--format", "csv"]) == 0
    table = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert list(table.columns[:12]) == ["op", "dtype", "mode", "device_a", "device_b", "crossover_size", "low",
                                        "high", "faster_below", "faster_above", "decisive", "note"]
    assert table["crossover_size"].iloc[0] == pytest.approx(1000, rel=0.01)
    assert main(["crossover", str(run), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["faster_below"] == "CPU:0"
    assert rows[0]["faster_above"] == "GPU:0"
    assert rows[0]["note"].startswith("GPU:0 faster above n≈1000")


def test_crossover_of_a_bare_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "timings.csv"
    pd.DataFrame(
        [{"op": "matmul", "size": n, "dtype": "float32", "device": d, "median_s": m(n)}
         for n in SIZES for d, m in MODELS.items()]
    ).to_csv(table, index=False)
    assert main(["crossover", str(table)]) == 0
    assert "n≈1000" in capsys.readouterr().out
    pd.DataFrame([{"op": "matmul", "size": 64}]).to_csv(tmp_path / "thin.csv", index=False)
    assert main(["crossover", str(tmp_path / "thin.csv")]) == 2
    assert "dtype" in capsys.readouterr().err


def test_plot_and_report_write_into_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path / "run")
    assert main(["plot", str(run)]) == 0
    pngs = sorted(p.name for p in (run / "plots").glob("*.png"))
    assert "crossover-matmul-float32-eager.png" in pngs
    assert "overview.png" in pngs
    assert main(["report", str(run)]) == 0
    report = (run / "report.md").read_text()
    assert "n≈1000" in report
    assert "plots/crossover-matmul-float32-eager.png" in report
    (tmp_path / "afile").write_text("")
    assert main(["plot", str(run), "--out", str(tmp_path / "afile")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_compare_same_and_slower(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = make_run(tmp_path / "base", rounds=5)
    same = make_run(tmp_path / "same", rounds=5, seed=1)
    slower = make_run(tmp_path / "slower", slowdown=1.2, rounds=5, seed=2)
    assert main(["compare", str(base), str(same), "--fail-on-regression"]) == 0
    assert "SLOWER" not in capsys.readouterr().out
    assert main(["compare", str(base), str(slower), "--fail-on-regression"]) == 1
    captured = capsys.readouterr()
    assert "SLOWER" in captured.out
    assert "gate failed: 14 of 14 judged cell(s) slower beyond 5%, significant after holm" in captured.err
    assert "matmul[4096, float32, GPU:0, eager]" in captured.err
    assert main(["compare", str(base), str(slower), "--fail-on-regression", "--gate-method", "bh",
                 "--alpha", "0.01"]) == 1
    assert "after bh at alpha 0.01" in capsys.readouterr().err
    assert (slower / "plots" / "compare.png").is_file()
    assert main(["compare", str(base), str(slower), "--format", "csv"]) == 0  # no gate: exit 0
    assert main(["compare", str(base), str(slower), "--threshold", "2"]) == 2
    assert "--threshold '2' must be in [0, 1)" in capsys.readouterr().err
    assert main(["compare", str(base), str(slower), "--gate-method", "bonferroni"]) == 2
    assert "bonferroni" in capsys.readouterr().err


def test_compare_identical_runs_with_drift_pass_the_gate(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs of the same machine, each with its own drift (10 % between rounds, shared by the run's cells):
    every ratio moves with the drift, but no cell is slower or faster and the gate exits 0; one round per
    cell cannot see drift at all and says so."""
    base = make_run(tmp_path / "base", rounds=5, drift=0.1, seed=3)
    again = make_run(tmp_path / "again", rounds=5, drift=0.1, seed=4)
    assert main(["compare", str(base), str(again), "--fail-on-regression", "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert (summary["slower"], summary["faster"], summary["regression"]) == (0, 0, False)
    one = make_run(tmp_path / "one", rounds=1)
    assert main(["compare", str(one), str(one), "--fail-on-regression", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "1 round: cannot see drift between rounds" in out


@dataclass
class ModelOutcome:
    measurement: Measurement[Any]
    placed_device: str
    flops: float
    bytes: float
    traces: int = 0
    note: str = ""


class ModelBackend:
    """Answers each cell with a synthetic cost model (``MODELS`` by default: a known crossover at n = 1000)."""

    def __init__(self, models: dict[str, Callable[[int], float]] | None = None) -> None:
        self.models = models or MODELS
        self.sizes: list[int] = []

    def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int) -> ModelOutcome:
        self.sizes.append(cell.size)
        t = self.models[cell.device](cell.size)
        m: Measurement[Any] = Measurement(cold_s=t, samples=[t, t, t], number=1, warmup_calls=2,
                                          sync_overhead_s=0.0, stop_reason="converged")
        return ModelOutcome(m, cell.device, 2.0 * cell.size**3, 12.0 * cell.size**2)

    def classify(self, exc: BaseException) -> tuple[str, str]:
        return "error", str(exc)

    def release(self) -> None:
        pass


REFINE_ROUNDS = 5
IDENTICAL: dict[str, Callable[[int], float]] = {"CPU:0": lambda n: 1e-9 * n**2, "CPU:1": lambda n: 1e-9 * n**2}


def make_rounds_run(path: Path, models: dict[str, Callable[[int], float]], *, drift: float = 0.3,
                    noise: float = 0.02, seed: int = 0) -> Path:
    """A run of ``REFINE_ROUNDS`` interleaved rounds as a sweep logs it (one line per visit): in each round
    the machine runs every size at a drifted speed, shared by the devices measured back to back there."""
    path.mkdir(parents=True)
    spec = SweepSpec(ops=("matmul",), sizes=SIZES, devices=tuple(models), rounds=REFINE_ROUNDS)
    write_json(path / "meta.json", new_meta(spec.to_dict(), MACHINE, path.name, ["sweep"]))
    rng = np.random.default_rng(seed)
    log = CellLog(path)
    for round_ in range(1, REFINE_ROUNDS + 1):
        for size in SIZES:
            shared = float(np.exp(rng.normal(0.0, drift)))
            for device, model in models.items():
                samples = list(model(size) * shared * np.exp(noise * rng.standard_normal(10)))
                med = float(np.median(samples))
                log.append(VisitRecord(run_id=path.name, op="matmul", size=size, dtype="float32", device=device,
                                       mode="eager", sync="scalar", status="ok", n_samples=10, number=1,
                                       median_s=med, cold_s=med * 10, flops=2.0 * size**3, bytes=12.0 * size**2),
                           samples, round_)
    return path


def test_refine_narrows_a_decisive_bracket_into_the_same_run(tmp_path: Path) -> None:
    run = make_rounds_run(tmp_path / "run", MODELS)
    backend = ModelBackend()
    outcome = refine_run(run, backend=backend, guard=lambda c: None)
    assert outcome.converged
    assert outcome.skipped == []
    assert backend.sizes
    assert all(512 < n < 2048 for n in backend.sizes)
    loaded = load_run(run)
    assert set(backend.sizes) <= set(loaded.results["size"])
    rounds = SweepSpec.from_dict(loaded.meta["spec"]).rounds
    assert len(backend.sizes) == len(set(backend.sizes)) * 2 * rounds  # both devices, every round
    assert len(loaded.results) == 2 * len(SIZES) + 2 * len(set(backend.sizes))
    from devbench.analysis import crossover_frame

    row = crossover_frame(loaded.results, loaded.samples).iloc[0]
    assert row["decisive"]
    assert row["crossover_size"] == pytest.approx(1000, rel=0.05)
    assert row["bracket_high"] - row["bracket_low"] <= 0.05 * row["crossover_size"]
    assert json.loads((run / "meta.json").read_text())["refinements"][0]["converged"] is True


def test_refine_skips_the_crossings_of_identical_devices_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two names for the same cores: the medians cross, but within noise, so refine measures nothing."""
    from devbench import refine as refine_module
    from devbench.analysis import crossover_frame

    run = None
    for seed in range(10):  # the first drift whose medians cross (most do); the verdict must be "skip"
        candidate = make_rounds_run(tmp_path / f"run{seed}", IDENTICAL, seed=seed)
        loaded = load_run(candidate)
        if np.isfinite(crossover_frame(loaded.results, loaded.samples)["crossover_size"]).any():
            run = candidate
            break
    assert run is not None
    backend = ModelBackend(IDENTICAL)
    real = refine_module.refine_run
    monkeypatch.setattr(refine_module, "refine_run",
                        lambda run_dir, **kw: real(run_dir, backend=backend, guard=lambda c: None, **kw))
    assert main(["refine", str(run)]) == 0
    out = capsys.readouterr().out
    assert backend.sizes == []
    assert "refine: measured 0 extra sizes; converged" in out
    assert "refine: skipped " in out
    assert "within noise: matmul float32 eager CPU:0 vs CPU:1 at n≈" in out


def test_refine_skips_a_one_round_crossing_it_cannot_judge(tmp_path: Path) -> None:
    """One visit per cell cannot see drift: the crossing is within noise, not refined."""
    run = make_run(tmp_path / "run", jitter=0.0)
    backend = ModelBackend()
    outcome = refine_run(run, backend=backend, guard=lambda c: None)
    assert backend.sizes == []
    assert outcome.converged
    assert len(outcome.skipped) == 1
    assert 512 <= outcome.skipped[0].crossover_size <= 2048


@pytest.mark.parametrize("command", ["crossover", "plot", "report", "refine"])
def test_missing_source_is_a_usage_error(tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    assert main([command, str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "nope" in err
