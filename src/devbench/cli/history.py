"""``devbench history``: many runs of one machine in order, the steps in each cell's median, the crossovers
that moved. Parse, load, call devbench.history, print; the chart and the page on request."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from devbench.cli.options import Subcommands, UsageParser, add_command
from devbench.errors import choose

if TYPE_CHECKING:
    from devbench.store import Run


def register(sub: Subcommands[UsageParser]) -> None:
    history = add_command(
        sub, "history", cmd_history, help="one machine's runs over time: steps in medians, moved crossovers",
        description="Order many runs of one machine by time (meta started_at) or by --key, and show per cell "
        "the series of medians with their intervals and the steps found in it (size, interval, first run after, "
        "and the fingerprint fields that changed there), and per curve the crossover sizes with their ranges, "
        "the crossovers that moved, and the fastest device per size in each run.")
    history.add_argument("runs", type=Path, nargs="+", metavar="RUN_OR_DATASET",
                         help="run directories or results tables (.csv/.parquet), of one machine")
    history.add_argument("--machine", default=None, metavar="NAME",
                         help="the machine to show when the runs come from several (its hostname)")
    history.add_argument("--key", default=None, metavar="META.PATH",
                         help="order by this dotted path of meta.json (e.g. machine.packages.tensorflow) or "
                         "'commit', instead of the start time")
    history.add_argument("--format", default="table", help="table (default), markdown or json")
    history.add_argument("--chart", type=Path, default=None, metavar="PATH",
                         help="write the history chart (PNG) here")
    history.add_argument("--html", type=Path, default=None, metavar="PATH", help="write the history page here")


def load_runs(paths: Sequence[Path]) -> list[Run]:
    """Every run the paths name: run directories, bare tables, and datasets of whole runs (``dataset add``) or
    one ``machine=…`` folder of one (devbench.dataset.runs_from_paths)."""
    from devbench.dataset import runs_from_paths

    return runs_from_paths(paths)


def cmd_history(args: argparse.Namespace) -> int:
    from devbench.history import HISTORY_FORMATS, build_history, render_history

    fmt = choose("format", args.format, HISTORY_FORMATS)
    history = build_history(load_runs(args.runs), key=args.key, machine=args.machine)
    sys.stdout.write(render_history(history, fmt))
    if args.chart is not None:
        from devbench.plots.history import write_history_chart

        print(f"chart: {write_history_chart(history, args.chart)}", file=sys.stderr)
    if args.html is not None:
        from devbench.html_report.history_page import write_history_html

        print(f"page: {write_history_html(history, args.html)}", file=sys.stderr)
    return 0
