"""One sweep, start to finish, into a run directory: meta.json first, each cell appended as it finishes,
final tables written at the end whatever happens (normal end, error, interruption) — and resumed later.

This is the plain function behind ``devbench sweep``; the CLI adds argument parsing and the progress bar.

Interruption. While a sweep runs, SIGINT (Ctrl-C) and SIGTERM raise :class:`SweepInterrupted` at the next
Python instruction: the current cell is abandoned (not recorded; a resume measures it), the final tables are
rebuilt from cells.jsonl, meta.json says ``interrupted``, and the exception (a KeyboardInterrupt) carries the
exit code, 128 + the signal number (130, 143), and a message telling how to resume. A first signal that
arrives while a cell is being appended or the final files are being written waits until that write is done.
A second signal exits at once (``os._exit``): every final file is written to a temporary name and renamed,
and cells.jsonl is appended one whole line at a time, so whatever is on disk is complete; cells.jsonl stays
the source of truth for a resume.

Resume. :func:`resume` (``devbench sweep --resume RUN_DIR``) reads the spec from meta.json, skips every cell
already in cells.jsonl (whatever its status), measures the rest into the same log, and rebuilds the same final
files an uninterrupted run would have. A torn last line of the log is cut off with a warning; a run another
process is writing is refused; a different machine or TensorFlow is warned about and recorded in meta.json.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from devbench.calibrate import Calibrator, annotate, sweep_calibrator
from devbench.errors import UsageError, choose
from devbench.formatting import format_duration as format_seconds
from devbench.guards import DEFAULT_MAX_CALL_TIME, Guard, MemoryGuard, TimeGuard, combine
from devbench.runner import Backend, CellResult, run_sweep
from devbench.schema import Record
from devbench.spec import DTYPES, MODES, SYNC_MODES, Cell, SweepSpec
from devbench.store import (
    CELLS,
    META,
    CellLog,
    Run,
    RunLock,
    check_new_run_dir,
    check_not_locked,
    finalize,
    new_meta,
    prepare_run_dir,
    read_cell_log,
    read_meta,
    repair_torn_tail,
    utc_now,
    write_json,
)

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def resume_command(run_dir: Path) -> str:
    return f"devbench sweep --resume {run_dir}"


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped by SIGINT or SIGTERM. Everything measured is on disk; ``run`` is what was saved.

    A KeyboardInterrupt, so that code which handles Ctrl-C handles it. ``exit_code`` is 128 + the signal
    number (130 for SIGINT, 143 for SIGTERM), what a shell reports for a process the signal ended.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(_signal_name(signum))
        self.signum = signum
        self.exit_code = 128 + signum
        self.run: Run | None = None
        self.n_planned = 0

    @property
    def message(self) -> str:
        """What to tell the user: what was kept, where, and how to go on (two lines, no newline at the end)."""
        name = _signal_name(self.signum)
        if self.run is None or self.run.path is None:
            return f"devbench: interrupted by {name} before anything was measured"
        kept = len(self.run.results)
        if self.run.meta.get("status") == "complete":
            return f"devbench: {name} received; the run was already complete: {self.run.path}"
        return (f"devbench: interrupted by {name}; {kept} of {self.n_planned} cells are saved in {self.run.path}\n"
                f"devbench: resume with: {resume_command(self.run.path)}")


class _Signals:
    """Turns SIGINT/SIGTERM into :class:`SweepInterrupted` for the duration of a sweep (main thread only).

    ``deferred()`` marks a critical section (appending a cell, writing the final files): a first signal that
    arrives inside it is held until it ends (:meth:`check` raises it). A second signal exits the process at
    once. Handlers in place before (and signals the parent told us to ignore) are restored afterwards.
    """

    def __init__(self, enabled: bool, run_dir: Path) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.run_dir = run_dir
        self.received: int | None = None
        self.pending = False
        self._depth = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if self.enabled:
            for signum in HANDLED_SIGNALS:
                previous = signal.getsignal(signum)
                if previous is signal.SIG_IGN:  # e.g. a background job of a non-interactive shell
                    continue
                self._previous[signum] = previous
                signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if self.received is not None:
            self._exit_now(signum)
        self.received = signum
        if self._depth:
            self.pending = True
            return
        raise SweepInterrupted(signum)

    def _exit_now(self, signum: int) -> None:
        """Second signal: leave without unwinding. Only complete files are on disk (atomic renames, whole
        lines appended), so nothing is corrupted; cells.jsonl holds every finished cell."""
        message = (f"\ndevbench: second {_signal_name(signum)}: exiting at once; the files in {self.run_dir} are "
                   f"complete and cells.jsonl holds every finished cell\n"
                   f"devbench: resume with: {resume_command(self.run_dir)}\n")
        with contextlib.suppress(OSError):
            if os.isatty(2):
                os.write(2, b"\x1b[?25h")  # the progress bar hid the cursor
            os.write(2, message.encode())
        os._exit(128 + signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    def check(self) -> None:
        """Raise a signal that arrived during a critical section, once it is over."""
        if self.pending and not self._depth and self.received is not None:
            self.pending = False
            raise SweepInterrupted(self.received)


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
    """``Cell.key()`` of every cell already in cells.jsonl."""
    prior: list[Record] = field(default_factory=list)
    """The records already in cells.jsonl (guards learn from them)."""
    log_problems: list[str] = field(default_factory=list)
    """Lines of cells.jsonl that are ignored, and why."""

    @property
    def resuming(self) -> bool:
        return self.meta is not None

    def cells_left(self) -> list[Cell]:
        return [cell for cell in self.spec.cells() if cell.key() not in self.done]

    def describe(self) -> str:
        """One line for stderr before the sweep starts: how many cells, and a rough time estimate."""
        left = self.cells_left()
        total = self.spec.n_cells()
        estimates = [self.time_guard.estimate_cell_seconds(cell) for cell in left]
        skips = sum(1 for cell in left if self.time_guard(cell) is not None)
        head = (f"plan: {len(left)} of {total} cells left ({total - len(left)} already measured)"
                if self.resuming else f"plan: {total} cell{'s' if total != 1 else ''}")
        if not left:
            return f"{head}; nothing left to measure"
        budget = format_seconds(self.spec.policy.max_cell_time)
        overhead = format_seconds(self.time_guard.overhead_s)
        notes = [f"rough estimate {format_seconds(sum(estimates))}",
                 f"per cell: {budget} budget, ~{overhead} set-up and clean-up, its cold call; "
                 "early convergence takes less, slow calls more"]
        if skips:
            notes.append(f"{skips} predicted over --max-call-time {format_seconds(self.time_guard.max_call_time)}")
        return f"{head}, {notes[0]} ({'; '.join(notes[1:])})"


def plan_new(spec: SweepSpec, run_dir: Path, *, max_call_time: float = DEFAULT_MAX_CALL_TIME) -> Plan:
    """A plan for a new run into ``run_dir``; checks that the directory can be created (creates nothing)."""
    check_new_run_dir(run_dir)
    return Plan(spec=spec, run_dir=run_dir, time_guard=TimeGuard(max_call_time, spec.policy))


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


def plan_resume(run_dir: Path) -> Plan:
    """A plan that finishes the run in ``run_dir``. Reads and validates everything without importing
    TensorFlow; raises UsageError for a missing, empty, corrupt, other-schema or busy run directory."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise UsageError(f"--resume {str(run_dir)!r}: no such run directory")
    if not run_dir.is_dir():
        raise UsageError(f"--resume {str(run_dir)!r} is not a directory")
    if not (run_dir / META).exists():
        raise UsageError(f"--resume {str(run_dir)!r} is not a devbench run directory (no {META})")
    meta = read_meta(run_dir)
    spec = spec_from_meta(meta, run_dir)
    time_guard = TimeGuard(_max_call_time_from_meta(meta, run_dir), spec.policy)
    if not os.access(run_dir, os.W_OK | os.X_OK) or (
        (run_dir / CELLS).exists() and not os.access(run_dir / CELLS, os.W_OK)
    ):
        raise UsageError(f"--resume {str(run_dir)!r} is not writable")
    check_not_locked(run_dir)
    contents = read_cell_log(run_dir)
    prior = [Record(**record) for record in contents.records]
    for record in prior:
        time_guard.observe(record)
    return Plan(spec=spec, run_dir=run_dir, time_guard=time_guard, meta=meta,
                done=frozenset(record.key() for record in prior), prior=prior,
                log_problems=list(contents.problems))


