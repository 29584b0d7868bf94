"""Subcommands that read results: ``crossover``, ``plot``, ``report``, ``refine``, ``compare``.

Each accepts a run directory (and, except ``refine``, a bare results table, CSV or Parquet, with at least
``op, size, dtype, device, median_s``). Like the rest of the CLI: parse, call a plain library function, print.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from devbench.errors import UsageError, choose

FORMATS = ("table", "csv", "json")


def _format(text: str) -> str:
    return choose("format", text, FORMATS)


def _fraction(name: str, low_inclusive: bool) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"{name} {text!r} is not a number") from None
        ok = (0 <= value < 1) if low_inclusive else (0 < value < 1)
        if not ok:
            raise UsageError(f"{name} {text!r} must be in {'[0, 1)' if low_inclusive else '(0, 1)'}")
        return value

    return parse


def add_parsers(sub: Any) -> None:
    """Register the results subcommands on the main parser's subparsers."""
    from devbench.cli import positive_int

    source_help = "a run directory, or a results table (.csv/.parquet) with op, size, dtype, device, median_s"

    crossover = sub.add_parser("crossover", help="where the faster device changes, per op/dtype/mode",
                               description="Report every size where the faster device changes, for each op, "
                               "dtype and mode and each pair of devices, with a range from the CIs.")
    crossover.add_argument("source", type=Path, help=source_help)
    crossover.add_argument("--format", type=_format, default="table", help="table (default), csv or json")
    crossover.set_defaults(handler=cmd_crossover)

    plot = sub.add_parser("plot", help="draw the charts (PNG) of a run",
                          description="Draw the crossover, throughput, overview and cold-vs-warm charts.")
    plot.add_argument("source", type=Path, help=source_help)
    plot.add_argument("--out", type=Path, default=None, help="folder for the PNGs (default: RUN/plots)")
    plot.set_defaults(handler=cmd_plot)

    report = sub.add_parser("report", help="write report.md for a run",
                            description="Write a Markdown report: machine, command, crossovers, winners, "
                            "charts and warnings.")
    report.add_argument("source", type=Path, help=source_help)
    report.add_argument("--out", type=Path, default=None, help="folder for report.md and plots/ "
                        "(default: the run directory)")
    report.set_defaults(handler=cmd_report)

    refine = sub.add_parser("refine", help="measure extra sizes inside each crossover bracket",
                            description="Bisect each crossover bracket in log space, measuring the new sizes "
                            "into the same run, until within 5 %% of the size or --rounds are spent.")
    refine.add_argument("run_dir", type=Path, help="a run directory made by 'devbench sweep'")
    refine.add_argument("--rounds", type=positive_int("--rounds"), default=6,
                        help="bisection rounds at most (default 6)")
    refine.add_argument("--quiet", action="store_true", help="no progress, no tables")
    refine.set_defaults(handler=cmd_refine)

    compare = sub.add_parser("compare", help="compare two runs cell by cell, with statistics",
                             description="Match cells of two runs; per cell the ratio NEW/BASE of median "
                             "time per call with a bootstrap CI and a verdict (faster/slower/same/uncertain): "
                             "a change counts only when larger than --threshold and significant "
                             "(Mann-Whitney U at --alpha).")
    compare.add_argument("base", type=Path, help="the baseline run (" + source_help + ")")
    compare.add_argument("new", type=Path, help="the new run")
    compare.add_argument("--threshold", type=_fraction("--threshold", True), default=0.05,
                         help="smallest relative change that counts (default 0.05 = 5 %%)")
    compare.add_argument("--alpha", type=_fraction("--alpha", False), default=0.01,
                         help="significance level of the Mann-Whitney U test (default 0.01)")
    compare.add_argument("--format", type=_format, default="table", help="table (default), csv or json")
    compare.add_argument("--fail-on-regression", action="store_true",
                         help="exit 1 when any cell is significantly slower beyond the threshold")
    compare.add_argument("--chart", type=Path, default=None,
                         help="where to write compare.png (default: NEW/plots/compare.png for a run "
                         "directory; none for a table)")
    compare.set_defaults(handler=cmd_compare)


def _load(source: Path) -> Any:
    from devbench.store import load_any

    return load_any(source)


def cmd_crossover(args: argparse.Namespace) -> int:
    from devbench.analysis import crossover_frame, render_crossovers

    run = _load(args.source)
    sys.stdout.write(render_crossovers(crossover_frame(run.results), args.format))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from devbench import plots as plot
    from devbench.publish import output_dir
    from devbench.store import prepare_output_dir

    run = _load(args.source)
    out = prepare_output_dir(args.out if args.out is not None else output_dir(args.source) / plot.PLOTS_DIR)

    charts = plot.write_charts(run, out)
    if not charts:
        print("no ok cells: nothing to plot", file=sys.stderr)
    for path in charts:
        print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from devbench.publish import output_dir, publish
    from devbench.store import prepare_output_dir

    run = _load(args.source)
    out = prepare_output_dir(args.out if args.out is not None else output_dir(args.source))
    _, report = publish(run, out)
    print(report)
    return 0


def cmd_refine(args: argparse.Namespace) -> int:
    from devbench.store import load_run

    load_run(args.run_dir)  # a usage error (missing, corrupt, other schema) before TensorFlow is imported
    from devbench.analysis import crossover_frame, render_crossovers
    from devbench.publish import publish
    from devbench.refine import refine_run

    outcome = refine_run(args.run_dir, max_rounds=args.rounds)
    run = load_run(args.run_dir)
    publish(run, args.run_dir)
    if not args.quiet:
        state = "converged" if outcome.converged else f"stopped after {outcome.rounds} rounds (budget spent)"
        print(f"refine: measured {len(outcome.measured)} extra sizes; {state}")
        sys.stdout.write(render_crossovers(crossover_frame(run.results)))
    print(f"results: {args.run_dir}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from devbench.analysis import crossover_frame
    from devbench.compare import compare_runs, has_regression
    from devbench.compare_render import render_comparison
    from devbench.plots.compare import write_compare_chart

    base, new = _load(args.base), _load(args.new)
    comparison = compare_runs(base, new, threshold=args.threshold, alpha=args.alpha, crossovers=crossover_frame)
    sys.stdout.write(render_comparison(comparison, args.format))
    chart = args.chart
    if chart is None and args.new.is_dir():
        chart = args.new / "plots" / "compare.png"
    if chart is not None and comparison.cells:
        from devbench.store import prepare_output_dir

        prepare_output_dir(chart.parent)
        path = write_compare_chart(comparison, chart)
        print(f"chart: {path}", file=sys.stderr)
    if args.fail_on_regression and has_regression(comparison):
        print(f"devbench: {len(comparison.regressions)} cell(s) significantly slower beyond "
              f"{args.threshold:.0%}", file=sys.stderr)
        return 1
    return 0
