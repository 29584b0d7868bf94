"""Harness fidelity: devbench's per-call median against a bare ``time.perf_counter`` loop around the same call.

Run: ``PYTHONPATH=src python bench/fidelity.py [--sizes 64,1024,2048] [--rounds 5]``

For matmul float32 on CPU:0 at each size, rounds alternate A B, B A, A B, ... (so that a steady drift of the
machine during a round favours neither side):

- A: devbench measures the cell exactly as a sweep does (``TFBackend.run_cell``: cold call, checks, warm-up,
  calibrated blocks, default policy) and reports its median per-call time;
- B: a bare loop times ``tf.linalg.matmul(a, b)`` on the same inputs: the same number of calls per block as A
  chose, the same sync (``.numpy()`` on one element), the same number of samples; its median per-call time.

It prints devbench/bare per size: the median over rounds of each round's ratio, and the range. Targets: within
3 % at n = 1024 and 2048, within 5 % at n = 64 (where TF's dispatch dominates). Small sizes get more rounds
(they are cheap, and dispatch-dominated timings move most with other processes). Not a test: it measures, and
the machine's noise is part of what it shows (run it more than once on a shared machine).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from devbench.backends.tf import TFBackend, build_tf, sync_scalar
from devbench.devices import tensorflow
from devbench.fidelity import FidelityPair, summarize_fidelity
from devbench.ops import OPS
from devbench.spec import Cell, TimingPolicy, parse_sizes


def bare_median(tf: Any, a: Any, b: Any, number: int, samples: int) -> float:
    """Median per-call seconds of ``samples`` blocks of ``number`` bare matmuls, each block ended by one sync."""
    per_call = []
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(number):
            y = tf.linalg.matmul(a, b)
        sync_scalar(y)
        per_call.append((time.perf_counter() - start) / number)
    return statistics.median(per_call)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,1024,2048")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds per size (default: 15 below n=512, 7 from there on)")
    parser.add_argument("--device", default="CPU:0")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    tf = tensorflow()
    backend = TFBackend()
    policy = TimingPolicy()  # what a sweep uses by default
    pairs: list[FidelityPair] = []
    for n in parse_sizes(args.sizes):
        cell = Cell(size=n, op="matmul", dtype="float32", device=args.device)
        with tf.device(f"/device:{args.device}"):
            a, b = build_tf(OPS["matmul"], n, "float32", args.seed).args
            sync_scalar(tf.linalg.matmul(a, b))  # the bare side's cold call, not timed
        rounds = args.rounds if args.rounds is not None else (15 if n < 512 else 7)
        number, samples = 0, 0
        for r in range(rounds):
            bare_first = r % 2 == 1  # A B, B A, A B, ...; B repeats the blocks of the latest A
            if bare_first:
                with tf.device(f"/device:{args.device}"):
                    bare_s = bare_median(tf, a, b, number, samples)
            outcome = backend.run_cell(cell, policy, args.seed)  # A
            m = outcome.measurement
            devbench_s = statistics.median(m.samples)
            number, samples = m.number, len(m.samples)
            if not bare_first:
                with tf.device(f"/device:{args.device}"):  # B
                    bare_s = bare_median(tf, a, b, number, samples)
            pairs.append(FidelityPair(size=n, devbench_s=devbench_s, bare_s=bare_s))
            print(f"  n={n} round {r + 1} ({'BA' if bare_first else 'AB'}): devbench {devbench_s * 1e6:.1f} µs "
                  f"(number={m.number}, {len(m.samples)} samples), bare {bare_s * 1e6:.1f} µs, "
                  f"ratio {devbench_s / bare_s:.4f}", flush=True)
            backend.release()
    print("devbench per-call median / bare perf_counter loop, matmul float32 on", args.device)
    verdicts = summarize_fidelity(pairs)
    for verdict in verdicts:
        print(verdict.line())
    return 0 if all(v.ok for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
