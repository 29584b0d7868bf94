"""The rates of ``compare``'s gate, measured with compare's own per-cell statistics on seeded synthetic runs.

Every rate here calls :func:`devbench.compare.cell_statistics`, the function ``compare_runs`` calls for each
cell, on samples from :func:`devbench.simulation.simulate_run`; :func:`aa_comparison` also builds whole
synthetic runs and passes them through ``compare_runs`` itself, so the end-to-end gate is measured too.

- :func:`tail_ratios`: under the null (same truth on both sides, threshold 0), P(p <= level) / level for
  levels 1e-2, 1e-3, 1e-4: Holm over 200 cells acts at 2.5e-4, so the tail must hold there, not only at 5 %.
- :func:`family_failures`: A/A families of 200 cells, the fraction of families the gate fails (Holm and
  BH), at a threshold of 0 (the null on the boundary: the hardest case) and 0.05.
- :func:`detection`: 200 cells of which 10 are truly slower; how many of them the gate names.

``table(trials, seed)`` prints all of it for ``bench/statistical_rates.py``; tests/test_simulation_gate.py keeps
small seeded versions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from devbench.compare import Comparison, cell_statistics, compare_runs
from devbench.compare_data import GATE_METHODS, GateMethod
from devbench.schema import IDENTITY, SAMPLE_COLUMNS, CellRow, results_frame
from devbench.simulation import CellSamples, FloatArray, Noise, simulate_run
from devbench.stats import gate_failures
from devbench.store import Run

CELLS = 200
"""Cells of an A/A family: a sweep of a few ops x sizes x devices."""

ALPHA = 0.05
"""The gate's level."""

TAIL_LEVELS = (1e-2, 1e-3, 1e-4)
"""Levels the p-value tail is checked at; Holm over 200 cells at alpha 0.05 acts at 2.5e-4."""

LOG_TRUTH_SPREAD = 3.0
"""The cells' true log medians spread over a factor of e^3 (about 20x), as sizes of one sweep do."""

PER_CELL = Noise(within=0.03, per_cell=0.05, per_round=0.0, samples=2)
"""Drift drawn per cell and round (what pairing cannot cancel; 200 independent tests): the audit's case."""
PER_ROUND = Noise(within=0.03, per_cell=0.0, per_round=0.05, samples=2)
"""Drift shared per round by every cell of a run (the cells move together)."""
PER_RUN = Noise(within=0.03, per_cell=0.01, per_round=0.01, per_run=0.05, samples=10)
"""A 5 % offset per run on top of tight rounds (1 % drift): invisible to the rounds of one run, which then
look precise about a difference that is the two runs' offsets."""
PER_PROCESS = Noise(within=0.03, per_cell=0.01, per_round=math.hypot(0.05, 0.01), samples=10)
"""``PER_RUN`` with every round in a fresh process (``sweep --processes`` = rounds): the process offset is
drawn again each round and joins the round's drift, which the rounds then sample."""
QUIET = Noise(within=0.03, per_cell=0.01, per_round=0.01, samples=10)
"""Tight rounds: 1 % drift per cell and per round, 10 samples a round."""


SideRuns = list[list[CellSamples]]
"""One side: per run, per cell, the samples by round (as ``simulate_run`` gives them)."""


def _truth(rng: np.random.Generator, cells: int) -> FloatArray:
    return np.asarray(np.log(1e-4) + rng.uniform(0.0, LOG_TRUTH_SPREAD, cells), dtype=np.float64)


def _side(rng: np.random.Generator, truth: FloatArray, rounds: int, noise: Noise, runs: int) -> SideRuns:
    return [simulate_run(rng, truth, rounds, noise) for _ in range(runs)]


@dataclass(frozen=True)
class CellResults:
    """Per cell of one simulated comparison: the gate's p-value and the verdict (NumPy arrays)."""

    p_values: FloatArray
    slower: npt.NDArray[np.bool_]


def judge(base: SideRuns, new: SideRuns, *, thresholds: Sequence[float], confidence: float = 0.95,
          window: bool = False) -> list[CellResults]:
    """Every cell through ``compare.cell_statistics``, read at each threshold: p-values and ``slower``
    (``window``: BASE is a ``--baseline-window``)."""
    cells = len(base[0])
    p = np.empty((len(thresholds), cells))
    slower = np.zeros((len(thresholds), cells), dtype=np.bool_)
    for c in range(cells):
        stats = cell_statistics([run[c] for run in base], [run[c] for run in new], threshold=thresholds[0],
                                confidence=confidence, window=window)
        for i, t in enumerate(thresholds):
            read = stats.at(t)
            p[i, c] = read.p_value
            slower[i, c] = read.verdict == "slower"
    return [CellResults(p[i], slower[i]) for i in range(len(thresholds))]


