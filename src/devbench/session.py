"""The one writer of a run directory: :class:`RunSession` owns the lock, the cell log, the signals, the
calibration annotation (``pct_of_peak``) and the final files, for a new sweep, a resume and a refine alike.

Why one object: a sweep, ``--resume`` and ``devbench refine`` all append cells to the same run. Each used to do
its own bookkeeping, and they drifted apart (refine took no lock and left ``pct_of_peak`` empty). Now each of
them opens a session and hands it every finished cell; the session makes the same promises for all:

- **Exclusive.** The run's advisory lock (:class:`devbench.store.RunLock`) is taken *before* the cell log is
  read, so what is already measured (:attr:`RunSession.done`) is read by the only writer: two resumes of one
  run cannot both plan the same cells; the second is refused.
- **Nothing lost.** Each result is annotated with ``pct_of_peak`` from the run's calibration, then appended to
  cells.jsonl as one whole fsynced line while signals are deferred. On leaving the session (normal end,
  error, interruption) the final tables are rebuilt from the log and meta.json gets its status.
- **Interruptible.** SIGINT and SIGTERM raise :class:`SessionInterrupted` (a KeyboardInterrupt) at the next
  Python instruction, outside the critical sections; a second signal exits at once (``os._exit``), which is
  safe because every file is either appended whole or replaced by a rename.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from devbench.ceilings import annotate
from devbench.errors import UsageError
from devbench.formatting import utc_now
from devbench.runner import CellResult
from devbench.schema import VisitRecord
from devbench.store import (
    META,
    CellLog,
    CellLogContents,
    Run,
    RunLock,
    finalize,
    new_meta,
    prepare_run_dir,
    read_cell_log,
    read_meta,
    repair_torn_tail,
    write_json,
)

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def resume_command(run_dir: Path) -> str:
    return f"devbench sweep --resume {run_dir}"


def warn_on_stderr(message: str) -> None:
    print(f"devbench: warning: {message}", file=sys.stderr, flush=True)


class SessionInterrupted(KeyboardInterrupt):
    """A sweep, resume or refine stopped by SIGINT or SIGTERM. Everything measured is on disk; ``run`` is what
    was saved.

    A KeyboardInterrupt, so that code which handles Ctrl-C handles it. ``exit_code`` is 128 + the signal
    number (130 for SIGINT, 143 for SIGTERM), what a shell reports for a process the signal ended.
    """

    def __init__(self, signum: int, *, again: str = "") -> None:
        super().__init__(signal_name(signum))
        self.signum = signum
        self.exit_code = 128 + signum
        self.run: Run | None = None
        self.n_planned = 0
        """Cells the run plans (for the interruption message; 0: not said)."""
        self.n_visits_planned = 0
        self.n_visits_saved = 0
        self.again = again
        """The command that carries on from here (empty: ``devbench sweep --resume RUN``)."""

    @property
    def message(self) -> str:
        """What to tell the user: what was kept, where, and how to go on (two lines, no newline at the end)."""
        name = signal_name(self.signum)
        if self.run is None or self.run.path is None:
            return f"devbench: interrupted by {name} before anything was measured"
        kept = len(self.run.results)
        if self.run.meta.get("status") == "complete" and not self.again:
            return f"devbench: {name} received; the run was already complete: {self.run.path}"
        of = f" of {self.n_planned}" if self.n_planned else ""
        visits = (f" ({self.n_visits_saved} of {self.n_visits_planned} visits)"
                  if self.n_visits_planned > self.n_planned else "")
        return (f"devbench: interrupted by {name}; {kept}{of} cells{visits} are saved in {self.run.path}\n"
                f"devbench: {'go on' if self.again else 'resume'} with: "
                f"{self.again or resume_command(self.run.path)}")


SweepInterrupted = SessionInterrupted
"""The name sweeps have always raised (``devbench.sweep.SweepInterrupted``)."""


class Signals:
    """Turns SIGINT/SIGTERM into :class:`SessionInterrupted` while a session is open (main thread only).

    ``deferred()`` marks a critical section (appending a cell, writing the final files): a first signal that
    arrives inside it is held until it ends (:meth:`check` raises it). A second signal exits the process at
    once. Handlers in place before (and signals the parent told us to ignore) are restored afterwards.
    """

    def __init__(self, enabled: bool, run_dir: Path, again: str = "") -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.run_dir = run_dir
        self.again = again
        self.received: int | None = None
        self.pending = False
        self._depth = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Signals:
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
        raise SessionInterrupted(signum, again=self.again)

    def _exit_now(self, signum: int) -> None:
        """Second signal: leave without unwinding. Only complete files are on disk (atomic renames, whole
        lines appended), so nothing is corrupted; cells.jsonl holds every finished cell."""
        message = (f"\ndevbench: second {signal_name(signum)}: exiting at once; the files in {self.run_dir} are "
                   f"complete and cells.jsonl holds every finished cell\n"
                   f"devbench: resume with: {self.again or resume_command(self.run_dir)}\n")
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
            raise SessionInterrupted(self.received, again=self.again)


def settles(record: Mapping[str, Any]) -> bool:
    """Whether a visit with this record (a dict of its fields) ends its cell's visits: it was not ``ok``, or
    the runner found the cell too slow to visit again (devbench.runner.run_visits makes the same decision
    as it goes; this reads it back from a log or a worker's report)."""
    return record.get("status") != "ok" or bool(record.get("visited_once"))


@dataclass(frozen=True)
class Reopened:
    """What a session found in an existing run when it took the lock."""

    contents: CellLogContents
    torn: bytes
    """The torn tail cut off cells.jsonl (b"" when it ended cleanly)."""

    @property
    def records(self) -> list[VisitRecord]:
        return [VisitRecord(**record) for record in self.contents.records]

    @property
    def visits_done(self) -> frozenset[tuple[Any, ...]]:
        """``Visit.key()`` of every visit in the log."""
        return frozenset((VisitRecord(**r).key(), round_) for r, round_ in zip(self.contents.records,
                                                                             self.contents.rounds, strict=True))

    @property
    def settled(self) -> frozenset[tuple[Any, ...]]:
        """Cells not to visit again: one of their visits was not ``ok`` (see devbench.runner.run_visits)."""
        return frozenset(VisitRecord(**r).key() for r in self.contents.records if settles(r))

    @property
    def other_problems(self) -> list[str]:
        return [p for p in self.contents.problems if "torn last line" not in p]


class RunSession:
    """An open run directory that one process writes. Use as a context manager::

        with RunSession.create(run_dir, meta) as session:    # or RunSession.reopen(run_dir)
            for result in ...:
                session.record(result)
            session.complete()

    Leaving the block rebuilds the final tables from cells.jsonl and writes meta.json with the status:
    ``complete`` after :meth:`complete`, ``interrupted`` after a signal (the session raises
    :class:`SessionInterrupted` carrying the saved run), ``failed`` (with the error) after any other exception,
    which keeps its traceback. ``keep_status`` keeps a reopened run's status as it was whatever happens (a
    refine adds cells outside the sweep's plan: a complete run stays complete).
    """

    def __init__(self, run_dir: Path, *, new_meta_fields: Mapping[str, Any] | None, handle_signals: bool = True,
                 again: str = "", keep_status: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self._new_meta = dict(new_meta_fields) if new_meta_fields is not None else None
        self.lock = RunLock(self.run_dir)
        self.signals = Signals(handle_signals, self.run_dir, again)
        self.again = again
        self.keep_status = keep_status
        self.meta: dict[str, Any] = {}
        self.reopened: Reopened | None = None
        self.done: frozenset[tuple[Any, ...]] = frozenset()
        """``Visit.key()`` of every visit already in cells.jsonl when the lock was taken."""
        self.settled: frozenset[tuple[Any, ...]] = frozenset()
        """``Cell.key()`` of the cells in the log that are not to be visited again."""
        self.learners: list[Callable[[VisitRecord], None]] = []
        """Called with every recorded result's record (the guards learn from them)."""
        self.run: Run | None = None
        self.n_planned = 0
        """Cells the run plans (for the interruption message; 0: not said)."""
        self.n_visits_planned = 0
        self._complete = False
        self._status_before = "running"
        self._recorded = 0
        self._log = CellLog(self.run_dir)

    # -- opening

    @classmethod
    def create(cls, run_dir: Path, spec: dict[str, Any], machine: dict[str, Any], argv: Sequence[str], *,
               extra: Mapping[str, Any] | None = None, handle_signals: bool = True) -> RunSession:
        """A session for a new run in ``run_dir`` (created on entering; it must not hold a run already)."""
        fields: dict[str, Any] = {"spec": spec, "machine": machine, "argv": list(argv), **(extra or {})}
        return cls(run_dir, new_meta_fields=fields, handle_signals=handle_signals)

    @classmethod
    def reopen(cls, run_dir: Path, *, handle_signals: bool = True, again: str = "",
               keep_status: bool = False) -> RunSession:
        """A session that appends to the existing run in ``run_dir`` (resume, refine)."""
        return cls(run_dir, new_meta_fields=None, handle_signals=handle_signals, again=again,
                   keep_status=keep_status)

    def __enter__(self) -> RunSession:
        self.signals.__enter__()
        try:
            with self.signals.deferred():
                self._open()
        except BaseException:
            self.lock.release()
            self.signals.__exit__()
            raise
        try:
            self.signals.check()  # a signal that came while opening: the run is open, so close it properly
        except SessionInterrupted as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def _open(self) -> None:
        if self._new_meta is not None:
            prepare_run_dir(self.run_dir)
            self.lock.acquire()
            fields = self._new_meta
            self.meta = new_meta(fields.pop("spec"), fields.pop("machine"), self.run_dir.name, fields.pop("argv"))
            self.meta.update(fields)
            write_json(self.run_dir / META, self.meta)
            return
        # Lock first, then read: what is done is read by the only process that may add to it.
        self.lock.acquire()
        self.meta = read_meta(self.run_dir)
        self._status_before = str(self.meta.get("status") or "interrupted")
        torn = repair_torn_tail(self.run_dir)
        contents = read_cell_log(self.run_dir)
        self.reopened = Reopened(contents=contents, torn=torn)
        self.done = self.reopened.visits_done
        self.settled = self.reopened.settled

    # -- writing

    def update_meta(self, **fields: Any) -> None:
        """Set top-level fields of meta.json and write it now (atomically)."""
        with self.signals.deferred():
            self.meta.update(fields)
            write_json(self.run_dir / META, self.meta)
        self.signals.check()

    def record(self, result: CellResult) -> None:
        """Annotate ``result`` with pct_of_peak, append it to the cell log (whole line, fsynced), let the
        learners see it. A signal that arrived while writing is raised after the write."""
        annotate(result.record, self.meta.get("calibration"))
        with self.signals.deferred():
            self._log.append(result.record, result.samples, result.round, result.process)
            self._recorded += 1
        for learn in self.learners:
            learn(result.record)
        self.signals.check()

    def complete(self) -> None:
        """Every planned cell is in the log: leaving the session marks the run ``complete``."""
        self._complete = True

    # -- closing

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        stop: SessionInterrupted | None = None
        if isinstance(exc, KeyboardInterrupt):
            stop = exc if isinstance(exc, SessionInterrupted) else SessionInterrupted(signal.SIGINT, again=self.again)
        if self._complete and exc is None:
            status = "complete"
        elif stop is not None:
            status = "interrupted"
        elif exc is not None:
            status = "failed"
            text = str(exc)
            self.meta["error"] = f"{type(exc).__name__}: {text}".splitlines()[0] if text else type(exc).__name__
        else:
            status = "interrupted"  # left without complete(): cells are still missing
        try:
            with self.signals.deferred():
                results, samples = finalize(self.run_dir, self.meta)
                if self.keep_status:  # a refine adds cells to a run; its plan's state is unchanged
                    status = self._status_before
                self.meta.update(status=status, finished_at=utc_now(), n_cells=len(results))
                if status != "failed":
                    self.meta.pop("error", None)
                write_json(self.run_dir / META, self.meta)
        finally:
            self.lock.release()
            self.signals.__exit__()
        if stop is None and self.signals.received is not None:
            stop = SessionInterrupted(self.signals.received, again=self.again)  # arrived during the final files
        self.run = Run(path=self.run_dir, meta=self.meta, results=results, samples=samples)
        if stop is not None:
            stop.run = self.run
            stop.n_planned = self.n_planned
            stop.n_visits_planned = self.n_visits_planned
            stop.n_visits_saved = len(self.done) + self._recorded
            if stop is not exc:
                raise stop from None
            return  # the original SessionInterrupted propagates, now carrying the run


def require_writable_run(run_dir: Path, flag: str) -> None:
    """Refuse, before anything is imported or written, a run directory that cannot be appended to."""
    from devbench.store import CELLS

    if not run_dir.exists():
        raise UsageError(f"{flag} {str(run_dir)!r}: no such run directory")
    if not run_dir.is_dir():
        raise UsageError(f"{flag} {str(run_dir)!r} is not a directory")
    if not (run_dir / META).exists():
        raise UsageError(f"{flag} {str(run_dir)!r} is not a devbench run directory (no {META})")
    if not os.access(run_dir, os.W_OK | os.X_OK) or (
        (run_dir / CELLS).exists() and not os.access(run_dir / CELLS, os.W_OK)
    ):
        raise UsageError(f"{flag} {str(run_dir)!r} is not writable")
