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

Reading a dataset of 1000 synthetic runs back took 10.6 s of CPU (``bench/dataset_scale.py``; README has the
rest of the figures).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
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


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{str(folder / META_FILE)!r} cannot be read: {exc}".splitlines()[0]) from None
    if not isinstance(meta, dict):
        raise UsageError(f"{str(folder / META_FILE)!r} is corrupt: expected a JSON object")
    return meta


_PART = "__partition"
"""A column the batched reader tags each row with: the index of the partition it came from."""


def _read_tables(files: Sequence[Path], required: Sequence[str]) -> pd.DataFrame:
    """The Parquet files as one frame (Arrow concatenates them, types promoted where a file has only
    nulls), each row tagged with its file's index in ``_PART``; UsageError naming a file that cannot be read
    or lacks a required column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for i, path in enumerate(files):
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises many types for a corrupt file
            raise UsageError(f"cannot read {str(path)!r}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
        missing = [c for c in required if c not in table.column_names]
        if missing:
            raise UsageError(f"{str(path)!r} lacks the columns {', '.join(missing)}")
        tables.append(table.append_column(_PART, pa.array(np.full(table.num_rows, i, dtype=np.int64))))
    try:
        joined = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise UsageError(f"the tables of {len(files)} runs do not fit together: {exc}".splitlines()[0]) from None
    frame: pd.DataFrame = joined.to_pandas()
    return frame


def read_partitions(folders: Sequence[Path]) -> list[Run]:
    """Partitions as ``store.Run`` objects, each with its meta (and the ``dataset`` entry), cells and samples.

    The tables of all of them are read and checked together (``schema.check_table``, as any results table
    from disk; one check for the batch, since per-column checks cost far more than the reading) and split
    by partition, so reading a thousand runs costs about one pass over their rows (``bench/dataset_scale.py``).
    """
    if not folders:
        return []
    metas = [_read_meta(folder) for folder in folders]
    label = repr(str(folders[0].parent.parent)) if len(folders) > 1 else repr(str(folders[0] / CELLS_FILE))
    cells = _read_tables([f / CELLS_FILE for f in folders], RESULT_COLUMNS)
    parts = cells[_PART].to_numpy()
    results = results_frame(check_table(cells, label, RESULT_COLUMNS))
    with_samples = [f for f in folders if (f / SAMPLES_FILE).exists()]
    index_of = {f: i for i, f in enumerate(folders)}
    if with_samples:
        raw = _read_tables([f / SAMPLES_FILE for f in with_samples], ())
        sample_parts = np.array([index_of[with_samples[i]] for i in raw[_PART].to_numpy()], dtype=np.int64)
        samples = check_table(raw, label, [c for c in SAMPLE_COLUMNS if c in raw.columns])
        samples = samples[[c for c in SAMPLE_COLUMNS if c in samples.columns]]
    else:
        sample_parts = np.zeros(0, dtype=np.int64)
        samples = pd.DataFrame(columns=list(SAMPLE_COLUMNS))
    cell_rows = _rows_by_part(parts, len(folders))
    sample_rows = _rows_by_part(sample_parts, len(folders))
    return [Run(path=folder, meta=meta,
                results=results.iloc[cell_rows[i]].reset_index(drop=True),
                samples=samples.iloc[sample_rows[i]].reset_index(drop=True))
            for i, (folder, meta) in enumerate(zip(folders, metas, strict=True))]


def _rows_by_part(parts: npt.NDArray[np.int64], n: int) -> list[npt.NDArray[np.intp]]:
    order = np.argsort(parts, kind="stable")
    bounds = np.searchsorted(parts[order], np.arange(n + 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(n)]


def read_partition(folder: Path) -> Run:
    """One partition as a ``store.Run`` (:func:`read_partitions`)."""
    return read_partitions([folder])[0]


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
            found = read_partitions(partitions(path))
            if not found:
                raise UsageError(f"dataset {str(path)!r} holds no runs (no machine=…/run=…/{CELLS_FILE})")
            runs.extend(sorted(found, key=started_at))
        else:
            runs.append(load_any(path))
    return select_machines(runs, machines) if machines else runs


# ---------------------------------------------------------------------------------------------------------
# Machines


def dataset_label(run: Run) -> str | None:
    """The machine name a run's dataset partition was written under (``dataset add --label``), if it has one."""
    entry = run.meta.get("dataset") if run.meta else None
    if isinstance(entry, Mapping) and isinstance(entry.get("machine"), str) and entry["machine"]:
        return str(entry["machine"])
    return None


def machine_of(run: Run, label: str | None = None) -> str:
    """The machine a run belongs to: ``label`` if given, else the name its dataset partition was written
    under, else ``fleet.machine_name`` (the fingerprint's short name, or a bare table's file stem)."""
    from devbench.fleet import machine_name

    return label or dataset_label(run) or machine_name(run)


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
    available = sorted(set(names))
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
