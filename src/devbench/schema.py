"""The public result schema (version 2): one flat row per cell, plus a long table of raw samples.

Bump ``SCHEMA_VERSION`` whenever a column is renamed, removed or changes meaning; readers refuse files of
another version with a clear message rather than guessing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, TypeVar

SCHEMA_VERSION = 2
"""2: rounds. Each cells.jsonl line is one visit (``round``); result rows gained ``n_rounds``,
``between_round_rel``, ``ci_reason``, ``incomplete`` and the GPU telemetry columns; samples gained ``round``."""

READABLE_SCHEMA_VERSIONS = (1, 2)
"""Version 1 runs read as runs of one round: every line is the one visit of its cell."""

STATUSES = ("ok", "unsupported", "fallback", "wrong", "oom", "skipped", "error")
"""``ok`` measured; ``unsupported`` the framework cannot run this op/dtype/device; ``fallback`` the output landed
on another device than asked; ``wrong`` the result missed the numpy reference; ``oom`` the device ran out of
memory; ``skipped`` not attempted (reason says why: memory or time guard); ``error`` anything else (a bug to
report)."""

LEGACY_VISITED_ONCE = "visited once:"
"""How cells.jsonl lines written before :attr:`VisitRecord.visited_once` existed said it: words the runner
added to the reason. Read back only (:func:`visited_once_of`), never parsed from a line that has the field."""

IDENTITY = ("op", "size", "dtype", "device", "mode", "sync")
"""Columns that identify a cell within a run (with ``run_id`` across runs)."""


@dataclass
class _Measured:
    """The fields a visit record and a cell row share: identity, outcome and statistics over samples. Times in
    seconds, work in FLOPs and bytes per call. (Not used on its own: see VisitRecord and CellRow.)"""

    run_id: str
    op: str
    size: int
    dtype: str
    device: str
    mode: str
    sync: str
    status: str
    reason: str = ""
    placed_device: str = ""
    n_samples: int = 0
    number: int = 0
    warmup_calls: int = 0
    stop_reason: str = ""
    cold_s: float = math.nan
    median_s: float = math.nan
    q1_s: float = math.nan
    q3_s: float = math.nan
    iqr_s: float = math.nan
    mean_s: float = math.nan
    std_s: float = math.nan
    min_s: float = math.nan
    max_s: float = math.nan
    ci_low_s: float = math.nan
    ci_high_s: float = math.nan
    rel_iqr: float = math.nan
    flops: float = math.nan
    bytes: float = math.nan
    gflops: float = math.nan
    gbps: float = math.nan
    noisy: bool = False
    unsynchronized: bool = False
    finished_at: str = ""
    traces: int = 0
    """Times the timed function was traced over the cell (tf.function / jax.jit modes; 0 otherwise)."""
    pct_of_peak: float = math.nan
    """The rate by the op's bound (FLOP/s or bytes/s) as a per cent of the device's *calibrated* ceiling (peak
    GEMM rate or copy bandwidth, devbench.ceilings); not clipped: over 100 is ``above_peak``. NaN without a
    calibration of that device and dtype, and for rows that are not ok or unsynchronized."""
    above_peak: bool = False
    """``pct_of_peak`` over 100: the cell outran the calibration probe, the calibration is the thing to fix."""
    flush_bytes: int = 0
    """Bytes written to evict the caches before each timed call of a cache-cold cell (``op[cache=cold]``,
    devbench.cache: twice the host's LLC or the GPU's L2); 0 for a warm cell."""
    unflushed_median_s: float = math.nan
    """A cache-cold cell's control (devbench.timer): the median of the same single call timed again right after
    each flushed one, unflushed (a row: the median of its visits' medians, each visit weighing alike); NaN for a
    warm cell. ``median_s / unflushed_median_s`` is what the eviction costs, in one protocol."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in IDENTITY)


@dataclass
class GpuTelemetry:
    """The GPU's state around a visit (NVML via devbench.telemetry), the one declaration of these columns: a
    visit record has them for its own visit, a cell row over all its visits (devbench.visits). Floats are NaN
    off an NVIDIA GPU or without nvidia-ml-py (meta.json ``gpu`` says why)."""

    sm_clock_start_mhz: float = math.nan
    """SM clock (MHz) at the start of the (first) visit."""
    sm_clock_end_mhz: float = math.nan
    """SM clock (MHz) at the end of the (last) visit."""
    mem_clock_start_mhz: float = math.nan
    mem_clock_end_mhz: float = math.nan
    temperature_start_c: float = math.nan
    temperature_end_c: float = math.nan
    power_start_w: float = math.nan
    power_end_w: float = math.nan
    throttle_reasons: str = ""
    """Power-or-heat throttle reasons NVML reported at any visit's start or end, comma-joined."""
    throttled: bool = False
    """Some visit's clocks were held down for power or heat (devbench.telemetry.throttled)."""


TELEMETRY_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(GpuTelemetry))


