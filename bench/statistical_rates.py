"""The rates behind devbench's statistical claims, measured by simulation (issue "Right answers").

A claim such as "identical devices give a decisive crossing in at most 5 % of curves" or "the gate fails at
most 5 % of A/A comparisons" is a rate over many seeded synthetic runs with a known truth, never one real
pair. This script prints them, one line per setting, with the target each must meet:

- ``crossovers``: false decisive crossings between identical devices, by grid, rounds and samples a round;
  detection of a real crossing (the device ratio changes 5 % per doubling of size); how often a decisive
  crossing's range holds the true crossing (``devbench.simulation.crossovers``).
- ``gate``: compare's p-values under the null in the far tail (P(p <= 1e-4) / 1e-4), A/A family failures
  of the Holm and BH gates with drift per cell, per round and per run, and detection of real slowdowns
  (``devbench.simulation.gate``).
- ``window``: ``compare --baseline-window 5``: A/A family failures and detection of a 10 % change with one new
  run against one baseline run and against a window of 5, under a 5 % offset per run
  (``devbench.simulation.gate.window_table``).
- ``advise``: on runs whose truth is ``a + b·n^p``, how often the fit lies within the cells' 95 % intervals,
  how often the fitted curve's interval and the break-even interval hold the truth (target 95 %), and the
  agreement when the truth has a step the fit cannot follow (``devbench.simulation.advise``).

Why not ``bench/statistics.py``: a script runs with its own folder first on ``sys.path``, and a file of that
name there would shadow the standard library's ``statistics`` (which devbench imports) for every script in
``bench/``, ``gpu_check.py`` included.

The noise model (``devbench.simulation.Noise``): lognormal offsets per run, per round (shared by a round's
cells), per cell and round, and per sample. Everything is seeded: the same command prints the same figures.

    PYTHONPATH=src python bench/statistical_rates.py [all|crossovers|gate|window|advise] [--trials N] [--seed S]

With the default trials it takes a few minutes on one core; ``--trials`` scales every setting (the tests in
tests/test_crossover.py, tests/test_simulation_gate.py and tests/test_advise.py run the same functions at a small
size).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

from devbench.simulation import advise, crossovers, gate

PARTS: dict[str, tuple[Callable[[int, int], list[str]], int]] = {
    "crossovers": (crossovers.table, 60),
    "gate": (gate.table, 250),
    "window": (gate.window_table, 200),
    "advise": (advise.table, 200),
}
"""Each part's table and its default trials: 60 curves per crossover setting (a rate of 5 % is then 3 curves;
the tests' seeded versions assert the targets with margins), 250 families for the gate (50 000 null cells per
tail setting, so P(p <= 1e-4) rests on about 5 expected hits), 200 families per window setting (a 5 % rate
is then 10 families), 200 runs per advise setting (1400 fitted points per device and about 1000 break-even
intervals)."""


def _run(name: str, trials: int, seed: int) -> tuple[list[str], float]:
    start = time.perf_counter()
    table, _ = PARTS[name]
    return table(trials, seed), time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("part", nargs="?", default="all", choices=["all", *PARTS])
    parser.add_argument("--trials", type=int, default=0,
                        help="simulated curves or families per setting (default: each part's own)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.trials < 0:
        parser.error(f"--trials {args.trials} must be 0 (each part's default) or more")
    names = [name for name in PARTS if args.part in ("all", name)]
    # The parts are independent and single-threaded: one process each, side by side.
    with ProcessPoolExecutor(max_workers=len(names)) as pool:
        futures = {name: pool.submit(_run, name, args.trials or PARTS[name][1], args.seed) for name in names}
        for name, future in futures.items():
            lines, seconds = future.result()
            print("\n".join(lines), flush=True)
            print(f"[{name}: {seconds:.0f} s]", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
