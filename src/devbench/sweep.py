"""One sweep, start to finish, into a run directory — and resumed later. The plain functions behind
``devbench sweep`` (the CLI adds argument parsing and the progress bar).

A :class:`devbench.plan.Plan` is what is left to measure, worked out before any framework is imported or
anything is written (:func:`plan_new`, :func:`plan_resume`; re-exported here). :func:`run_plan` prepares the
machine (devbench.prepare: device initialisation, TF32, discovery and fingerprint, guards, the per-visit
policy; a resume, the workers and refine prepare the same way), calibrates it, and measures the plan through
a :class:`devbench.session.RunSession`, the one writer of a run directory (lock, cell log, signals,
pct_of_peak, final files; refine uses the same session).

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

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from devbench.backends.base import Backend
from devbench.calibrate import Calibrator, sweep_calibrator
from devbench.formatting import utc_now
from devbench.guards import DEFAULT_MAX_CALL_TIME, Guard
from devbench.plan import Plan, plan_new, plan_of_run, plan_resume
from devbench.prepare import machine_changes, prepare_machine, spec_from_meta
from devbench.runner import CellResult
from devbench.session import RunSession, SweepInterrupted, resume_command, warn_on_stderr
from devbench.shard import shard_meta
from devbench.spec import Cell, SweepSpec
from devbench.store import Run
from devbench.workers import WorkerCrashed, run_in_workers

__all__ = ["Plan", "SweepInterrupted", "WorkerCrashed", "execute", "machine_changes", "plan_new", "plan_of_run",
           "plan_resume", "resume", "resume_command", "run_plan", "spec_from_meta"]


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
) -> Run:
    """Measure every cell of ``plan`` not yet done into its run directory and return the finished run.

    The machine is prepared first (devbench.prepare.prepare_machine: device initialisation, the plan's TF32
    setting, discovery and fingerprint, guards, the per-visit policy and cell budget), then calibrated, then
    measured. With no ``backend`` the real ones are used (each device's framework, numpy for the baseline);
    the spec's devices must exist. ``guard`` is the memory guard (default :class:`MemoryGuard`); the plan's
    time guard runs after it. Raises :class:`SweepInterrupted` after SIGINT/SIGTERM (with everything measured
    saved), UsageError for a busy or unusable directory.

    A plan with ``processes`` above 1 measures its rounds in worker processes (devbench.workers), each with
    the real backends and its own memory guard: ``backend`` and ``guard`` must then be None. A worker that
    crashes raises :class:`WorkerCrashed` (its ``run`` holds what was saved; meta.json says ``failed``).
    """
    if plan.processes > 1 and (backend is not None or guard is not None):
        raise ValueError("worker processes make their own backends and memory guards: give neither with "
                         f"processes={plan.processes}")

    # The roofline (devbench.calibrate) goes into meta["calibration"] at the start; each row's pct_of_peak uses it.
    calibrator = sweep_calibrator(calibrate, real_backend=backend is None)
    prepared = prepare_machine(plan.settings, time_guard=plan.time_guard, backend=backend, memory_guard=guard)
    machine = prepared.machine
    assert machine is not None
    for line in prepared.host_warnings():  # before the first visit, never failing it; stderr whatever ``warn``
        warn_on_stderr(f"host: {line}")  # is: they are about this machine now, not about the run's files
    spec = plan.spec
    if plan.meta is None:
        extra: dict[str, Any] = {**prepared.meta_fields(), "processes": plan.processes}
        if plan.shard is not None:
            extra["shard"] = shard_meta(spec, plan.shard)
        session = RunSession.create(plan.run_dir, spec.to_dict(), machine, argv, extra=extra,
                                    handle_signals=handle_signals)
    else:
        session = RunSession.reopen(plan.run_dir, handle_signals=handle_signals)
    session.n_planned = plan.n_cells()
    session.n_visits_planned = len(plan.visits())
    session.learners.extend(prepared.learners)
    try:
        with session:
            if plan.meta is not None:
                _record_resume(session, plan, machine, argv, warn, init=prepared.init,
                               host_check=prepared.host_check)
                prepared.learn(session.reopened.records if session.reopened else [])
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
                prepared.measure(plan.visits(), str(session.meta.get("run_id") or plan.run_dir.name),
                                 on_result=save, on_start=on_start, done=session.done, settled=session.settled)
            session.complete()
    except WorkerCrashed as exc:
        exc.run = session.run
        raise
    assert session.run is not None
    return session.run


def _record_resume(session: RunSession, plan: Plan, machine: dict[str, Any], argv: Sequence[str],
                   warn: Callable[[str], None], *, init: dict[str, Any] | None,
                   host_check: dict[str, Any] | None = None) -> None:
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
        "host_check": host_check,
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
    tf32: str = "default",
    energy: str = "auto",
) -> Run:
    """Measure every cell of ``spec`` into ``run_dir`` (created if needed) and return the finished run.

    With no ``backend`` the real ones are used (each device's framework), and the machine fingerprint
    includes their devices and TF's build. With no ``guard`` the memory guard protects the sweep; the time
    guard skips cells whose single call is predicted over ``max_call_time`` seconds. SIGINT/SIGTERM raise
    :class:`SweepInterrupted` once what was measured is saved (``handle_signals=False`` leaves signals alone).
    ``calibrate``: measure the machine's ceilings first (devbench.calibrate; default: only with the real
    backends); False skips it (``--no-calibrate``), a callable replaces the measurement. ``processes``: measure
    the rounds in that many fresh worker processes, one after another (devbench.workers; needs the real
    backends). ``tf32``: ``--tf32`` (on, off, default; devbench.tf32), applied before anything is measured.
    ``energy``: ``--energy`` (auto, off; devbench.energy).
    """
    plan = plan_new(spec, Path(run_dir), max_call_time=max_call_time, processes=processes, tf32=tf32,
                    energy=energy)
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
