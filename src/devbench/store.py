"""Run directories on disk: the append-only cell log, the final tables, meta.json, and reading them back.

A run directory is self-contained::

    RUN_DIR/
      meta.json        schema_version, command, spec, start/end, status, machine fingerprint
      cells.jsonl      one complete JSON line per finished cell (record + raw samples), appended as cells
                       finish and fsynced, so a killed sweep keeps everything it measured
      results.parquet  one row per cell (schema.RESULT_COLUMNS); results.csv is the same table as text
      samples.parquet  one row per timed block (schema.SAMPLE_COLUMNS)
      plots/, report.md

Final files are written under a temporary name and renamed, so a reader never sees half a file. No pickle
anywhere: result files are data, and readers validate what they load.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from devbench.errors import UsageError
from devbench.schema import IDENTITY, RESULT_COLUMNS, SAMPLE_COLUMNS, SCHEMA_VERSION, Record

META = "meta.json"
CELLS = "cells.jsonl"
RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"
SAMPLES_PARQUET = "samples.parquet"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
    """Append-only ``cells.jsonl``: one complete line per cell, flushed and fsynced before returning."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / CELLS

    def append(self, record: Record, samples: Sequence[float]) -> None:
        line = json.dumps({"record": record.as_dict(), "samples": list(samples)}, allow_nan=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())


@dataclass
class CellLogContents:
    records: list[dict[str, Any]] = field(default_factory=list)
    samples: list[list[float]] = field(default_factory=list)
    torn_lines: int = 0
    """Lines that did not parse (a process killed mid-write leaves at most one, at the end)."""


def read_cell_log(run_dir: Path) -> CellLogContents:
    """Read ``cells.jsonl``, ignoring torn or invalid lines (counted in ``torn_lines``)."""
    contents = CellLogContents()
    path = run_dir / CELLS
    if not path.exists():
        return contents
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                record, samples = entry["record"], entry["samples"]
                if not isinstance(record, dict) or not isinstance(samples, list):
                    raise TypeError("bad entry")
            except (ValueError, KeyError, TypeError):
                contents.torn_lines += 1
                continue
            contents.records.append(record)
            contents.samples.append([float(s) for s in samples])
    return contents


def tables_from_log(contents: CellLogContents) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the results and samples tables from the cell log. A cell measured twice keeps its last entry."""
    latest: dict[tuple[Any, ...], int] = {}
    for index, record in enumerate(contents.records):
        latest[tuple(record.get(name) for name in IDENTITY)] = index
    kept = sorted(latest.values())
    records = [contents.records[i] for i in kept]
    sample_rows: list[dict[str, Any]] = []
    for i in kept:
        record = contents.records[i]
        ident = {name: record.get(name) for name in ("run_id", *IDENTITY)}
        sample_rows.extend(
            {**ident, "sample": n, "number": record.get("number", 0), "per_call_s": s}
            for n, s in enumerate(contents.samples[i])
        )
    results = pd.DataFrame(records, columns=list(RESULT_COLUMNS))
    samples = pd.DataFrame(sample_rows, columns=list(SAMPLE_COLUMNS))
    return _typed_results(results), samples


def _typed_results(results: pd.DataFrame) -> pd.DataFrame:
    ints = ("size", "n_samples", "number", "warmup_calls")
    bools = ("noisy", "unsynchronized")
    strings = ("run_id", "op", "dtype", "device", "mode", "sync", "status", "reason", "placed_device",
               "stop_reason", "finished_at")
    out: pd.DataFrame = results.copy()
    for col in ints:
        out[col] = pd.to_numeric(out[col]).astype("int64")
    for col in bools:
        out[col] = out[col].astype(bool)
    for col in strings:
        out[col] = out[col].fillna("").astype(str)
    for col in RESULT_COLUMNS:
        if col not in ints + bools + strings:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
    return out


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


def finalize(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Re)build the final tables from cells.jsonl; safe to call any number of times."""
    results, samples = tables_from_log(read_cell_log(run_dir))
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
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{str(path)!r} is corrupt ({exc}); it is not valid JSON") from None
    if not isinstance(meta, dict):
        raise UsageError(f"{str(path)!r} is corrupt: expected a JSON object")
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UsageError(
            f"{str(run_dir)!r} has schema version {version!r}; this devbench reads version {SCHEMA_VERSION}"
        )
    return meta


