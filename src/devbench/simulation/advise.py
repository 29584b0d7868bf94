"""Rates of :func:`devbench.advise.advise` on seeded synthetic runs whose truth is ``a + b·n^p``.

Each trial is one simulated run of two devices (``CPU:0``, the baseline, and ``GPU:0``, the accelerator) over
a grid of sizes: :func:`devbench.simulation.simulate_run` over the 2K cells (the per-round offset shared by
every cell of a round, the per-cell offsets not), turned into the results (each cell's rounds-weighted median
and its two-level bootstrap interval, as a sweep writes them) and samples tables, with known one-time costs
in ``meta`` and ``cold_s``, and judged by the real ``advise``. Measured:

- **agreement**: the fraction of cells whose 95 % interval holds the fit (the "Done when" criterion);
- **curve coverage**: the fraction of (device, size) whose fitted 95 % interval holds the true time;
- **break-even coverage**: the fraction of sizes, where the accelerator is truly faster per call, whose
  break-even interval holds the true break-even call count ``(C_gpu - C_cpu) / (t_cpu - t_gpu)``.

:data:`STEP` adds what a single power law cannot follow (the accelerator's work 30 % slower from one size on,
as a cache boundary gives), which the fit must find as a step (``advise_fit.choose_step``).
:func:`table` prints the rates for ``bench/statistical_rates.py advise``; tests/test_advise.py keeps a fast
seeded version.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from devbench.advise import advise
from devbench.advise_fit import PowerLaw
from devbench.resampling import cell_median, median_interval
from devbench.schema import SAMPLE_COLUMNS, CellRow, results_frame
from devbench.simulation import Noise, simulate_run

DEVICES = ("CPU:0", "GPU:0")
TRUTH = {"CPU:0": PowerLaw(a=8e-6, b=2e-11, p=2.9), "GPU:0": PowerLaw(a=60e-6, b=4e-13, p=2.7)}
"""A host that wins small sizes and an accelerator with a larger fixed cost and far less work per n^p: they
cross near n = 170, and at 4096 the accelerator is about 250x faster per call."""
INIT = {"CPU:0": 0.01, "GPU:0": 0.4}
"""Device initialisation (seconds, meta.json ``init``)."""
FIRST_CALL = {"CPU:0": 1e-3, "GPU:0": 0.05}
"""The first call's excess over a warm call (``cold_s - median_s``), seconds."""
SIZES = (64, 128, 256, 512, 1024, 2048, 4096)
"""The default sweep's grid."""
FINE = tuple(sorted({round(64 * 1.19**i) for i in range(25)}))
"""25 sizes at x1.19 (64..4162): ``simulation.GRIDS['x1.19']``."""
NOISE = Noise(within=0.03, per_cell=0.02, per_round=0.10, samples=5)
"""As the crossover rates' noise (3 % within a round, 2 % per cell, 10 % drift per round), 5 samples a round."""
STEP = (1024, 1.3)
"""The truth one power law cannot follow: the accelerator's work 1.3x from n = 1024 on (a cache step)."""


def truth_of(device: str, sizes: Sequence[int], *, step: tuple[int, float] | None = None) -> np.ndarray:
    """The true time per call; with ``step`` (size, factor) the accelerator's work term (not its fixed cost)
    is that factor slower from that size on, as when the working set leaves a cache."""
    law = TRUTH[device]
    if step is not None and device == "GPU:0":
        law = replace(law, c=step[1] - 1.0, step_at=float(step[0]))
    return law.at(sizes)


def meta() -> dict[str, Any]:
    return {"init": {"devices": {d: {"init_s": INIT[d]} for d in DEVICES}}}


@functools.lru_cache(maxsize=8)
def _template(sizes: tuple[int, ...], rounds: int, per_round: int) -> pd.DataFrame:
    """The results rows of a run's 2K cells (CPU:0's sizes, then GPU:0's), times to be filled in."""
    return results_frame([CellRow(run_id="simulated", op="matmul", size=size, dtype="float32", device=device,
                                  mode="eager", sync="scalar", status="ok", placed_device=device,
                                  n_samples=rounds * per_round, number=1, n_rounds=rounds,
                                  bytes=12.0 * size * size).as_dict()
                          for device in DEVICES for size in sizes])


