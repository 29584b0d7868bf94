"""A/A and power benchmarks for devbench's conclusions across time (issue "Truth across time").

They measure; they are not tests (tests/test_compare.py, test_analysis.py, test_resampling.py check the logic
with synthetic samples that drift between rounds). Each experiment runs real sweeps through the CLI, as a
user would, and prints its figure on one line:

- ``aa-compare``: three identical sweeps, one after the other, compared as ``A1 A2 -- A3`` (two runs on the
  base side, so run-to-run offsets enter the interval): how many cells come out ``slower`` or ``faster``
  (false verdicts: the truth is "no change") and whether ``--fail-on-regression`` exits 0; and the first run
  compared with itself: how many cells are ``same``.
- ``aa-crossover``: one sweep over two logical CPUs (``DEVBENCH_LOGICAL_CPUS=2``: two names for the same
  cores) as two devices on a 25-size grid (64..4096 by x1.19): how many decisive crossovers are claimed
  between identical devices (truth: none).
- ``crossover-numpy``: three sweeps of ``CPU:0`` against the numpy baseline for add (64..8192) and for matmul
  (64..4096): where TensorFlow overtakes numpy, each run's crossings with their ranges, and whether the three
  runs' ranges overlap (a repeatable answer).
- ``processes``: what ``--processes`` buys and costs: three runs with ``--processes 1`` and three with
  ``--processes 5``, interleaved in time, each pair of one kind compared one run a side (what a user does
  with two runs): false ``slower``/``faster`` verdicts and gate exits, and each kind's wall time.
- ``power``: a real change, ``TF_NUM_INTRAOP_THREADS=1`` against the default, compared (``A1 A2 -- ONE`` with
  the aa-compare runs when they exist, else two fresh default runs): whether the large matmuls are reported
  ``slower`` and the gate exits 1.

    PYTHONPATH=src python bench/truth_across_time.py [aa-compare|aa-crossover|crossover-numpy|processes|power|all]
                                                     [--rounds R] [--processes P] [--out DIR] [--keep]

Runs take minutes on a 2-core machine (``all``: about 20 minutes with the default rounds). Run directories
go under ``--out`` (default a temporary folder, removed unless ``--keep``).
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

AA_SWEEP = ["--sizes", "64..1024", "--ops", "matmul,add,reduce_sum,softmax_xent_grad"]
"""The sweep of the issue's A/A measurement (three identical runs gave 5-13 false verdicts of 20 before rounds)."""
CROSSOVER_SWEEP = ["--sizes", "64..4096:x1.19", "--ops", "add", "--devices", "CPU:0,CPU:1"]
"""25 sizes: a fine grid, where a search over per-size intervals found the most false crossings."""
NUMPY_SWEEPS = {
    "add": ["--sizes", "64..8192", "--ops", "add", "--devices", "CPU:0,numpy:CPU"],
    "matmul": ["--sizes", "64..4096", "--ops", "matmul", "--devices", "CPU:0,numpy:CPU"],
}
"""TensorFlow's add overtakes numpy's near n=3000 on 2 cores, so its grid goes past the default 4096 (a crossing
at the last size cannot be decisive: there is no decisive size above it); matmul stops at 4096 (8192 costs
seconds a call)."""
LARGE = 512
"""Matmuls from this n on are "large": one thread instead of two must show there."""


def devbench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m devbench ARGS`` with this checkout's sources, as a user runs it."""
    src = str(Path(__file__).resolve().parent.parent / "src")
    full_env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
                "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-m", "devbench", *args], env=full_env, capture_output=True, text=True,
                          check=False)


PROCESSES: list[str] = []
"""``--processes P`` for every sweep, when given on the command line."""


