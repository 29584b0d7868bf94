"""Joining the shards of one sweep into one run, and writing runs as a dataset that query engines read.

:func:`merge_runs` checks that the shards belong together, then concatenates their results and raw samples;
:func:`write_merged` writes the outcome as an ordinary run directory (cells.jsonl, the final tables,
meta.json), so ``load_run``, the crossovers, charts, report and ``compare`` use it as they use an unsharded
run. What is refused, each with one line naming the runs:

- shards of different sweeps (spec hashes differ: ``shard.spec_hash``; with ``fleet=True`` the device lists
  may differ, since ``--devices all`` records what each machine has, and the merged spec lists them all);
- shard sets that are incomplete or repeat an index, or that disagree on the shard count;
- shards measured on machines that differ, unless ``fleet=True``. What must match is what makes timings
  comparable — CPU model, TensorFlow version, device list and devbench version (``machine.INCOMPARABLE_FIELDS``) — but
  not the hostname: the nodes of a Slurm array or an Indexed Job are identical machines with their own names;
- two shards that hold the same cell (a copied or edited run).

A run without a ``shard`` entry in meta.json counts as shard 0/1, so merging two whole runs says they are
duplicates of shard 0, unless ``fleet=True``: whole runs of several machines (or times) are a fleet, not
shards (:func:`is_fleet_of_whole_runs`), and ``merge --fleet`` writes them to its dataset alone.

Provenance: each shard's run id, path, status, times, command, calibration and full machine fingerprint are
kept under ``meta["shards"]`` (by index); which shard measured a cell follows from the spec and the count
(``shard.assign``), so rows carry the merged run's id like any unsharded run.

:func:`write_partitioned` is the one writer of the Hive-partitioned Parquet dataset
(``machine=<name>/run=<run id>/`` with cells, visits, samples and meta.json: ``devbench.dataset`` documents
the layout and reads it back), used by ``merge --fleet`` and ``devbench dataset add``; DuckDB, polars and
Spark read it with one glob. Adding is idempotent and each partition appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from devbench.errors import UsageError
from devbench.formatting import json_safe, utc_now
from devbench.schema import IDENTITY, RESULT_COLUMNS, SAMPLE_COLUMNS, VISIT_FIELDS, visit_record
from devbench.shard import ShardSpec, shard_of_meta, spec_hash, spec_hash_of
from devbench.spec import SweepSpec
from devbench.store import (
    CELLS,
    META,
    CellLog,
    Run,
    check_new_run_dir,
    read_cell_log,
    tables_from_log,
    write_json,
    write_tables,
)
from devbench.visits import LoggedVisit


@dataclass
class MergedRun:
    """Shards joined: meta.json's content, and the results and samples tables with the merged run id."""

    meta: dict[str, Any]
    results: pd.DataFrame
    samples: pd.DataFrame
    visits: list[LoggedVisit] = field(default_factory=list)
    """Every shard's cells.jsonl lines (one per visit, with its round), under the merged run id: what the
    merged run's own cells.jsonl holds, so its rows are built from the visits as a sweep's are."""


def _name(run: Run) -> str:
    return str(run.path) if run.path is not None else str(run.meta.get("run_id") or "a run")


def _shard(run: Run) -> ShardSpec:
    return shard_of_meta(run.meta) or ShardSpec(0, 1)


def _machine_differences(runs: Sequence[Run]) -> list[str]:
    """One phrase per fingerprint item (except the hostname) in which a shard differs from the first."""
    from devbench.machine import incomparable_changes

    first = runs[0].meta.get("machine") or {}
    problems: list[str] = []
    for run in runs[1:]:
        problems.extend(f"{diff.field} {diff.new!r} in {_name(run)} vs {diff.base!r} in {_name(runs[0])}"
                        for diff in incomparable_changes(first, run.meta.get("machine") or {})
                        if diff.field != "hostname")
    return problems