# ---------------------------------------------------------------------------------------------------------
# Machine changes between the start of a run and a resume

MACHINE_KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "hostname": lambda m: m.get("hostname"),
    "cpu_model": lambda m: (m.get("cpu") or {}).get("model"),
    "tensorflow": lambda m: (m.get("tensorflow") or {}).get("version"),
    "devices": lambda m: sorted(
        f"{d.get('name')}" + (f" ({d['details']['device_name']})"
                              if isinstance(d.get("details"), dict) and d["details"].get("device_name") else "")
        for d in (m.get("devices") or []) if isinstance(d, dict)
    ),
    "devbench": lambda m: (m.get("packages") or {}).get("devbench"),
}
"""What must match for a resumed run's cells to be comparable with the ones measured before."""


def machine_changes(before: dict[str, Any], now: dict[str, Any]) -> dict[str, list[Any]]:
    """``{what: [before, now]}`` for every fingerprint item of :data:`MACHINE_KEYS` that differs."""
    changes: dict[str, list[Any]] = {}
    for name, get in MACHINE_KEYS.items():
        old = get(before if isinstance(before, dict) else {})
        new = get(now)
        if old != new:
            changes[name] = [old, new]
    return changes


def _warn(message: str) -> None:
    print(f"devbench: warning: {message}", file=sys.stderr, flush=True)


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
    warn: Callable[[str], None] = _warn,
    calibrate: bool | Calibrator | None = None,
) -> Run:
    """Measure every cell of ``plan`` not yet done into its run directory and return the finished run.

    With no ``backend`` the TensorFlow one is used (importing TensorFlow); the spec's devices must exist,
    and the machine fingerprint includes TF's build and device details. ``guard`` is the memory guard
    (default :class:`MemoryGuard`); the plan's time guard runs after it. Raises :class:`SweepInterrupted`
    after SIGINT/SIGTERM (with everything measured saved), UsageError for a busy or unusable directory.
    """
    from devbench.machine import fingerprint

    # The roofline (devbench.calibrate) goes into meta["calibration"] at the start; each row's pct_of_peak uses it.
    calibrator = sweep_calibrator(calibrate, real_backend=backend is None)
    if backend is None:
        from devbench.backend import default_backend
        from devbench.devices import discover, resolve, tensorflow_fingerprint

        infos = discover()
        resolve(",".join(plan.spec.devices), [d.name for d in infos])  # a device that is not here: UsageError
        backend = default_backend()  # TensorFlow, and numpy for the numpy:CPU baseline
        machine = fingerprint(tensorflow_fingerprint(), [d.as_dict() for d in infos])
    else:
        machine = fingerprint()
    memory_guard = guard if guard is not None else MemoryGuard()
    learners: list[Callable[[Record], None]] = [plan.time_guard.observe]
    memory_observe = getattr(memory_guard, "observe", None)
    if callable(memory_observe):
        learners.append(memory_observe)
        for earlier in plan.prior:  # the time guard learned these when the plan was made
            memory_observe(earlier)
    run_dir = plan.run_dir
    spec = plan.spec
    lock = RunLock(run_dir)
    meta: dict[str, Any] = {}
    status = "interrupted"
    stop: SweepInterrupted | None = None
    with _Signals(handle_signals, run_dir) as signals:
        try:
            with signals.deferred():
                meta = _open_run(plan, lock, machine, argv, warn)
            signals.check()
            if "calibration" not in meta:
                meta["calibration"] = calibrator(spec) if calibrator is not None else None
                write_json(run_dir / META, meta)
            log = CellLog(run_dir)

            def save(result: CellResult) -> None:
                annotate(result.record, meta.get("calibration"))
                with signals.deferred():
                    log.append(result.record, result.samples)
                for learn in learners:
                    learn(result.record)
                if on_result is not None:
                    on_result(result)
                signals.check()

            run_sweep(spec, backend, str(meta.get("run_id") or run_dir.name), on_result=save,
                      on_start=on_start, done=plan.done, guard=combine(memory_guard, plan.time_guard))
            status = "complete"
        except KeyboardInterrupt as exc:
            stop = exc if isinstance(exc, SweepInterrupted) else SweepInterrupted(signal.SIGINT)
        except BaseException as exc:
            status = "failed"
            if meta:
                meta["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
            raise
        finally:
            if meta:
                with signals.deferred():
                    results, samples = finalize(run_dir)
                    meta.update(status=status, finished_at=utc_now(), n_cells=len(results))
                    write_json(run_dir / META, meta)
            lock.release()
        if stop is None and signals.received is not None:
            stop = SweepInterrupted(signals.received)  # arrived while the final files were written
    if not meta:  # stopped before the run directory was opened: nothing was written
        raise stop if stop is not None else AssertionError("a sweep ended without opening its run")
    run = Run(path=run_dir, meta=meta, results=results, samples=samples)
    if stop is not None:
        stop.run = run
        stop.n_planned = spec.n_cells()
        raise stop
    return run


def _open_run(plan: Plan, lock: RunLock, machine: dict[str, Any], argv: Sequence[str],
              warn: Callable[[str], None]) -> dict[str, Any]:
    """Create (new run) or reopen (resume) the run directory under the lock; write meta.json as running."""
    run_dir = plan.run_dir
    if plan.meta is None:
        prepare_run_dir(run_dir)
        lock.acquire()
        meta = new_meta(plan.spec.to_dict(), machine, run_dir.name, argv)
        meta["guards"] = {"max_call_time": plan.time_guard.max_call_time}
        write_json(run_dir / META, meta)
        return meta
    lock.acquire()
    meta = dict(plan.meta)
    torn = repair_torn_tail(run_dir)
    if torn:
        warn(f"cells.jsonl ended in a torn line ({len(torn)} bytes, a write cut short by a crash or kill -9); "
             "it was cut off and that cell will be measured again")
    other = [p for p in plan.log_problems if "torn last line" not in p]
    if other:
        warn(f"cells.jsonl has {len(other)} line(s) that are not valid cell records, ignored "
             f"({'; '.join(other[:3])}{'; ...' if len(other) > 3 else ''})")
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
        "cells_before": len(plan.done),
        "torn_bytes_dropped": len(torn),
        "ignored_lines": len(other),
        "machine_changes": changes,
    }
    if changes:
        entry["machine"] = machine
    meta["resumed"] = [*(meta.get("resumed") or []), entry]
    meta.update(status="running", finished_at=None)
    meta.pop("error", None)
    write_json(run_dir / META, meta)
    return meta


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
) -> Run:
    """Measure every cell of ``spec`` into ``run_dir`` (created if needed) and return the finished run.

    With no ``backend`` the TensorFlow one is used (importing TensorFlow), and the machine fingerprint
    includes TF's build and device details. With no ``guard`` the memory guard protects the sweep; the time
    guard skips cells whose single call is predicted over ``max_call_time`` seconds. SIGINT/SIGTERM raise
    :class:`SweepInterrupted` once what was measured is saved (``handle_signals=False`` leaves signals alone).
    ``calibrate``: measure the machine's ceilings first (devbench.calibrate; default: only with the real
    backends); False skips it (``--no-calibrate``), a callable replaces the measurement.
    """
    return run_plan(plan_new(spec, Path(run_dir), max_call_time=max_call_time), argv=argv, backend=backend,
                    on_start=on_start, on_result=on_result, guard=guard, handle_signals=handle_signals,
                    calibrate=calibrate)


def resume(
    run_dir: Path,
    *,
    argv: Sequence[str] = (),
    backend: Backend | None = None,
    on_start: Callable[[Cell], None] | None = None,
    on_result: Callable[[CellResult], None] | None = None,
    guard: Guard | None = None,
    handle_signals: bool = True,
    warn: Callable[[str], None] = _warn,
) -> Run:
    """Finish an interrupted or crashed run: the spec from its meta.json, only the cells not yet in its log."""
    return run_plan(plan_resume(Path(run_dir)), argv=argv, backend=backend, on_start=on_start,
                    on_result=on_result, guard=guard, handle_signals=handle_signals, warn=warn)
