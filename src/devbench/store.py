"""Run directories on disk: the append-only cell log, the final tables, meta.json, and reading them back.

A run directory is self-contained::

    RUN_DIR/
      meta.json        schema_version, command, spec, start/end, status, machine fingerprint
      cells.jsonl      one complete JSON line per finished visit of a cell (round + process + record + raw
                       samples), appended as visits finish and fsynced, so a killed sweep keeps everything it
                       measured
      results.parquet  one row per cell, pooled over its visits (schema.RESULT_COLUMNS; devbench.visits);
                       results.csv is the same table as text
      samples.parquet  one row per timed block (schema.SAMPLE_COLUMNS)
      plots/, report.md, report.html

Final files are written under a temporary name and renamed, so a reader never sees half a file. No pickle
anywhere: result files are data, and readers validate what they load (a cells.jsonl line that is not a valid
record is counted and ignored; a results table with a column of the wrong type is refused with a UsageError).

Crash safety: cells.jsonl is the source of truth. A process killed in the middle of appending (kill -9, OOM
killer) can leave at most one torn line, at the very end; readers ignore it, :class:`CellLog` never glues a new
record onto it, and :func:`repair_torn_tail` (run on resume) cuts it off. While a sweep writes a run it holds
an advisory lock on cells.jsonl (:class:`RunLock`), so a second process cannot resume the same run meanwhile;
the kernel drops the lock when the process dies, however it dies.

The module is long (about 650 lines) on purpose: every file of a run directory is written and read back here,
each reader with its validation of untrusted input, so that a format and its checks live side by side.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from devbench.errors import UsageError, first_line
from devbench.formatting import utc_now
from devbench.schema import (
    CACHE_COLUMNS,
    DERIVED_COLUMNS,
    ENERGY_COLUMNS,
    FIELD_KINDS,
    HOST_CLOCK_COLUMNS,
    IDENTITY,
    PCT_COLUMNS,
    READABLE_SCHEMA_VERSIONS,
    RESULT_COLUMNS,
    SAMPLE_COLUMNS,
    SCHEMA_VERSION,
    STATUSES,
    TEXT_COLUMNS,
    VISIT_FIELDS,
    VisitRecord,
    check_table,
    derive_columns,
    results_frame,
    visit_record,
    visited_once_of,
)
from devbench.visits import LoggedVisit, cell_row, latest_visits
from devbench.visits import sample_rows as sample_rows_of

try:  # POSIX; elsewhere runs are simply not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

META = "meta.json"
CELLS = "cells.jsonl"
RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"
SAMPLES_PARQUET = "samples.parquet"


def default_run_dir(root: Path = Path("results")) -> Path:
    """``results/<UTC timestamp>-<host>/``; a numeric suffix keeps two runs in one second apart."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname()) or "host"
    path = root / f"{stamp}-{host}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = root / f"{stamp}-{host}-{suffix}"
    return path


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (atomic on POSIX)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (POSIX); silently skipped where directories cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, (json.dumps(data, indent=2, sort_keys=False, default=str) + "\n").encode())


def check_new_run_dir(path: Path) -> None:
    """Refuse, without creating anything, an ``--out`` that is a file, holds a run, or cannot be written."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {str(path)!r} is a file; give a directory (new or empty)")
    if path.is_dir() and (path / META).exists():
        raise UsageError(
            f"--out {str(path)!r} already holds a run; choose a new directory or resume it with --resume"
        )
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--out {str(path)!r} is below the file {str(existing)!r}; give a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {str(path)!r} is not writable ({str(existing)!r} denies writing)")
    # access() says yes to root everywhere, and knows nothing of read-only or pseudo file systems: try it.
    try:
        fd, probe = tempfile.mkstemp(prefix=".devbench-probe-", dir=existing)
    except OSError as exc:
        raise UsageError(
            f"--out {str(path)!r} is not writable ({str(existing)!r}: {exc.strerror or exc})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def prepare_run_dir(path: Path) -> Path:
    """Create ``path`` for a new run after :func:`check_new_run_dir`; a failing mkdir is a UsageError."""
    check_new_run_dir(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {str(path)!r} is not writable: {exc.strerror or exc}") from None
    return path


def prepare_output_dir(path: Path) -> Path:
    """Create a folder for charts or reports; a file in the way or an unwritable place is a UsageError."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"output {str(path)!r} is a file; give a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"output {str(path)!r} cannot be created: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"output {str(path)!r} is not writable")
    return path


