"""Start-up wall time of the commands that must not import TensorFlow: ``devbench --help``, ``ops``, ``--version``.

Run: ``PYTHONPATH=src python bench/startup.py [--runs 10]``. Each command runs ``--runs`` times as a fresh
``python -m devbench`` process; prints median, min and max seconds (target: under 0.5 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def wall_times(args: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "devbench", *args], env=os.environ.copy(), stdout=subprocess.DEVNULL,
                       check=True)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    options = parser.parse_args(argv)
    worst = 0.0
    for args in (["--help"], ["ops"], ["--version"]):
        times = wall_times(args, options.runs)
        median = statistics.median(times)
        worst = max(worst, median)
        print(f"devbench {' '.join(args):<10} median {median:.3f} s  min {min(times):.3f} s  "
              f"max {max(times):.3f} s ({options.runs} runs)")
    print(f"python -c pass: {min(wall_times_python(options.runs)):.3f} s (the interpreter alone)")
    return 0 if worst < 0.5 else 1


def wall_times_python(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - start)
    return times


if __name__ == "__main__":
    sys.exit(main())
