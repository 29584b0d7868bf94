"""One sweep, start to finish, into a run directory — and resumed later. The plain functions behind
``devbench sweep`` (the CLI adds argument parsing and the progress bar).

A :class:`Plan` is what is left to measure, worked out before TensorFlow is imported or anything is written;
:func:`run_plan` measures it through a :class:`devbench.session.RunSession`, the one writer of a run
directory (lock, cell log, signals, pct_of_peak, final files; refine uses the same session).

Interruption. SIGINT (Ctrl-C) and SIGTERM abandon the cell being measured (a resume measures it), the final
tables are rebuilt from cells.jsonl, meta.json says ``interrupted``, and :class:`SweepInterrupted` (a
KeyboardInterrupt) carries the exit code, 128 + the signal number, and how to resume. See devbench.session.

Resume. :func:`resume` (``devbench sweep --resume RUN_DIR``) reads the spec from meta.json, skips every cell
already in cells.jsonl (whatever its status; read under the run's lock), measures the rest into the same log,
and rebuilds the same final files an uninterrupted run would have. A torn last line of the log is cut off with
a warning; a run another process is writing is refused; a different machine or TensorFlow is warned about and
recorded in meta.json.

Worker processes. With ``processes`` above 1 (``devbench sweep --processes P``) the rounds are measured in P
fresh Python processes, one after another, and this process stays the run's one writer: see
devbench.workers. A resume uses the run's own ``processes`` again.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devbench.backends.base import Backend
from devbench.calibrate import Calibrator, sweep_calibrator
from devbench.errors import UsageError, choose
from devbench.formatting import format_duration
from devbench.guards import DEFAULT_MAX_CALL_TIME, Guard, MemoryGuard, TimeGuard, combine
from devbench.runner import CellResult, run_visits
from devbench.schema import VisitRecord
from devbench.session import (
    Reopened,
    RunSession,
    SweepInterrupted,
    require_writable_run,
    resume_command,
    warn_on_stderr,
)
from devbench.shard import ShardSpec, shard_cells, shard_meta, shard_of_meta
from devbench.spec import DTYPES, MODES, SYNC_MODES, Cell, SweepSpec, Visit
from devbench.store import META, Run, check_new_run_dir, check_not_locked, read_cell_log, read_meta, utc_now
from devbench.workers import WorkerCrashed, check_processes, run_in_workers

__all__ = ["Plan", "SweepInterrupted", "WorkerCrashed", "execute", "measure_visits", "plan_new", "plan_of_run",
           "plan_resume", "resume", "resume_command", "run_plan", "spec_from_meta"]


# ---------------------------------------------------------------------------------------------------------
# Plans: what is left to measure, before anything is imported or written


@dataclass
class Plan:
    """A sweep ready to run: the spec, the run directory, and (resuming) what the run already holds."""

    spec: SweepSpec
    run_dir: Path
    time_guard: TimeGuard
    meta: dict[str, Any] | None = None
    """The run's meta.json when resuming; None for a new run."""
    done: frozenset[tuple[Any, ...]] = frozenset()
    """``Visit.key()`` of every visit already in cells.jsonl."""
    settled: frozenset[tuple[Any, ...]] = frozenset()
    """``Cell.key()`` of cells not to visit again (a visit was not ok)."""
    prior: list[VisitRecord] = field(default_factory=list)
    """The records already in cells.jsonl (guards learn from them)."""
    log_problems: list[str] = field(default_factory=list)
    """Lines of cells.jsonl that are ignored, and why."""
    shard: ShardSpec | None = None
    """The part of the sweep this run measures (``--shard K/N``; devbench.shard), or None for all of it."""
    processes: int = 1
    """Worker processes the rounds are spread over (``--processes``; devbench.workers); 1: this process."""

    @property
    def resuming(self) -> bool:
        return self.meta is not None

    def visits(self) -> list[Visit]:
        """Every visit of this run: the spec's, or its shard's (whole crossover curves, in the sweep's order)."""
        visits = self.spec.visits()
        if self.shard is None:
            return visits
        mine = {cell.key() for cell in shard_cells(self.spec, self.shard)}
        return [visit for visit in visits if visit.cell.key() in mine]

    def n_cells(self) -> int:
        return len({visit.cell for visit in self.visits()})

    def visits_left(self) -> list[Visit]:
        return [v for v in self.visits() if v.key() not in self.done and v.cell.key() not in self.settled]

    def cells_left(self) -> list[Cell]:
        """Cells with a visit still to make."""
        return list(dict.fromkeys(visit.cell for visit in self.visits_left()))

    def describe(self) -> str:
        """One line for stderr before the sweep starts: how many cells and visits, and a rough time estimate."""
        left = self.visits_left()
        spec = self.spec
        total = len(self.visits())
        estimates = [self.time_guard.estimate_cell_seconds(visit.cell) for visit in left]
        skips = len({visit.cell for visit in left if self.time_guard(visit.cell) is not None})
        rounds = f"{spec.rounds} round{'s' if spec.rounds != 1 else ''}"
        n_cells = self.n_cells()
        cells = f"{n_cells} cell{'s' if n_cells != 1 else ''}"
        if self.shard is not None:
            cells += f" (shard {self.shard.index}/{self.shard.count} of {spec.n_cells()})"
        head = (f"plan: {len(left)} of {total} visits left ({cells} × {rounds})" if self.resuming
                else f"plan: {cells} × {rounds}")
        if spec.rounds == 1:
            head += " (one round cannot see drift between rounds: intervals will be empty)"
        if self.processes > 1:
            head += f" in {self.processes} worker processes, one after another"
        if not left:
            return f"{head}; nothing left to measure"
        budget = format_duration(spec.policy.max_cell_time)
        overhead = format_duration(self.time_guard.overhead_s)
        notes = [f"rough estimate {format_duration(sum(estimates))}",
                 f"per cell: {budget} budget shared by its visits, ~{overhead} set-up and clean-up a visit, its "
                 "cold call; early convergence takes less, slow calls more"]
        if self.processes > 1:
            notes.append("each worker process adds its frameworks' import and device start-up")
        if skips:
            notes.append(f"{skips} cells predicted over --max-call-time "
                         f"{format_duration(self.time_guard.max_call_time)}")
        return f"{head}, {notes[0]} ({'; '.join(notes[1:])})"


