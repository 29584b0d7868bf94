"""The public result schema (version 1): one flat row per cell, plus a long table of raw samples.

Bump ``SCHEMA_VERSION`` whenever a column is renamed, removed or changes meaning; readers refuse files of
another version with a clear message rather than guessing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

SCHEMA_VERSION = 1

STATUSES = ("ok", "unsupported", "fallback", "wrong", "oom", "skipped", "error")
"""``ok`` measured; ``unsupported`` TF cannot run this op/dtype/device; ``fallback`` the output landed on
another device than asked; ``wrong`` the result missed the numpy reference; ``oom`` TF ran out of memory;
``skipped`` not attempted (reason says why: memory or time guard); ``error`` anything else (a bug to report)."""

IDENTITY = ("op", "size", "dtype", "device", "mode", "sync")
"""Columns that identify a cell within a run (with ``run_id`` across runs)."""


@dataclass
class Record:
    """One row of results.parquet / results.csv. Times in seconds, work in FLOPs and bytes per call."""

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
    """Times the timed tf.function was traced over the cell (modes function, xla, graph_loop; 0 otherwise)."""
    pct_of_peak: float = math.nan
    """Per cent of the device's calibrated roofline at this op's arithmetic intensity (see devbench.calibrate);
    NaN without a calibration."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in IDENTITY)


RESULT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Record))

SAMPLE_COLUMNS: tuple[str, ...] = ("run_id", *IDENTITY, "sample", "number", "per_call_s")
"""samples.parquet: one row per timed block; ``per_call_s`` = block time / ``number``."""
