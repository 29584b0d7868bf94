"""Command line: parse, validate, call the library, print. One function per subcommand.

Bad input raises UsageError anywhere below; :func:`main` prints it as one line on stderr and returns 2.
Anything else is a bug and keeps its traceback. TensorFlow, pandas and matplotlib are imported inside the
commands that need them, so ``devbench --help``, ``devbench ops`` and ``devbench --version`` stay fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from devbench import __version__
from devbench.errors import UsageError, choose, choose_list
from devbench.spec import DTYPES, MODES, SIZE_GRAMMAR_HELP, SYNC_MODES, TimingPolicy, parse_sizes

DEFAULT_SIZES = "64..4096"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
"""128 + SIGINT, what shells report for a process Ctrl-C ended (SIGTERM gives 143)."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one UsageError line instead of usage text plus an error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def positive_float(name: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"{name} {text!r} is not a number; give positive seconds") from None
        if not value > 0 or value == float("inf"):
            raise UsageError(f"{name} {text!r} must be a positive, finite number of seconds")
        return value

    return parse


def positive_int(name: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise UsageError(f"{name} {text!r} is not a whole number; give an integer >= 1") from None
        if value < 1:
            raise UsageError(f"{name} {text!r} must be at least 1")
        return value

    return parse


def _int(name: str) -> Any:
    def parse(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise UsageError(f"{name} {text!r} is not a whole number") from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    from devbench.ops import DEFAULT_OPS

    parser = _Parser(
        prog="devbench",
        description="Device-placement microbenchmarks for TensorFlow: for each op, size and dtype, which "
        "device is faster, and where is the crossover?",
    )
    parser.add_argument("--version", action="version", version=f"devbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    sweep = sub.add_parser(
        "sweep",
        help="measure ops × sizes × dtypes × devices × modes into a run directory",
        description="Measure every op × size × dtype × device × mode cell. Each cell: a cold first call "
        "timed on its own, placement and correctness checks, warm-up, then calibrated blocks of calls "
        "each ended by one sync. Results land in a run directory under results/ (or --out).",
    )
    sweep.add_argument("--sizes", default=DEFAULT_SIZES, help=f"matrix sizes n (default {DEFAULT_SIZES}); "
                       + SIZE_GRAMMAR_HELP)
    sweep.add_argument("--ops", default=",".join(DEFAULT_OPS), help="comma list of ops (default: all; "
                       "see 'devbench ops')")
    sweep.add_argument("--dtypes", default="float32", help=f"comma list of {', '.join(DTYPES)} "
                       "(default float32)")
    sweep.add_argument("--devices", default=None, help="comma list like CPU:0,GPU:1, or 'all' "
                       "(default: CPU:0 and every GPU; see 'devbench devices')")
    sweep.add_argument("--modes", default="eager", help=f"comma list of {', '.join(MODES)} (default eager)")
    sweep.add_argument("--sync", default="scalar", help=f"how to wait for the device: {', '.join(SYNC_MODES)} "
                       "(default scalar: .numpy() on one element; none reproduces the guide's pitfall)")
    sweep.add_argument("--out", type=Path, default=None, help="run directory (default results/<UTC time>-<host>)")
    sweep.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                       help="finish an interrupted or crashed run: its plan is read from RUN_DIR/meta.json and "
                       "only cells not yet in RUN_DIR/cells.jsonl are measured (only --quiet and --refine "
                       "may be given with it)")
    default_policy = TimingPolicy()
    sweep.add_argument("--max-cell-time", type=positive_float("--max-cell-time"),
                       default=default_policy.max_cell_time,
                       help=f"seconds of warm-up and samples per cell (default {default_policy.max_cell_time:g})")
    from devbench.guards import DEFAULT_MAX_CALL_TIME

    sweep.add_argument("--max-call-time", type=positive_float("--max-call-time"), default=DEFAULT_MAX_CALL_TIME,
                       help="skip a cell whose single call is predicted (from smaller sizes of the same op, "
                       f"dtype, device and mode, scaled by FLOPs) to take longer (seconds; default "
                       f"{DEFAULT_MAX_CALL_TIME:g})")
    sweep.add_argument("--min-samples", type=positive_int("--min-samples"),
                       default=default_policy.min_samples,
                       help=f"samples before a cell may stop early (default {default_policy.min_samples})")
    sweep.add_argument("--seed", type=_int("--seed"), default=0, help="seed for input data (default 0)")
    sweep.add_argument("--baseline", choices=["numpy"], default=None,
                       help="also run every op in plain numpy on the host, as device numpy:CPU (same timer)")
    sweep.add_argument("--include-transfer", action="store_true",
                       help="measure every cell a second time with sync 'transfer': each call also copies its "
                       "inputs from host memory to the device and the whole result back")
    sweep.add_argument("--no-calibrate", action="store_true",
                       help="skip measuring the machine's peak FLOP/s and bandwidth at the start "
                       "(then pct_of_peak is empty)")
    sweep.add_argument("--refine", action="store_true", help="after the sweep, measure extra sizes inside "
                       "each crossover bracket until it is within 5 %% (see 'devbench refine')")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar, no tables")

    sub.add_parser("devices", help="list the devices TensorFlow sees, with details",
                   description="List the devices TensorFlow sees (imports TensorFlow).")
    sub.add_parser("ops", help="list the ops and what n means for each",
                   description="List the ops, what the size n means for each, and their FLOPs per call.")
    calibrate = sub.add_parser(
        "calibrate", help="measure each device's peak FLOP/s (per dtype) and memory bandwidth",
        description="Measure the roofline of each device: the best GEMM rate per dtype (numpy/OpenBLAS on the "
        "host, TensorFlow on every device) and the bandwidth of a large copy (bytes read + written per "
        "second). A sweep does this at its start and stores it in meta.json (unless --no-calibrate).")
    calibrate.add_argument("--devices", default=None, help="comma list like CPU:0,GPU:1, or 'all' "
                           "(default: CPU:0 and every GPU)")
    calibrate.add_argument("--dtypes", default="float32", help=f"comma list of {', '.join(DTYPES)} "
                           "(default float32)")
    calibrate.add_argument("--json", action="store_true", help="print the calibration as JSON")
    calibrate.set_defaults(handler=cmd_calibrate)

    from devbench.cli_results import add_parsers

    add_parsers(sub)
    return parser


# ---------------------------------------------------------------------------------------------------------
# sweep


def spec_from_args(args: argparse.Namespace, available_devices: list[str]) -> Any:
    from dataclasses import replace

    from devbench.devices import resolve
    from devbench.ops import OPS
    from devbench.spec import NUMPY_DEVICE, SweepSpec

    policy = TimingPolicy(
        max_cell_time=args.max_cell_time,
        min_samples=args.min_samples,
        max_samples=max(TimingPolicy().max_samples, args.min_samples),
    ).validate()
    spec = SweepSpec(
        ops=choose_list("op", args.ops, OPS),
        sizes=parse_sizes(args.sizes),
        dtypes=choose_list("dtype", args.dtypes, DTYPES),
        devices=resolve(args.devices, available_devices),
        modes=choose_list("mode", args.modes, MODES),
        sync=choose("sync mode", args.sync, SYNC_MODES),
        seed=args.seed,
        policy=policy,
        include_transfer=bool(getattr(args, "include_transfer", False)),
    )
    if getattr(args, "baseline", None) == "numpy" and NUMPY_DEVICE not in spec.devices:
        spec = replace(spec, devices=(*spec.devices, NUMPY_DEVICE))
    return spec


RESUME_COMPATIBLE = ("--resume", "--quiet", "--refine")
"""Sweep options that may be given with --resume; every other one would change the plan stored in the run."""


def _validate_without_tf(args: argparse.Namespace, argv: Sequence[str] = ()) -> Any:
    """Check every option that does not need TensorFlow, before paying seconds to import it.

    With ``--resume`` returns the resume plan (the run directory read and validated), else None.
    """
    if args.resume is not None:
        given = [token.split("=", 1)[0] for token in argv[1:] if token.startswith("--")]
        clashing = [t for t in given if not any(option.startswith(t) for option in RESUME_COMPATIBLE)]
        if clashing:
            raise UsageError(f"{clashing[0]} cannot be combined with --resume: a resumed run keeps the plan stored "
                             f"in {str(args.resume / 'meta.json')!r} (only --quiet and --refine may be added)")
        from devbench.sweep import plan_resume

        return plan_resume(args.resume)

    from devbench.ops import OPS
    from devbench.store import check_new_run_dir

    parse_sizes(args.sizes)
    choose_list("op", args.ops, OPS)
    choose_list("dtype", args.dtypes, DTYPES)
    choose_list("mode", args.modes, MODES)
    choose("sync mode", args.sync, SYNC_MODES)
    if args.devices is not None:
        from devbench.devices import canonical

        for name in args.devices.split(","):
            if name.strip().lower() not in ("all", "default"):
                canonical(name)
    if args.out is not None:
        check_new_run_dir(args.out)
    return None


def cmd_sweep(args: argparse.Namespace, argv: Sequence[str]) -> int:
    plan = _validate_without_tf(args, argv)
    from devbench.devices import discover, resolve
    from devbench.sweep import plan_new, run_plan

    devices = [d.name for d in discover()]
    if plan is None:
        from devbench.store import default_run_dir

        spec = spec_from_args(args, devices)
        run_dir = args.out if args.out is not None else default_run_dir()
        plan = plan_new(spec, run_dir, max_call_time=args.max_call_time)
    else:
        try:
            resolve(",".join(plan.spec.devices), devices)
        except UsageError as exc:
            raise UsageError(f"cannot resume {str(plan.run_dir)!r} here: {exc}") from None
    spec, run_dir = plan.spec, plan.run_dir
    from devbench.progress import SweepProgress

    if not args.quiet:
        print(plan.describe(), file=sys.stderr, flush=True)
    # SIGINT/SIGTERM raise SweepInterrupted (a KeyboardInterrupt) once what was measured is saved; main()
    # prints how to resume and exits 130/143.
    with SweepProgress(spec, enabled=not args.quiet, estimate=plan.time_guard.estimate_cell_seconds,
                       done=plan.done) as progress:
        run = run_plan(plan, argv=argv, on_start=progress.start, on_result=progress.finish,
                       calibrate=False if getattr(args, "no_calibrate", False) else None)
    if args.refine:
        from devbench.refine import refine_run
        from devbench.store import load_run

        with SweepProgress(spec, enabled=not args.quiet, total=None) as progress:
            refine_run(run_dir, on_start=progress.start, on_result=progress.finish)
        run = load_run(run_dir)
    from devbench.publish import publish

    charts, report = publish(run, run_dir)
    if not args.quiet:
        from devbench.analysis import crossover_frame, render_crossovers, render_winners, winners

        sys.stdout.write(render_winners(winners(run.results)))
        _print_not_measured(run.results)
        sys.stdout.write(render_crossovers(crossover_frame(run.results)))
        print(f"charts: {len(charts)} in {run_dir / 'plots'}; report: {report}")
    print(f"results: {run_dir}")
    return 0


def _print_not_measured(results: Any) -> None:
    failed = results[results["status"] != "ok"]
    if not failed.empty:
        counts = ", ".join(f"{n} {status}" for status, n in failed["status"].value_counts().items())
        print(f"cells not measured: {counts} (reasons in results.csv and report.md)")


# ---------------------------------------------------------------------------------------------------------
# devices, ops


def cmd_devices(args: argparse.Namespace) -> int:
    del args
    from rich.console import Console
    from rich.table import Table

    from devbench.devices import discover, tensorflow_fingerprint
    from devbench.machine import cpu_model

    tf_info = tensorflow_fingerprint()
    table = Table(title=f"TensorFlow {tf_info['version']} devices")
    for column in ("device", "kind", "name", "memory", "compute capability", "details"):
        table.add_column(column, no_wrap=column == "device")
    for device in discover():
        details = dict(device.details)
        name = str(details.pop("device_name", cpu_model() if device.kind == "CPU" else ""))
        capability = str(details.pop("compute_capability", ""))
        limit = details.pop("memory_limit_bytes", None)
        if device.kind == "CPU":
            import psutil

            limit = psutil.virtual_memory().total  # host memory, shared by every logical CPU device
        memory = f"{limit / 2**30:.1f} GiB" if limit else ""
        rest = ", ".join(f"{k}={v}" for k, v in details.items())
        table.add_row(device.name, device.kind, name, memory, capability, rest)
    Console().print(table)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``devbench calibrate``: the roofline of each device (see devbench.calibrate)."""
    dtypes = choose_list("dtype", args.dtypes, DTYPES)
    if args.devices is not None:
        from devbench.devices import canonical

        for name in args.devices.split(","):
            if name.strip().lower() not in ("all", "default"):
                canonical(name)
    from devbench.calibrate import calibrate_devices, render_calibration
    from devbench.devices import discover, resolve

    devices = resolve(args.devices, [d.name for d in discover()])
    calibration = calibrate_devices(devices, dtypes)
    if args.json:
        import json

        print(json.dumps(calibration, indent=2))
    else:
        print("\n".join(render_calibration(calibration)))
    return 0


def cmd_ops(args: argparse.Namespace) -> int:
    del args
    from rich.console import Console
    from rich.table import Table

    from devbench.ops import OPS

    table = Table(title="devbench ops (n is the size given to --sizes)")
    for column in ("op", "n means", "FLOPs/call", "dtypes", "what it times"):
        table.add_column(column, no_wrap=column == "op")
    for op in OPS.values():
        table.add_row(op.name, op.n_means, op.flops_formula, ", ".join(op.dtypes), op.summary)
    Console().print(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        if args.command == "sweep":
            return cmd_sweep(args, argv)
        if args.command == "devices":
            return cmd_devices(args)
        if args.command == "ops":
            return cmd_ops(args)
        if hasattr(args, "handler"):
            code: int = args.handler(args)
            return code
        raise AssertionError(f"unhandled command {args.command!r}")
    except UsageError as exc:
        print(f"devbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        # A sweep's SweepInterrupted carries its exit code (128 + signal) and how to resume; a Ctrl-C anywhere
        # else (say, while TensorFlow loads) has nothing to save.
        print(getattr(exc, "message", "devbench: interrupted"), file=sys.stderr)
        exit_code: int = getattr(exc, "exit_code", EXIT_INTERRUPTED)
        # Leave now rather than return: interpreter shutdown resets signal handlers to the defaults and then
        # spends about a second tearing TensorFlow down, so a second Ctrl-C in that window would kill the
        # process with -SIGINT instead of exiting with this code. Everything measured is already on disk.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)