def run_tables(rng: np.random.Generator, sizes: Sequence[int], rounds: int, noise: Noise, *,
               step: tuple[int, float] | None = None, n_boot: int = 400) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, samples) of one simulated run of both devices over ``sizes``: each cell's rounds-weighted
    median and two-level bootstrap interval (``n_boot`` replicates), its ``cold_s`` the median plus the
    device's :data:`FIRST_CALL`."""
    truth = np.concatenate([truth_of(d, sizes, step=step) for d in DEVICES])
    cells = simulate_run(rng, np.log(truth), rounds, noise)
    medians = np.array([cell_median(cell) for cell in cells])
    intervals = [median_interval(cell, n_boot=n_boot, seed=[i, rounds]) for i, cell in enumerate(cells)]
    first = np.repeat([FIRST_CALL[d] for d in DEVICES], len(sizes))
    results = _template(tuple(int(s) for s in sizes), rounds, noise.samples).assign(
        median_s=medians, cold_s=medians + first, ci_low_s=[i.ci_low for i in intervals],
        ci_high_s=[i.ci_high for i in intervals], ci_reason=[i.reason for i in intervals])
    per = noise.samples
    samples = pd.DataFrame({
        "run_id": "simulated", "op": "matmul", "dtype": "float32", "mode": "eager", "sync": "scalar",
        "size": np.repeat(np.tile(np.asarray(sizes), len(DEVICES)), rounds * per),
        "device": np.repeat(np.repeat(DEVICES, len(sizes)), rounds * per),
        "round": np.tile(np.repeat(np.arange(1, rounds + 1), per), len(cells)),
        "sample": np.tile(np.arange(per), len(cells) * rounds), "number": 1,
        "per_call_s": np.concatenate([np.concatenate(cell) for cell in cells]),
    }, columns=list(SAMPLE_COLUMNS))
    return results, samples


@dataclass(frozen=True)
class Rates:
    """What ``advise`` concluded over ``trials`` seeded runs of one setting."""

    grid: str
    rounds: int
    trials: int
    agreement: float
    curve_coverage: float
    break_even_coverage: float
    break_even_cases: int
    misspecified: bool = False

    def line(self) -> str:
        truth = f"a + b·n^p, work {STEP[1]:g}x from n={STEP[0]}" if self.misspecified else "a + b·n^p"
        return (f"{self.grid:>8}  R={self.rounds:<2}  truth {truth}: fit within the cell's 95 % CI "
                f"{self.agreement:6.1%}   fitted curve's interval holds the truth {self.curve_coverage:6.1%}   "
                f"break-even interval holds the truth {self.break_even_coverage:6.1%} (of {self.break_even_cases})")


def rates(grid: str, sizes: Sequence[int], rounds: int, trials: int, seed: int, *, misspecified: bool = False,
          noise: Noise = NOISE, calls: int = 1000) -> Rates:
    """The three rates of one setting over ``trials`` seeded runs."""
    step = STEP if misspecified else None
    rng = np.random.default_rng([seed, rounds, len(sizes), int(misspecified)])
    within = judged = covered = points = be_hit = be_total = 0
    true_saved = truth_of("CPU:0", sizes, step=step) - truth_of("GPU:0", sizes, step=step)
    extra = (INIT["GPU:0"] + FIRST_CALL["GPU:0"]) - (INIT["CPU:0"] + FIRST_CALL["CPU:0"])
    for _ in range(trials):
        results, samples = run_tables(rng, sizes, rounds, noise, step=step)
        group = advise(results, samples, meta(), calls).groups[0]
        w, j = group.agreement()
        within, judged = within + w, judged + j
        for device, fit in group.fits.items():
            _, low, high = fit.interval(fit.sizes)
            truth = truth_of(device, fit.sizes, step=step)
            covered += int(np.sum((low <= truth) & (truth <= high)))
            points += len(fit.sizes)
        for b in group.break_even:
            saved = float(true_saved[list(sizes).index(b.size)])
            if saved > 0 and math.isfinite(b.calls_low):
                true_calls = max(extra / saved, 1.0)
                be_hit += int(b.calls_low <= true_calls <= b.calls_high)
                be_total += 1
    return Rates(grid, rounds, trials, within / max(judged, 1), covered / max(points, 1),
                 be_hit / be_total if be_total else math.nan, be_total, misspecified)


def table(trials: int, seed: int) -> list[str]:
    """One line per (grid, rounds), then the misspecified truth on the default grid."""
    head = (f"advise: {trials} runs per setting; devices {', '.join(DEVICES)} with truth "
            + ", ".join(f"{d} {TRUTH[d].describe()}" for d in DEVICES)
            + f"; noise {NOISE.describe()}")
    lines = [head, *(rates(grid, sizes, rounds, trials, seed).line()
                     for grid, sizes in (("64..4096", SIZES), ("x1.19", FINE)) for rounds in (3, 5, 10))]
    lines.extend(rates("64..4096", SIZES, r, trials, seed, misspecified=True).line() for r in (5, 10))
    quiet = replace(NOISE, per_round=0.02)
    lines.extend(rates("64..4096", SIZES, 5, trials, seed, noise=quiet, misspecified=m).line() + "  (2 % drift)"
                 for m in (False, True))
    return lines
