"""How often ``devbench advise``'s fit lies within the cells' 95 % intervals on real runs: with one power law
per curve, and with a step where one law misses (the default), per run and in total.

    PYTHONPATH=src python bench/advise_agreement.py RUN [RUN ...]

Prints one line per run (cells judged: those with an interval; the median half-width of their intervals says
how sharp the check is) and a total line. The figures in README "Which device should I use?" came from it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from devbench.advise import advise
from devbench.store import load_any


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__)
        return 2
    totals = np.zeros(3, dtype=int)
    for path in paths:
        run = load_any(Path(path))
        one = advise(run.results, run.samples, run.meta, steps=False).agreement()
        stepped = advise(run.results, run.samples, run.meta)
        within, judged = stepped.agreement()
        halves = [float(np.sqrt(hi / lo) - 1) for g in stepped.groups for f in g.fits.values()
                  for lo, hi in zip(f.ci_low, f.ci_high, strict=True) if np.isfinite(lo) and np.isfinite(hi)]
        steps = sum(f.fit.has_step for g in stepped.groups for f in g.fits.values())
        print(f"{path}: one law {one[0]}/{one[1]} ({one[0] / max(one[1], 1):.0%}), with a step where needed "
              f"{within}/{judged} ({within / max(judged, 1):.0%}; {steps} curve(s) stepped); cell interval "
              f"half-width median {np.median(halves) if halves else float('nan'):.0%}")
        totals += (one[0], within, judged)
    print(f"total: one law {totals[0]}/{totals[2]} ({totals[0] / max(totals[2], 1):.0%}), with a step where needed "
          f"{totals[1]}/{totals[2]} ({totals[1] / max(totals[2], 1):.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
