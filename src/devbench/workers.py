"""Rounds in fresh worker processes (``devbench sweep --processes P``): both sides of it.

Why. All rounds of an in-process sweep share one process, so whatever is fixed for a process's life (memory
layout, allocator state, the framework's thread pools, the CPU's frequency state when it started) is never
sampled: on a 2-core host an eager 64² matmul took 44.5, 76.6 and 73.6 µs in three separate runs, each with
about 1 % spread inside the run, and intervals that resample the rounds of one process cannot see that. So,
as pyperf does, the rounds are spread over P fresh Python interpreters (``sys.executable -m
devbench.workers``), run one after another, never at once (parallel workers would disturb each other).

The split. :func:`split_rounds` cuts the rounds into P contiguous groups, as even as possible (5 rounds in 2
processes: rounds 1-3 and 4-5). Worker ``k`` (numbered from 1, and on from the run's last worker when a
resume starts more) reads what is left from the run directory (:func:`devbench.plan.plan_of_run`: the spec,
the visits done and the cells settled), prepares the machine as the sweep's own process does
(:func:`devbench.prepare.prepare_machine`: its frameworks imported and devices initialised, the run's TF32
setting, the guards taught the log, the per-visit policy and cell budget) and makes the visits of its
rounds. A cell's first visit in a worker times its first call apart from the samples, since a fresh process
pays the cold costs again; the cell's ``cold_s`` stays its first visit's (devbench.runner.run_visits,
``new_process``). Calibration, device discovery and the machine fingerprint are the parent's, made once as
without workers.

One writer. A worker writes nothing into the run directory: it reports each visit as one JSON line on its
stdout (``{"start": cell}`` before it, ``{"visit": {"round", "record", "samples"}}`` after it, ``{"init": …}``
once its devices are up), and the parent records each visit through its :class:`devbench.session.RunSession`
with the worker's index (``process`` in the cells.jsonl line), exactly as it records its own visits: the
lock, the fsynced log, the progress bar, the guards' learning and ``meta.json`` behave the same. Anything
else a worker prints goes to its stderr, which is the user's (its stdout is moved there before anything is
imported, so a stray print cannot corrupt the channel). ``meta.json["workers"]`` lists every worker: index,
rounds, device initialisation, exit code (null: the sweep's process died first).

Stopping. SIGINT and SIGTERM are the parent's to handle (a worker ignores SIGINT, which Ctrl-C sends the whole
process group): the parent ends the worker (SIGTERM, then SIGKILL), keeps every visit already recorded and
says ``interrupted``; ``--resume`` starts workers for the groups that still have visits, with the run's own
``processes``. A worker that exits non-zero or is killed ends the sweep with :class:`WorkerCrashed`: the
visits it reported are kept, meta.json says ``failed``, and the message names the rounds not finished and
how to resume. A worker whose parent dies (``kill -9``) is killed by the kernel (Linux), so no orphan goes on
measuring beside whatever runs next.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from devbench.errors import DevbenchError, UsageError
from devbench.plan import check_processes
from devbench.runner import CellResult
from devbench.schema import VisitRecord
from devbench.session import RunSession, resume_command, settles, signal_name
from devbench.spec import Cell, Visit
from devbench.store import validate_record, validate_samples

if TYPE_CHECKING:
    from devbench.store import Run

WORKER_MODULE = "devbench.workers"

TEST_EXIT_ENV = "DEVBENCH_TEST_WORKER_EXIT"
"""For tests only: ``K,N`` makes worker K leave with exit code 3 right after reporting its N-th visit,
``K,N,kill`` kills it with SIGKILL there instead (a crash at a known point, without a crashing op)."""

STOP_TIMEOUT_S = 10.0
"""Seconds a worker is given to end after SIGTERM before it is killed."""


def split_rounds(rounds: int, processes: int) -> list[tuple[int, int]]:
    """Rounds 1..``rounds`` cut into ``processes`` contiguous groups ``(first, last)``, as even as possible
    (the larger groups first): ``split_rounds(5, 2) == [(1, 3), (4, 5)]``."""
    check_processes(processes, rounds)
    size, extra = divmod(rounds, processes)
    groups: list[tuple[int, int]] = []
    first = 1
    for index in range(processes):
        last = first + size - 1 + (1 if index < extra else 0)
        groups.append((first, last))
        first = last + 1
    return groups


def rounds_text(rounds: Iterable[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``"rounds 1-3, 5"`` (``"round 4"`` for one)."""
    ordered = sorted(set(rounds))
    spans: list[list[int]] = []
    for r in ordered:
        if spans and r == spans[-1][1] + 1:
            spans[-1][1] = r
        else:
            spans.append([r, r])
    text = ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans)
    return f"round{'s' if len(ordered) != 1 else ''} {text}"


