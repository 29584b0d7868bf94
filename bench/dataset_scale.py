"""Reading a dataset of many runs: time and memory of ``dataset.runs_from_paths`` and of ``fleet`` over it.

Synthetic runs (seeded, ``devbench.simulation.simulate_run``: a few ops x sizes x two devices, rounds of
samples, a machine each) are written to a fresh dataset through ``merge.write_partitioned`` (the writer of
``devbench dataset add``), then read back and tabulated as ``devbench fleet`` does, one phase at a time:

- ``add``: writing the partitions (cells, visits, samples, meta.json per run);
- ``read``: ``dataset.runs_from_paths([DIR])``, every partition into a ``store.Run``;
- ``fleet table``: ``fleet.fleet_table`` (best device per machine and size, speed-ups over the baseline);
- ``fleet crossovers``: ``fleet.fleet_crossovers`` (each run's crossover curves, the t band per curve);
- ``history``: ``history.build_history`` over the first machine's runs (``devbench history DIR --machine
  machine-0``: series per cell, change points, each run's crossovers);
- ``duckdb``: the documented ``GROUP BY machine`` over the cells (when duckdb is installed).

Each phase prints its wall and CPU time and the process's peak RSS so far (with ``--trace-memory`` also the
peak traced by ``tracemalloc``: Python and NumPy allocations, not Arrow's buffers). ``--machines 1`` puts all
the runs in one machine's history.

    PYTHONPATH=src python bench/dataset_scale.py [--runs 1000] [--machines 4] [--sizes 6] [--out DIR]
                                             [--trace-memory]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from devbench.dataset import machine_labels, runs_from_paths
from devbench.fleet import fleet_crossovers, fleet_table
from devbench.merge import write_partitioned
from devbench.schema import IDENTITY, SAMPLE_COLUMNS, CellRow, results_frame
from devbench.simulation import Noise, simulate_run
from devbench.store import Run

NOISE = Noise(within=0.03, per_cell=0.01, per_round=0.02, per_run=0.03, samples=5)
OPS = ("matmul", "add")
DEVICES = ("CPU:0", "GPU:0")
ROUNDS = 5


def synthetic_run(rng: np.random.Generator, index: int, machine: int, sizes: Sequence[int]) -> Run:
    """One run: every op x size x device, the GPU paying a fixed 30 us and running the work 8x faster (a
    crossover on every curve), each machine a bit faster than the last; samples by round from the noise
    model, meta with a start time one hour after the previous run."""
    cells = [(op, n, device) for op in OPS for n in sizes for device in DEVICES]
    speed = 1.0 + 0.2 * machine
    truth = np.log([(1e-6 * (n / 64) ** (3 if op == "matmul" else 2) / speed) / (8 if device == "GPU:0" else 1)
                    + (3e-5 if device == "GPU:0" else 1e-6) for op, n, device in cells])
    by_cell = simulate_run(rng, truth, ROUNDS, NOISE)
    run_id = f"run{index:05d}"
    rows: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    for (op, n, device), rounds in zip(cells, by_cell, strict=True):
        pooled = np.concatenate(rounds)
        row = CellRow(run_id=run_id, op=op, size=n, dtype="float32", device=device, mode="eager", sync="scalar",
                      status="ok", n_samples=int(pooled.size), number=1, median_s=float(np.median(pooled)),
                      n_rounds=ROUNDS).as_dict()
        rows.append(row)
        ident = {name: row[name] for name in IDENTITY}
        samples.extend({"run_id": run_id, **ident, "round": r + 1, "sample": i, "number": 1, "per_call_s": float(s)}
                       for r, values in enumerate(rounds) for i, s in enumerate(values))
    hour = pd.Timestamp("2026-01-01T00:00:00Z") + pd.Timedelta(hours=index)
    meta = {"schema_version": 2, "run_id": run_id, "status": "complete", "started_at": hour.isoformat()}
    return Run(path=None, meta=meta, results=results_frame(rows),
               samples=pd.DataFrame(samples, columns=list(SAMPLE_COLUMNS)))


def _peak_rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024.0


def measure(name: str, step: Callable[[], Any], *, trace: bool = False) -> Any:
    """Run ``step``; print its wall and CPU seconds (CPU time is what to compare on a shared machine) and the
    peak RSS so far, and with ``trace`` (slow: tracemalloc hooks every allocation) the traced peak."""
    if trace:
        tracemalloc.start()
    wall, cpu = time.perf_counter(), time.process_time()
    out = step()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    traced = ""
    if trace:
        traced = f"   traced peak {tracemalloc.get_traced_memory()[1] / 2**20:7.1f} MiB"
        tracemalloc.stop()
    print(f"  {name:<17} {wall:8.2f} s wall {cpu:8.2f} s CPU   peak RSS {_peak_rss_mib():7.0f} MiB{traced}",
          flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="synthetic runs in the dataset (default 1000)")
    parser.add_argument("--machines", type=int, default=4, help="machines the runs are spread over (default 4)")
    parser.add_argument("--sizes", type=int, default=6, help="sizes per curve, 64 doubling (default 6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trace-memory", action="store_true",
                        help="also trace Python/NumPy allocations per phase (tracemalloc; several times slower)")
    parser.add_argument("--out", type=Path, default=None, help="dataset directory (default: a temporary one, "
                        "removed afterwards)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.machines < 1 or args.sizes < 1:
        parser.error("--runs, --machines and --sizes must be at least 1")
    sizes = [64 * 2**i for i in range(args.sizes)]
    root = args.out if args.out is not None else Path(tempfile.mkdtemp(prefix="devbench-dataset-scale-"))
    rng = np.random.default_rng(args.seed)
    cells = len(OPS) * len(sizes) * len(DEVICES)
    print(f"dataset of {args.runs} synthetic runs on {args.machines} machines, {cells} cells x {ROUNDS} rounds x "
          f"{NOISE.samples} samples each, in {root}")
    try:
        def add() -> None:
            for start in range(0, args.runs, 100):  # in batches, as runs arrive
                batch = [synthetic_run(rng, i, i % args.machines, sizes)
                         for i in range(start, min(start + 100, args.runs))]
                write_partitioned(batch, root, [f"machine-{i % args.machines}"
                                                for i in range(start, start + len(batch))])

        measure("add (+generate)", add, trace=args.trace_memory)
        runs: list[Run] = measure("read", lambda: runs_from_paths([root]), trace=args.trace_memory)
        labels: list[str | None] = list(machine_labels(runs))
        table = measure("fleet table", lambda: fleet_table(runs, labels), trace=args.trace_memory)
        crossings = measure("fleet crossovers", lambda: fleet_crossovers(runs, labels), trace=args.trace_memory)
        print(f"  -> {len(runs)} runs, fleet table {len(table)} rows, {len(crossings)} crossover rows")
        from devbench.history import build_history

        history = measure("history", lambda: build_history(runs, machine="machine-0"), trace=args.trace_memory)
        print(f"  -> {len(history.runs)} runs of machine-0, {len(history.steps)} steps")
        try:
            import duckdb
        except ImportError:
            print("  duckdb            not installed: skipped")
        else:
            glob = (root / "*" / "*" / "cells.parquet").as_posix()
            query = (f"SELECT machine, count(DISTINCT run) FROM read_parquet('{glob}', hive_partitioning=true) "
                     "GROUP BY machine ORDER BY machine")
            def group_by_machine() -> list[Any]:
                relation = duckdb.sql(query)
                assert relation is not None  # a SELECT gives a relation
                return relation.fetchall()

            rows = measure("duckdb", group_by_machine, trace=args.trace_memory)
            print(f"  -> {rows}")
    finally:
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
