"""Pure statistics over per-call times (seconds). No I/O, no TensorFlow, no global state."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

NOISY_REL_IQR = 0.10
"""A cell whose IQR is over this fraction of its median is flagged as noisy in every table and chart."""


@dataclass(frozen=True)
class Summary:
    """Robust summary of per-call times, all in seconds except ``n`` and ``rel_iqr`` (a fraction)."""

    n: int
    median: float
    q1: float
    q3: float
    iqr: float
    mean: float
    std: float
    min: float
    max: float
    ci_low: float
    ci_high: float
    rel_iqr: float

    @property
    def noisy(self) -> bool:
        return self.rel_iqr > NOISY_REL_IQR

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def median_ci_indices(n: int, confidence: float = 0.95) -> tuple[int, int]:
    """0-based order-statistic indices (lo, hi) of a distribution-free CI for the median.

    The interval [x_(lo), x_(hi)] of the sorted sample covers the true median with probability
    P(lo+1 <= B <= hi) for B ~ Binomial(n, 1/2), at least ``confidence`` whenever n >= 6. For smaller n no
    pair of order statistics reaches 95 %, so the whole range [min, max] is returned.
    """
    if n < 1:
        raise ValueError("need at least one sample")
    alpha = 1.0 - confidence
    j = _binomial_half_ppf(alpha / 2, n)  # smallest j with P(B <= j) >= alpha/2
    if j < 1:
        return 0, n - 1
    # 1-based (j, n - j + 1) -> 0-based (j - 1, n - j)
    return j - 1, n - j


def _binomial_half_ppf(q: float, n: int) -> int:
    """Smallest j with P(B <= j) >= q for B ~ Binomial(n, 1/2), computed exactly (no scipy at import)."""
    total = 2**n
    cumulative = 0
    for j in range(n + 1):
        cumulative += math.comb(n, j)
        if cumulative >= q * total:
            return j
    return n


def summarize(samples: Sequence[float], confidence: float = 0.95) -> Summary:
    """Summarize per-call times. Quartiles use linear interpolation (numpy's default, Hyndman–Fan type 7)."""
    values = np.sort(np.asarray(samples, dtype=np.float64))
    n = int(values.size)
    if n == 0:
        raise ValueError("cannot summarize zero samples")
    if not np.all(np.isfinite(values)):
        raise ValueError("samples must be finite")
    q1, median, q3 = (float(v) for v in np.percentile(values, [25, 50, 75]))
    lo, hi = median_ci_indices(n, confidence)
    iqr = q3 - q1
    return Summary(
        n=n,
        median=median,
        q1=q1,
        q3=q3,
        iqr=iqr,
        mean=float(values.mean()),
        std=float(values.std(ddof=1)) if n > 1 else 0.0,
        min=float(values[0]),
        max=float(values[-1]),
        ci_low=float(values[lo]),
        ci_high=float(values[hi]),
        rel_iqr=iqr / median if median > 0 else math.inf,
    )


def rel_iqr(samples: Sequence[float]) -> float:
    """IQR over median of ``samples``; inf for a zero median."""
    q1, median, q3 = np.percentile(np.asarray(samples, dtype=np.float64), [25, 50, 75])
    return float((q3 - q1) / median) if median > 0 else math.inf
