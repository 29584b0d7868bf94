"""One dataset of any runs: whole runs of any machine and any time in one Hive-partitioned Parquet dataset.

Layout (written by ``merge.write_partitioned``, the one writer of partitions)::

    DIR/machine=<machine>/run=<run id>/
        cells.parquet    one row per cell (schema.RESULT_COLUMNS + machine_name)
        visits.parquet   the cell log: one row per visit (round, process, the visit record, its samples)
        samples.parquet  one row per timed block (schema.SAMPLE_COLUMNS): what crossovers and compare read
        meta.json        the run's meta.json, plus "dataset": machine, run, content digest, added_at, source

DuckDB, polars and Spark read every run with one glob (``DIR/*/*/cells.parquet``, Hive partitioning gives the
``machine`` and ``run`` columns); devbench reads it back through :func:`runs_from_paths`, which turns each
partition into a ``store.Run`` with its meta, so ``fleet`` (and ``history``) take datasets, run directories
and bare tables alike.

:func:`add_runs` adds *whole* runs: the shards of a sharded sweep are merged first (``merge.merge_runs``), so
a dataset never holds half a sweep as if it were a run. Adding is idempotent (a run already there with the
same content digest is left alone) and a run id that comes back with other content is refused: a dataset
holds one version of each run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from devbench.errors import UsageError, did_you_mean
from devbench.merge import (
    CELLS_FILE,
    META_FILE,
    SAMPLES_FILE,
    VISIT_COLUMNS,
    PartitionWrite,
    merge_runs,
    partition_value,
    write_partitioned,
)
from devbench.schema import RESULT_COLUMNS, SAMPLE_COLUMNS, check_table, results_frame
from devbench.shard import shard_of_meta
from devbench.store import Run, load_any

MACHINE_PREFIX = "machine="
RUN_PREFIX = "run="


# ---------------------------------------------------------------------------------------------------------
# Reading


def is_partition(path: Path) -> bool:
    """A dataset partition: a folder holding cells.parquet and meta.json."""
    return (path / CELLS_FILE).is_file() and (path / META_FILE).is_file()


def is_dataset(path: Path) -> bool:
    """A dataset root: a folder with ``machine=…`` folders (and no meta.json of its own)."""
    return path.is_dir() and not (path / META_FILE).exists() and any(
        child.is_dir() and child.name.startswith(MACHINE_PREFIX) for child in path.iterdir())


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame: pd.DataFrame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a corrupt file
        raise UsageError(f"cannot read {str(path)!r}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    return frame


def read_partition(folder: Path) -> Run:
    """One partition as a ``store.Run``: its meta (with the ``dataset`` entry), its cells and samples, each
    column checked as any results table from disk is (``schema.check_table``)."""
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{str(folder / META_FILE)!r} cannot be read: {exc}".splitlines()[0]) from None
    if not isinstance(meta, dict):
        raise UsageError(f"{str(folder / META_FILE)!r} is corrupt: expected a JSON object")
    cells = _read_parquet(folder / CELLS_FILE)
    missing = [c for c in RESULT_COLUMNS if c not in cells.columns]
    if missing:
        raise UsageError(f"{str(folder / CELLS_FILE)!r} lacks the columns {', '.join(missing)}")
    results = results_frame(check_table(cells, repr(str(folder / CELLS_FILE)), RESULT_COLUMNS))
    samples_path = folder / SAMPLES_FILE
    if samples_path.exists():
        frame = _read_parquet(samples_path)
        samples = check_table(frame, repr(str(samples_path)), [c for c in SAMPLE_COLUMNS if c in frame.columns])
    else:
        samples = pd.DataFrame(columns=list(SAMPLE_COLUMNS))
    return Run(path=folder, meta=meta, results=results, samples=samples)


def partitions(root: Path) -> list[Path]:
    """The partition folders of a dataset root or of one ``machine=…`` folder, by machine and run."""
    if root.name.startswith(MACHINE_PREFIX):
        machines = [root]
    else:
        machines = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(MACHINE_PREFIX))
    return [run for machine in machines for run in sorted(machine.iterdir())
            if run.name.startswith(RUN_PREFIX) and is_partition(run)]


def started_at(run: Run) -> str:
    """The run's start time as meta.json records it (ISO 8601, UTC), "" when unknown (a bare table)."""
    value = run.meta.get("started_at") if run.meta else None
    return value if isinstance(value, str) else ""


