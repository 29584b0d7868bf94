"""Synthetic runs for the compare tests: cells with known answers, samples by round (no TensorFlow, seeded).

Synthetic cells hold samples by round, as a sweep with ``--rounds`` writes them: within-round noise around
a round median, the round medians moved by drift between rounds and by the sampling noise of a median.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats as sps

from devbench.compare import Comparison
from devbench.schema import IDENTITY, RESULT_COLUMNS, SAMPLE_COLUMNS, CellRow
from devbench.store import Run

TIGHT = 0.005
"""Log-space spread of 'tight' samples: IQR about 0.7 % of the median."""
NOISY = 0.6
"""Log-space spread of 'very noisy' samples: IQR about 80 % of the median."""
ROUNDS = 5
"""Rounds per synthetic cell, the sweep's default."""

Rounds = list[list[float]]


@functools.cache
def _normal_scores(n: int) -> npt.NDArray[np.float64]:
    """The n standard-normal quantiles at (i + 0.5) / n, interleaved so the order is not sorted (as real
    samples are not)."""
    scores = sps.norm.ppf((np.arange(n) + 0.5) / n)
    return np.asarray(scores[np.argsort((np.arange(n) * 7919) % n)], dtype=np.float64)


def spread_samples(median: float, sigma: float, n: int = 10) -> list[float]:
    """n per-call times (s) at the quantiles of a log-normal with this median: deterministic, no seed."""
    return (median * np.exp(sigma * _normal_scores(n))).tolist()  # type: ignore[no-any-return]


@functools.cache
def _pattern(rounds: int, stride: int) -> npt.NDArray[np.float64]:
    """``rounds`` standard-normal quantiles, mixed in a fixed order: a deterministic stand-in for a draw."""
    z = sps.norm.ppf((np.arange(rounds) + 0.5) / rounds)
    return np.asarray(z[np.argsort((np.arange(rounds) * stride) % rounds)], dtype=np.float64)


def rounds_of(median: float, sigma: float = TIGHT, *, rounds: int = ROUNDS, n: int = 10, drift: float = 0.0,
              rng: np.random.Generator | None = None) -> Rounds:
    """A cell's samples by round: each round ``spread_samples`` around ``median`` times a round effect.

    With ``rng`` the round effect is lognormal: drift of sigma ``drift`` times the sampling noise of a
    round's median (sigma ``sigma`` x 1.25 / sqrt(n)). Without, both are fixed quantile patterns, so the
    cell is deterministic, two cells differing only in ``median`` differ by exactly that factor, and the
    round medians still vary as real rounds do (the round is the unit of compare's intervals)."""
    se = sigma * 1.2533 / math.sqrt(n)
    if rng is None:
        z = drift * _pattern(rounds, 3) + se * _pattern(rounds, 2)[::-1]
    else:
        z = drift * rng.standard_normal(rounds) + se * rng.standard_normal(rounds)
    return [spread_samples(median * math.exp(float(z_r)), sigma, n) for z_r in z]


@dataclass
class FakeCell:
    """One cell of a synthetic run: identity, status and raw per-call samples (s) by round."""

    op: str = "matmul"
    size: int = 256
    dtype: str = "float32"
    device: str = "CPU:0"
    mode: str = "eager"
    sync: str = "scalar"
    status: str = "ok"
    rounds: Rounds = field(default_factory=lambda: rounds_of(1e-3))
    median_s: float | None = None
    reason: str = ""


def machine(**overrides: Any) -> dict[str, Any]:
    """A meta["machine"] fingerprint as machine.py/devices.py lay it out."""
    data: dict[str, Any] = {
        "hostname": "laptop",
        "os": {"system": "Linux", "release": "6.8.0", "platform": "Linux-6.8.0-x86_64"},
        "python": {"version": "3.12.3", "implementation": "CPython"},
        "cpu": {"model": "AMD EPYC 7B13", "arch": "x86_64", "physical_cores": 1, "logical_cores": 2},
        "memory": {"total_bytes": 8 * 2**30, "available_bytes": 6 * 2**30},
        "packages": {"devbench": "0.1.0", "tensorflow": "2.21.0", "numpy": "2.1.0", "pandas": "2.2.3"},
        "tensorflow": {"version": "2.21.0",
                       "build_info": {"cuda_version": "12.5.1", "cudnn_version": "9", "is_cuda_build": True}},
        "devices": [{"name": "CPU:0", "kind": "CPU", "details": {}}],
    }
    for path, value in overrides.items():
        target = data
        *parents, last = path.split("__")
        for part in parents:
            target = target[part]
        target[last] = value
    return data


