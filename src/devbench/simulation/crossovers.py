"""Rates of :func:`devbench.crossover.crossover_frame` on seeded synthetic curves with a known crossing.

Each curve is two devices over a grid from :data:`devbench.simulation.GRIDS`, measured in one simulated run
(:func:`devbench.simulation.simulate_run` over the 2K cells: the per-round offset is shared by every cell of
a round, the per-cell offsets are not), turned into the results and samples tables a run directory holds,
and judged by the real ``crossover_frame``. The true log ratio A/B is ``slope * log2(size / crossing)``:

- **false decisive**: identical devices (slope 0): the fraction of curves with any decisive crossing;
- **detection**: a real crossing of 5 % per doubling (slope log 1.05) at the grid's geometric middle: the
  fraction of curves with a decisive crossing;
- **coverage**: the fraction of those decisive crossings whose range [low, high] holds the true crossing.

:func:`table` prints them per grid, rounds and samples per round for ``bench/statistical_rates.py``; the tests keep
fast seeded versions (``tests/test_crossover.py``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from devbench.crossover import crossover_frame
from devbench.schema import SAMPLE_COLUMNS, CellRow, results_frame
from devbench.simulation import GRIDS, Noise, simulate_run

NOISE = Noise(within=0.03, per_cell=0.02, per_round=0.10)
"""The noise of the crossover rates (``samples`` is varied by :func:`table`)."""

REAL_SLOPE = math.log(1.05)
"""The real crossing's log ratio per doubling of size: 5 % per doubling."""

NOISIER_SMALL = 3.0
"""For the heteroscedastic lines of :func:`table`: within-round noise 3x larger at the smallest size."""

ROUNDS = (3, 5, 10)
SAMPLES = (1, 2, 10)
DEVICES = ("CPU:0", "GPU:0")
"""device_a and device_b of every simulated curve."""

_KEY: dict[str, Any] = {"op": "matmul", "dtype": "float32", "mode": "eager", "sync": "scalar"}


@functools.lru_cache(maxsize=16)
def _template(sizes: tuple[int, ...], rounds: int, per_round: int) -> pd.DataFrame:
    """The results rows of a curve's 2K cells (device A's sizes, then B's), medians to be filled in."""
    rows = [CellRow(run_id="simulated", size=size, device=device, status="ok", placed_device=device,
                   n_samples=rounds * per_round, number=1, n_rounds=rounds,
                   ci_reason="simulated: the bootstrap interval is not computed", **_KEY).as_dict()
            for device in DEVICES for size in sizes]
    return results_frame(rows)


def curve_tables(rng: np.random.Generator, sizes: Sequence[int], log_ratio: Sequence[float], rounds: int,
                 noise: Noise, *, noisier_small: float = 1.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, samples) of one simulated run of two devices over ``sizes`` whose true log ratio A/B at each
    size is ``log_ratio``; device B's true time is 1 ns x n² (any baseline would do: the noise is relative).

    The results rows carry what ``crossover_frame`` reads (status, pooled median and mean, rounds), as
    ``visits.cell_row`` builds them but without its bootstrap interval of the median, which the crossover
    does not use when samples are given (and which would cost more than the crossover itself).
    ``noisier_small`` > 1 makes the within-round noise that many times larger at the smallest size than at the
    largest (log-linear in size between): a variance that changes along the curve.
    """
    n = np.asarray(sizes, dtype=np.float64)
    base = np.log(1e-9 * n * n)
    truth = np.concatenate([base + np.asarray(log_ratio, dtype=np.float64), base])
    scale = np.exp(np.log(noisier_small) * (np.log(n[-1]) - np.log(n)) / max(np.log(n[-1] / n[0]), 1e-12))
    # (cells, rounds, samples per round)
    values = np.array(simulate_run(rng, truth, rounds, noise, within_scale=np.tile(scale, 2)))
    n_cells, _, per = values.shape
    pooled = values.reshape(n_cells, -1)
    results = _template(tuple(int(s) for s in sizes), rounds, per).assign(
        median_s=np.median(pooled, axis=1), mean_s=pooled.mean(axis=1))
    samples = pd.DataFrame({
        "run_id": "simulated",
        **{k: v for k, v in _KEY.items()},
        "size": np.repeat(np.tile(np.asarray(sizes), 2), rounds * per),
        "device": np.repeat(np.repeat(DEVICES, len(sizes)), rounds * per),
        "round": np.tile(np.repeat(np.arange(1, rounds + 1), per), n_cells),
        "sample": np.tile(np.arange(per), n_cells * rounds),
        "number": 1,
        "per_call_s": values.ravel(),
    }, columns=list(SAMPLE_COLUMNS))
    return results, samples


@dataclass(frozen=True)
class Rates:
    """What ``crossover_frame`` concluded over ``curves`` seeded curves of one setting."""

    grid: str
    rounds: int
    samples: int
    curves: int
    false_decisive: float
    """Identical devices: fraction of curves with a decisive crossing."""
    detected: float
    """A real 5 %/doubling crossing: fraction of curves with a decisive crossing."""
    coverage: float
    """Fraction of the real curves' decisive crossings whose [low, high] holds the true crossing (NaN: none)."""
    decisive_crossings: int
    """How many decisive crossings ``coverage`` is over."""

    def line(self) -> str:
        coverage = f"{self.coverage:6.1%}" if math.isfinite(self.coverage) else "     -"
        return (f"{self.grid:>8}  R={self.rounds:<2}  {self.samples:>2} sample{'s' if self.samples != 1 else ' '}"
                f"/round  identical: decisive {self.false_decisive:6.1%}   5 %/doubling: decisive "
                f"{self.detected:6.1%}, range holds the crossing {coverage} (of {self.decisive_crossings})")


