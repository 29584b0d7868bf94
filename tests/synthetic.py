"""Synthetic results tables with known answers, for the analysis, plot and report tests.

Times are seconds per call, sizes the matrix side n. Every row carries all of ``schema.RESULT_COLUMNS`` with
the dtypes a real run has, so the code under test sees what ``store.load_run`` gives it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from devbench.schema import RESULT_COLUMNS, CellRow, results_frame
from devbench.store import Run

MACHINE: dict[str, Any] = {
    "cpu": {"model": "Synthetic CPU 9000", "logical_cores": 8},
    "tensorflow": {"version": "2.99.0"},
    "devices": [
        {"name": "CPU:0", "kind": "CPU"},
        {"name": "GPU:0", "kind": "GPU", "details": {"device_name": "Synthetic GPU X1"}},
    ],
}


def row(
    size: int,
    device: str,
    median_s: float,
    *,
    op: str = "matmul",
    dtype: str = "float32",
    mode: str = "eager",
    sync: str = "scalar",
    status: str = "ok",
    reason: str = "",
    ci_rel: float = 0.01,
    rel_iqr: float = 0.02,
    cold_factor: float = 20.0,
    **overrides: Any,
) -> dict[str, Any]:
    """One result row: the CI is median·(1 ∓ ci_rel), the IQR rel_iqr·median around it.

    FLOPs and bytes follow a matmul (2n³ FLOPs, three n×n float32 matrices) for every op, which is enough for
    charts; pass ``flops=``/``bytes=`` to override.
    """
    ok = status == "ok"
    median = median_s if ok else math.nan
    flops = overrides.pop("flops", 2.0 * size**3)
    nbytes = overrides.pop("bytes", 3.0 * 4 * size**2)
    record = CellRow(
        run_id="synthetic",
        op=op,
        size=size,
        dtype=dtype,
        device=device,
        mode=mode,
        sync=sync,
        status=status,
        reason=reason,
        placed_device=device if ok else "",
        n_samples=20 if ok else 0,
        number=10 if ok else 0,
        cold_s=median * cold_factor,
        median_s=median,
        q1_s=median * (1 - rel_iqr / 2),
        q3_s=median * (1 + rel_iqr / 2),
        iqr_s=median * rel_iqr,
        mean_s=median,
        std_s=median * rel_iqr,
        min_s=median * (1 - rel_iqr),
        max_s=median * (1 + rel_iqr),
        ci_low_s=median * (1 - ci_rel),
        ci_high_s=median * (1 + ci_rel),
        rel_iqr=rel_iqr if ok else math.nan,
        flops=flops,
        bytes=nbytes,
        gflops=flops / median / 1e9 if median > 0 else math.nan,
        gbps=nbytes / median / 1e9 if median > 0 else math.nan,
        noisy=ok and rel_iqr > 0.10,
        unsynchronized=sync == "none",
    )
    values = record.as_dict()
    values.update(overrides)
    return values


def frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """A results table with RESULT_COLUMNS and the store's dtypes."""
    return results_frame(pd.DataFrame(list(rows), columns=list(RESULT_COLUMNS)))


def from_medians(medians: Mapping[str, Mapping[int, float]], **kw: Any) -> pd.DataFrame:
    """``{device: {size: median_s}}`` → results table (same op/dtype/mode for all; ``kw`` go to ``row``)."""
    return frame(row(size, device, t, **kw) for device, by_size in medians.items() for size, t in by_size.items())


def from_model(models: Mapping[str, Callable[[int], float]], sizes: Sequence[int], **kw: Any) -> pd.DataFrame:
    """Each device's median is ``models[device](n)`` seconds at every size."""
    return from_medians({d: {n: f(n) for n in sizes} for d, f in models.items()}, **kw)


def run(results: pd.DataFrame, meta: dict[str, Any] | None = None, path: Path | None = None) -> Run:
    """A Run as ``store.load_run`` would return it, with a machine fingerprint unless ``meta`` is given."""
    if meta is None:
        meta = {
            "run_id": "synthetic",
            "command": "devbench sweep --ops matmul --sizes 64..4096",
            "machine": MACHINE,
            "schema_version": 1,
        }
    return Run(path=path, meta=meta, results=results, samples=pd.DataFrame())


def grid(lo: int = 64, hi: int = 4096) -> list[int]:
    """Powers of two from ``lo`` to ``hi`` inclusive."""
    sizes = [lo]
    while sizes[-1] * 2 <= hi:
        sizes.append(sizes[-1] * 2)
    return sizes