class WorkerCrashed(DevbenchError):
    """A worker process exited non-zero or was killed. What it reported before is saved; ``run`` is the saved
    run (set once the session has written its final files)."""

    def __init__(self, what: str, run_dir: Path) -> None:
        super().__init__(what)
        self.run_dir = run_dir
        self.run: Run | None = None

    @property
    def message(self) -> str:
        """What to tell the user: what happened and what is kept, and how to go on (two lines)."""
        return f"devbench: {self}\ndevbench: resume with: {resume_command(self.run_dir)}"


# ---------------------------------------------------------------------------------------------------------
# The parent's side


def _worker_env() -> dict[str, str]:
    """The environment of a worker: this one, with this devbench first on the path (the worker must run the
    same code as its parent, whichever devbench an installed package would give)."""
    package_root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End a worker that is still running (SIGTERM, then SIGKILL) and close its pipe."""
    try:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


def _how_it_ended(code: int) -> str:
    return f"was killed by {signal_name(-code)}" if code < 0 else f"exited with code {code}"


def _message(raw: bytes, process: int) -> tuple[str, Any]:
    """What one line from worker ``process`` says: ``("start", Cell)``, ``("visit", CellResult)`` (checked as a
    cells.jsonl line is when read back) or ``("init", dict)``; ValueError for anything else."""
    try:
        message = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(message, dict) or len(message) != 1:
        raise ValueError("not an object with one key")
    kind, value = next(iter(message.items()))
    if kind == "start":
        try:
            return kind, Cell(**value)
        except TypeError as exc:
            raise ValueError(f"not a cell: {exc}") from None
    if kind == "init" and isinstance(value, dict):
        return kind, value
    if kind != "visit" or not isinstance(value, dict):
        raise ValueError(f"unknown message {kind!r}")
    round_ = value.get("round")
    if isinstance(round_, bool) or not isinstance(round_, int) or round_ < 1:
        raise ValueError(f"round must be a whole number >= 1, found {round_!r}")
    record = VisitRecord(**validate_record(value.get("record")))
    return kind, CellResult(record, validate_samples(value.get("samples")), round=round_, process=process)


def run_in_workers(visits: Sequence[Visit], session: RunSession, processes: int, rounds: int, *,
                   on_start: Callable[[Cell], None] | None, on_result: Callable[[CellResult], None],
                   warn: Callable[[str], None]) -> None:
    """Make the ``visits`` (a run's plan, in order) not yet in the open ``session`` in worker processes, one
    after another, one per group of :func:`split_rounds` that still has a visit to make; each visit a worker
    reports is handed to ``on_result`` (which records it through the session). Raises
    :class:`WorkerCrashed` when a worker fails; a signal's SessionInterrupted stops the running worker."""
    done = set(session.done)
    settled = set(session.settled)

    def left(first: int, last: int) -> list[Visit]:
        return [v for v in visits if first <= v.round <= last and v.key() not in done and v.cell.key() not in settled]

    workers: list[dict[str, Any]] = list(session.meta.get("workers") or [])
    index = max((w["process"] for w in workers if isinstance(w, dict) and isinstance(w.get("process"), int)),
                default=0)  # a resume's workers are numbered on from the run's last one
    groups = split_rounds(rounds, processes)
    for number, (first, last) in enumerate(groups, start=1):
        if not left(first, last):
            continue
        index += 1
        # exit_code stays null if this process dies first; the visits a worker made are the log's lines.
        entry: dict[str, Any] = {"process": index, "rounds": [first, last], "init": None, "exit_code": None}
        reported = 0
        workers.append(entry)
        session.update_meta(workers=workers)
        name = f"worker {index} ({number} of {processes}: {rounds_text(range(first, last + 1))})"
        command = [sys.executable, "-m", WORKER_MODULE, str(session.run_dir), "--rounds", f"{first}-{last}",
                   "--process", str(index), "--parent", str(os.getpid())]
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=_worker_env())
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                try:
                    kind, value = _message(raw, index)
                except ValueError as exc:
                    warn(f"{name} sent a line that is not a valid message, ignored ({exc}): {raw[:200]!r}")
                    continue
                if kind == "start" and on_start is not None:
                    on_start(value)
                elif kind == "init":
                    entry["init"] = value
                elif kind == "visit":
                    on_result(value)
                    reported += 1
                    done.add((value.record.key(), value.round))
                    if settles(value.record.as_dict()):
                        settled.add(value.record.key())
            code = proc.wait()
        finally:
            _stop(proc)
            entry["exit_code"] = proc.returncode
        unfinished = left(first, last)
        if code == 0 and not unfinished:
            session.update_meta(workers=workers)
            continue
        session.meta["workers"] = workers  # written with the run's final files
        how = _how_it_ended(code) if code != 0 else "exited before finishing its visits"
        missing = left(1, rounds)
        raise WorkerCrashed(
            f"{name} {how} after {reported} visit{'s' if reported != 1 else ''}; "
            f"{rounds_text(v.round for v in missing)} not finished ({len(missing)} visits left); every visit "
            f"reported before is saved in {session.run_dir}", session.run_dir)