def load_run(run_dir: Path) -> Run:
    """Read a run directory. The cell log is the source of truth; final tables are used when it is absent."""
    if not run_dir.exists():
        raise UsageError(f"run directory {str(run_dir)!r} does not exist")
    if not run_dir.is_dir():
        raise UsageError(f"{str(run_dir)!r} is not a directory")
    meta = read_meta(run_dir)
    contents = read_cell_log(run_dir)
    if contents.records:
        results, samples = tables_from_log(contents)
    elif (run_dir / RESULTS_PARQUET).exists():
        results = _read_table(run_dir / RESULTS_PARQUET, RESULT_COLUMNS)
        samples_path = run_dir / SAMPLES_PARQUET
        samples = (
            _read_table(samples_path, SAMPLE_COLUMNS)
            if samples_path.exists()
            else pd.DataFrame(columns=list(SAMPLE_COLUMNS))
        )
    else:
        raise UsageError(f"run directory {str(run_dir)!r} holds no measured cells")
    return Run(path=run_dir, meta=meta, results=results, samples=samples, torn_lines=contents.torn_lines)


def _read_table(path: Path, required: Sequence[str]) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:  # pyarrow and pandas raise many types for a corrupt file
        raise UsageError(f"cannot read {str(path)!r}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise UsageError(f"{str(path)!r} lacks the columns {', '.join(missing)}")
    return frame


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
    from dataclasses import fields

    from devbench.stats import NOISY_REL_IQR

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
    try:
        frame = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:  # pyarrow and pandas raise many types for a corrupt or empty file
        raise UsageError(f"cannot read {str(path)!r}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    required = ("op", "size", "dtype", "device", "median_s")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise UsageError(
            f"{str(path)!r} lacks the columns {', '.join(missing)}; "
            f"a results table needs {', '.join(required)}"
        )
    if frame.empty:
        raise UsageError(f"{str(path)!r} holds no rows")

    ints = ("size", "n_samples", "number", "warmup_calls")
    bools = ("noisy", "unsynchronized")
    defaults = {"mode": "eager", "status": "ok", "sync": "scalar", "run_id": path.stem}
    text_cols = {f.name for f in fields(Record) if f.type in ("str", str)}
    given = set(frame.columns)
    out = pd.DataFrame(index=frame.index)
    for col in RESULT_COLUMNS:
        if col in given:
            out[col] = frame[col]
        elif col in defaults:
            out[col] = defaults[col]
        elif col in ints:
            out[col] = 0
        elif col in bools:
            out[col] = False
        elif col in text_cols:
            out[col] = ""
        else:
            out[col] = float("nan")
    for col in text_cols:
        # An all-empty text column reads back from CSV as float NaN; make it text before anything else.
        text = out[col].astype(object).where(out[col].notna(), "").astype(str).str.strip()
        out[col] = text.replace("", defaults[col]) if col in defaults and col != "run_id" else text

    sizes = pd.to_numeric(out["size"], errors="coerce")
    bad_size = sizes.isna() | (sizes <= 0) | (sizes != sizes.round())
    if bad_size.any():
        value = frame["size"][bad_size].iloc[0]
        raise UsageError(
            f"{str(path)!r}: column size must hold positive integers (the matrix side n), found {value!r}"
        )
    out["size"] = sizes.astype("int64")
    for col in RESULT_COLUMNS:
        if col in given and col not in text_cols and col not in bools and col != "size":
            numbers = pd.to_numeric(out[col], errors="coerce")
            garbage = numbers.isna() & out[col].notna()
            if garbage.any():
                raise UsageError(
                    f"{str(path)!r}: column {col} must be numeric, found {out[col][garbage].iloc[0]!r}"
                )
            out[col] = numbers.fillna(0) if col in ints else numbers
    for col in bools:
        if col in given:
            words = out[col].astype(str).str.strip().str.lower()
            out[col] = words.isin(("true", "1", "1.0", "yes"))

    if "iqr_s" not in given:
        out["iqr_s"] = out["q3_s"] - out["q1_s"]
    if "rel_iqr" not in given:
        out["rel_iqr"] = out["iqr_s"] / out["median_s"]
    if "noisy" not in given:
        out["noisy"] = out["rel_iqr"] > NOISY_REL_IQR
    if "unsynchronized" not in given:
        out["unsynchronized"] = out["sync"] == "none"
    if "gflops" not in given:
        out["gflops"] = out["flops"] / out["median_s"] / 1e9
    if "gbps" not in given:
        out["gbps"] = out["bytes"] / out["median_s"] / 1e9

    out = out[~out.duplicated(subset=list(IDENTITY), keep="last")].reset_index(drop=True)
    return Run(
        path=path,
        meta={},
        results=_typed_results(out),
        samples=pd.DataFrame(columns=list(SAMPLE_COLUMNS)),
    )