def visit_guard(spec: SweepSpec, max_call_time: float) -> TimeGuard:
    """The time guard of a sweep: it predicts single calls, and estimates a visit (the per-visit policy)."""
    return TimeGuard(max_call_time, spec.policy.per_visit(spec.rounds))


def plan_new(spec: SweepSpec, run_dir: Path, *, max_call_time: float = DEFAULT_MAX_CALL_TIME,
             shard: ShardSpec | None = None, processes: int = 1) -> Plan:
    """A plan for a new run into ``run_dir`` (of the whole sweep, or of ``shard``, its rounds in ``processes``
    worker processes); checks that the directory can be created (creates nothing)."""
    check_processes(processes, spec.rounds)
    check_new_run_dir(run_dir)
    if shard is not None:
        shard_cells(spec, shard)  # a shard count above the number of curves is a UsageError now, not later
    return Plan(spec=spec, run_dir=run_dir, time_guard=visit_guard(spec, max_call_time), shard=shard,
                processes=processes)


def spec_from_meta(meta: dict[str, Any], run_dir: Path) -> SweepSpec:
    """The sweep spec stored in a run's meta.json, validated like the command line validates it."""
    from devbench.devices import canonical
    from devbench.ops import OPS

    where = f"{str(run_dir / META)!r}"
    raw = meta.get("spec")
    try:
        if not isinstance(raw, dict):
            raise TypeError(f"'spec' is {type(raw).__name__}, not an object")
        spec = SweepSpec.from_dict(raw)
        for op in spec.ops:
            choose("op", op, OPS)
        for dtype in spec.dtypes:
            choose("dtype", dtype, DTYPES)
        for mode in spec.modes:
            choose("mode", mode, MODES)
        choose("sync mode", spec.sync, SYNC_MODES)
        for device in spec.devices:
            canonical(device)
        if not (spec.ops and spec.sizes and spec.dtypes and spec.devices and spec.modes):
            raise ValueError("an empty list of ops, sizes, dtypes, devices or modes")
        if any(size < 1 for size in spec.sizes):
            raise ValueError(f"sizes must be positive, found {min(spec.sizes)}")
        spec.policy.validate()
    except (UsageError, KeyError, TypeError, ValueError, AttributeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"{where} holds no valid sweep spec ({detail}); the run cannot be resumed") from None
    return spec


