"""A/A and power benchmarks for devbench's conclusions across time (issue "Truth across time").

They measure; they are not tests (tests/test_compare.py, test_analysis.py, test_resampling.py check the logic
with synthetic samples that drift between rounds). Each experiment runs real sweeps through the CLI, as a
user would, and prints its figure on one line:

- ``aa-compare``: two identical sweeps, one after the other, compared: how many cells come out ``slower`` or
  ``faster`` (false verdicts: the truth is "no change") and whether ``--fail-on-regression`` exits 0; and the
  first run compared with itself: how many cells are ``same``.
- ``aa-crossover``: one sweep over two logical CPUs (``DEVBENCH_LOGICAL_CPUS=2``: two names for the same
  cores) as two devices: how many decisive crossovers are claimed between identical devices (truth: none).
- ``power``: a real change, ``TF_NUM_INTRAOP_THREADS=1`` against the default, compared: whether the large
  matmuls are reported ``slower`` and the gate exits 1.

    PYTHONPATH=src python bench/truth_across_time.py [aa-compare|aa-crossover|power|all] [--rounds R]
                                                     [--out DIR] [--keep]

Runs take minutes on a 2-core machine (``all``: about 8 minutes with the default rounds). Run directories go
under ``--out`` (default a temporary folder, removed unless ``--keep``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

AA_SWEEP = ["--sizes", "64..1024", "--ops", "matmul,add,reduce_sum,softmax_xent_grad"]
"""The sweep of the issue's A/A measurement (three identical runs gave 5-13 false verdicts of 20 before rounds)."""
CROSSOVER_SWEEP = ["--sizes", "64..1024", "--ops", "matmul,add", "--devices", "CPU:0,CPU:1"]
POWER_SWEEP = ["--sizes", "256..1024", "--ops", "matmul"]
LARGE = 512
"""Matmuls from this n on are "large": one thread instead of two must show there."""


def devbench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m devbench ARGS`` with this checkout's sources, as a user runs it."""
    src = str(Path(__file__).resolve().parent.parent / "src")
    full_env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
                "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-m", "devbench", *args], env=full_env, capture_output=True, text=True,
                          check=False)


def sweep(out: Path, extra: list[str], rounds: int | None, env: dict[str, str] | None = None) -> Path:
    args = ["sweep", *extra, "--quiet", "--no-calibrate", "--out", str(out)]
    if rounds is not None:
        args += ["--rounds", str(rounds)]
    start = time.monotonic()
    proc = devbench(*args, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    print(f"  sweep {out.name}: {time.monotonic() - start:.0f} s", flush=True)
    return out


def compare(base: Path, new: Path, *gate: str) -> tuple[list[dict[str, Any]], int]:
    proc = devbench("compare", str(base), str(new), "--format", "json", "--chart", str(new / "compare.png"), *gate)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"compare failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    cells: list[dict[str, Any]] = json.loads(proc.stdout)["cells"]
    return cells, proc.returncode


def aa_compare(root: Path, rounds: int | None) -> None:
    a = sweep(root / "aa-a", AA_SWEEP, rounds)
    b = sweep(root / "aa-b", AA_SWEEP, rounds)
    cells, code = compare(a, b, "--fail-on-regression")
    verdicts = Counter(str(c["verdict"]) for c in cells)
    false = verdicts["slower"] + verdicts["faster"]
    print(f"aa-compare: {false} of {len(cells)} cells slower/faster between identical sweeps "
          f"({dict(sorted(verdicts.items()))}); --fail-on-regression exit {code}")
    self_cells, _ = compare(a, a)
    same = Counter(str(c["verdict"]) for c in self_cells)
    print(f"aa-compare: a run compared with itself: {same['same']} of {len(self_cells)} cells same "
          f"({dict(sorted(same.items()))})")


def aa_crossover(root: Path, rounds: int | None) -> None:
    run = sweep(root / "aa-logical", CROSSOVER_SWEEP, rounds, env={"DEVBENCH_LOGICAL_CPUS": "2"})
    proc = devbench("crossover", str(run), "--format", "json")
    rows: list[dict[str, Any]] = json.loads(proc.stdout)
    located = [r for r in rows if r.get("crossover_size") is not None]
    decisive = [r for r in located if r.get("decisive")]
    print(f"aa-crossover: {len(decisive)} decisive crossovers between CPU:0 and CPU:1 (the same cores); "
          f"{len(located)} crossings located in all, {len(located) - len(decisive)} within noise")
    for r in decisive:
        print(f"  decisive: {r['op']} {r['dtype']} {r['mode']} at n≈{r['crossover_size']:.0f}")


def power(root: Path, rounds: int | None) -> None:
    base = sweep(root / "threads-default", POWER_SWEEP, rounds)
    one = sweep(root / "threads-1", POWER_SWEEP, rounds, env={"TF_NUM_INTRAOP_THREADS": "1"})
    cells, code = compare(base, one, "--fail-on-regression")
    large = [c for c in cells if int(c["size"]) >= LARGE]
    slower = [c for c in large if c["verdict"] == "slower"]
    ratios = ", ".join(f"n={c['size']}: {float(c['ratio']):.2f}× [{float(c['ci_low']):.2f}, "
                       f"{float(c['ci_high']):.2f}]" for c in large)
    print(f"power: TF_NUM_INTRAOP_THREADS=1 vs default: {len(slower)} of {len(large)} large matmuls slower "
          f"({ratios}); --fail-on-regression exit {code}")


EXPERIMENTS = {"aa-compare": aa_compare, "aa-crossover": aa_crossover, "power": power}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", nargs="?", default="all", choices=[*EXPERIMENTS, "all"])
    parser.add_argument("--rounds", type=int, default=None, help="sweep --rounds (default: devbench's default)")
    parser.add_argument("--out", type=Path, default=None, help="where the run directories go")
    parser.add_argument("--keep", action="store_true", help="keep the run directories")
    args = parser.parse_args()
    root = args.out if args.out is not None else Path(tempfile.mkdtemp(prefix="devbench-truth-"))
    root.mkdir(parents=True, exist_ok=True)
    names = list(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
    try:
        for name in names:
            EXPERIMENTS[name](root, args.rounds)
    finally:
        if args.out is None and not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
