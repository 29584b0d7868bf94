"""``devbench dataset add RUN... --to DIR`` and ``devbench dataset list DIR``: one Hive-partitioned dataset of
whole runs from any machine and any time (devbench.dataset). Parse, call, print."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devbench.cli.options import Subcommands, UsageParser, add_command
from devbench.errors import UsageError


def register(sub: Subcommands[UsageParser]) -> None:
    dataset = add_command(sub, "dataset", cmd_dataset, help="one Parquet dataset of many runs (add, list)",
                          description="A Hive-partitioned Parquet dataset DIR/machine=<m>/run=<r>/ of whole runs "
                          "from any machine and any time (cells, visits, samples and meta.json per run), which "
                          "DuckDB, polars and Spark read with one glob and 'devbench fleet' reads as runs.")
    commands = dataset.add_subparsers(dest="dataset_command", metavar="COMMAND", parser_class=UsageParser)
    add = add_command(commands, "add", cmd_add, help="add whole runs to a dataset (idempotent)",
                      description="Add runs to the dataset DIR: run directories (the shards of a sharded sweep "
                      "are merged into one run first), results tables, or other datasets. A run already there "
                      "with the same content is left alone; the same run id with other content is refused.")
    add.add_argument("runs", type=Path, nargs="+", metavar="RUN",
                     help="run directories, results tables (.csv, .parquet) or datasets")
    add.add_argument("--to", type=Path, required=True, metavar="DIR", help="the dataset (created if new)")
    add.add_argument("--label", action="append", default=None, metavar="NAME",
                     help="the machine's name: one for every RUN, or one per RUN in order (default: the "
                     "machine fingerprint's short name, or the name a dataset recorded)")
    listing = add_command(commands, "list", cmd_list, help="the runs in a dataset",
                          description="One line per run: machine, run id, start, status, planned cells, "
                          "content digest.")
    listing.add_argument("dataset", type=Path, metavar="DIR", help="a dataset written by 'devbench dataset add'")


def cmd_dataset(args: argparse.Namespace) -> int:
    raise UsageError("dataset needs a command; allowed: add (devbench dataset add RUN... --to DIR), list")


def cmd_add(args: argparse.Namespace) -> int:
    from devbench.dataset import add_runs

    written = add_runs(list(args.runs), args.to, args.label)
    for part in written:
        state = "added" if part.added else "unchanged (already in the dataset)"
        print(f"{part.path.relative_to(args.to).as_posix()}: {part.n_cells} cells, {state}")
    added = sum(part.added for part in written)
    print(f"dataset {args.to}: {added} run{'s' if added != 1 else ''} added, {len(written) - added} unchanged")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from devbench.dataset import is_dataset, listing

    if not is_dataset(args.dataset):
        raise UsageError(f"{str(args.dataset)!r} is not a dataset (no machine=… folders); create one with "
                         "'devbench dataset add RUN... --to DIR'")
    frame = listing(args.dataset)
    sys.stdout.write(frame.to_string(index=False) + "\n")
    print(f"{len(frame)} runs on {frame['machine'].nunique()} machines", file=sys.stderr)
    return 0