def runs_from_paths(paths: Iterable[Path], machines: Sequence[str] | None = None) -> list[Run]:
    """Every run under ``paths``: run directories, bare results tables (.csv, .parquet), dataset roots and
    ``machine=…`` folders (each partition a run, oldest first by ``started_at``), and single partitions.

    ``machines``: keep only the runs of these machines (:func:`select_machines`). UsageError for a path that
    is none of these, or a dataset without a run.
    """
    runs: list[Run] = []
    for path in (Path(p) for p in paths):
        if not path.exists():
            raise UsageError(f"{str(path)!r} does not exist; give run directories, results tables or datasets")
        if path.is_dir() and is_partition(path):
            runs.append(read_partition(path))
        elif path.is_dir() and (path.name.startswith(MACHINE_PREFIX) or is_dataset(path)):
            found = [read_partition(folder) for folder in partitions(path)]
            if not found:
                raise UsageError(f"dataset {str(path)!r} holds no runs (no machine=…/run=…/{CELLS_FILE})")
            runs.extend(sorted(found, key=started_at))
        else:
            runs.append(load_any(path))
    return select_machines(runs, machines) if machines else runs


# ---------------------------------------------------------------------------------------------------------
# Machines


def machine_of(run: Run, label: str | None = None) -> str:
    """The machine a run belongs to: ``label`` if given, else the name its dataset partition was written
    under, else ``fleet.machine_name`` (the fingerprint's short name, or a bare table's file stem)."""
    from devbench.fleet import machine_name

    if label:
        return label
    entry = run.meta.get("dataset") if run.meta else None
    if isinstance(entry, Mapping) and isinstance(entry.get("machine"), str) and entry["machine"]:
        return str(entry["machine"])
    return machine_name(run)


def machine_labels(runs: Sequence[Run], labels: Sequence[str | None] | None = None) -> list[str]:
    """One machine name per run (:func:`machine_of`), ``labels`` overriding where given."""
    if labels is not None and len(labels) != len(runs):
        raise UsageError(f"{len(labels)} labels for {len(runs)} runs; give one label per run")
    return [machine_of(run, labels[i] if labels is not None else None) for i, run in enumerate(runs)]


def select_machines(runs: Sequence[Run], machines: Sequence[str]) -> list[Run]:
    """The runs of the named machines (``--machine``), matched as written or as its partition value
    (``AMD EPYC (2 cores)`` or ``AMD-EPYC-2-cores``); a name that matches no run is a UsageError listing
    the machines there are."""
    names = [machine_of(run) for run in runs]
    available = list(dict.fromkeys(names))
    wanted = set()
    for machine in machines:
        hits = {n for n in available if machine in (n, partition_value(n))}
        if not hits:
            raise UsageError(f"--machine {machine!r} matches no run{did_you_mean(machine, available)}; machines "
                             f"here: {', '.join(available)}")
        wanted |= hits
    return [run for run, name in zip(runs, names, strict=True) if name in wanted]


# ---------------------------------------------------------------------------------------------------------
# Adding


@dataclass(frozen=True)
class WholeRun:
    """A run ready for the dataset: a whole run, or the shards of one sweep merged (``visits`` then holds
    the merged cell log, since no directory holds it)."""

    run: Run
    visits: pd.DataFrame | None
    source: str


def _source(run: Run) -> str:
    return str(run.path) if run.path is not None else str(run.meta.get("run_id") or "a run")


def _merged_visits(visits: Sequence[Any]) -> pd.DataFrame:
    rows = [{"round": v.round, "process": 0, **v.record.as_dict(), "samples": list(v.samples)} for v in visits]
    frame: pd.DataFrame = pd.DataFrame(rows, columns=list(VISIT_COLUMNS))
    return frame