@dataclass
class HostClock:
    """The host CPU's clock around a visit (devbench.hostcheck), the one declaration of these columns: the
    highest current frequency among the cores in use at the visit's start and end, outside the timed blocks.
    NaN where the frequency cannot be read live (meta.json ``host_check`` says why); columns added in schema
    version 2's lifetime (older lines and tables read with the defaults)."""

    cpu_mhz_start: float = math.nan
    """CPU frequency (MHz) at the start of the (first) visit."""
    cpu_mhz_end: float = math.nan
    """CPU frequency (MHz) at the end of the (last) visit."""
    cpu_freq_moved: bool = False
    """Some visit's frequency moved by more than 10 % between its start and end (devbench.hostcheck.visit_clock)."""


@dataclass
class _HostClockRow(HostClock):
    cpu_freq_moved_visits: int = 0
    """How many of the cell's visits had ``cpu_freq_moved``."""


HOST_CLOCK_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(_HostClockRow))


@dataclass
class EnergyColumns:
    """Energy per call (devbench.energy), the one declaration of these columns: a visit record has its visit's,
    a cell row its visits' pooled (devbench.visits.pooled_energy). NaN where nothing was measured
    (``--energy off``, or no counter: ``energy_reason`` says why)."""

    joules_per_call: float = math.nan
    """Joules one call adds over the idle machine (the counter around back-to-back blocks, idle subtracted)."""
    joules_ci_low: float = math.nan
    """95 % interval of ``joules_per_call``: over a visit's blocks, or over the rounds (three or more)."""
    joules_ci_high: float = math.nan
    energy_check_rel: float = math.nan
    """The relative gap between the counter and its check (NVML: integrated power samples; RAPL: the power of a
    block's two halves), the median over a visit's blocks; a cell's largest over its visits."""
    energy_disagrees: bool = False
    """``energy_check_rel`` over devbench.energy.DISAGREE_REL: read the joules with care."""
    energy_reason: str = ""
    """Why there are no joules ("not available here: …", "not measured: …"), or the disagreement."""


ENERGY_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(EnergyColumns))


@dataclass
class _VisitOnly(_Measured):
    visited_once: bool = False
    """This first visit took far more than the cell's budget, so the cell is not visited again
    (devbench.runner.run_visits); its row is not ``incomplete`` and a resume does not visit it again."""


@dataclass
class VisitRecord(EnergyColumns, HostClock, GpuTelemetry, _VisitOnly):
    """What one visit of a cell measured: the ``record`` of one cells.jsonl line (statistics over this visit's
    samples). The results table pools a cell's visits into a :class:`CellRow` (devbench.visits.cell_row)."""


@dataclass
class _RowOnly(_Measured):
    pct_of_best: float = math.nan
    """The rate as a per cent of the best the run saw on that device, dtype and bound (<= 100; says nothing
    about the machine's limit; it needs the run's other cells, so only a row has it). Added in schema version 2's
    lifetime: older tables lack it."""
    n_rounds: int = 0
    """Visits whose samples are in this row (rounds: devbench.spec.SweepSpec.visits)."""
    between_round_rel: float = math.nan
    """(largest - smallest round median) / median: how far the visits disagreed; NaN with one round."""
    ci_reason: str = ""
    """Why ``ci_low_s``/``ci_high_s`` are NaN (too few rounds to see drift), or empty."""
    incomplete: bool = False
    """Fewer ok visits than the sweep planned (an interrupted run): its interval sees fewer rounds."""