def _max_call_time_from_meta(meta: dict[str, Any], run_dir: Path) -> float:
    guards = meta.get("guards")
    value = guards.get("max_call_time", DEFAULT_MAX_CALL_TIME) if isinstance(guards, dict) else DEFAULT_MAX_CALL_TIME
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise UsageError(f"{str(run_dir / META)!r}: guards.max_call_time {value!r} is not positive seconds; "
                         "the run cannot be resumed")
    return float(value)


def _processes_from_meta(meta: dict[str, Any], spec: SweepSpec, run_dir: Path) -> int:
    value = meta.get("processes", 1)  # runs from before --processes ran in their own process
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= spec.rounds:
        raise UsageError(f"{str(run_dir / META)!r}: processes {value!r} is not a whole number from 1 to the "
                         f"run's {spec.rounds} rounds; the run cannot be resumed")
    return value


def plan_resume(run_dir: Path) -> Plan:
    """A plan that finishes the run in ``run_dir``. Reads and validates everything without importing
    TensorFlow; raises UsageError for a missing, empty, corrupt, other-schema or busy run directory.

    What is already done is read here for the plan line and the time guard; :func:`run_plan` reads it again
    under the run's lock, which is what decides (another process may have added cells in between)."""
    run_dir = Path(run_dir)
    require_writable_run(run_dir, "--resume")
    return plan_of_run(run_dir)


def plan_of_run(run_dir: Path, *, locked_by_parent: bool = False) -> Plan:
    """What is left of the run in ``run_dir``, read from its meta.json and cells.jsonl (see :func:`plan_resume`).

    ``locked_by_parent``: read by a worker process (devbench.workers) while the sweep that started it holds
    the run's lock and writes nothing meanwhile, so the log it reads is the one that decides."""
    meta = read_meta(run_dir)
    spec = spec_from_meta(meta, run_dir)
    time_guard = visit_guard(spec, _max_call_time_from_meta(meta, run_dir))
    processes = _processes_from_meta(meta, spec, run_dir)
    if not locked_by_parent:
        check_not_locked(run_dir)
    contents = read_cell_log(run_dir)
    logged = Reopened(contents=contents, torn=b"")
    prior = logged.records
    for record in prior:
        time_guard.observe(record)
    return Plan(spec=spec, run_dir=run_dir, time_guard=time_guard, meta=meta, done=logged.visits_done,
                settled=logged.settled, prior=prior, log_problems=list(contents.problems),
                shard=shard_of_meta(meta), processes=processes)


# ---------------------------------------------------------------------------------------------------------
# Machine changes between the start of a run and a resume

def machine_changes(before: dict[str, Any], now: dict[str, Any]) -> dict[str, list[Any]]:
    """``{what: [before, now]}`` for every fingerprint item that makes cells measured before and after a
    resume incomparable (:data:`devbench.machine.INCOMPARABLE_FIELDS`)."""
    from devbench.machine import incomparable_changes

    return {d.field: [d.base, d.new] for d in incomparable_changes(before, now)}


# ---------------------------------------------------------------------------------------------------------
# Running a plan