def check_shards(runs: Sequence[Run], *, fleet: bool = False) -> list[tuple[ShardSpec, Run]]:
    """The runs sorted by shard index, after every check in the module docstring (UsageError otherwise)."""
    if not runs:
        raise UsageError("no runs to merge; give the run directories of every shard")
    for run in runs:
        if not run.meta:
            raise UsageError(f"{_name(run)} is a bare results table; merge needs run directories (with meta.json)")
        if not isinstance(run.meta.get("spec"), Mapping):
            raise UsageError(f"{_name(run)} records no spec in meta.json; it cannot be matched with other shards")
    hashes = {_name(run): spec_hash_of(run.meta["spec"], ignore_devices=fleet) for run in runs}
    if len(set(hashes.values())) > 1:
        listing = ", ".join(f"{name} has {digest}" for name, digest in hashes.items())
        what = "spec hashes without the devices" if fleet else "spec hashes"
        raise UsageError(f"shards of different sweeps ({what} differ: {listing}); merge only the shards "
                         "of one sweep")
    shards = [(_shard(run), run) for run in runs]
    counts = sorted({shard.count for shard, _ in shards})
    if len(counts) > 1:
        listing = ", ".join(f"{_name(run)} is {shard.label()}" for shard, run in shards)
        raise UsageError(f"shards disagree on the shard count ({listing})")
    count = counts[0]
    by_index: dict[int, list[Run]] = {}
    for shard, run in shards:
        by_index.setdefault(shard.index, []).append(run)
    duplicates = {i: rs for i, rs in by_index.items() if len(rs) > 1}
    if duplicates:
        listing = "; ".join(f"shard {i}/{count} given {len(rs)} times ({', '.join(_name(r) for r in rs)})"
                            for i, rs in sorted(duplicates.items()))
        whole = (" (runs without a shard entry count as 0/1; whole runs of several machines or times belong in "
                 "a dataset: devbench dataset add RUN... --to DIR, or merge --fleet)") if count == 1 else ""
        raise UsageError(f"duplicate shards: {listing}{whole}")
    missing = [i for i in range(count) if i not in by_index]
    if missing:
        raise UsageError(f"missing shard{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(f'{i}/{count}' for i in missing)} (given: "
                         f"{', '.join(str(i) for i in sorted(by_index))}); merge needs all {count}")
    ordered = sorted(shards, key=lambda pair: pair[0].index)
    if not fleet:
        problems = _machine_differences([run for _, run in ordered])
        if problems:
            raise UsageError(f"shards come from machines that differ ({'; '.join(problems)}); their timings do "
                             "not belong in one run unless you mean it: pass --fleet")
    return ordered


def is_fleet_of_whole_runs(runs: Sequence[Run]) -> bool:
    """Several runs of which none is a shard (no ``shard`` entry in meta.json): whole runs, of several machines
    or times, are a fleet (a dataset: ``devbench dataset add``), not the shards of one sweep, so
    ``merge --fleet`` writes them to its dataset instead of refusing them as duplicates of shard 0/1."""
    return len(runs) > 1 and all(run.meta and shard_of_meta(run.meta) is None for run in runs)


def _shard_entry(shard: ShardSpec, run: Run) -> dict[str, Any]:
    meta = run.meta
    return {
        "index": shard.index,
        "count": shard.count,
        "run_id": meta.get("run_id"),
        "path": None if run.path is None else str(run.path),
        "status": meta.get("status"),
        "started_at": meta.get("started_at"),
        "finished_at": meta.get("finished_at"),
        "command": meta.get("command"),
        "n_cells": len(run.results),
        "machine": meta.get("machine") or {},
        "calibration": meta.get("calibration"),
        "resumed": meta.get("resumed") or [],
    }