@dataclass
class CellRow(EnergyColumns, _HostClockRow, GpuTelemetry, _RowOnly):
    """One row of results.parquet / results.csv: a cell pooled over its visits (devbench.visits.cell_row)."""


RESULT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CellRow))
"""The results table's columns, in order: the contract every reader and writer of a results table uses."""

SHAPE_COLUMN = "shape"
"""After :data:`RESULT_COLUMNS` in every results table devbench builds: ``m=512,k=256,n=64`` for a cell of a
shaped op (devbench.variants), ``""`` for a square one; followed by one ``dim_<d>`` column per dimension
(:data:`DIM_PREFIX`; ``dim_m``, ``dim_k``, ``dim_n``). Derived from ``op`` and ``size`` (:func:`with_shape_columns`),
not part of the schema-2 contract: a table without them reads as before."""
DIM_PREFIX = "dim_"

VISIT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(VisitRecord))
"""The fields of a cells.jsonl ``record``."""


def visited_once_of(values: Mapping[str, Any]) -> bool:
    """A logged record's ``visited_once``; a line from before the field says it in its reason
    (:data:`LEGACY_VISITED_ONCE`, which the runner appended to any other reason)."""
    if "visited_once" in values:
        return bool(values["visited_once"])
    return LEGACY_VISITED_ONCE in str(values.get("reason") or "")


def visit_record(values: Mapping[str, Any]) -> VisitRecord:
    """A :class:`VisitRecord` from a mapping already checked field by field (devbench.store.validate_record):
    fields it lacks get their defaults, others (a cell row's, from lines written when one type served both)
    are dropped, and ``visited_once`` is :func:`visited_once_of`."""
    known = {name: values[name] for name in VISIT_FIELDS if name in values}
    return VisitRecord(**{**known, "visited_once": visited_once_of(values)})


SAMPLE_COLUMNS: tuple[str, ...] = ("run_id", *IDENTITY, "round", "sample", "number", "per_call_s")
"""samples.parquet: one row per timed block; ``round`` the visit it was taken in (1-based), ``sample`` its
index within that visit, ``per_call_s`` = block time / ``number``."""


# ---------------------------------------------------------------------------------------------------------
# Column kinds and frames: every typed results table is built here, from the CellRow's annotations


def _kind_of(annotation: object) -> str:
    return {"int": "int", "bool": "bool", "str": "text"}.get(
        annotation if isinstance(annotation, str) else getattr(annotation, "__name__", ""), "float")


FIELD_KINDS: dict[str, str] = {f.name: _kind_of(f.type) for cls in (VisitRecord, CellRow) for f in fields(cls)}
"""``int`` | ``bool`` | ``text`` | ``float`` for every field of a visit record or a cell row, from the
annotations."""

COLUMN_KINDS: dict[str, str] = {name: FIELD_KINDS[name] for name in RESULT_COLUMNS}
"""The kind of every result column."""

INT_COLUMNS = tuple(c for c, k in COLUMN_KINDS.items() if k == "int")
BOOL_COLUMNS = tuple(c for c, k in COLUMN_KINDS.items() if k == "bool")
TEXT_COLUMNS = tuple(c for c, k in COLUMN_KINDS.items() if k == "text")
FLOAT_COLUMNS = tuple(c for c, k in COLUMN_KINDS.items() if k == "float")

DERIVED_COLUMNS = ("iqr_s", "rel_iqr", "noisy", "unsynchronized", "gflops", "gbps", "above_peak")
"""Columns computed from others (:func:`derive_columns`); a bare table may leave them out."""

PCT_COLUMNS = ("above_peak", "pct_of_best")
"""Result columns added to schema version 2 with issue 16 (devbench.ceilings): an older table lacks them and
still reads, with the defaults (``above_peak`` False: its ``pct_of_peak`` was capped at 100; ``pct_of_best``
NaN); a run's table rebuilt from its cell log gets both computed."""

CACHE_COLUMNS = ("flush_bytes", "unflushed_median_s")
"""Result columns added to schema version 2 with cache state (issue 18, devbench.cache): an older table lacks
them and still reads (``flush_bytes`` 0, ``unflushed_median_s`` NaN: every cell was warm)."""

if TYPE_CHECKING:
    import pandas as pd


