"""Subcommands beyond one machine: ``merge`` (shards into one run), ``fleet`` (machines side by side, from run
directories, tables or datasets) and ``export`` (a run in the formats of other tools' dashboards). Parse, call
devbench.merge/dataset/fleet/export, print.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devbench.cli.options import Subcommands, UsageParser, add_command
from devbench.cli.results import SOURCE_HELP
from devbench.errors import UsageError, choose


def register(sub: Subcommands[UsageParser]) -> None:
    merge = add_command(sub, "merge", cmd_merge, help="merge the shards of one sweep into one run directory",
                        description="Join the run directories of every shard of one sweep ('devbench sweep "
                        "--shard K/N') into one run that tables, crossovers, charts, reports and compare use "
                        "like an unsharded run. Refuses shards of different sweeps, names missing and "
                        "duplicate shards, keeps each shard's machine fingerprint; shards from machines that "
                        "differ are refused unless --fleet.")
    merge.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run directories, one per shard")
    merge.add_argument("--out", type=Path, required=True, help="the merged run directory (new or empty)")
    merge.add_argument("--fleet", action="store_true",
                       help="allow shards from different machines, and also write a Hive-partitioned Parquet "
                       "dataset (DIR/dataset/machine=.../run=.../cells.parquet) for DuckDB, polars or Spark; "
                       "whole runs of several machines are a fleet, not shards: they go to the dataset alone")
    merge.add_argument("--label", action="append", default=None, metavar="NAME",
                       help="a machine name for the dataset, one per RUN in order (default: the fingerprint's)")

    fleet = add_command(sub, "fleet", cmd_fleet, help="several machines' runs of one sweep side by side",
                        description="Per op, size, dtype and mode: each machine's median on its best device "
                        "and its speed-up over the baseline machine with an interval, and each machine's "
                        "crossover sizes side by side; writes fleet.png.")
    fleet.add_argument("runs", type=Path, nargs="+", metavar="RUN",
                       help="run directories (one per machine), results tables, or datasets written by "
                       "'devbench dataset add' (each run in them one machine's)")
    fleet.add_argument("--baseline", type=Path, default=None, metavar="RUN",
                       help="the machine the others are compared with (default: the first run; a run "
                       "directory, a table or one dataset partition)")
    fleet.add_argument("--label", action="append", default=None, metavar="NAME",
                       help="a name per run in order (default: the name a dataset recorded, else the machine "
                       "fingerprint's short name)")
    fleet.add_argument("--machine", action="append", default=None, metavar="NAME",
                       help="only the runs of this machine (repeatable; as named in a dataset or by the "
                       "fingerprint)")
    fleet.add_argument("--format", default="table", help="table (default), csv, json or markdown")
    fleet.add_argument("--chart", type=Path, default=None,
                       help="where to write fleet.png (default: fleet.png in the current directory)")

    export = add_command(sub, "export", cmd_export, help="write a run in another tool's format",
                         description="Write the ok cells of a run for a dashboard: pytest-benchmark (a file "
                         "'pytest-benchmark compare' reads), bmf (Bencher Metric Format) or "
                         "github-action-benchmark (customSmallerIsBetter). Benchmarks are named "
                         "op/dtype/mode/device/n, stable across runs and machines.")
    export.add_argument("source", type=Path, help=SOURCE_HELP)
    export.add_argument("--format", required=True, help="pytest-benchmark, bmf or github-action-benchmark")
    export.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")


def _labels(args: argparse.Namespace, n_runs: int | None = None) -> list[str | None] | None:
    labels: list[str] | None = args.label
    if labels is None:
        return None
    n = len(args.runs) if n_runs is None else n_runs
    if len(labels) != n:
        raise UsageError(f"{len(labels)} --label for {n} runs; give one label per run, in order")
    return list(labels)


def cmd_merge(args: argparse.Namespace) -> int:
    from devbench.merge import is_fleet_of_whole_runs, merge_runs, write_merged, write_partitioned
    from devbench.store import load_run

    labels = _labels(args)
    runs = [load_run(path) for path in args.runs]
    if args.fleet and is_fleet_of_whole_runs(runs):
        from devbench.dataset import add_runs

        parts = add_runs(list(args.runs), args.out / "dataset", [label or "" for label in labels or []] or None)
        print(f"{len(runs)} whole runs (no shard entries) are a fleet, not the shards of one sweep: no merged "
              f"run; dataset: {len(parts)} partitions in {args.out / 'dataset'} (devbench fleet reads it)")
        return 0
    merged = merge_runs(runs, fleet=args.fleet, run_id=args.out.name, argv=list(args.argv))
    out = write_merged(merged, args.out)
    missing = merged.meta.get("missing_cells") or 0
    print(f"merged {len(runs)} runs into {out}: {len(merged.results)} cells"
          + (f", {missing} planned cells missing (status interrupted)" if missing else ""))
    if args.fleet:
        parts = write_partitioned(runs, out / "dataset", labels)
        print(f"dataset: {len(parts)} partitions in {out / 'dataset'}")
    return 0


def cmd_fleet(args: argparse.Namespace) -> int:
    from devbench.dataset import machine_labels, runs_from_paths
    from devbench.fleet import FLEET_FORMATS, fleet_crossovers, fleet_table, render_fleet, write_fleet_chart

    fmt = choose("format", args.format, FLEET_FORMATS)
    runs = runs_from_paths([Path(p) for p in args.runs], args.machine)
    labels = _labels(args, len(runs))
    baseline = 0
    if args.baseline is not None:
        chosen = runs_from_paths([args.baseline])
        if len(chosen) != 1:
            raise UsageError(f"--baseline {str(args.baseline)!r} holds {len(chosen)} runs; give one run "
                             "(a run directory, a table or one dataset partition)")
        where = chosen[0].path.resolve() if chosen[0].path is not None else None
        resolved = [run.path.resolve() if run.path is not None else None for run in runs]
        if where is not None and where in resolved:
            baseline = resolved.index(where)
        else:
            runs = [chosen[0], *runs]
            labels = [None, *labels] if labels is not None else None
    labels = list(machine_labels(runs, labels))
    table = fleet_table(runs, labels, baseline=baseline)
    sys.stdout.write(render_fleet(table, fmt, fleet_crossovers(runs, labels)))  # type: ignore[arg-type]
    chart = args.chart if args.chart is not None else Path("fleet.png")
    if not table.empty:
        print(f"chart: {write_fleet_chart(table, chart)}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from devbench.export import EXPORT_FORMATS, export
    from devbench.store import load_any, prepare_output_dir, write_atomic

    fmt = choose("export format", args.format, EXPORT_FORMATS)
    text = export(load_any(args.source), fmt)
    if args.out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    if args.out.is_dir():
        raise UsageError(f"--out {str(args.out)!r} is a directory; give a file name")
    prepare_output_dir(args.out.parent if str(args.out.parent) else Path("."))
    write_atomic(args.out, (text if text.endswith("\n") else text + "\n").encode("utf-8"))
    print(args.out)
    return 0