def merge_runs(runs: Sequence[Run], *, fleet: bool = False, run_id: str | None = None,
               argv: Sequence[str] = ()) -> MergedRun:
    """Join the shards of one sweep (see the module docstring for what is refused).

    ``run_id`` names the merged run (the CLI passes the output directory's name; default
    ``merged-<spec hash>``); every row gets it. meta.json is the first shard's, with the merged run's id,
    command (``argv``), earliest start and latest end, status ``complete`` only when every shard is complete
    and every planned cell is present (``interrupted`` otherwise, so ``devbench sweep --resume`` on the merged
    run measures what is missing), ``shard`` removed, and ``shards`` listing each shard (``_shard_entry``).
    """
    ordered = check_shards(runs, fleet=fleet)
    first = ordered[0][1]
    specs = [SweepSpec.from_dict(dict(run.meta["spec"])) for _, run in ordered]
    # Identical shards share the device list; with fleet=True the merged spec lists every shard's devices.
    spec = replace(specs[0], devices=tuple(dict.fromkeys(d for s in specs for d in s.devices)))
    digest = spec_hash(spec)
    merged_id = run_id or f"merged-{digest}"
    results = pd.concat([run.results for _, run in ordered], ignore_index=True)
    non_empty = [run.samples for _, run in ordered if not run.samples.empty]
    samples = (pd.concat(non_empty, ignore_index=True) if non_empty
               else pd.DataFrame(columns=list(SAMPLE_COLUMNS)))
    repeated = results.duplicated(subset=list(IDENTITY), keep=False)
    if repeated.any():
        cell = results[repeated].iloc[0]
        holders = [_name(run) for _, run in ordered
                   if ((run.results[list(IDENTITY)] == cell[list(IDENTITY)]).all(axis=1)).any()]
        raise UsageError(f"cell {'/'.join(str(cell[c]) for c in IDENTITY)} is in more than one shard "
                         f"({', '.join(holders)}); shards of one sweep never share a cell")
    results["run_id"] = merged_id
    samples["run_id"] = merged_id

    planned = spec.n_cells()
    # Counted by identity, not by rows: --refine adds cells at sizes outside the plan.
    present = set(results[list(IDENTITY)].itertuples(index=False, name=None))
    missing = sum(1 for cell in spec.cells() if cell.key() not in present)
    complete = all(run.meta.get("status") == "complete" for _, run in ordered) and missing == 0
    meta = copy.deepcopy(first.meta)
    meta.pop("shard", None)
    meta["spec"] = json_safe(spec.to_dict())
    starts = [str(run.meta["started_at"]) for _, run in ordered if run.meta.get("started_at")]
    ends = [str(run.meta["finished_at"]) for _, run in ordered if run.meta.get("finished_at")]
    meta.update({
        "run_id": merged_id,
        "status": "complete" if complete else "interrupted",
        "command": " ".join(["devbench", *argv]) if argv else "devbench merge (Python API)",
        "argv": list(argv),
        "started_at": min(starts) if starts else meta.get("started_at"),
        "finished_at": max(ends) if ends else meta.get("finished_at"),
        "merged_at": utc_now(),
        "n_cells": planned,
        "missing_cells": missing,
        "sharded": {"spec_hash": digest, "count": ordered[0][0].count, "fleet": fleet},
        "shards": [_shard_entry(shard, run) for shard, run in ordered],
        "resumed": [{**entry, "shard": shard.index} for shard, run in ordered
                    for entry in run.meta.get("resumed") or [] if isinstance(entry, Mapping)],
    })
    visits = [LoggedVisit(visit_record({**record, "run_id": merged_id}), samples_, round_)
              for _, run in ordered if run.path is not None
              for record, samples_, round_ in _logged(run.path)]
    return MergedRun(meta=meta, results=results.reset_index(drop=True), samples=samples.reset_index(drop=True),
                     visits=visits)


def _logged(run_dir: Path) -> list[tuple[dict[str, Any], list[float], int]]:
    contents = read_cell_log(run_dir)
    return list(zip(contents.records, contents.samples, contents.rounds, strict=True))


def write_merged(merged: MergedRun, out_dir: Path) -> Path:
    """Write ``merged`` as a run directory at ``out_dir`` (new or empty), all at once: everything is written
    into a temporary sibling directory and renamed into place, so a merge cut short leaves nothing half done.
    The tables are rebuilt from the written cells.jsonl, exactly as a sweep's final tables are."""
    out_dir = Path(out_dir)
    check_new_run_dir(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise UsageError(f"--out {str(out_dir)!r} is not empty; give a new or empty directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.merging-", dir=out_dir.parent))
    try:
        log = CellLog(staging)
        for visit in merged.visits:
            log.append(visit.record, visit.samples, visit.round)
        meta: dict[str, Any] = json_safe(merged.meta)
        results, samples = tables_from_log(read_cell_log(staging), meta)
        write_tables(staging, results, samples)
        write_json(staging / META, meta)
        if out_dir.is_dir():
            out_dir.rmdir()  # empty (checked above); the rename needs the name free
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

