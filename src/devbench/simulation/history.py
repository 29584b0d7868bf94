"""Rates of ``history``'s step detection on seeded synthetic series of whole runs with a known truth.

A series is ``runs`` runs of one machine (:func:`synthetic_runs`): each run is one :func:`simulate_run` of a
few cells (matmul on one device at a few sizes; every level of :class:`Noise`: within a visit, per cell and
round, per round, and per run, the last being what no run's interval holds), turned into the results rows a
run directory holds, with the real two-level bootstrap interval of each median
(``resampling.median_interval``). From run ``step_at`` on, the first cell is ``step`` times slower and the
fingerprint's environment changes. The real ``history.cell_series`` and ``history.cell_steps`` judge them:

- **detection at the right run**: the fraction of series whose stepped cell has a step at ``step_at``;
- **near**: the same within one run of it;
- **false steps**: the fraction of cells without a real step (and of stepped cells, steps elsewhere) that get
  any step; on A/A series (``step`` 1) every cell is one without.

``bench/history_rates.py`` prints :func:`table` (100+ series per setting); the tests keep fast seeded versions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd

from devbench.history import cell_series, cell_steps, order_runs
from devbench.resampling import cell_median, median_interval
from devbench.schema import CellRow, results_frame
from devbench.simulation import Noise, simulate_run
from devbench.store import Run

SIZES: tuple[int, ...] = (256, 512, 1024, 2048)
"""The cells of a synthetic run: matmul float32 eager on CPU:0 at these sizes (the first one steps)."""

START = datetime(2026, 1, 1, tzinfo=timezone.utc)

SETTINGS: dict[str, tuple[Noise, int]] = {
    "quiet (1 % per run, 3 rounds)": (Noise(within=0.03, per_cell=0.02, per_round=0.03, per_run=0.01), 3),
    "drift (3 % per run, 3 rounds)": (Noise(within=0.03, per_cell=0.02, per_round=0.05, per_run=0.03), 3),
    "drift (3 % per run, 5 rounds)": (Noise(within=0.03, per_cell=0.02, per_round=0.05, per_run=0.03), 5),
    "heavy (5 % per run, 10 % per round, 5 rounds)": (Noise(within=0.03, per_cell=0.02, per_round=0.10,
                                                            per_run=0.05), 5),
}
"""Noise (sigmas in log units) and rounds per run of each line of :func:`table`."""


def _meta(i: int, changed: bool) -> dict[str, Any]:
    env = {"TF_NUM_INTRAOP_THREADS": "1"} if changed else {}
    return {"run_id": f"sim-{i:03d}", "started_at": (START + timedelta(hours=i)).isoformat(timespec="seconds"),
            "machine": {"hostname": "simulated", "env": env}}


def synthetic_runs(rng: np.random.Generator, *, runs: int = 30, step_at: int = 15, step: float = 1.10,
                   noise: Noise, rounds: int = 3, sizes: Sequence[int] = SIZES, n_boot: int = 200) -> list[Run]:
    """``runs`` synthetic runs (see the module docstring); ``step`` 1 gives an A/A series."""
    base = np.log(1e-9 * np.asarray(sizes, dtype=np.float64) ** 3)
    rows = []
    for i in range(runs):
        truth = base.copy()
        if i >= step_at and step != 1.0:
            truth[0] += math.log(step)
        for size, rounds_of in zip(sizes, simulate_run(rng, truth, rounds, noise), strict=True):
            interval = median_interval(rounds_of, n_boot=n_boot, seed=int(rng.integers(2**31)))
            rows.append(CellRow(
                run_id=f"sim-{i:03d}", op="matmul", size=int(size), dtype="float32", device="CPU:0", mode="eager",
                sync="scalar", status="ok", placed_device="CPU:0", n_samples=sum(len(r) for r in rounds_of),
                number=1, n_rounds=rounds, median_s=cell_median(rounds_of), ci_low_s=interval.ci_low,
                ci_high_s=interval.ci_high, ci_reason=interval.reason).as_dict())
    results = results_frame(rows)  # once for all runs: pandas' overhead per call dominates otherwise
    by_run = {str(k): g.reset_index(drop=True) for k, g in results.groupby("run_id", sort=False)}
    return [Run(path=None, meta=_meta(i, i >= step_at and step != 1.0), results=by_run[f"sim-{i:03d}"],
                samples=pd.DataFrame()) for i in range(runs)]


def series_steps(runs: Sequence[Run]) -> pd.DataFrame:
    """The steps ``history`` finds in these runs (``history.cell_steps``)."""
    ordered = order_runs(runs)
    return cell_steps(cell_series(ordered), ordered)


@dataclass(frozen=True)
class StepRates:
    setting: str
    series: int
    detected: float
    """Stepped cell: a step found at exactly the first stepped run."""
    near: float
    """Stepped cell: a step within one run of it."""
    extra: float
    """Stepped cell: any step other than at the first stepped run."""
    false_cells: float
    """Cells without a real step: fraction with any step."""
    aa_false_cells: float
    """A/A series: fraction of cells with any step."""
    aa_false_series: float
    """A/A series: fraction of series (all cells) with any step."""
    covered: float
    """Of the steps found at the right run, the fraction whose interval holds the true ratio."""

    def line(self) -> str:
        return (f"{self.setting:<46} {self.series:>4} series  10 % step: at the right run {self.detected:6.1%}, "
                f"within 1 run {self.near:6.1%}, CI holds 1.10 {self.covered:6.1%}, other steps in that cell "
                f"{self.extra:6.1%}, in unchanged cells {self.false_cells:6.1%}   A/A: cells with a step "
                f"{self.aa_false_cells:6.1%}, series with any {self.aa_false_series:6.1%}")


def rates(setting: str, series: int, seed: int, *, runs: int = 30, step_at: int = 15, step: float = 1.10,
          n_boot: int = 200) -> StepRates:
    """The rates of one setting of :data:`SETTINGS` over ``series`` stepped and ``series`` A/A series."""
    noise, rounds = SETTINGS[setting]
    rng = np.random.default_rng([seed, *map(ord, setting)])
    detected = near = extra = covered = false_cells = other_cells = 0
    aa_cells = aa_series = total_cells = 0
    first = SIZES[0]
    for _ in range(series):
        steps = series_steps(synthetic_runs(rng, runs=runs, step_at=step_at, step=step, noise=noise, rounds=rounds,
                                            n_boot=n_boot))
        mine = steps[steps["size"] == first]
        at = mine[mine["run"] == step_at]
        detected += not at.empty
        near += bool((abs(mine["run"] - step_at) <= 1).any())
        extra += bool((mine["run"] != step_at).any())
        covered += int(((at["ci_low"] <= step) & (step <= at["ci_high"])).sum())
        others = steps[steps["size"] != first]
        false_cells += others["size"].nunique()
        other_cells += len(SIZES) - 1
        aa = series_steps(synthetic_runs(rng, runs=runs, step=1.0, noise=noise, rounds=rounds, n_boot=n_boot))
        aa_cells += aa["size"].nunique()
        aa_series += not aa.empty
        total_cells += len(SIZES)
    return StepRates(setting, series, detected / series, near / series, extra / series, false_cells / other_cells,
                     aa_cells / total_cells, aa_series / series, covered / detected if detected else math.nan)


def table(series: int, seed: int) -> list[str]:
    """One line per setting of :data:`SETTINGS`."""
    head = (f"history steps: {series} series of 30 runs per setting and kind, {len(SIZES)} cells per run; a 10 % "
            "step in the first cell from run 15 on; A/A series without it")
    return [head, *(rates(setting, series, seed).line() for setting in SETTINGS)]


__all__ = ["SETTINGS", "SIZES", "StepRates", "rates", "series_steps", "synthetic_runs", "table"]