def run_plan(
    plan: Plan,
    *,
    argv: Sequence[str] = (),
    backend: Backend | None = None,
    on_start: Callable[[Cell], None] | None = None,
    on_result: Callable[[CellResult], None] | None = None,
    guard: Guard | None = None,
    handle_signals: bool = True,
    warn: Callable[[str], None] = warn_on_stderr,
    calibrate: bool | Calibrator | None = None,
    tf32: str = "default",
) -> Run:
    """Measure every cell of ``plan`` not yet done into its run directory and return the finished run.

    ``tf32`` (``on``, ``off``, ``default``; devbench.tf32) is applied to every framework of the spec's devices
    before anything is measured and recorded in meta.json with each framework's resulting state; a resume
    applies the run's own setting again.

    With no ``backend`` the default one is used (TensorFlow for its devices, numpy for the baseline); the
    spec's devices must exist, and the machine fingerprint includes TF's build and device details. ``guard``
    is the memory guard (default :class:`MemoryGuard`); the plan's time guard runs after it. Raises
    :class:`SweepInterrupted` after SIGINT/SIGTERM (with everything measured saved), UsageError for a busy or
    unusable directory.

    A plan with ``processes`` above 1 measures its rounds in worker processes (devbench.workers), each with
    the real backends and its own memory guard: ``backend`` and ``guard`` must then be None. A worker that
    crashes raises :class:`WorkerCrashed` (its ``run`` holds what was saved; meta.json says ``failed``).
    """
    from devbench.machine import fingerprint

    if plan.processes > 1 and (backend is not None or guard is not None):
        raise ValueError("worker processes make their own backends and memory guards: give neither with "
                         f"processes={plan.processes}")

    # The roofline (devbench.calibrate) goes into meta["calibration"] at the start; each row's pct_of_peak uses it.
    calibrator = sweep_calibrator(calibrate, real_backend=backend is None)
    init: dict[str, Any] | None = None
    if backend is None:
        from devbench.backends import default_backend, initialise
        from devbench.devices import discover, discover_frameworks, frameworks_of, resolve, tensorflow_fingerprint

        # Each device's first op, timed before discovery, calibration or a cell touches it: no cold_s pays it.
        init = initialise(plan.spec.devices)

        infos = discover()
        resolve(",".join(plan.spec.devices), [d.name for d in infos])  # a device that is not here: UsageError
        backend = default_backend()
        # The fingerprint lists the devices of every framework the sweep uses (a jax:gpu:0 run names its GPU).
        used = discover_frameworks(frameworks_of(plan.spec.devices)).devices
        machine = fingerprint(tensorflow_fingerprint(), [d.as_dict() for d in used or infos])
    else:
        machine = fingerprint()
    memory_guard = guard if guard is not None else MemoryGuard()
    spec = plan.spec
    from devbench import telemetry
    from devbench.tf32 import apply_tf32, frameworks_of

    setting = str((plan.meta or {}).get("tf32_setting") or tf32)
    tf32_applied = apply_tf32(setting, frameworks_of(spec.devices))
    if plan.meta is None:
        extra: dict[str, Any] = {"guards": {"max_call_time": plan.time_guard.max_call_time},
                                 "tf32_setting": setting, "tf32": tf32_applied, "gpu": telemetry.gpu_fingerprint(),
                                 "init": init, "processes": plan.processes}
        if plan.shard is not None:
            extra["shard"] = shard_meta(spec, plan.shard)
        session = RunSession.create(plan.run_dir, spec.to_dict(), machine, argv, extra=extra,
                                    handle_signals=handle_signals)
    else:
        session = RunSession.reopen(plan.run_dir, handle_signals=handle_signals)
    session.n_planned = plan.n_cells()
    session.n_visits_planned = len(plan.visits())
    session.learners.append(plan.time_guard.observe)
    memory_observe = getattr(memory_guard, "observe", None)
    if callable(memory_observe):
        session.learners.append(memory_observe)
    try:
        with session:
            if plan.meta is not None:
                _record_resume(session, plan, machine, argv, warn, init=init)
                for earlier in session.reopened.records if session.reopened else []:
                    for learn in session.learners:
                        learn(earlier)
            if "calibration" not in session.meta:
                session.update_meta(calibration=calibrator(spec) if calibrator is not None else None)

            def save(result: CellResult) -> None:
                session.record(result)
                if on_result is not None:
                    on_result(result)

            if plan.processes > 1:
                run_in_workers(plan.visits(), session, plan.processes, spec.rounds, on_start=on_start,
                               on_result=save, warn=warn)
            else:
                measure_visits(plan, plan.visits(), backend, str(session.meta.get("run_id") or plan.run_dir.name),
                               on_result=save, on_start=on_start, done=session.done, settled=session.settled,
                               guard=combine(memory_guard, plan.time_guard))
            session.complete()
    except WorkerCrashed as exc:
        exc.run = session.run
        raise
    assert session.run is not None
    return session.run


def measure_visits(plan: Plan, visits: Sequence[Visit], backend: Backend, run_id: str, *,
                   on_result: Callable[[CellResult], None], on_start: Callable[[Cell], None] | None,
                   done: Collection[tuple[Any, ...]], settled: Collection[tuple[Any, ...]], guard: Guard,
                   new_process: bool = False) -> None:
    """Make ``visits`` of the plan's sweep with its per-visit policy and seed (devbench.runner.run_visits);
    the one call the sweep's own process and a worker process (devbench.workers) both make."""
    spec = plan.spec
    run_visits(visits, backend, run_id, spec.policy.per_visit(spec.rounds), spec.seed, on_result=on_result,
               on_start=on_start, done=done, settled=settled, guard=guard,
               cell_budget=spec.policy.max_cell_time if spec.rounds > 1 else None, new_process=new_process)


