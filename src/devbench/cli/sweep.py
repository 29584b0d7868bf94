"""``devbench sweep``: measure a new run, or finish one with ``--resume``.

Every option that can be checked without TensorFlow is checked first (:func:`validate_without_tf`), so a typo
costs a fraction of a second, not the seconds TensorFlow takes to import.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from devbench.cache import CACHE_OPTION_HELP, cache_variants, parse_cache_states
from devbench.cli.options import (
    Subcommands,
    UsageParser,
    add_command,
    add_devices_option,
    add_dtypes_option,
    integer,
    positive_float,
    positive_int,
)
from devbench.errors import UsageError, choose, choose_list
from devbench.spec import (
    DEFAULT_ROUNDS,
    DTYPES,
    MODES,
    NUMPY_DEVICE,
    SIZE_GRAMMAR_HELP,
    SYNC_MODES,
    SweepSpec,
    TimingPolicy,
    parse_sizes,
)

if TYPE_CHECKING:
    import pandas as pd

    from devbench.shard import ShardSpec
    from devbench.sweep import Plan

DEFAULT_SIZES = "64..4096"

EXIT_WORKER_CRASHED = 1
"""A worker process of ``--processes`` crashed: the run is saved as ``failed`` and can be resumed."""

RESUME_COMPATIBLE = ("--resume", "--quiet", "--refine")
"""Sweep options that may be given with --resume; every other one would change the plan stored in the run."""


def register(sub: Subcommands[UsageParser]) -> None:
    from devbench.guards import DEFAULT_MAX_CALL_TIME
    from devbench.ops import DEFAULT_OPS

    sweep = add_command(
        sub, "sweep", cmd_sweep,
        help="measure ops × sizes × dtypes × devices × modes into a run directory",
        description="Measure every op × size × dtype × device × mode cell. Each cell: a cold first call "
        "timed on its own, placement and correctness checks, warm-up, then calibrated blocks of calls "
        "each ended by one sync. Results land in a run directory under results/ (or --out).",
    )
    sweep.add_argument("--sizes", default=None, help=f"matrix sizes n (default {DEFAULT_SIZES}); "
                       + SIZE_GRAMMAR_HELP)
    sweep.add_argument("--shape", default=None, metavar="DIM=SIZES,...",
                       help="sweep named dimensions instead of the square n, e.g. 'm=64..4096,k=256,n=64': each "
                       "takes the --sizes grammar, the first with several values is swept, other dimensions with "
                       "several values give one curve each; every op must have exactly these dimensions "
                       "(see 'devbench ops'); not with --sizes")
    sweep.add_argument("--fuzz", type=positive_int("--fuzz"), default=None, metavar="K",
                       help="with --shape bounds: measure K shapes drawn log-uniformly within them (seeded by "
                       "--seed), for a map of where each device wins (plots/winners.png)")
    sweep.add_argument("--ops", default=None, help=f"comma list of ops (default: {','.join(DEFAULT_OPS)}, the "
                       "--op-file ops when given, or with --shape every op with named dimensions; see 'devbench ops')")
    sweep.add_argument("--op-file", action="append", type=Path, default=[], metavar="FILE",
                       help="a Python file of your own ops (repeatable; README 'Your own ops'); installed "
                       "packages' ops (entry points devbench.ops) are always available")
    add_dtypes_option(sweep)
    add_devices_option(sweep, "CPU:0 and every GPU; without a GPU, CPU:0 and the numpy baseline; see "
                       "'devbench devices'")
    sweep.add_argument("--modes", default="eager", help=f"comma list of {', '.join(MODES)} (default eager)")
    sweep.add_argument("--cache", default="warm", help="cache state of the inputs: " + CACHE_OPTION_HELP)
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
                       help="seconds of warm-up and samples per cell, shared by its --rounds visits "
                       f"(default {default_policy.max_cell_time:g})")
    sweep.add_argument("--max-call-time", type=positive_float("--max-call-time"), default=DEFAULT_MAX_CALL_TIME,
                       help="skip a cell whose single call is predicted (from smaller sizes of the same op, "
                       f"dtype, device and mode, scaled by FLOPs) to take longer (seconds; default "
                       f"{DEFAULT_MAX_CALL_TIME:g})")
    sweep.add_argument("--min-samples", type=positive_int("--min-samples"),
                       default=default_policy.min_samples,
                       help=f"samples before a cell may stop early (default {default_policy.min_samples})")
    sweep.add_argument("--rounds", type=positive_int("--rounds"), default=DEFAULT_ROUNDS,
                       help="visit every cell this many times, interleaved with the others, so that drift of "
                       "the machine shows in each cell's interval instead of passing for a difference "
                       f"(default {DEFAULT_ROUNDS}; 1 cannot see drift; the cell budget is shared by its visits)")
    sweep.add_argument("--processes", type=positive_int("--processes"), default=1,
                       help="spread the rounds over this many fresh worker processes, run one after another, "
                       "each with its own framework import and device initialisation, so that what is fixed for "
                       "a process's life shows in the intervals; each costs a framework start-up (TensorFlow: "
                       "seconds); at most --rounds (default 1: every round in this process)")
    sweep.add_argument("--tf32", choices=["on", "off", "default"], default="default",
                       help="TensorFloat-32 for float32 matmuls and convolutions on GPUs: off forces full float32 "
                       "in TensorFlow, PyTorch and JAX, on allows TF32 in all three, default keeps each "
                       "framework's own; the state of each is recorded in meta.json")
    sweep.add_argument("--energy", choices=["auto", "off"], default="auto",
                       help="joules per call after each cell's timed blocks, where the device has an energy counter "
                       "(NVML on NVIDIA GPUs, RAPL via /sys/class/powercap on the CPU): auto measures where one "
                       "exists (and says why not in meta.json and the report elsewhere), off measures nothing")
    sweep.add_argument("--shard", default=None, metavar="K/N",
                       help="measure only shard K of N (0 <= K < N) of the sweep: whole crossover curves, balanced "
                       "by predicted cost, the same split on every machine; default: from a Slurm job array "
                       "(SLURM_ARRAY_TASK_ID) or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX with "
                       "--shard-count or DEVBENCH_SHARD_COUNT); see 'devbench merge'")
    sweep.add_argument("--shard-count", type=positive_int("--shard-count"), default=None, metavar="N",
                       help="the number of shards when the index comes from JOB_COMPLETION_INDEX (Kubernetes "
                       "does not export the completions count)")
    sweep.add_argument("--seed", type=integer("--seed"), default=0, help="seed for input data (default 0)")
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


def asks_for_default_devices(args: argparse.Namespace) -> bool:
    from devbench.devices import DEFAULT_KEYWORDS

    return args.devices is None or args.devices.strip().lower() in DEFAULT_KEYWORDS


def no_gpu_note(host: str, available_devices: list[str]) -> str:
    """The line a default sweep without any accelerator prints: it adds the numpy baseline, and another
    framework's CPU device (the same cores, other dispatch) is one option away."""
    other = next((d for d in ("CPU:0", "jax:cpu:0", "torch:cpu") if d in available_devices and d != host), None)
    how = (f"compare another framework's CPU with --devices {host},{other}" if other else
           f'to compare another framework\'s CPU: pip install "devbench[jax]", then --devices {host},jax:cpu:0')
    return f"no GPU found: measuring {host} and the numpy baseline ({NUMPY_DEVICE}); {how}"