CELLS_FILE = "cells.parquet"
"""A partition's cells: one row per cell, ``schema.RESULT_COLUMNS`` plus ``machine_name`` (the name as given)."""
VISITS_FILE = "visits.parquet"
"""A partition's cell log: one row per visit, ``round``, ``process``, the ``schema.VisitRecord`` fields and its
``samples`` (a list of per-call seconds); empty for a run without a cell log (a bare table)."""
SAMPLES_FILE = "samples.parquet"
"""A partition's samples table (``schema.SAMPLE_COLUMNS``): what crossovers and compare read."""
META_FILE = "meta.json"
"""The run's meta.json, plus ``dataset``: machine, run, content digest, when it was added and from where."""
PARTITION_FILES = (CELLS_FILE, VISITS_FILE, SAMPLES_FILE, META_FILE)
STAGING = ".staging"
"""Where partitions are assembled before the rename that publishes them (two levels below the dataset so a
``*/*/cells.parquet`` glob never sees a partition half written)."""


def partition_value(text: str) -> str:
    """A Hive partition value that every engine reads back as written: letters, digits, ``.``, ``_`` and
    ``-``; anything else becomes ``-`` (``AMD EPYC 7B13 (2 cores)`` -> ``AMD-EPYC-7B13-2-cores``)."""
    return _UNSAFE.sub("-", text).strip("-.") or "unknown"


VISIT_COLUMNS: tuple[str, ...] = ("round", "process", *VISIT_FIELDS, "samples")


def visits_frame(run: Run) -> pd.DataFrame:
    """A run's cell log as a table (``VISIT_COLUMNS``): from its cells.jsonl, or from the visits file of a
    dataset partition it was read from; empty for a run without either."""
    out: pd.DataFrame = pd.DataFrame(columns=list(VISIT_COLUMNS))
    if run.path is not None and run.path.is_dir():
        if (run.path / VISITS_FILE).exists() and not (run.path / CELLS).exists():
            frame: pd.DataFrame = pd.read_parquet(run.path / VISITS_FILE)
            out = frame[[c for c in VISIT_COLUMNS if c in frame.columns]]
        else:
            contents = read_cell_log(run.path)
            out = pd.DataFrame(
                [{"round": r, "process": p, **record, "samples": samples}
                 for record, samples, r, p in zip(contents.records, contents.samples, contents.rounds,
                                                  contents.processes, strict=True)],
                columns=list(VISIT_COLUMNS))
    return out


