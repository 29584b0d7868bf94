"""``devbench refine RUN_DIR`` and ``devbench sweep --refine``: measure extra sizes inside each crossover
bracket, bisecting in log space, until the bracket is within 5 % of its size or the rounds run out.

A refine measures like the sweep it refines: the machine is prepared from the run's meta.json by
:func:`devbench.prepare.prepare_machine`, as a ``--resume`` prepares it (device initialisation, the run's TF32
setting, its devices checked and the machine fingerprinted, the memory guard and the run's
``--max-call-time`` time guard, both taught the run's log, the per-visit policy and cell budget); a machine
that differs from the run's is warned about and recorded, as a resume does. The new cells go through a
:class:`devbench.session.RunSession`, like a sweep's: under the run's lock, into its own cells.jsonl (so the
run directory stays the one source of truth), with ``pct_of_peak`` from the run's calibration, and
interruptible without losing a cell. Each cell is measured by the backend of its device (the numpy baseline
by numpy, TensorFlow devices by TensorFlow), in this process (a run of ``--processes P`` is refined in one).
The planning and the stopping rule are :func:`devbench.analysis.refine`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from devbench.analysis import Measured, RefineCell, Refinement, refine, split_mode
from devbench.backends.base import Backend
from devbench.formatting import utc_now
from devbench.guards import Guard
from devbench.prepare import Prepared, RunSettings, machine_changes, prepare_machine
from devbench.runner import CellResult
from devbench.schema import IDENTITY
from devbench.session import RunSession, require_writable_run, warn_on_stderr
from devbench.spec import Cell, interleaved_visits
from devbench.store import check_not_locked, read_cell_log, read_meta, tables_from_log

DEFAULT_ROUNDS = 6
REL_TOL = 0.05


def refine_command(run_dir: Path) -> str:
    return f"devbench refine {run_dir}"


def prepare_refine(run_dir: Path, *, backend: Backend | None = None, guard: Guard | None = None) -> Prepared:
    """The machine prepared for refining the run in ``run_dir`` exactly as for the sweep it refines, from the
    run's meta.json (devbench.prepare). Refuses, before any framework is imported, a run that cannot be
    appended to (missing, corrupt, being written by another process)."""
    require_writable_run(run_dir, "refine")
    settings = RunSettings.from_meta(read_meta(run_dir), run_dir, cannot="the run cannot be refined")
    check_not_locked(run_dir)  # the session checks again under the lock; this spares a framework's start-up
    return prepare_machine(settings, backend=backend, memory_guard=guard)


def refine_run(
    run_dir: Path,
    *,
    max_rounds: int = DEFAULT_ROUNDS,
    backend: Backend | None = None,
    guard: Guard | None = None,
    on_start: Callable[[Cell], None] | None = None,
    on_result: Callable[[CellResult], None] | None = None,
    handle_signals: bool = True,
    warn: Callable[[str], None] = warn_on_stderr,
) -> Refinement:
    """Refine every crossover of the run in ``run_dir``; returns what was measured and whether it converged.

    ``backend``: None for the real ones (a test's fake otherwise); ``guard``: the memory guard (default
    :class:`devbench.guards.MemoryGuard`), the run's time guard runs after it. Raises UsageError when the run
    cannot be appended to (missing, corrupt, being written by another process, a device not here) and
    :class:`devbench.session.SessionInterrupted` after SIGINT/SIGTERM, with every refined cell saved.
    """
    run_dir = Path(run_dir)
    prepared = prepare_refine(run_dir, backend=backend, guard=guard)
    spec = prepared.spec
    session = RunSession.reopen(run_dir, handle_signals=handle_signals, again=refine_command(run_dir),
                                keep_status=True)
    session.learners.extend(prepared.learners)
    with session:
        assert session.reopened is not None
        prepared.learn(session.reopened.records)
        for line in prepared.host_warnings():  # about this machine now (stderr, as a sweep's)
            warn_on_stderr(f"host: {line}")
        changes = machine_changes(session.meta.get("machine") or {}, prepared.machine or {})
        if changes:
            what = "; ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in changes.items())
            warn(f"REFINING ON A DIFFERENT MACHINE OR SOFTWARE than this run was measured on: {what}. The "
                 "refined cells may not be comparable with the run's; the changes are kept in meta.json "
                 "('refinements')")
        results, samples = tables_from_log(session.reopened.contents, session.meta)
        run_id = str(session.meta.get("run_id") or run_dir.name)

        def measure(cells: list[RefineCell]) -> Measured:
            """Visit the new cells as a sweep visits its own: ``spec.rounds`` rounds, each device of a size
            back to back in a rotating order, under the run's guards, per-visit policy and cell budget; return
            their cells' rows and samples (with rounds, so the crossing's decisiveness is judged as the
            sweep's)."""
            wanted = [spec.planned_cell(Cell(size=c.size, op=c.op, dtype=c.dtype, device=device,
                                             mode=split_mode(c.mode)[0], sync=split_mode(c.mode)[1] or spec.sync))
                      for c in cells for device in c.devices]
            visits = interleaved_visits(list(dict.fromkeys(wanted)), spec.rounds)

            def save(result: CellResult) -> None:
                session.record(result)
                if on_result is not None:
                    on_result(result)

            prepared.measure(visits, run_id, on_result=save, on_start=on_start)
            measured, measured_samples = tables_from_log(read_cell_log(run_dir), session.meta)
            keys = {cell.key() for cell in wanted}

            def of_wanted(table: pd.DataFrame) -> pd.DataFrame:
                rows: pd.DataFrame = table.loc[[key in keys for key in table[list(IDENTITY)].itertuples(
                    index=False, name=None)]]
                return rows

            return of_wanted(measured), of_wanted(measured_samples)

        outcome = refine(results, measure, max_rounds=max_rounds, rel_tol=REL_TOL, samples=samples)
        entry: dict[str, Any] = {
            "at": utc_now(),
            "steps": outcome.rounds,
            "converged": outcome.converged,
            "sizes": sorted({int(c.size) for c in outcome.measured}),
            "skipped": [crossing.describe() for crossing in outcome.skipped],
            "init": prepared.init,
            "tf32": prepared.tf32,
            "host_check": prepared.host_check,
            "machine_changes": changes,
        }
        if changes:
            entry["machine"] = prepared.machine
        session.update_meta(refinements=[*(session.meta.get("refinements") or []), entry])
        session.complete()
    return outcome