def _decisive(sizes: Sequence[int], slope: float, rounds: int, noise: Noise, rng: np.random.Generator, *,
              noisier_small: float = 1.0) -> tuple[pd.DataFrame, float]:
    """The decisive rows of one curve whose true crossing is at the grid's geometric middle, and that size."""
    crossing = math.sqrt(sizes[0] * sizes[-1])
    log_ratio = [slope * math.log2(n / crossing) for n in sizes]
    results, samples = curve_tables(rng, sizes, log_ratio, rounds, noise, noisier_small=noisier_small)
    frame = crossover_frame(results, samples)
    decisive: pd.DataFrame = frame[frame["decisive"]]
    return decisive, crossing


def false_decisive_rate(grid: str, rounds: int, samples: int, trials: int, seed: int, *,
                        noisier_small: float = 1.0) -> float:
    """Identical devices: the fraction of ``trials`` curves with any decisive crossing (``noisier_small``: see
    :func:`curve_tables`)."""
    sizes, noise = GRIDS[grid], replace(NOISE, samples=samples)
    rng = np.random.default_rng([seed, 0, rounds, samples, *map(ord, grid)])
    hits = sum(not _decisive(sizes, 0.0, rounds, noise, rng, noisier_small=noisier_small)[0].empty
               for _ in range(trials))
    return hits / trials


def real_crossing_rates(grid: str, rounds: int, samples: int, trials: int, seed: int, *,
                        slope: float = REAL_SLOPE) -> tuple[float, float, int]:
    """A real crossing (``slope`` per doubling) at the grid's middle: (fraction of curves with a decisive
    crossing, fraction of decisive crossings whose [low, high] holds it, how many decisive crossings)."""
    sizes, noise = GRIDS[grid], replace(NOISE, samples=samples)
    rng = np.random.default_rng([seed, 1, rounds, samples, *map(ord, grid)])
    detected = covered = total = 0
    for _ in range(trials):
        decisive, crossing = _decisive(sizes, slope, rounds, noise, rng)
        detected += not decisive.empty
        total += len(decisive)
        covered += int(((decisive["low"] <= crossing) & (crossing <= decisive["high"])).sum())
    return detected / trials, (covered / total if total else math.nan), total


def rates(grid: str, rounds: int, samples: int, trials: int, seed: int) -> Rates:
    """All three rates of one setting, over ``trials`` curves of each kind."""
    detected, coverage, total = real_crossing_rates(grid, rounds, samples, trials, seed)
    return Rates(grid, rounds, samples, trials, false_decisive_rate(grid, rounds, samples, trials, seed),
                 detected, coverage, total)


def table(trials: int, seed: int) -> list[str]:
    """One line per (grid, rounds in 3/5/10, samples per round in 1/2/10) with the three rates."""
    head = (f"crossovers: {trials} curves per setting and kind; noise {NOISE.describe().rsplit(',', 1)[0]}; "
            "identical devices, and a real crossing of 5 % per doubling at the grid's geometric middle")
    lines = [head, *(rates(grid, r, s, trials, seed).line() for grid in GRIDS for r in ROUNDS for s in SAMPLES)]
    lines.append(f"crossovers, noise {NOISIER_SMALL:g}x larger at the smallest size than at the largest (variances "
                 "pooled over neighbouring sizes must not make identical devices decisive):")
    lines.extend(f"{grid:>8}  R={r:<2}  {s:>2} sample{'s' if s != 1 else ' '}/round  identical: decisive "
                 f"{false_decisive_rate(grid, r, s, trials, seed, noisier_small=NOISIER_SMALL):6.1%}"
                 for grid in GRIDS for r in (3, 5) for s in (1, 10))
    return lines