def _plain(value: Any) -> Any:
    """A cell of a frame as plain JSON data (NumPy scalars and arrays, from Parquet or pandas)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return value


def content_digest(results: pd.DataFrame, visits: pd.DataFrame) -> str:
    """What makes two copies of a run the same run: a SHA-256 of its visits (the source of truth: records,
    rounds, processes and samples) or, without a cell log, of its cells. The same run read from its directory,
    from a dataset partition or from a merge of its shards gives the same digest; meta.json does not count
    (a run's status or paths may be rewritten without changing what it measured)."""
    if len(visits):
        frame, columns = visits, [c for c in VISIT_COLUMNS if c != "process" and c in visits.columns]
    else:
        frame, columns = results, [c for c in RESULT_COLUMNS if c in results.columns and c != "run_id"]
    rows = sorted(json.dumps([_plain(v) for v in row], default=str, allow_nan=True)
                  for row in frame[columns].itertuples(index=False, name=None))
    digest = hashlib.sha256()
    for row in rows:
        digest.update(row.encode("utf-8") + b"\n")
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class PartitionWrite:
    """One run's partition: where it is, whether this call wrote it (False: it was there, identical)."""

    path: Path
    machine: str
    run_id: str
    n_cells: int
    added: bool

    @property
    def cells_file(self) -> Path:
        return self.path / CELLS_FILE


def _partition_digest(folder: Path) -> str | None:
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    entry = meta.get("dataset") if isinstance(meta, dict) else None
    digest = entry.get("digest") if isinstance(entry, dict) else None
    return digest if isinstance(digest, str) else None


def _write_file(path: Path, write: Any) -> None:
    """``write(tmp)`` then fsync and rename to ``path``: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_partitioned(runs: Sequence[Run], out_dir: Path, labels: Sequence[str | None] | None = None, *,
                      visits: Sequence[pd.DataFrame | None] | None = None, sources: Sequence[str] | None = None
                      ) -> list[PartitionWrite]:
    """Add each run to the Hive-partitioned dataset ``out_dir/machine=<m>/run=<r>/`` (``PARTITION_FILES``).

    ``m`` is the machine's name (``fleet.machine_name``: its label, else the fingerprint's short name) and
    ``r`` the run id, both made safe by :func:`partition_value`; runs on the same machine share a ``machine=``
    folder. ``visits`` gives a run's cell log where the run has no directory to read it from (a merge of
    shards); ``sources`` what meta.json records as where each run came from.

    Idempotent: a run whose partition is already there with the same content digest (:func:`content_digest`)
    is left as it is (``added`` False), so adding a run twice changes nothing; the same run id with other
    content, or under another machine, is refused with one line. Crash-safe: a partition is assembled under
    ``out_dir/.staging/`` (each file through a temporary name and a rename) and published by renaming its
    folder, so a partition is complete or absent.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from devbench.fleet import machine_name

    if labels is not None and len(labels) != len(runs):
        raise UsageError(f"{len(labels)} labels for {len(runs)} runs; give one label per run")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"dataset {str(out_dir)!r} is a file; give a directory (new, or a dataset to add to)")
    written: list[PartitionWrite] = []
    seen: dict[Path, tuple[str, str]] = {}
    for i, run in enumerate(runs):
        name = machine_name(run, labels[i] if labels is not None else None)
        run_id = str(run.meta.get("run_id") or (run.path.name if run.path is not None else f"run{i}"))
        machine_dir = f"machine={partition_value(name)}"
        run_dir = f"run={partition_value(run_id)}"
        folder = out_dir / machine_dir / run_dir
        log = visits[i] if visits is not None and visits[i] is not None else visits_frame(run)
        assert log is not None
        digest = content_digest(run.results, log)
        result = PartitionWrite(folder, name, run_id, len(run.results), added=False)
        if folder in seen:
            if seen[folder][1] != digest:
                raise UsageError(f"{_name(run)} and {seen[folder][0]} both land in {str(folder)!r} with different "
                                 "content; give distinct run ids or labels")
            written.append(result)
            continue
        seen[folder] = (_name(run), digest)
        elsewhere = [p for p in out_dir.glob(f"machine=*/{run_dir}") if p.parent.name != machine_dir]
        if elsewhere:
            raise UsageError(f"run {run_id!r} is already in the dataset under {elsewhere[0].parent.name}; a run "
                             f"belongs to one machine (adding it as {machine_dir} would count it twice)")
        if folder.exists():
            existing = _partition_digest(folder)
            if existing != digest:
                raise UsageError(f"run {run_id!r} ({_name(run)}) differs from the run of that id already in "
                                 f"{str(folder)!r} (content digest {digest} vs {existing}); a dataset holds one "
                                 "version of a run: give the new one another run id")
            written.append(result)
            continue
        meta: dict[str, Any] = json_safe({
            **run.meta,
            "dataset": {"machine": name, "run": run_id, "digest": digest, "added_at": utc_now(),
                        "source": sources[i] if sources is not None else _name(run)},
        })
        cells = pd.DataFrame(run.results[list(RESULT_COLUMNS)]).assign(machine_name=name)
        samples = pd.DataFrame(run.samples.reindex(columns=list(SAMPLE_COLUMNS)))
        log = pd.DataFrame(log.reindex(columns=list(VISIT_COLUMNS)))
        try:
            staging_root = out_dir / STAGING
            staging_root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f"{partition_value(run_id)}-", dir=staging_root))
        except OSError as exc:
            raise UsageError(f"cannot write the dataset {str(out_dir)!r}: {exc.strerror or exc}") from None
        try:
            for frame, file in ((cells, CELLS_FILE), (samples, SAMPLES_FILE), (log, VISITS_FILE)):
                table = pa.Table.from_pandas(frame, preserve_index=False)
                _write_file(staging / file, lambda tmp, table=table: pq.write_table(table, tmp))
            text = json.dumps(meta, indent=2, default=str) + "\n"
            _write_file(staging / META_FILE, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
            folder.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(staging, folder)  # the partition appears whole, or not at all
            except OSError:
                if not folder.is_dir():
                    raise
                # Another writer published this partition meanwhile: the same run is fine, another is not.
                if _partition_digest(folder) != digest:
                    raise UsageError(f"run {run_id!r} was added to {str(folder)!r} by another writer with other "
                                     "content meanwhile; give the new one another run id") from None
                shutil.rmtree(staging, ignore_errors=True)
                written.append(result)
                continue
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            with contextlib.suppress(OSError):
                staging_root.rmdir()  # only when empty: another writer's staging stays
        written.append(replace(result, added=True))
    return written