def sweep(out: Path, extra: list[str], rounds: int | None, env: dict[str, str] | None = None) -> Path:
    if (out / "results.parquet").exists():  # --out DIR --keep: a finished run is reused, not measured again
        print(f"  sweep {out.name}: reused", flush=True)
        return out
    args = ["sweep", *extra, *PROCESSES, "--quiet", "--no-calibrate", "--out", str(out)]
    if rounds is not None:
        args += ["--rounds", str(rounds)]
    start = time.monotonic()
    proc = devbench(*args, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    print(f"  sweep {out.name}: {time.monotonic() - start:.0f} s", flush=True)
    return out


def compare(base: Sequence[Path], new: Sequence[Path], *gate: str) -> tuple[list[dict[str, Any]], int]:
    """``devbench compare BASE... -- NEW... --format json``: the cells and the exit code."""
    runs = [str(p) for p in base] + ["--"] + [str(p) for p in new]
    proc = devbench("compare", *runs, "--format", "json", "--chart", str(new[-1] / "compare.png"), *gate)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"compare failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    cells: list[dict[str, Any]] = json.loads(proc.stdout)["cells"]
    return cells, proc.returncode


def aa_compare(root: Path, rounds: int | None) -> None:
    a1, a2, a3 = (sweep(root / f"aa-{i}", AA_SWEEP, rounds) for i in (1, 2, 3))
    cells, code = compare([a1, a2], [a3], "--fail-on-regression")
    verdicts = Counter(str(c["verdict"]) for c in cells)
    false = verdicts["slower"] + verdicts["faster"]
    print(f"aa-compare: A1 A2 -- A3: {false} of {len(cells)} cells slower/faster between identical sweeps "
          f"({dict(sorted(verdicts.items()))}); --fail-on-regression exit {code}")
    for base, new in ((a1, a2), (a1, a3), (a2, a3)):
        pair, pair_code = compare([base], [new], "--fail-on-regression")
        counts = Counter(str(c["verdict"]) for c in pair)
        print(f"aa-compare: {base.name} -- {new.name} (one run a side, conditional on each run): "
              f"{counts['slower'] + counts['faster']} of {len(pair)} slower/faster; gate exit {pair_code}")
    self_cells, _ = compare([a1], [a1])
    same = Counter(str(c["verdict"]) for c in self_cells)
    print(f"aa-compare: a run compared with itself: {same['same']} of {len(self_cells)} cells same "
          f"({dict(sorted(same.items()))})")


def crossings(run: Path) -> list[dict[str, Any]]:
    proc = devbench("crossover", str(run), "--format", "json")
    if proc.returncode != 0:
        raise SystemExit(f"crossover failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    rows: list[dict[str, Any]] = json.loads(proc.stdout)
    return [r for r in rows if r.get("crossover_size") is not None]


def aa_crossover(root: Path, rounds: int | None) -> None:
    run = sweep(root / "aa-logical", CROSSOVER_SWEEP, rounds, env={"DEVBENCH_LOGICAL_CPUS": "2"})
    located = crossings(run)
    decisive = [r for r in located if r.get("decisive")]
    print(f"aa-crossover: {len(decisive)} decisive crossovers between CPU:0 and CPU:1 (the same cores) over 25 "
          f"sizes; {len(located)} crossings located in all, {len(located) - len(decisive)} within noise")
    for r in decisive:
        print(f"  decisive: {r['op']} {r['dtype']} {r['mode']} at n≈{r['crossover_size']:.0f}")


def crossover_numpy(root: Path, rounds: int | None) -> None:
    for op, args in NUMPY_SWEEPS.items():
        per_run: list[list[tuple[float, float, float, bool]]] = []
        for i in (1, 2, 3):
            run = sweep(root / f"numpy-{op}-{i}", args, rounds)
            per_run.append([(float(r["crossover_size"]), float(r["low"]), float(r["high"]), bool(r["decisive"]))
                            for r in crossings(run) if r["op"] == op])
        text = "; ".join(", ".join(f"n≈{s:.0f} [{lo:.0f}, {hi:.0f}]{'' if d else ' within noise'}"
                                   for s, lo, hi, d in found) or "no crossing" for found in per_run)
        firsts = [found[0] for found in per_run if found]
        agree = len(firsts) == len(per_run) and max(lo for _, lo, _, _ in firsts) <= min(hi for _, _, hi, _ in firsts)
        decisive = sum(1 for found in per_run if any(d for *_, d in found))
        print(f"crossover-numpy: {op}: CPU:0 vs numpy:CPU, 3 runs: {text}; decisive in {decisive} of 3; "
              f"{'the ranges overlap' if agree else 'the ranges do not all overlap'}")


def processes(root: Path, rounds: int | None) -> None:
    seconds: dict[int, list[float]] = {1: [], 5: []}
    runs: dict[int, list[Path]] = {1: [], 5: []}
    for i in (1, 2, 3):
        for p in (1, 5):
            start = time.monotonic()
            out = root / f"proc{p}-{i}"
            fresh = not (out / "results.parquet").exists()
            runs[p].append(sweep(out, [*AA_SWEEP, "--processes", str(p)], rounds))
            if fresh:
                seconds[p].append(time.monotonic() - start)
    for p, done in runs.items():
        false = gates = total = 0
        for base, new in ((done[0], done[1]), (done[0], done[2]), (done[1], done[2])):
            cells, code = compare([base], [new], "--fail-on-regression")
            counts = Counter(str(c["verdict"]) for c in cells)
            false += counts["slower"] + counts["faster"]
            total += len(cells)
            gates += code
        wall = f"{sum(seconds[p]) / len(seconds[p]):.0f} s a sweep" if seconds[p] else "reused runs"
        print(f"processes: --processes {p}: {false} of {total} cells slower/faster over the 3 pairs of identical "
              f"runs, {gates} of 3 gates failed; {wall}")


def power(root: Path, rounds: int | None) -> None:
    base = [root / f"aa-{i}" for i in (1, 2) if (root / f"aa-{i}" / "results.parquet").exists()]
    if len(base) < 2:
        base = [sweep(root / f"aa-{i}", AA_SWEEP, rounds) for i in (1, 2)]
    one = sweep(root / "threads-1", AA_SWEEP, rounds, env={"TF_NUM_INTRAOP_THREADS": "1"})
    cells, code = compare(base, [one], "--fail-on-regression")
    large = [c for c in cells if c["op"] == "matmul" and c["device"] == "CPU:0" and int(c["size"]) >= LARGE]
    slower = [c for c in large if c["verdict"] == "slower"]
    ratios = ", ".join(f"n={c['size']}: {float(c['ratio']):.2f}× [{float(c['ci_low']):.2f}, "
                       f"{float(c['ci_high']):.2f}]" for c in large)
    print(f"power: TF_NUM_INTRAOP_THREADS=1 vs default (A1 A2 -- ONE): {len(slower)} of {len(large)} large "
          f"matmuls slower ({ratios}); --fail-on-regression exit {code}")


EXPERIMENTS = {"aa-compare": aa_compare, "aa-crossover": aa_crossover, "crossover-numpy": crossover_numpy,
               "processes": processes, "power": power}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", nargs="?", default="all", choices=[*EXPERIMENTS, "all"])
    parser.add_argument("--rounds", type=int, default=None, help="sweep --rounds (default: devbench's default)")
    parser.add_argument("--processes", type=int, default=None, help="sweep --processes (default: devbench's)")
    parser.add_argument("--out", type=Path, default=None, help="where the run directories go")
    parser.add_argument("--keep", action="store_true", help="keep the run directories")
    args = parser.parse_args()
    if args.processes is not None:
        PROCESSES.extend(["--processes", str(args.processes)])
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