class CellLog:
    """Append-only ``cells.jsonl``: one complete line per visit of a cell, written with one ``write`` and fsynced before
    returning.

    If the file does not end with a newline (a torn last line, left by a process killed mid-write), the new
    record starts on a line of its own, so it is never glued to the fragment.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / CELLS

    def append(self, record: VisitRecord, samples: Sequence[float], round_: int = 1, process: int = 0) -> None:
        """Append one visit: its record, its samples, its round (1-based) and the worker process that made it
        (``--processes``; 0: the sweep's own process)."""
        line = json.dumps({"round": round_, "process": process, "record": record.as_dict(),
                           "samples": list(samples)}, allow_nan=True) + "\n"
        data = line.encode("utf-8")
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass
class CellLogContents:
    records: list[dict[str, Any]] = field(default_factory=list)
    """Valid records, each normalised to exactly the fields of :class:`~devbench.schema.VisitRecord` with their
    types (:func:`validate_record`)."""
    samples: list[list[float]] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)
    """The round of each record (1 for lines of schema version 1, which had one visit per cell)."""
    processes: list[int] = field(default_factory=list)
    """The worker process of each record (0: the sweep's own process, and lines from before ``--processes``)."""
    torn_lines: int = 0
    """Lines ignored: torn (a process killed mid-write leaves at most one, at the end) or not a valid record."""
    torn_tail: int = 0
    """Bytes after the last newline: a record whose write was cut short (0 when the file ends cleanly)."""
    problems: list[str] = field(default_factory=list)
    """One line per ignored line: its number and what is wrong with it."""


_REQUIRED_FIELDS = ("run_id", *IDENTITY, "status")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_record(raw: object) -> dict[str, Any]:
    """A cells.jsonl record as a dict of exactly the :class:`~devbench.schema.VisitRecord` fields, checked and
    typed.

    Raises ValueError naming the first field that does not fit. Fields a record lacks get their defaults,
    except the identity and ``status``, which are required; unknown fields are dropped (so are a cell row's
    fields, which lines carried while one type served both). A line from before ``visited_once`` existed
    says it in its reason (:func:`~devbench.schema.visited_once_of`).
    """
    if not isinstance(raw, dict):
        raise ValueError(f"record is a {type(raw).__name__}, not an object")
    missing = [name for name in _REQUIRED_FIELDS if name not in raw]
    if missing:
        raise ValueError(f"record lacks {', '.join(missing)}")
    out: dict[str, Any] = {}
    for name in VISIT_FIELDS:
        kind = FIELD_KINDS[name]
        if kind == "text":
            value = raw.get(name, "")
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise ValueError(f"{name} must be text, found {value!r}")
            out[name] = value
        elif kind == "int":
            value = raw.get(name, 0)
            if not _is_number(value) or not math.isfinite(value) or value != int(value) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, found {value!r}")
            out[name] = int(value)
        elif kind == "float":
            value = raw.get(name)
            if value is None:
                value = math.nan
            if not _is_number(value):
                raise ValueError(f"{name} must be a number, found {value!r}")
            out[name] = float(value)
        else:
            value = raw.get(name, False)
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, found {value!r}")
            out[name] = value
    if "visited_once" not in raw:  # a line from before the field
        out["visited_once"] = visited_once_of({"reason": out["reason"]})
    if out["size"] < 1:
        raise ValueError(f"size must be a positive whole number, found {raw['size']!r}")
    for name in ("op", "dtype", "device", "mode", "sync"):
        if not out[name]:
            raise ValueError(f"{name} is empty")
    if out["status"] not in STATUSES:
        raise ValueError(f"status {out['status']!r} is not one of {', '.join(STATUSES)}")
    return out


