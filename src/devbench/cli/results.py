"""Subcommands that read results: ``crossover``, ``plot``, ``report``, ``refine``, ``compare``.

Each accepts a run directory (and, except ``refine``, a bare results table, CSV or Parquet, with at least
``op, size, dtype, device, median_s``). Like the rest of the CLI: parse, call a plain library function, print.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from devbench.cli.options import (
    Subcommands,
    UsageParser,
    add_command,
    add_format_option,
    fraction,
    positive_int,
)
from devbench.errors import UsageError

EXIT_REGRESSION = 1
"""``compare --fail-on-regression`` found a cell slower beyond the threshold, significant after the gate's
multiple-comparison correction (a CI gate)."""

SOURCE_HELP = "a run directory, or a results table (.csv/.parquet) with op, size, dtype, device, median_s"


def register(sub: Subcommands[UsageParser]) -> None:
    crossover = add_command(sub, "crossover", cmd_crossover,
                            help="where the faster device changes, per op/dtype/mode",
                            description="Report every size where the faster device changes, for each op, "
                            "dtype and mode and each pair of devices, with a range from the CIs.")
    crossover.add_argument("source", type=Path, help=SOURCE_HELP)
    add_format_option(crossover)

    plot = add_command(sub, "plot", cmd_plot, help="draw the charts (PNG) of a run",
                       description="Draw the crossover, throughput, overview and cold-vs-warm charts.")
    plot.add_argument("source", type=Path, help=SOURCE_HELP)
    plot.add_argument("--out", type=Path, default=None, help="folder for the PNGs (default: RUN/plots)")

    report = add_command(sub, "report", cmd_report, help="write report.md (and report.html) for a run",
                         description="Write a Markdown report: machine, command, crossovers, winners, "
                         "charts and warnings; with --html also report.html, the same as one self-contained "
                         "interactive page (works offline: data and scripts are embedded).")
    report.add_argument("source", type=Path, help=SOURCE_HELP)
    report.add_argument("--out", type=Path, default=None, help="folder for report.md and plots/ "
                        "(default: the run directory)")
    report.add_argument("--html", action="store_true", help="also write report.html beside report.md")

    refine = add_command(sub, "refine", cmd_refine, help="measure extra sizes inside each crossover bracket",
                         description="Bisect each crossover bracket in log space, measuring the new sizes "
                         "into the same run (each new size visited as the sweep's --rounds), until within 5 %% of "
                         "the size or --steps are spent.")
    refine.add_argument("run_dir", type=Path, help="a run directory made by 'devbench sweep'")
    refine.add_argument("--steps", type=positive_int("--steps"), default=6,
                        help="bisection steps at most (default 6)")
    refine.add_argument("--quiet", action="store_true", help="no progress, no tables")

    compare = add_command(sub, "compare", cmd_compare, help="compare runs cell by cell, with statistics",
                          description="Match the cells of BASE and NEW; per cell the ratio NEW/BASE of the "
                          "typical time per call (geometric mean of round medians) with a 95 percent Welch t "
                          "interval whose unit is the round (one run per side) or the run (several runs per "
                          "side: BASE1 BASE2 -- NEW1 NEW2), and a verdict read off that interval: slower "
                          "(whole interval above 1+t), faster (below 1/(1+t)), same (inside the band), else "
                          "uncertain. --fail-on-regression fails only on slower cells that stay significant "
                          "after correcting for the number of cells (Holm, or BH).")
    compare.__class__ = _SidesParser  # keeps the '--' between the sides (see _SidesParser)
    compare.add_argument("runs", nargs="+", type=Path, metavar="RUN",
                         help="BASE NEW, or several runs per side: BASE1 BASE2 ... -- NEW1 NEW2 ... (each "
                         + SOURCE_HELP + "); options go before or after the runs")
    compare.add_argument("--threshold", type=fraction("--threshold", low_inclusive=True), default=0.05,
                         help="smallest relative change that counts (default 0.05 = 5 %%)")
    compare.add_argument("--alpha", type=fraction("--alpha", low_inclusive=False), default=0.05,
                         help="the gate's false-alarm level over all cells judged: family-wise with holm, "
                         "false discovery rate with bh (default 0.05)")
    compare.add_argument("--gate-method", choices=("holm", "bh"), default="holm",
                         help="multiple-comparison correction of --fail-on-regression: holm (default; "
                         "P(any false alarm) <= alpha) or bh (Benjamini-Hochberg; flags more real changes)")
    compare.add_argument("--baseline-window", type=positive_int("--baseline-window"), default=None, metavar="K",
                         help="judge NEW against the last K base runs (by their start time) as one more level "
                         "of the interval: with one NEW run, its run-to-run scatter is taken from the window's "
                         "runs, so one unlucky baseline run raises no alarm (BASE1 ... BASEn -- NEW, K <= n)")
    add_format_option(compare)
    compare.add_argument("--fail-on-regression", action="store_true",
                         help="exit 1 when any cell is slower beyond the threshold and significant after "
                         "the --gate-method correction at --alpha")
    compare.add_argument("--chart", type=Path, default=None,
                         help="where to write compare.png (default: NEW/plots/compare.png when NEW is one run "
                         "directory; none for a table or several new runs)")
    compare.add_argument("--html", type=Path, default=None, metavar="FILE",
                         help="also write the comparison as one self-contained interactive page (sorted by "
                         "change, filterable)")


SIDES = Path("\0--")
"""What ``_SidesParser`` turns the ``--`` between the sides into (no path can hold a NUL)."""


class _SidesParser(UsageParser):
    """The ``compare`` parser: argparse drops a ``--`` among positionals (and takes every option after it
    as a run), so each ``--`` is turned into :data:`SIDES` before parsing; ``split_sides`` then refuses
    more than one."""

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        tokens = [str(SIDES) if token == "--" else token for token in (sys.argv[1:] if args is None else args)]
        return super().parse_known_args(tokens, namespace)


def split_sides(runs: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """``BASE NEW`` or ``BASE1 ... -- NEW1 ...`` -> (base runs, new runs); UsageError for anything else."""
    if SIDES not in runs:
        if len(runs) == 2:
            return [runs[0]], [runs[1]]
        raise UsageError(f"compare got {len(runs)} run(s) without '--'; allowed: BASE NEW, or several runs "
                         "per side separated by '--' (BASE1 BASE2 -- NEW1 NEW2)")
    at = list(runs).index(SIDES)
    base, new = list(runs[:at]), list(runs[at + 1:])
    if SIDES in new:
        raise UsageError("compare got '--' twice; allowed: one '--' between the base runs and the new runs")
    if not base or not new:
        empty = "base" if not base else "new"
        raise UsageError(f"compare got no {empty} run {'before' if empty == 'base' else 'after'} '--'; "
                         "allowed: at least one run on each side (BASE1 BASE2 -- NEW1 NEW2)")
    return base, new


def cmd_crossover(args: argparse.Namespace) -> int:
    from devbench.analysis import crossover_frame, render_crossovers
    from devbench.store import load_any

    run = load_any(args.source)
    sys.stdout.write(render_crossovers(crossover_frame(run.results, run.samples), args.format))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from devbench import plots as plot
    from devbench.publish import output_dir
    from devbench.store import load_any, prepare_output_dir

    run = load_any(args.source)
    out = prepare_output_dir(args.out if args.out is not None else output_dir(args.source) / plot.PLOTS_DIR)

    charts = plot.write_charts(run, out)
    if not charts:
        print("no ok cells: nothing to plot", file=sys.stderr)
    for path in charts:
        print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from devbench.publish import output_dir, publish
    from devbench.store import load_any, prepare_output_dir

    run = load_any(args.source)
    out = prepare_output_dir(args.out if args.out is not None else output_dir(args.source))
    published = publish(run, out, html=args.html)
    print(published.report)
    if published.html is not None:
        print(published.html)
    return 0


def cmd_refine(args: argparse.Namespace) -> int:
    from devbench.store import load_run

    load_run(args.run_dir)  # a usage error (missing, corrupt, other schema) before TensorFlow is imported
    from devbench.analysis import crossover_frame, render_crossovers
    from devbench.publish import publish
    from devbench.refine import refine_run

    outcome = refine_run(args.run_dir, max_rounds=args.steps)
    run = load_run(args.run_dir)
    publish(run, args.run_dir)
    if not args.quiet:
        state = "converged" if outcome.converged else f"stopped after {outcome.rounds} steps (budget spent)"
        print(f"refine: measured {len(outcome.measured)} extra sizes; {state}")
        if outcome.skipped:
            print(f"refine: skipped {len(outcome.skipped)} crossing{'s' if len(outcome.skipped) != 1 else ''} "
                  f"within noise: {'; '.join(s.describe() for s in outcome.skipped)}")
        sys.stdout.write(render_crossovers(crossover_frame(run.results, run.samples)))
    print(f"results: {args.run_dir}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from devbench.analysis import crossover_frame
    from devbench.compare import compare_runs, has_regression
    from devbench.compare_render import render_comparison
    from devbench.plots.compare import write_compare_chart
    from devbench.store import load_any

    base_paths, new_paths = split_sides(args.runs)
    base, new = [load_any(p) for p in base_paths], [load_any(p) for p in new_paths]
    comparison = compare_runs(base, new, threshold=args.threshold, alpha=args.alpha,
                              gate_method=args.gate_method, crossovers=crossover_frame,
                              baseline_window=args.baseline_window)
    sys.stdout.write(render_comparison(comparison, args.format))
    chart = args.chart
    if chart is None and len(new_paths) == 1 and new_paths[0].is_dir():
        chart = new_paths[0] / "plots" / "compare.png"
    if chart is not None and comparison.cells:
        from devbench.store import prepare_output_dir

        prepare_output_dir(chart.parent)
        path = write_compare_chart(comparison, chart)
        print(f"chart: {path}", file=sys.stderr)
    if args.html is not None:
        from devbench.html_report import write_compare_html

        print(f"page: {write_compare_html(comparison, args.html)}", file=sys.stderr)
    if args.fail_on_regression and has_regression(comparison):
        s = comparison.settings
        print(f"devbench: gate failed: {len(comparison.regressions)} of {comparison.n_judged} judged cell(s) "
              f"slower beyond {s.threshold:.0%}, significant after {s.gate_method} at alpha {s.alpha:g}: "
              + ", ".join(c.key.label() for c in comparison.regressions), file=sys.stderr)
        return EXIT_REGRESSION
    return 0