def _record_resume(session: RunSession, plan: Plan, machine: dict[str, Any], argv: Sequence[str],
                   warn: Callable[[str], None], *, init: dict[str, Any] | None) -> None:
    """Warn about what the reopened log held and whether the machine changed; add a ``resumed`` entry."""
    reopened = session.reopened
    assert reopened is not None
    if reopened.torn:
        warn(f"cells.jsonl ended in a torn line ({len(reopened.torn)} bytes, a write cut short by a crash or "
             "kill -9); it was cut off and that cell will be measured again")
    other = reopened.other_problems
    if other:
        warn(f"cells.jsonl has {len(other)} line(s) that are not valid cell records, ignored "
             f"({'; '.join(other[:3])}{'; ...' if len(other) > 3 else ''})")
    meta = session.meta
    changes = machine_changes(meta.get("machine") or {}, machine)
    if changes:
        what = "; ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in changes.items())
        warn(f"RESUMING ON A DIFFERENT MACHINE OR SOFTWARE than this run started on: {what}. Cells measured "
             "before and after may not be comparable; both fingerprints are kept in meta.json "
             "('machine' and 'resumed')")
    entry: dict[str, Any] = {
        "at": utc_now(),
        "argv": list(argv),
        "previous_status": meta.get("status"),
        "cells_before": len(session.done),
        "torn_bytes_dropped": len(reopened.torn),
        "ignored_lines": len(other),
        "machine_changes": changes,
        "init": init,
    }
    if changes:
        entry["machine"] = machine
    meta.pop("error", None)
    session.update_meta(resumed=[*(meta.get("resumed") or []), entry], status="running", finished_at=None)


def execute(
    spec: SweepSpec,
    run_dir: Path,
    *,
    argv: Sequence[str] = (),
    backend: Backend | None = None,
    on_start: Callable[[Cell], None] | None = None,
    on_result: Callable[[CellResult], None] | None = None,
    guard: Guard | None = None,
    max_call_time: float = DEFAULT_MAX_CALL_TIME,
    handle_signals: bool = True,
    calibrate: bool | Calibrator | None = None,
    processes: int = 1,
) -> Run:
    """Measure every cell of ``spec`` into ``run_dir`` (created if needed) and return the finished run.

    With no ``backend`` the TensorFlow one is used (importing TensorFlow), and the machine fingerprint
    includes TF's build and device details. With no ``guard`` the memory guard protects the sweep; the time
    guard skips cells whose single call is predicted over ``max_call_time`` seconds. SIGINT/SIGTERM raise
    :class:`SweepInterrupted` once what was measured is saved (``handle_signals=False`` leaves signals alone).
    ``calibrate``: measure the machine's ceilings first (devbench.calibrate; default: only with the real
    backends); False skips it (``--no-calibrate``), a callable replaces the measurement. ``processes``: measure
    the rounds in that many fresh worker processes, one after another (devbench.workers; needs the real
    backends).
    """
    plan = plan_new(spec, Path(run_dir), max_call_time=max_call_time, processes=processes)
    return run_plan(plan, argv=argv, backend=backend, on_start=on_start, on_result=on_result, guard=guard,
                    handle_signals=handle_signals, calibrate=calibrate)


def resume(
    run_dir: Path,
    *,
    argv: Sequence[str] = (),
    backend: Backend | None = None,
    on_start: Callable[[Cell], None] | None = None,
    on_result: Callable[[CellResult], None] | None = None,
    guard: Guard | None = None,
    handle_signals: bool = True,
    warn: Callable[[str], None] = warn_on_stderr,
) -> Run:
    """Finish an interrupted or crashed run: the spec from its meta.json, only the cells not yet in its log."""
    return run_plan(plan_resume(Path(run_dir)), argv=argv, backend=backend, on_start=on_start,
                    on_result=on_result, guard=guard, handle_signals=handle_signals, warn=warn)
