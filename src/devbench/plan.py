"""Plans: what a sweep, or the rest of a run, has left to measure, worked out before any framework is imported
or anything is written (:class:`Plan`, :func:`plan_new`, :func:`plan_resume`, :func:`plan_of_run`).

Its own module, below both devbench.sweep (which runs a plan) and devbench.workers (whose worker processes
read the plan of the run they work for), so that neither imports the other's side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devbench.errors import UsageError
from devbench.formatting import format_duration
from devbench.guards import DEFAULT_MAX_CALL_TIME, TimeGuard
from devbench.prepare import RunSettings
from devbench.schema import VisitRecord
from devbench.session import Reopened, require_writable_run
from devbench.shard import ShardSpec, shard_cells, shard_of_meta
from devbench.spec import Cell, SweepSpec, Visit
from devbench.store import META, check_new_run_dir, check_not_locked, read_cell_log, read_meta

__all__ = ["Plan", "check_processes", "plan_new", "plan_of_run", "plan_resume"]


def check_processes(processes: int, rounds: int) -> None:
    """UsageError unless ``processes`` worker processes can share ``rounds`` rounds (each measures whole rounds;
    ``--processes``, devbench.workers)."""
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise UsageError(f"--processes {processes!r} must be a whole number >= 1")
    if processes > rounds:
        raise UsageError(f"--processes {processes} is more than --rounds {rounds}: each worker process measures "
                         f"whole rounds; give 1 to {rounds}")


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
    tf32: str = "default"
    """``--tf32`` (devbench.tf32): a new run's from the command line, a resume's from meta.json."""
    energy: str = "auto"
    """``--energy`` (devbench.energy), like ``tf32``; ``idle_w``: the run's idle power by meter (meta.json)."""
    idle_w: dict[str, float] = field(default_factory=dict)

    @property
    def resuming(self) -> bool:
        return self.meta is not None

    @property
    def settings(self) -> RunSettings:
        """What the machine is prepared with (devbench.prepare), the same in every process of the run."""
        return RunSettings(spec=self.spec, max_call_time=self.time_guard.max_call_time, tf32=self.tf32,
                           energy=self.energy, idle_w=self.idle_w)

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


def plan_new(spec: SweepSpec, run_dir: Path, *, max_call_time: float = DEFAULT_MAX_CALL_TIME,
             shard: ShardSpec | None = None, processes: int = 1, tf32: str = "default", energy: str = "auto"
             ) -> Plan:
    """A plan for a new run into ``run_dir`` (of the whole sweep, or of ``shard``, its rounds in ``processes``
    worker processes, TF32 as ``tf32`` says); checks that the directory can be created (creates nothing)."""
    settings = RunSettings(spec=spec, max_call_time=max_call_time, tf32=tf32, energy=energy)
    check_processes(processes, spec.rounds)
    check_new_run_dir(run_dir)
    if shard is not None:
        shard_cells(spec, shard)  # a shard count above the number of curves is a UsageError now, not later
    return Plan(spec=spec, run_dir=run_dir, time_guard=settings.time_guard(), shard=shard, processes=processes,
                tf32=settings.tf32, energy=settings.energy)


def _processes_from_meta(meta: dict[str, Any], spec: SweepSpec, run_dir: Path) -> int:
    value = meta.get("processes", 1)  # runs from before --processes ran in their own process
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= spec.rounds:
        raise UsageError(f"{str(run_dir / META)!r}: processes {value!r} is not a whole number from 1 to the "
                         f"run's {spec.rounds} rounds; the run cannot be resumed")
    return value


def plan_resume(run_dir: Path) -> Plan:
    """A plan that finishes the run in ``run_dir``. Reads and validates everything without importing
    TensorFlow; raises UsageError for a missing, empty, corrupt, other-schema or busy run directory.

    What is already done is read here for the plan line and the time guard; :func:`devbench.sweep.run_plan`
    reads it again under the run's lock, which is what decides (another process may have added cells in
    between)."""
    run_dir = Path(run_dir)
    require_writable_run(run_dir, "--resume")
    return plan_of_run(run_dir)


def plan_of_run(run_dir: Path, *, locked_by_parent: bool = False) -> Plan:
    """What is left of the run in ``run_dir``, read from its meta.json and cells.jsonl (see :func:`plan_resume`).

    ``locked_by_parent``: read by a worker process (devbench.workers) while the sweep that started it holds
    the run's lock and writes nothing meanwhile, so the log it reads is the one that decides."""
    meta = read_meta(run_dir)
    settings = RunSettings.from_meta(meta, run_dir)
    spec = settings.spec
    time_guard = settings.time_guard()
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
                shard=shard_of_meta(meta), processes=processes, tf32=settings.tf32, energy=settings.energy,
                idle_w=dict(settings.idle_w))