def make_run(cells: Iterable[FakeCell], *, run_id: str = "base", meta: Mapping[str, Any] | None = None,
             with_samples: bool = True) -> Run:
    """A Run as load_run returns it: results with RESULT_COLUMNS, samples with SAMPLE_COLUMNS (rounds 1..R)."""
    records: list[dict[str, Any]] = []
    sample_rows: list[dict[str, Any]] = []
    for cell in cells:
        pooled = [s for r in cell.rounds for s in r]
        median = cell.median_s if cell.median_s is not None else (
            float(np.median(pooled)) if pooled else math.nan)
        ok = cell.status == "ok"
        record = CellRow(run_id=run_id, op=cell.op, size=cell.size, dtype=cell.dtype, device=cell.device,
                         mode=cell.mode, sync=cell.sync, status=cell.status, reason=cell.reason,
                         n_samples=len(pooled) if ok else 0, number=10,
                         median_s=median if ok else math.nan, unsynchronized=cell.sync == "none")
        records.append(record.as_dict())
        if with_samples and ok:
            ident = {name: getattr(cell, name) for name in IDENTITY}
            sample_rows.extend({"run_id": run_id, **ident, "round": r + 1, "sample": i, "number": 10,
                                "per_call_s": s}
                               for r, samples in enumerate(cell.rounds) for i, s in enumerate(samples))
    return Run(
        path=None,
        meta={"schema_version": 2, "run_id": run_id, "machine": machine() if meta is None else meta},
        results=pd.DataFrame(records, columns=list(RESULT_COLUMNS)),
        samples=pd.DataFrame(sample_rows, columns=list(SAMPLE_COLUMNS)),
    )


def grid(scale: Mapping[int, float] | None = None, sigma: float = TIGHT,
         sizes: Sequence[int] = (64, 256, 1024), **round_options: Any) -> list[FakeCell]:
    """matmul and add cells on CPU:0; size -> factor applied to that size's matmul times."""
    scale = scale or {}
    cells = []
    for op in ("matmul", "add"):
        for size in sizes:
            factor = scale.get(size, 1.0) if op == "matmul" else 1.0
            cells.append(FakeCell(op=op, size=size, rounds=rounds_of(1e-6 * size * factor, sigma,
                                                                     **round_options)))
    return cells


def drifting_run(cells: int, rng: np.random.Generator, *, run_id: str, drift: float, noise: float,
                 slow: Mapping[int, float] | None = None, rounds: int = ROUNDS, shared: bool = True) -> Run:
    """A run of ``cells`` cells measured interleaved: one round effect per round (lognormal, sigma
    ``drift``) shared by every cell of the run, as interleaved visits see the same drift (or, with
    ``shared`` False, drawn per cell: the hardest case for the gate, 200 independent tests); within-round
    noise lognormal of sigma ``noise``; cell i is ``slow[i]`` times slower."""
    slow = slow or {}
    run_effects = np.exp(rng.normal(0.0, drift, rounds))
    out = []
    for i in range(cells):
        effects = run_effects if shared else np.exp(rng.normal(0.0, drift, rounds))
        median = 1e-4 * (1 + i % 7) * slow.get(i, 1.0)
        out.append(FakeCell(op=f"op{i // 20}", size=2 ** (i % 20), rounds=[
            list(median * effects[r] * np.exp(rng.normal(0.0, noise, 10))) for r in range(rounds)]))
    return make_run(out, run_id=run_id)


def by_key(comparison: Comparison) -> dict[tuple[str, int], Any]:
    return {(c.key.op, c.key.size): c for c in comparison.cells}
