"""``devbench refine RUN_DIR`` and ``devbench sweep --refine``: measure extra sizes inside each crossover
bracket, bisecting in log space, until the bracket is within 5 % of its size or the rounds run out.

The new cells are appended to the run's own cells.jsonl, so the run directory stays the one source of truth;
the planning and the stopping rule are :func:`devbench.analysis.refine`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from devbench.analysis import RefineCell, Refinement, refine, split_mode
from devbench.backends.base import Backend
from devbench.guards import Guard, MemoryGuard
from devbench.runner import CellResult, run_cell
from devbench.spec import Cell, SweepSpec
from devbench.store import CellLog, finalize, load_run, read_meta, utc_now, write_json

DEFAULT_ROUNDS = 6
REL_TOL = 0.05


def refine_run(
    run_dir: Path,
    *,
    max_rounds: int = DEFAULT_ROUNDS,
    backend: Backend | None = None,
    guard: Guard | None = None,
    on_start: Callable[[Cell], None] | None = None,
    on_result: Callable[[CellResult], None] | None = None,
) -> Refinement:
    """Refine every crossover of the run in ``run_dir``; returns what was measured and whether it converged."""
    run = load_run(run_dir)
    spec = SweepSpec.from_dict(run.meta["spec"])
    if backend is None:
        from devbench.backends.tf import TFBackend

        backend = TFBackend()
    guard = guard if guard is not None else MemoryGuard()
    log = CellLog(run_dir)

    def measure(cells: list[RefineCell]) -> pd.DataFrame:
        rows = []
        for wanted in cells:
            mode, sync = split_mode(wanted.mode)  # transfer timings are analysed as mode "eager+transfer"
            for device in wanted.devices:
                cell = Cell(size=wanted.size, op=wanted.op, dtype=wanted.dtype, device=device, mode=mode,
                            sync=sync or spec.sync)
                if on_start is not None:
                    on_start(cell)
                result = run_cell(backend, run.meta.get("run_id", run_dir.name), cell, spec.policy, spec.seed,
                                  guard=guard)
                log.append(result.record, result.samples)
                if on_result is not None:
                    on_result(result)
                rows.append(result.record.as_dict())
        measured: pd.DataFrame = pd.DataFrame(rows)
        return measured

    try:
        outcome = refine(run.results, measure, max_rounds=max_rounds, rel_tol=REL_TOL)
    finally:
        finalize(run_dir)
    meta = read_meta(run_dir)
    meta.setdefault("refinements", []).append({
        "at": utc_now(),
        "rounds": outcome.rounds,
        "converged": outcome.converged,
        "sizes": sorted({int(c.size) for c in outcome.measured}),
    })
    write_json(run_dir / "meta.json", meta)
    return outcome