# ---------------------------------------------------------------------------------------------------------
# The worker's side: python -m devbench.workers RUN_DIR --rounds FIRST-LAST --process K


def _claim_stdout() -> IO[str]:
    """The channel to the parent: this process's stdout, which from now on only the channel writes to.

    File descriptor 1 is duplicated for the channel and then pointed at stderr, before any framework is
    imported, so whatever a library prints reaches the user's terminal and never the parent's reader."""
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    sys.stdout.flush()
    os.dup2(2, 1)
    return channel


PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """Have the kernel kill this worker when its parent dies (``kill -9``, the OOM killer; Linux), and leave
    now if it already has: an orphan would go on measuring alongside whatever runs next, a resume included."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _test_exit(process: int) -> tuple[int, str] | None:
    """(visits, how) from :data:`TEST_EXIT_ENV` when it names this worker, else None."""
    value = os.environ.get(TEST_EXIT_ENV, "")
    parts = value.split(",")
    if len(parts) < 2 or parts[0] != str(process):
        return None
    return int(parts[1]), parts[2] if len(parts) > 2 else "exit"


def _rounds_arg(text: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    try:
        bounds = int(first), int(last or first)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rounds {text!r} is not FIRST-LAST") from None
    if not 1 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"--rounds {text!r} is not FIRST-LAST with 1 <= FIRST <= LAST")
    return bounds


def work(run_dir: Path, first: int, last: int, process: int, channel: IO[str]) -> None:
    """Make the visits of rounds ``first``..``last`` still left in the run, reporting each on ``channel``.

    The machine is prepared as the sweep's own process prepares it (devbench.prepare.prepare_machine, from
    the run's meta.json): framework start-up and device initialisation (reported as ``init``), the run's
    TF32 setting, its memory and time guards (taught the visits already in the log), the per-visit policy and
    cell budget. Not the discovery and fingerprint, nor calibration: the parent made them, once, for the run.
    """
    from devbench.plan import plan_of_run
    from devbench.prepare import prepare_machine

    def send(message: dict[str, Any]) -> None:
        channel.write(json.dumps(message, allow_nan=True) + "\n")
        channel.flush()

    plan = plan_of_run(run_dir, locked_by_parent=True)
    meta = plan.meta or {}
    prepared = prepare_machine(plan.settings, time_guard=plan.time_guard, fingerprint=False)
    send({"init": prepared.init})
    prepared.learn(plan.prior)
    test_exit = _test_exit(process)
    reported = 0

    def report(result: CellResult) -> None:
        nonlocal reported
        for learn in prepared.learners:
            learn(result.record)
        send({"visit": {"round": result.round, "record": result.record.as_dict(), "samples": result.samples}})
        reported += 1
        if test_exit is not None and reported == test_exit[0]:
            print(f"devbench: worker {process}: leaving as {TEST_EXIT_ENV} asks", file=sys.stderr, flush=True)
            if test_exit[1] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(3)

    def start(cell: Cell) -> None:
        send({"start": {"size": cell.size, "op": cell.op, "dtype": cell.dtype, "device": cell.device,
                        "mode": cell.mode, "sync": cell.sync}})

    visits = [v for v in plan.visits() if first <= v.round <= last]
    prepared.measure(visits, str(meta.get("run_id") or run_dir.name), on_result=report, on_start=start,
                     done=plan.done, settled=plan.settled, new_process=True)


def main(argv: Sequence[str] | None = None) -> int:
    # Ctrl-C reaches the whole process group: the parent handles it and ends this worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = _claim_stdout()
    parser = argparse.ArgumentParser(prog=f"python -m {WORKER_MODULE}",
                                     description="One worker process of 'devbench sweep --processes' (started "
                                     "by the sweep; not a command to run by hand).")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--rounds", type=_rounds_arg, required=True, metavar="FIRST-LAST")
    parser.add_argument("--process", type=int, required=True, metavar="K")
    parser.add_argument("--parent", type=int, default=None, metavar="PID",
                        help="the sweep's process: this worker ends when it does")
    args = parser.parse_args(argv)
    if args.parent is not None:
        _die_with(args.parent)
    try:
        first, last = args.rounds
        work(args.run_dir, first, last, args.process, channel)
        channel.close()
    except UsageError as exc:
        print(f"devbench: worker {args.process}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except BrokenPipeError:  # the parent is gone: nobody is left to report to
        os._exit(1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
