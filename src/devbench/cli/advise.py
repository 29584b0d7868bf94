"""``devbench advise RUN [--calls N] [--format table|markdown|json]``: which device to use per op and size over N
calls, and from how many calls moving to the accelerator pays (:mod:`devbench.advise`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devbench.cli.options import Subcommands, UsageParser, add_command, positive_int
from devbench.errors import choose

ADVISE_FORMATS = ("table", "markdown", "json")


def advise_format(text: str) -> str:
    """Converter for ``advise --format``: one of :data:`ADVISE_FORMATS`."""
    return choose("format", text, ADVISE_FORMATS)


def register(sub: Subcommands[UsageParser]) -> None:
    parser = add_command(
        sub, "advise", cmd_advise, help="which device to use per op and size, and the break-even call count",
        description="Fit t(n) = a + b·n^p per device to a run's medians (95 %% intervals from refitting each "
        "round), then say per op which device to use by size range over N calls, counting each device's "
        "initialisation, the first call's extra cost and one transfer of the data, and from how many calls "
        "moving to the accelerator pays. Without an accelerator the non-baseline device plays it against numpy.")
    parser.add_argument("source", type=Path, help="a run directory, or a results table (.csv/.parquet) with op, "
                        "size, dtype, device, median_s (no intervals without the samples)")
    parser.add_argument("--calls", type=positive_int("--calls"), default=1000,
                        help="calls the one-time costs are spread over (default 1000)")
    parser.add_argument("--format", type=advise_format, default="table", help="table (default), markdown or json")


def cmd_advise(args: argparse.Namespace) -> int:
    from devbench.advise import advise
    from devbench.advise_render import (
        advice_json,
        agreement_sentence,
        group_sentences,
        group_tables,
        range_rows,
        title,
    )
    from devbench.store import load_any

    run = load_any(args.source)
    advice = advise(run.results, run.samples, run.meta, args.calls)
    if args.format == "json":
        from devbench.formatting import json_text

        sys.stdout.write(json_text(advice_json(advice)))
        return 0
    out: list[str] = []
    if args.format == "markdown":
        from devbench.report import md_table

        for group in advice.groups:
            out += [f"## {title(group)}", "", *group_sentences(group), ""]
            if group.ranges:
                out += [md_table(["n", f"device to use over {advice.calls:,} calls"], range_rows(group)), ""]
            for caption, headers, rows in group_tables(group):
                out += [f"**{caption}**", "", md_table(list(headers), rows), ""]
        out.append(agreement_sentence(advice))
    else:
        from devbench.formatting import rich_table

        for group in advice.groups:
            out += [title(group), *(f"  {s}" for s in group_sentences(group))]
            text = [rich_table(f"device to use over {advice.calls:,} calls", ["n", "device"], range_rows(group),
                               120)] if group.ranges else []
            text += [rich_table(caption, list(headers), rows, 160) for caption, headers, rows in group_tables(group)]
            out += [t.rstrip("\n") for t in text]
            out.append("")
        out.append(agreement_sentence(advice))
    sys.stdout.write("\n".join(out).rstrip("\n") + "\n")
    return 0
