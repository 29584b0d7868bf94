"""``devbench refine RUN_DIR`` and ``devbench sweep --refine``: measure extra sizes inside each crossover
bracket, bisecting in log space, until the bracket is within 5 % of its size or the rounds run out.

The new cells go through a :class:`devbench.session.RunSession`, like a sweep's: under the run's lock, into
its own cells.jsonl (so the run directory stays the one source of truth), with ``pct_of_peak`` from the run's
calibration, and interruptible without losing a cell. Each cell is measured by the backend of its device (the
numpy baseline by numpy, TensorFlow devices by TensorFlow). The planning and the stopping rule are
:func:`devbench.analysis.refine`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from devbench.analysis import Measured, RefineCell, Refinement, refine, split_mode
from devbench.backends.base import Backend
from devbench.guards import Guard, MemoryGuard
from devbench.runner import CellResult, run_visits
from devbench.schema import IDENTITY
from devbench.session import RunSession, require_writable_run
from devbench.spec import Cell, SweepSpec, interleaved_visits
from devbench.store import read_cell_log, tables_from_log, utc_now

DEFAULT_ROUNDS = 6
REL_TOL = 0.05


def refine_command(run_dir: Path) -> str:
    return f"devbench refine {run_dir}"


def refine_run(
    run_dir: Path,
    *,
    max_rounds: int = DEFAULT_ROUNDS,
    backend: Backend | None = None,
    guard: Guard | None = None,
    on_start: Callable[[Cell], None] | None = None,
    on_result: Callable[[CellResult], None] | None = None,
    handle_signals: bool = True,
) -> Refinement:
    """Refine every crossover of the run in ``run_dir``; returns what was measured and whether it converged.

    Raises UsageError when the run cannot be appended to (missing, corrupt, being written by another process)
    and :class:`devbench.session.SessionInterrupted` after SIGINT/SIGTERM, with every refined cell saved.
    """
    run_dir = Path(run_dir)
    require_writable_run(run_dir, "refine")
    guard = guard if guard is not None else MemoryGuard()
    session = RunSession.reopen(run_dir, handle_signals=handle_signals, again=refine_command(run_dir),
                                keep_status=True)
    with session:
        assert session.reopened is not None
        spec = SweepSpec.from_dict(session.meta["spec"])
        if backend is None:
            from devbench.backends import default_backend

            backend = default_backend()  # routes numpy:CPU to numpy, TF devices to TensorFlow
        active: Backend = backend
        results, samples = tables_from_log(session.reopened.contents, session.meta)
        run_id = str(session.meta.get("run_id") or run_dir.name)

        def measure(cells: list[RefineCell]) -> Measured:
            """Visit the new cells as a sweep visits its own: ``spec.rounds`` rounds, each device of a size
            back to back in a rotating order, under the per-visit policy; return their cells' rows and samples
            (with rounds, so the crossing's decisiveness is judged as the sweep's)."""
            wanted = [spec.planned_cell(Cell(size=c.size, op=c.op, dtype=c.dtype, device=device,
                                             mode=split_mode(c.mode)[0], sync=split_mode(c.mode)[1] or spec.sync))
                      for c in cells for device in c.devices]
            visits = interleaved_visits(list(dict.fromkeys(wanted)), spec.rounds)

            def save(result: CellResult) -> None:
                session.record(result)
                if on_result is not None:
                    on_result(result)

            run_visits(visits, active, run_id, spec.policy.per_visit(spec.rounds), spec.seed, on_result=save,
                       on_start=on_start, guard=guard)
            measured, measured_samples = tables_from_log(read_cell_log(run_dir), session.meta)
            keys = {cell.key() for cell in wanted}

            def of_wanted(table: pd.DataFrame) -> pd.DataFrame:
                rows: pd.DataFrame = table.loc[[key in keys for key in table[list(IDENTITY)].itertuples(
                    index=False, name=None)]]
                return rows

            return of_wanted(measured), of_wanted(measured_samples)

        outcome = refine(results, measure, max_rounds=max_rounds, rel_tol=REL_TOL, samples=samples)
        session.update_meta(refinements=[*(session.meta.get("refinements") or []), {
            "at": utc_now(),
            "steps": outcome.rounds,
            "converged": outcome.converged,
            "sizes": sorted({int(c.size) for c in outcome.measured}),
            "skipped": [crossing.describe() for crossing in outcome.skipped],
        }])
        session.complete()
    return outcome
