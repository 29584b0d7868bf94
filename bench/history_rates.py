"""How often ``history`` finds a real step at the right run, and how often it finds steps that are not there.

Seeded synthetic series of 30 whole runs (``devbench.simulation.history``: each run a ``simulate_run`` of four
cells with noise within a visit, per cell and round, per round and per run, each median with its real
two-level bootstrap interval), judged by the real ``history.cell_series`` and ``history.cell_steps``:

- a 10 % step in one cell from run 15 on: the fraction of series in which it is found at run 15 exactly, within
  one run, whether its interval holds 1.10, other steps in that cell, and steps in the three unchanged cells;
- 30 A/A runs: the fraction of cells, and of whole series (four cells), with any step.

    PYTHONPATH=src python bench/history_rates.py [--series N] [--seed S]

At the default 100 series per setting it takes about 4 minutes of one core (9 minutes on the shared 2-core
development machine; mostly the bootstrap intervals of 24,000 synthetic medians per setting); the tests in
tests/test_history.py run the same functions at a small size.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from devbench.simulation.history import table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--series", type=int, default=100, help="synthetic series per setting and kind")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.series < 1:
        parser.error(f"--series {args.series} must be at least 1")
    start = time.perf_counter()
    for line in table(args.series, args.seed):
        print(line, flush=True)
    print(f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