def _gate_fails(results: CellResults, method: GateMethod) -> npt.NDArray[np.bool_]:
    """The cells the gate fails on, as ``compare`` decides it: adjusted p <= alpha and verdict ``slower``."""
    return gate_failures(results.p_values, ALPHA, method) & results.slower


def tail_ratios(cells: int, seed: int, *, rounds: int, noise: Noise, block: int = 20) -> dict[float, float]:
    """P(p <= level) / level at each of :data:`TAIL_LEVELS`, over ``cells`` null cells (threshold 0).

    Cells are simulated ``block`` to a run pair, so drift shared per round ties only a block together.
    """
    rng = np.random.default_rng([seed, rounds, noise.samples, int(noise.per_round * 1000)])
    p_values: list[FloatArray] = []
    for _ in range(max(1, cells // block)):
        truth = _truth(rng, block)
        p_values.append(judge(_side(rng, truth, rounds, noise, 1), _side(rng, truth, rounds, noise, 1),
                              thresholds=[0.0])[0].p_values)
    p = np.concatenate(p_values)
    p = p[np.isfinite(p)]
    return {level: float(np.mean(p <= level)) / level for level in TAIL_LEVELS}


def family_failures(families: int, seed: int, *, rounds: int, noise: Noise, runs: int = 1,
                    thresholds: Sequence[float] = (0.0, 0.05), cells: int = CELLS, new_runs: int | None = None,
                    window: bool = False) -> dict[tuple[GateMethod, float], float]:
    """Fraction of A/A families (``cells`` cells, ``runs`` runs per side, or ``runs`` base runs and
    ``new_runs`` new ones) whose gate fails, per (method, threshold). The same families are judged at every
    threshold and by both methods. ``window``: the base runs are a ``--baseline-window``."""
    n_new = runs if new_runs is None else new_runs
    rng = np.random.default_rng([seed, rounds, runs, int(noise.per_run * 1000), int(noise.per_cell * 1000)]
                                + ([n_new] if new_runs is not None else []))
    failed = {(method, t): 0 for method in GATE_METHODS for t in thresholds}
    for _ in range(families):
        truth = _truth(rng, cells)
        base, new = _side(rng, truth, rounds, noise, runs), _side(rng, truth, rounds, noise, n_new)
        for t, results in zip(thresholds, judge(base, new, thresholds=thresholds, window=window), strict=True):
            for method in GATE_METHODS:
                failed[(method, t)] += bool(_gate_fails(results, method).any())
    return {key: n / families for key, n in failed.items()}


@dataclass(frozen=True)
class Detection:
    """Of the truly slower cells, the fraction the gate names (``found``); of the others, the fraction it
    names wrongly (``false``), per method."""

    found: dict[GateMethod, float]
    false: dict[GateMethod, float]


def detection(families: int, seed: int, *, slowdown: float, rounds: int = 5, noise: Noise = PER_CELL,
              slow_cells: int = 10, threshold: float = 0.05, cells: int = CELLS, base_runs: int = 1,
              window: bool = False) -> Detection:
    """Families of ``cells`` cells, the first ``slow_cells`` truly ``slowdown`` times slower on the new
    side (one run, against ``base_runs`` base runs; ``window``: a ``--baseline-window``); what the gate (at
    ``threshold``) names."""
    rng = np.random.default_rng([seed, rounds, int(slowdown * 1000)] + ([base_runs] if base_runs != 1 else []))
    found = {m: 0 for m in GATE_METHODS}
    false = {m: 0 for m in GATE_METHODS}
    for _ in range(families):
        truth = _truth(rng, cells)
        moved = truth.copy()
        moved[:slow_cells] += np.log(slowdown)
        (results,) = judge(_side(rng, truth, rounds, noise, base_runs), _side(rng, moved, rounds, noise, 1),
                           thresholds=[threshold], window=window)
        for method in GATE_METHODS:
            fails = _gate_fails(results, method)
            found[method] += int(fails[:slow_cells].sum())
            false[method] += int(fails[slow_cells:].sum())
    return Detection(found={m: n / (families * slow_cells) for m, n in found.items()},
                     false={m: n / (families * (cells - slow_cells)) for m, n in false.items()})


# --------------------------------------------------------------------------------------------------------
# End to end: synthetic runs through compare_runs


def synthetic_run(side: Sequence[CellSamples], run_id: str) -> Run:
    """A Run as ``store.load_run`` gives it, holding the simulated cells (one matmul size each) and their
    samples by round."""
    records: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    for c, rounds in enumerate(side):
        pooled = np.concatenate(rounds)
        record = CellRow(run_id=run_id, op="matmul", size=64 + c, dtype="float32", device="CPU:0", mode="eager",
                         sync="scalar", status="ok", n_samples=int(pooled.size), number=1,
                         median_s=float(np.median(pooled))).as_dict()
        records.append(record)
        ident = {name: record[name] for name in IDENTITY}
        samples.extend({"run_id": run_id, **ident, "round": r + 1, "sample": i, "number": 1,
                        "per_call_s": float(s)} for r, values in enumerate(rounds) for i, s in enumerate(values))
    return Run(path=None, meta={"schema_version": 2, "run_id": run_id}, results=results_frame(records),
               samples=pd.DataFrame(samples, columns=list(SAMPLE_COLUMNS)))


def aa_comparison(rng: np.random.Generator, *, rounds: int, noise: Noise, runs: int = 1, cells: int = CELLS,
                  threshold: float = 0.0, gate_method: GateMethod = "holm") -> tuple[Comparison, CellResults]:
    """One A/A family as a user meets it: ``runs`` synthetic runs per side through ``compare_runs``, and the
    same samples through :func:`judge` (the two must agree cell for cell)."""
    truth = _truth(rng, cells)
    base, new = _side(rng, truth, rounds, noise, runs), _side(rng, truth, rounds, noise, runs)
    comparison = compare_runs([synthetic_run(r, f"base{i}") for i, r in enumerate(base)],
                              [synthetic_run(r, f"new{i}") for i, r in enumerate(new)],
                              threshold=threshold, gate_method=gate_method, n_boot=200)
    return comparison, judge(base, new, thresholds=[threshold])[0]


# --------------------------------------------------------------------------------------------------------
# The table


def _ratios(values: dict[float, float]) -> str:
    return ", ".join(f"{level:g}: {ratio:.2f}x" for level, ratio in values.items())


def table(trials: int, seed: int) -> list[str]:
    """The gate's rates as lines of text: ``trials`` A/A families of 200 cells per setting (and ``trials`` x
    200 null cells per tail setting).

    The 1e-4 tail needs ``trials`` >= 250 (50 000 cells: 5 expected below 1e-4); a cell costs about 0.3 ms
    on one idle core, so trials=250 takes roughly 5-10 minutes, about half of it in the 12 tail settings.
    """
    lines = [f"compare's gate (Welch t on log round medians; {trials} families of {CELLS} cells per setting, "
             f"seed {seed}; alpha {ALPHA:g})",
             "(a) p-value tail under the null, P(p <= level) / level (1.00x = exact):"]
    for name, base_noise in (("drift per cell", PER_CELL), ("drift per round", PER_ROUND)):
        for rounds in (3, 5):
            for samples in (1, 2, 10):
                noise = Noise(within=base_noise.within, per_cell=base_noise.per_cell,
                              per_round=base_noise.per_round, samples=samples)
                ratios = tail_ratios(trials * CELLS, seed, rounds=rounds, noise=noise)
                lines.append(f"  {name}, R={rounds}, {samples:2d} samples/round: {_ratios(ratios)}")
    lines.append("(b) A/A families failing the gate (Holm / BH), threshold 0 and 5 %:")
    settings: list[tuple[str, Noise, int, int]] = [
        ("drift per cell (5 %), R=3", PER_CELL, 3, 1),
        ("drift per cell (5 %), R=5", PER_CELL, 5, 1),
        ("drift per round (5 %), R=3", PER_ROUND, 3, 1),
        ("drift per round (5 %), R=5", PER_ROUND, 5, 1),
        ("run offset (5 %), 1 % drift, R=5, 1 run per side", PER_RUN, 5, 1),
        ("run offset (5 %), 1 % drift, R=5, 2 runs per side", PER_RUN, 5, 2),
        ("run offset (5 %), 1 % drift, R=5, 3 runs per side", PER_RUN, 5, 3),
        ("run offset (5 %) drawn per round (--processes 5), 1 % drift, R=5, 1 run per side", PER_PROCESS, 5, 1),
    ]
    for name, noise, rounds, runs in settings:
        rates = family_failures(trials, seed, rounds=rounds, noise=noise, runs=runs)
        lines.append(f"  {name}: t=0 {rates[('holm', 0.0)]:.1%} / {rates[('bh', 0.0)]:.1%}, "
                     f"t=5 % {rates[('holm', 0.05)]:.1%} / {rates[('bh', 0.05)]:.1%}")
    lines.append("(c) detection, 10 of 200 cells truly slower, threshold 5 %, R=5 (share of the slow cells "
                 "named, Holm / BH; false names among the rest):")
    for name, noise in (("drift per cell 5 %", PER_CELL), ("drift 1 % per cell and per round", QUIET)):
        for slowdown in (1.10, 1.50):
            found = detection(trials, seed, slowdown=slowdown, noise=noise)
            lines.append(f"  {name}, {slowdown - 1:.0%} slower: {found.found['holm']:.1%} / "
                         f"{found.found['bh']:.1%} named; false {found.false['holm']:.2%} / {found.false['bh']:.2%}")
    rng = np.random.default_rng(seed)
    families = max(1, trials // 20)
    ends = [aa_comparison(rng, rounds=5, noise=PER_CELL)[0] for _ in range(families)]
    lines.append(f"(d) end to end through compare_runs (drift per cell, R=5, threshold 0, Holm): "
                 f"{sum(c.regressions != () for c in ends)} of {families} A/A families failed")
    return lines


# --------------------------------------------------------------------------------------------------------
# Window baselines (compare --baseline-window K)

WINDOW = 5
"""The window the bench measures: the last 5 runs."""

SMALL_RUN = Noise(within=0.03, per_cell=0.01, per_round=0.01, per_run=0.02, samples=10)
"""``PER_RUN`` with a 2 % offset per run: comparable to the rounds' own spread, the hardest case for telling
the run level from the rounds."""


def window_table(trials: int, seed: int, *, window: int = WINDOW) -> list[str]:
    """A/A false alarms and detection of a 10 % change, one new run against one baseline run and against a
    window of ``window`` runs, under a 5 % offset per run (``PER_RUN``) and without one (``QUIET``)."""
    lines = [f"baseline window (compare --baseline-window {window}; {trials} families of {CELLS} cells per "
             f"setting, seed {seed}, R=5, one new run; Holm / BH)",
             "(a) A/A families failing the gate, threshold 0 and 5 %:"]
    settings: list[tuple[str, Noise, int, bool]] = [
        ("run offset 5 %, 1 baseline run", PER_RUN, 1, False),
        ("run offset 2 %, 1 baseline run", SMALL_RUN, 1, False),
        (f"run offset 5 %, {window} baseline runs, Welch (the new run's offset not in the interval)", PER_RUN,
         window, False),
        (f"run offset 5 %, --baseline-window {window} (prediction interval)", PER_RUN, window, True),
        (f"run offset 2 %, --baseline-window {window}", SMALL_RUN, window, True),
        (f"no run offset (1 % drift), --baseline-window {window}", QUIET, window, True),
    ]
    for name, noise, runs, use_window in settings:
        rates = family_failures(trials, seed, rounds=5, noise=noise, runs=runs, new_runs=1, window=use_window)
        lines.append(f"  {name}: t=0 {rates[('holm', 0.0)]:.1%} / {rates[('bh', 0.0)]:.1%}, "
                     f"t=5 % {rates[('holm', 0.05)]:.1%} / {rates[('bh', 0.05)]:.1%}")
    lines.append("(b) detection, 10 of 200 cells truly 10 % slower, threshold 5 % (share of the slow cells "
                 "named; false names among the rest):")
    for name, noise, runs, use_window in (
            ("run offset 5 %, 1 baseline run", PER_RUN, 1, False),
            (f"run offset 5 %, --baseline-window {window}", PER_RUN, window, True),
            ("no run offset (1 % drift), 1 baseline run", QUIET, 1, False),
            (f"no run offset (1 % drift), --baseline-window {window}", QUIET, window, True)):
        found = detection(trials, seed, slowdown=1.10, noise=noise, base_runs=runs, window=use_window)
        lines.append(f"  {name}: {found.found['holm']:.1%} / {found.found['bh']:.1%} named; "
                     f"false {found.false['holm']:.2%} / {found.false['bh']:.2%}")
    return lines