def spec_from_args(args: argparse.Namespace, available_devices: list[str]) -> SweepSpec:
    """The sweep the options ask for, its devices resolved against ``available_devices`` (every installed
    framework's). The default devices without any accelerator also get the numpy baseline (see
    :func:`no_gpu_note`): a crossover against numpy is an answer where there is no GPU to cross over with."""
    from dataclasses import replace

    from devbench.devices import is_accelerator, resolve

    policy = TimingPolicy(
        max_cell_time=args.max_cell_time,
        min_samples=args.min_samples,
        max_samples=max(TimingPolicy().max_samples, args.min_samples),
    ).validate()
    ops, sizes, sizes_by_op = ops_and_sizes(args)
    spec = SweepSpec(
        ops=ops,
        sizes=sizes,
        sizes_by_op=sizes_by_op,
        dtypes=choose_list("dtype", args.dtypes, DTYPES),
        devices=resolve(args.devices, available_devices),
        modes=choose_list("mode", args.modes, MODES),
        sync=choose("sync mode", args.sync, SYNC_MODES),
        seed=args.seed,
        policy=policy,
        include_transfer=bool(getattr(args, "include_transfer", False)),
        rounds=args.rounds,
    )
    no_gpu = asks_for_default_devices(args) and not any(is_accelerator(d) for d in spec.devices)
    if (getattr(args, "baseline", None) == "numpy" or no_gpu) and NUMPY_DEVICE not in spec.devices:
        spec = replace(spec, devices=(*spec.devices, NUMPY_DEVICE))
    return spec