def whole_runs(runs: Sequence[Run]) -> list[WholeRun]:
    """Runs as whole runs: each run without a ``shard`` entry as it is, and the shards of each sharded sweep
    (same spec hash and shard count) merged into one run with ``merge.merge_runs`` (every check of a merge:
    all shards present, none twice). Its id is ``merged-<spec hash>-<earliest start>``, the same every time
    the same shards are merged, so adding them twice changes nothing."""
    out: list[WholeRun] = []
    groups: dict[tuple[str, int], list[Run]] = {}
    order: list[tuple[str, int] | int] = []
    for i, run in enumerate(runs):
        shard = shard_of_meta(run.meta) if run.meta else None
        if shard is None:
            order.append(i)
            continue
        entry = run.meta.get("shard") or {}
        key = (str(entry.get("spec_hash", "")), shard.count)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(run)
    for item in order:
        if isinstance(item, int):
            out.append(WholeRun(runs[item], None, _source(runs[item])))
            continue
        group = groups[item]
        start = min((started_at(r) for r in group if started_at(r)), default="")
        stamp = "".join(c for c in start if c.isdigit())[:14]
        run_id = f"merged-{item[0][:12]}" + (f"-{stamp}" if stamp else "")
        merged = merge_runs(group, fleet=True, run_id=run_id, argv=("dataset", "add"))
        run = Run(path=None, meta=merged.meta, results=merged.results, samples=merged.samples)
        out.append(WholeRun(run, _merged_visits(merged.visits),
                            " + ".join(_source(r) for r in group)))
    return out


def add_runs(paths: Sequence[Path], out_dir: Path, labels: Sequence[str] | None = None) -> list[PartitionWrite]:
    """``devbench dataset add``: every run under ``paths`` (:func:`runs_from_paths`: run directories, tables,
    other datasets) as whole runs (:func:`whole_runs`) into the dataset ``out_dir``.

    ``labels``: one machine name for every run, or one per path (a path that holds several runs gives each the
    same label); without, each run keeps its machine (:func:`machine_of`)."""
    if labels and len(labels) not in (1, len(paths)):
        raise UsageError(f"{len(labels)} --label for {len(paths)} runs; give one label for all, or one per RUN "
                         "in order")
    runs: list[Run] = []
    run_labels: list[str] = []
    for i, path in enumerate(paths):
        found = runs_from_paths([path])
        runs.extend(found)
        label = (labels[0] if len(labels) == 1 else labels[i]) if labels else None
        run_labels.extend(machine_of(run, label) for run in found)
    label_of = {id(run): name for run, name in zip(runs, run_labels, strict=True)}
    whole = whole_runs(runs)
    names = []
    for item in whole:
        first = next((r for r in runs if r is item.run), None)
        if first is None:  # merged shards: the machine of their first shard
            shard_ids = {str(e.get("run_id")) for e in item.run.meta.get("shards") or [] if isinstance(e, dict)}
            first = next(r for r in runs if str(r.meta.get("run_id")) in shard_ids)
        names.append(label_of[id(first)])
    return write_partitioned([w.run for w in whole], out_dir, names,
                             visits=[w.visits for w in whole], sources=[w.source for w in whole])


def listing(root: Path) -> pd.DataFrame:
    """One row per run in a dataset: machine, run, started_at, status, cells, digest (``dataset list``)."""
    rows = []
    for folder in partitions(root):
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{str(folder / META_FILE)!r} cannot be read: {exc}".splitlines()[0]) from None
        entry = meta.get("dataset") if isinstance(meta.get("dataset"), dict) else {}
        rows.append({"machine": entry.get("machine", folder.parent.name[len(MACHINE_PREFIX):]),
                     "run": entry.get("run", folder.name[len(RUN_PREFIX):]),
                     "started_at": meta.get("started_at") or "", "status": meta.get("status") or "",
                     "cells": meta.get("n_cells"), "digest": entry.get("digest", "")})
    frame: pd.DataFrame = pd.DataFrame(rows, columns=["machine", "run", "started_at", "status", "cells", "digest"])
    return frame