def validate_samples(raw: object) -> list[float]:
    """A visit's samples as floats; ValueError unless a list of finite seconds >= 0."""
    if not isinstance(raw, list):
        raise ValueError(f"samples is a {type(raw).__name__}, not a list")
    for value in raw:
        if not _is_number(value) or not math.isfinite(value) or value < 0:
            raise ValueError(f"samples must be finite seconds >= 0, found {value!r}")
    return [float(value) for value in raw]


def read_cell_log(run_dir: Path) -> CellLogContents:
    """Read ``cells.jsonl``, ignoring torn or invalid lines (counted in ``torn_lines``, explained in
    ``problems``). Data only: each line is parsed as JSON and checked field by field against the schema."""
    contents = CellLogContents()
    path = run_dir / CELLS
    if not path.exists():
        return contents
    data = _read_bytes(path)
    end = data.rfind(b"\n") + 1
    contents.torn_tail = len(data) - end
    lines = data.split(b"\n")
    for number, raw_line in enumerate(lines, start=1):
        if not raw_line.strip():
            continue
        torn = number == len(lines) and contents.torn_tail > 0
        try:
            entry = json.loads(raw_line.decode("utf-8"))
            if not isinstance(entry, dict) or "record" not in entry or "samples" not in entry:
                raise ValueError("not an object with 'record' and 'samples'")
            record = validate_record(entry["record"])
            samples = validate_samples(entry["samples"])
            round_ = entry.get("round", 1)
            if isinstance(round_, bool) or not isinstance(round_, int) or round_ < 1:
                raise ValueError(f"round must be a whole number >= 1, found {round_!r}")
            process = entry.get("process", 0)
            if isinstance(process, bool) or not isinstance(process, int) or process < 0:
                raise ValueError(f"process must be a whole number >= 0, found {process!r}")
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            contents.torn_lines += 1
            why = "torn last line (no newline: the write was cut short)" if torn else first_line(str(exc))
            contents.problems.append(f"line {number}: {why}")
            continue
        contents.records.append(record)  # (a whole last record that lacks only its newline is kept)
        contents.samples.append(samples)
        contents.rounds.append(round_)
        contents.processes.append(process)
    return contents


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None