def validate_without_tf(args: argparse.Namespace, argv: Sequence[str] = ()) -> Plan | None:
    """Check every option that does not need TensorFlow, before paying seconds to import it.

    ``argv`` is the command line as typed (``sweep`` first). With ``--resume`` returns the resume plan (the
    run directory read and validated), else None.
    """
    if args.resume is not None:
        given = [token.split("=", 1)[0] for token in argv[1:] if token.startswith("--")]
        clashing = [t for t in given if not any(option.startswith(t) for option in RESUME_COMPATIBLE)]
        if clashing:
            raise UsageError(f"{clashing[0]} cannot be combined with --resume: a resumed run keeps the plan stored "
                             f"in {str(args.resume / 'meta.json')!r} (only --quiet and --refine may be added)")
        from devbench.sweep import plan_resume

        return plan_resume(args.resume)

    from devbench.devices import check_names
    from devbench.plan import check_processes
    from devbench.store import check_new_run_dir

    ops_and_sizes(args)
    choose_list("dtype", args.dtypes, DTYPES)
    choose_list("mode", args.modes, MODES)
    choose("sync mode", args.sync, SYNC_MODES)
    check_names(args.devices)
    check_processes(args.processes, args.rounds)
    shard_of(args)
    if args.out is not None:
        check_new_run_dir(args.out)
    return None


def ops_text(args: argparse.Namespace, default: Iterable[str] | None = None) -> str:
    """``--ops``, or by default the ops of the ``--op-file`` files, else ``default`` (the built-in ops) — the
    files are loaded here, with the installed packages' ops, before any op is looked up; a bad file is a
    UsageError."""
    from devbench.ops import DEFAULT_OPS
    from devbench.userops import load_sources

    from_files = load_sources(getattr(args, "op_file", None) or ())
    return str(args.ops) if args.ops is not None else ",".join(from_files or default or DEFAULT_OPS)


def ops_and_sizes(args: argparse.Namespace
                  ) -> tuple[tuple[str, ...], tuple[int, ...], tuple[tuple[str, tuple[int, ...]], ...]]:
    """The op names, sizes and per-op sizes (``--fuzz``) the op and size options ask for: ``--sizes`` (square),
    ``--shape`` (devbench.shapes.expand) or ``--shape`` with ``--fuzz`` (devbench.shapes.fuzz_points), each
    op name in every ``--cache`` state (devbench.cache.cache_variants)."""
    from devbench import shapes
    from devbench.ops import OPS, SHAPED

    shape_text, fuzz = getattr(args, "shape", None), getattr(args, "fuzz", None)
    ops = choose_list("op", ops_text(args, SHAPED if shape_text is not None else None), OPS)
    caches = parse_cache_states(getattr(args, "cache", "warm"))
    if shape_text is None:
        if fuzz is not None:
            raise UsageError("--fuzz draws shapes within --shape bounds: give --shape too, e.g. "
                             "--shape 'm=64..4096,k=64..4096,n=64..4096' --fuzz 20")
        return cache_variants(ops, caches), parse_sizes(args.sizes if args.sizes is not None else DEFAULT_SIZES), ()
    if args.sizes is not None:
        raise UsageError("--sizes (the square n) and --shape (named dimensions) cannot both be given; "
                         "put the sizes in --shape, e.g. --shape 'm=64..4096,k=256,n=64'")
    shape = shapes.parse_shape(shape_text)
    if fuzz is None:
        names, sizes = shapes.expand(ops, shape)
        return cache_variants(names, caches), sizes, ()
    points = tuple((variant, point_sizes) for name, point_sizes in shapes.fuzz_points(ops, shape, fuzz, args.seed)
                   for variant in cache_variants((name,), caches))
    return (tuple(name for name, _ in points), tuple(sorted({s for _, sizes in points for s in sizes})),
            points)