def results_frame(rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """A results table with exactly :data:`RESULT_COLUMNS`, each of its schema type (int64, bool, str,
    float64). Missing columns get the CellRow's defaults; values must already be of the right kind (readers
    of untrusted files check them first: :func:`check_table`)."""
    import pandas as pd

    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    defaults = CellRow(run_id="", op="", size=0, dtype="", device="", mode="", sync="", status="").as_dict()
    out: pd.DataFrame = pd.DataFrame(index=frame.index)
    for col in RESULT_COLUMNS:
        values = frame[col] if col in frame.columns else pd.Series(defaults[col], index=frame.index, dtype=object)
        kind = COLUMN_KINDS[col]
        if kind == "int":
            out[col] = pd.to_numeric(values).fillna(0).astype("int64")
        elif kind == "bool":
            out[col] = values.fillna(False).astype(bool)
        elif kind == "text":
            out[col] = values.astype(object).where(values.notna(), "").astype(str)
        else:
            out[col] = pd.to_numeric(values, errors="coerce").astype("float64")
    typed: pd.DataFrame = with_shape_columns(out.reset_index(drop=True))
    return typed


def with_shape_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with :data:`SHAPE_COLUMN` and one ``dim_<d>`` column per dimension its ops have (NaN where an
    op lacks it), derived from ``op`` and ``size`` (rule: :func:`devbench.shapes.shape_columns`). They follow
    :data:`RESULT_COLUMNS` and are never read back from a file, only derived again: a schema-2 table without
    them, or a bare table from elsewhere, gets them too, and readers of schema 2 see the columns they know."""
    import pandas as pd

    from devbench.shapes import shape_columns

    columns = shape_columns(frame["op"].astype(str).tolist(), frame["size"].astype("int64").tolist())
    out = frame.drop(columns=[c for c in frame.columns if c == SHAPE_COLUMN or c.startswith(DIM_PREFIX)])
    derived = pd.DataFrame(columns, index=out.index)
    derived[SHAPE_COLUMN] = derived[SHAPE_COLUMN].astype(str)
    shaped: pd.DataFrame = pd.concat([out, derived.astype({c: "float64" for c in derived.columns
                                                            if c.startswith(DIM_PREFIX)})], axis=1)
    return shaped


def _derive(values: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
    """The derived columns in ``wanted`` from ``values`` (scalars of one row, or numpy arrays of a table: the
    same numpy arithmetic serves both), each computed from the values before it. The one place these rules
    live: IQR from the quartiles, rel. IQR over the median, ``noisy`` above
    :data:`devbench.stats.NOISY_REL_IQR`, ``unsynchronized`` for sync ``none``, GFLOP/s and GB/s from the work
    per call over the median, ``above_peak`` for ``pct_of_peak`` over 100 (devbench.ceilings). Undefined
    values (no positive median) are NaN / False."""
    import numpy as np

    from devbench.stats import NOISY_REL_IQR

    out = dict(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        median = np.where(np.asarray(out["median_s"], dtype=np.float64) > 0, out["median_s"], np.nan)
        if "iqr_s" in wanted:
            out["iqr_s"] = np.asarray(out["q3_s"], dtype=np.float64) - np.asarray(out["q1_s"], dtype=np.float64)
        if "rel_iqr" in wanted:
            out["rel_iqr"] = np.asarray(out["iqr_s"], dtype=np.float64) / median
        if "noisy" in wanted:
            out["noisy"] = np.asarray(out["rel_iqr"], dtype=np.float64) > NOISY_REL_IQR
        if "unsynchronized" in wanted:
            out["unsynchronized"] = np.asarray(out["sync"], dtype=object) == "none"
        if "gflops" in wanted:
            out["gflops"] = np.asarray(out["flops"], dtype=np.float64) / median / 1e9
        if "gbps" in wanted:
            out["gbps"] = np.asarray(out["bytes"], dtype=np.float64) / median / 1e9
        if "above_peak" in wanted:
            out["above_peak"] = np.asarray(out["pct_of_peak"], dtype=np.float64) > 100.0
    return out


_DERIVED_INPUTS = ("median_s", "q1_s", "q3_s", "iqr_s", "rel_iqr", "sync", "flops", "bytes", "pct_of_peak")


def derive_columns(frame: pd.DataFrame, columns: Iterable[str] = DERIVED_COLUMNS) -> pd.DataFrame:
    """``frame`` with the derived ``columns`` (re)computed from the measured ones (rules: :func:`_derive`)."""
    import numpy as np

    wanted = set(columns)
    missing = {"sync": ""}  # a partial table (another tool's, a test's) lacks some inputs: NaN / no sync
    derived = _derive({col: frame[col].to_numpy() if col in frame.columns
                       else np.full(len(frame), missing.get(col, np.nan), dtype=object if col == "sync" else float)
                       for col in _DERIVED_INPUTS}, wanted)
    out: pd.DataFrame = frame.copy()
    for col in DERIVED_COLUMNS:
        if col in wanted:
            out[col] = derived[col].astype(bool) if COLUMN_KINDS[col] == "bool" else derived[col].astype("float64")
    return out


MeasuredT = TypeVar("MeasuredT", VisitRecord, CellRow)


def with_derived(record: MeasuredT) -> MeasuredT:
    """``record`` with its derived fields (re)computed in place, by the same rules as :func:`derive_columns`
    (the runner's records and the tables read from other tools follow one set of rules); returned for
    chaining. In place because a record is annotated after it is made (devbench.ceilings.annotate)."""
    derived = _derive({col: getattr(record, col) for col in _DERIVED_INPUTS}, set(DERIVED_COLUMNS))
    for col in DERIVED_COLUMNS:
        setattr(record, col, bool(derived[col]) if COLUMN_KINDS[col] == "bool" else float(derived[col]))
    return record


def check_table(frame: pd.DataFrame, source: str, columns: Iterable[str]) -> pd.DataFrame:
    """Check the ``columns`` of an untrusted table (results or samples, from disk or another tool) against
    their schema kinds and return them typed; a UsageError names ``source``, the column and the first bad
    value: text in a numeric column, a fractional or non-positive size, a negative count, a status outside
    :data:`STATUSES`. Kinds of samples columns not in a row: ``sample`` int, ``per_call_s`` float."""
    import numpy as np
    import pandas as pd

    from devbench.errors import UsageError

    kinds = {**COLUMN_KINDS, "round": "int", "sample": "int", "per_call_s": "float"}
    out: pd.DataFrame = pd.DataFrame(index=frame.index)
    for col in columns:
        values = frame[col]
        kind = kinds[col]
        if kind == "text":
            out[col] = values.astype(object).where(values.notna(), "").astype(str)
            continue
        is_bool = values.map(lambda v: isinstance(v, (bool, np.bool_)))
        if kind == "bool":
            if values.dtype == object and not is_bool.all():  # text from a CSV: true/false words
                words = values.astype(str).str.strip().str.lower()
                known = words.isin(("true", "false", "1", "0", "1.0", "0.0", "yes", "no"))
                if not known.all():
                    raise UsageError(f"{source}: column {col} must hold true/false, found {values[~known].iloc[0]!r}")
                out[col] = words.isin(("true", "1", "1.0", "yes"))
            elif not is_bool.all() and values.dtype != bool:
                raise UsageError(f"{source}: column {col} must hold true/false, found {values[~is_bool].iloc[0]!r}")
            else:
                out[col] = values.astype(bool)
            continue
        numbers = pd.to_numeric(values, errors="coerce")
        garbage = numbers.isna() & values.notna()
        if garbage.any() or is_bool.any():
            bad = values[garbage].iloc[0] if garbage.any() else values[is_bool].iloc[0]
            raise UsageError(f"{source}: column {col} must be numeric, found {bad!r}")
        if kind == "int":
            low = 1 if col in ("size", "round") else 0
            filled = numbers if col in ("size", "round") else numbers.fillna(0)
            bad_int = filled.isna() | (filled != filled.round()) | (filled < low)
            if bad_int.any():
                raise UsageError(f"{source}: column {col} must hold whole numbers >= {low}, "
                                 f"found {values[bad_int].iloc[0]!r}")
            out[col] = filled.astype("int64")
        else:
            out[col] = numbers.astype("float64")
    if "status" in out.columns:
        unknown = ~out["status"].isin(STATUSES)
        if unknown.any():
            raise UsageError(f"{source}: column status holds {out['status'][unknown].iloc[0]!r}; "
                             f"allowed: {', '.join(STATUSES)}")
    return out