def repair_torn_tail(run_dir: Path) -> bytes:
    """Cut a torn last line off cells.jsonl and return it (b"" when the file ends cleanly).

    Only bytes after the last newline are removed, and those are never a complete record unless its newline
    alone was lost, in which case the record is kept and only the newline is added.
    """
    path = run_dir / CELLS
    if not path.exists():
        return b""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    tail = data[end:]
    if not tail:
        return b""
    try:
        entry = json.loads(tail.decode("utf-8"))
        validate_record(entry["record"])
        validate_samples(entry["samples"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        with open(path, "r+b") as handle:
            handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())
        return tail
    with open(path, "ab") as handle:  # a whole record that only lacks its newline
        handle.write(b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return b""


class RunLock:
    """An exclusive advisory lock on a run's cells.jsonl while a process writes the run.

    ``acquire`` raises UsageError when another live process holds it. The kernel releases the lock when the
    holder dies (also by kill -9 or the OOM killer), so a crashed run can always be resumed.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            fd = os.open(self.run_dir / CELLS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UsageError(f"cannot write {str(self.run_dir / CELLS)!r}: {exc.strerror or exc}") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise UsageError(
                    f"run directory {str(self.run_dir)!r} is being written by another devbench process right "
                    "now; wait for it to finish or stop it first"
                ) from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_not_locked(run_dir: Path) -> None:
    """Raise UsageError when another process is writing ``run_dir`` (without creating anything)."""
    if fcntl is None or not (run_dir / CELLS).exists():
        return
    try:
        fd = os.open(run_dir / CELLS, os.O_RDONLY)
    except OSError as exc:
        raise UsageError(f"cannot read {str(run_dir / CELLS)!r}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            raise UsageError(
                f"run directory {str(run_dir)!r} is being written by another devbench process right now; "
                "wait for it to finish or stop it first"
            ) from None
    finally:
        os.close(fd)


def logged_visits(contents: CellLogContents) -> list[LoggedVisit]:
    return [LoggedVisit(visit_record(record), samples, round_)
            for record, samples, round_ in zip(contents.records, contents.samples, contents.rounds, strict=True)]


def tables_from_log(contents: CellLogContents, meta: Mapping[str, Any] | None = None
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the results and samples tables from the cell log: one row per cell from all its visits
    (:func:`devbench.visits.cell_row`; a visit logged twice keeps its last line). ``meta`` gives the rounds
    the sweep planned (``incomplete``) and the calibration (``pct_of_peak`` of the pooled median; ``pct_of_best``
    needs none)."""
    from devbench.ceilings import with_pct_columns

    meta = meta or {}
    spec = meta.get("spec") if isinstance(meta.get("spec"), dict) else {}
    planned = spec.get("rounds", 1) if isinstance(spec, dict) else 1
    planned = planned if isinstance(planned, int) and not isinstance(planned, bool) and planned > 0 else 1
    rows: list[dict[str, Any]] = []
    sample_rows: list[dict[str, Any]] = []
    for visits in latest_visits(logged_visits(contents)).values():
        row = cell_row(visits, planned)
        rows.append(row.as_dict())
        sample_rows.extend(sample_rows_of(row, visits if row.n_rounds else visits[:1]))
    samples = pd.DataFrame(sample_rows, columns=list(SAMPLE_COLUMNS))
    results = with_pct_columns(derive_columns(results_frame(rows)), meta.get("calibration"))
    return results, samples


def write_tables(run_dir: Path, results: pd.DataFrame, samples: pd.DataFrame) -> None:
    """Write results.parquet, results.csv and samples.parquet atomically."""
    for frame, name, kind in (
        (results, RESULTS_PARQUET, "parquet"),
        (results, RESULTS_CSV, "csv"),
        (samples, SAMPLES_PARQUET, "parquet"),
    ):
        target = run_dir / name
        tmp = target.with_name(f".{name}.tmp")
        if kind == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    _fsync_dir(run_dir)


def finalize(run_dir: Path, meta: Mapping[str, Any] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Re)build the final tables from cells.jsonl (``meta``: the run's meta.json, as for
    :func:`tables_from_log`); safe to call any number of times."""
    results, samples = tables_from_log(read_cell_log(run_dir), meta)
    write_tables(run_dir, results, samples)
    return results, samples


def new_meta(spec: dict[str, Any], machine: dict[str, Any], run_id: str, argv: Iterable[str]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "status": "running",
        "command": " ".join(["devbench", *argv]) if argv else "devbench (Python API)",
        "argv": list(argv),
        "python": sys.executable,
        "started_at": utc_now(),
        "finished_at": None,
        "spec": spec,
        "machine": machine,
    }


@dataclass
class Run:
    """A run read back from disk (or a bare results table, where ``meta`` is empty and samples absent)."""

    path: Path | None
    meta: dict[str, Any]
    results: pd.DataFrame
    samples: pd.DataFrame
    torn_lines: int = 0


def read_meta(run_dir: Path) -> dict[str, Any]:
    path = run_dir / META
    if not path.exists():
        raise UsageError(f"{str(run_dir)!r} is not a devbench run directory (no {META})")
    try:
        meta = json.loads(_read_bytes(path).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise UsageError(f"{str(path)!r} is corrupt ({exc}); it is not valid JSON") from None
    if not isinstance(meta, dict):
        raise UsageError(f"{str(path)!r} is corrupt: expected a JSON object")
    version = meta.get("schema_version")
    if isinstance(version, bool) or version not in READABLE_SCHEMA_VERSIONS:
        readable = " and ".join(str(v) for v in READABLE_SCHEMA_VERSIONS)
        raise UsageError(f"{str(run_dir)!r} has schema version {version!r}; this devbench reads versions {readable}")
    problem = _meta_problem(meta)
    if problem is not None:
        raise UsageError(f"{str(path)!r} is corrupt: {problem}")
    return meta


_META_TYPES: dict[str, tuple[type, ...]] = {
    "run_id": (str,), "status": (str,), "command": (str,), "python": (str,), "started_at": (str,),
    "finished_at": (str, type(None)), "argv": (list,), "spec": (dict,), "machine": (dict,),
    "guards": (dict,), "resumed": (list,), "refinements": (list,), "calibration": (dict, type(None)),
    "n_cells": (int,), "error": (str,), "gpu": (dict,), "tf32": (dict,), "tf32_setting": (str,),
    "init": (dict, type(None)), "processes": (int,), "workers": (list,), "host_check": (dict,), "energy": (dict,),
    "cache": (dict,),
}
"""Types of the meta.json fields devbench reads; a field of another type is a corrupt file, not a crash later."""

_MACHINE_DICTS = ("os", "python", "cpu", "memory", "packages", "tensorflow")


def _type_name(value: object) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _meta_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong with the structure of a meta.json (None when every known field has its type)."""
    for key, types in _META_TYPES.items():
        value = meta.get(key)
        if key in meta and (not isinstance(value, types) or isinstance(value, bool)):
            return f"field {key!r} is {_type_name(value)} ({str(value)[:40]!r})"
    machine = meta.get("machine") or {}
    for key in _MACHINE_DICTS:
        if key in machine and not isinstance(machine[key], dict):
            return f"field 'machine.{key}' is {_type_name(machine[key])}, not an object"
    devices = machine.get("devices")
    if devices is not None and not (isinstance(devices, list) and all(isinstance(d, dict) for d in devices)):
        return "field 'machine.devices' is not a list of objects"
    for key in ("resumed", "refinements"):
        if not all(isinstance(entry, dict) for entry in meta.get(key) or []):
            return f"field {key!r} is not a list of objects"
    return None


def load_run(run_dir: Path) -> Run:
    """Read a run directory. The cell log is the source of truth; final tables are used when it is absent."""
    if not run_dir.exists():
        raise UsageError(f"run directory {str(run_dir)!r} does not exist")
    if not run_dir.is_dir():
        raise UsageError(f"{str(run_dir)!r} is not a directory")
    meta = read_meta(run_dir)
    contents = read_cell_log(run_dir)
    if contents.records:
        results, samples = tables_from_log(contents, meta)
    elif (run_dir / RESULTS_PARQUET).exists():
        results = results_frame(_read_table(run_dir / RESULTS_PARQUET, RESULT_COLUMNS,
                                            (*ROUND_COLUMNS, *PCT_COLUMNS, *HOST_CLOCK_COLUMNS, *ENERGY_COLUMNS,
                                             *CACHE_COLUMNS)))
        samples_path = run_dir / SAMPLES_PARQUET
        samples = (
            _read_table(samples_path, SAMPLE_COLUMNS, ("round",))
            if samples_path.exists()
            else pd.DataFrame(columns=list(SAMPLE_COLUMNS))
        )
    else:
        raise UsageError(f"run directory {str(run_dir)!r} holds no measured cells")
    return Run(path=run_dir, meta=meta, results=results, samples=samples, torn_lines=contents.torn_lines)


def _read_frame(path: Path) -> pd.DataFrame:
    try:
        frame: pd.DataFrame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    except Exception as exc:  # pyarrow and pandas raise many types for a corrupt or empty file
        raise UsageError(f"cannot read {str(path)!r}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    return frame


ROUND_COLUMNS = ("n_rounds", "between_round_rel", "ci_reason", "incomplete")
"""Result columns added with rounds (schema version 2): a version 1 table lacks them (and samples ``round``)."""


def _read_table(path: Path, required: Sequence[str], optional: Sequence[str] = ()) -> pd.DataFrame:
    """Read a results or samples table written by devbench and check every column's type
    (:func:`devbench.schema.check_table`): untrusted data, refused with a UsageError naming the file, the
    column and the first bad value. ``optional`` columns (newer than schema version 1) may be missing: a
    missing ``round`` is 1, the others get their defaults."""
    frame = _read_frame(path)
    if "round" in optional and "round" not in frame.columns:
        frame = frame.assign(round=1)
    required = [c for c in required if c in frame.columns or c not in optional]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise UsageError(f"{str(path)!r} lacks the columns {', '.join(missing)}")
    return check_table(frame, repr(str(path)), required)


def load_any(path: Path) -> Run:
    """Read a run directory, or a bare results table (``.csv`` / ``.parquet``) from devbench or another tool.

    Timings gathered elsewhere can then be analysed, plotted and reported like a devbench run. A bare table
    needs ``op, size, dtype, device, median_s`` (``size`` the matrix side n, a positive integer; times in
    seconds per call). What it lacks is filled: ``mode`` "eager", ``status`` "ok", ``sync`` "scalar";
    ``ci_low_s``, ``ci_high_s``, ``q1_s``, ``q3_s`` NaN (the crossover range then falls back to the measured
    bracket); ``iqr_s``/``rel_iqr`` from the quartiles when both are given; ``noisy`` from ``rel_iqr``;
    ``unsynchronized`` from ``sync == "none"``; ``gflops``/``gbps`` from ``flops``/``bytes``; everything
    else empty (0, NaN or ""). Columns outside the schema are dropped; a cell given twice keeps its last row.
    ``meta`` is ``{}`` and the samples table is empty. Device names are taken as written (``CPU:0`` is the
    reference device of the speed-ups).
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(
            f"{str(path)!r} does not exist; give a run directory or a results table (.csv, .parquet)"
        )
    if path.is_dir():
        return load_run(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise UsageError(f"{str(path)!r} is neither a run directory nor a results table (.csv, .parquet)")
    frame = _read_frame(path)
    required = ("op", "size", "dtype", "device", "median_s")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise UsageError(
            f"{str(path)!r} lacks the columns {', '.join(missing)}; "
            f"a results table needs {', '.join(required)}"
        )
    if frame.empty:
        raise UsageError(f"{str(path)!r} holds no rows")
    given = [col for col in RESULT_COLUMNS if col in frame.columns]
    if "size" in given:
        sizes = pd.to_numeric(frame["size"], errors="coerce")
        bad_size = sizes.isna() | (sizes <= 0) | (sizes != sizes.round())
        if bad_size.any():
            raise UsageError(f"{str(path)!r}: column size must hold positive integers (the matrix side n), "
                             f"found {frame['size'][bad_size].iloc[0]!r}")
    checked = check_table(frame, repr(str(path)), given)
    defaults = {"mode": "eager", "status": "ok", "sync": "scalar"}
    for col in TEXT_COLUMNS:
        if col in defaults:
            text = checked[col].str.strip() if col in checked.columns else pd.Series("", index=checked.index)
            checked[col] = text.where(text != "", defaults[col])
    checked["run_id"] = checked["run_id"] if "run_id" in given else path.stem
    out = results_frame(checked)
    out = derive_columns(out, [col for col in DERIVED_COLUMNS if col not in given])
    out = out[~out.duplicated(subset=list(IDENTITY), keep="last")].reset_index(drop=True)
    return Run(
        path=path,
        meta={},
        results=results_frame(out),
        samples=pd.DataFrame(columns=list(SAMPLE_COLUMNS)),
    )