def shard_of(args: argparse.Namespace) -> ShardSpec | None:
    """The shard the options ask for: ``--shard K/N``, else the scheduler's environment, else None (all)."""
    import os

    from devbench.shard import ShardSpec, shard_from_env

    if args.shard is not None:
        if args.shard_count is not None:
            raise UsageError("--shard-count goes with an index from the environment (JOB_COMPLETION_INDEX); "
                             "--shard K/N already gives the count")
        return ShardSpec.parse(args.shard)
    return shard_from_env(os.environ, args.shard_count)


def cmd_sweep(args: argparse.Namespace) -> int:
    argv: Sequence[str] = args.argv
    plan = validate_without_tf(args, argv)
    from devbench.devices import FRAMEWORKS, canonical, discover_frameworks, frameworks_of, resolve
    from devbench.sweep import WorkerCrashed, plan_new, run_plan

    if plan is not None:
        wanted = frameworks_of(plan.spec.devices)
    elif asks_for_default_devices(args) or args.devices.strip().lower() == "all":
        wanted = tuple(FRAMEWORKS)
    else:
        wanted = frameworks_of(canonical(name) for name in args.devices.split(","))
    devices = [d.name for d in discover_frameworks(wanted).devices]
    if plan is None:
        from devbench.store import default_run_dir

        spec = spec_from_args(args, devices)
        if asks_for_default_devices(args) and NUMPY_DEVICE in spec.devices and args.baseline is None:
            host = next((d for d in spec.devices if d != NUMPY_DEVICE), "CPU:0")
            print(f"devbench: {no_gpu_note(host, devices)}", file=sys.stderr, flush=True)
        run_dir = args.out if args.out is not None else default_run_dir()
        plan = plan_new(spec, run_dir, max_call_time=args.max_call_time, shard=shard_of(args),
                        processes=args.processes, tf32=args.tf32, energy=args.energy)
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
    try:
        with SweepProgress(plan.visits_left(), total=len(plan.visits()), enabled=not args.quiet,
                           estimate=plan.time_guard.estimate_cell_seconds) as progress:
            run = run_plan(plan, argv=argv, on_start=progress.start, on_result=progress.finish,
                           calibrate=False if getattr(args, "no_calibrate", False) else None)
    except WorkerCrashed as exc:  # not a bug of this process: say what is kept and how to go on, no traceback
        print(exc.message, file=sys.stderr, flush=True)
        return EXIT_WORKER_CRASHED
    if args.refine:
        from devbench.refine import refine_run
        from devbench.store import load_run

        with SweepProgress(enabled=not args.quiet) as progress:
            refine_run(run_dir, on_start=progress.start, on_result=progress.finish)
        run = load_run(run_dir)
    from devbench.publish import publish

    published = publish(run, run_dir)
    if not args.quiet:
        from devbench.analysis import crossover_frame, render_crossovers, render_winners, winners

        if spec.sizes_by_op:  # --fuzz: one point per shape, so the answer is the map, not curves
            from devbench.plots.winners import render_map, winner_points

            sys.stdout.write(render_map(winner_points(run.results)))
            print_not_measured(run.results)
        else:
            sys.stdout.write(render_winners(winners(run.results)))
            print_not_measured(run.results)
            sys.stdout.write(render_crossovers(crossover_frame(run.results, run.samples)))
        from devbench.cache import host_llc_of, render_cache_pairs, warm_cold_pairs

        sys.stdout.write(render_cache_pairs(warm_cold_pairs(run.results, run.samples, host_llc_of(run.meta))))
        print(f"charts: {len(published.charts)} in {run_dir / 'plots'}; report: {published.report} "
              f"and {published.html}")
    print(f"results: {run_dir}")
    return 0


def print_not_measured(results: pd.DataFrame) -> None:
    """One line counting the cells that have no time (skipped, failed, unsupported), if there are any."""
    failed = results[results["status"] != "ok"]
    if not failed.empty:
        counts = ", ".join(f"{n} {status}" for status, n in failed["status"].value_counts().items())
        print(f"cells not measured: {counts} (reasons in results.csv and report.md)")
