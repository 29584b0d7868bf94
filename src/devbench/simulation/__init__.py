"""Seeded synthetic runs with a known truth: what devbench's statistical claims are measured on.

A claim such as "identical devices give a decisive crossing in at most 5 % of curves" or "the gate fails at
most 5 % of A/A comparisons" is a rate over many synthetic runs, never one real pair. This package makes
those runs and measures the rates with devbench's own functions; ``bench/statistical_rates.py`` prints them at full
size and the tests keep fast seeded versions.

The noise model (:class:`Noise`) is multiplicative, lognormal, in four levels, each an independent normal
offset on the log of a per-call time:

- ``per_run``: one offset per run, shared by every cell and round of it (process layout, allocator,
  frequency state: what a fresh process re-draws);
- ``per_round``: one offset per round of a run, shared by every cell measured in that round (the machine's
  drift, which pairing the devices of one size cancels);
- ``per_cell``: one offset per cell and round, not shared (what pairing cannot cancel);
- ``within``: per sample, inside one visit.

Modules: :mod:`.crossovers` (false and real decisive crossings, coverage of the crossing's range),
:mod:`.gate` (p-value tails and A/A family failures of ``compare``'s gate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

CellSamples = list[FloatArray]
"""One cell's per-call seconds by round (``cell[r]`` holds the samples of round r)."""


@dataclass(frozen=True)
class Noise:
    """The sigmas (log units, so 0.03 is about 3 %) of the four levels, and the samples per round."""

    within: float = 0.03
    per_cell: float = 0.02
    per_round: float = 0.10
    per_run: float = 0.0
    samples: int = 10

    def describe(self) -> str:
        return (f"within {self.within:.0%}, per cell {self.per_cell:.0%}, per round {self.per_round:.0%}, "
                f"per run {self.per_run:.0%}, {self.samples} sample{'s' if self.samples != 1 else ''}/round")


def simulate_run(rng: np.random.Generator, log_medians: npt.ArrayLike, rounds: int, noise: Noise, *,
                 within_scale: npt.ArrayLike | None = None) -> list[CellSamples]:
    """One run of ``rounds`` rounds over cells whose true log median per-call time is ``log_medians``.

    Returns, per cell, its samples by round. Every cell of the run shares the run offset and, within a round,
    the round offset; each cell draws its own offset every round. The true median of a cell's samples
    (given the offsets) is exp(log median + offsets): the offsets are centred, so ``log_medians`` is the
    truth the estimates aim at.
    """
    truth = np.asarray(log_medians, dtype=np.float64).ravel()
    n_cells = truth.size
    run = rng.normal(0.0, noise.per_run) if noise.per_run else 0.0
    per_round = rng.normal(0.0, noise.per_round, rounds) if noise.per_round else np.zeros(rounds)
    per_cell = rng.normal(0.0, noise.per_cell, (n_cells, rounds)) if noise.per_cell else np.zeros((n_cells, rounds))
    within = rng.normal(0.0, noise.within, (n_cells, rounds, noise.samples))
    if within_scale is not None:
        within *= np.asarray(within_scale, dtype=np.float64).reshape(n_cells, 1, 1)
    logs = truth[:, None, None] + run + per_round[None, :, None] + per_cell[:, :, None] + within
    values = np.exp(logs)
    return [[values[c, r] for r in range(rounds)] for c in range(n_cells)]


GRIDS: dict[str, tuple[int, ...]] = {
    "x2": tuple(64 * 2**i for i in range(12)),
    "x1.19": tuple(sorted({round(64 * 1.19**i) for i in range(25)})),
    "+step": tuple(range(256, 256 * 13, 256)),
    "40 sizes": tuple(sorted({round(64 * 1.11**i) for i in range(40)})),
}
"""The grids the rates are measured on: a doubling grid of 12 sizes (64..131072), 25 sizes at x1.19
(64..4162), an arithmetic grid of 12 sizes (256..3072 by 256) and 40 sizes at x1.11 (64..~3700)."""
