"""Machine-vs-machine comparison of two runs: the statistical core of ``devbench compare``.

``compare_runs(base, new)`` matches the cells of two runs, and for every cell measured ``ok`` in both gives
the ratio NEW/BASE of the median per-call time, a bootstrap confidence interval of that ratio over the raw
samples, a Mann–Whitney U p-value and a verdict. It adds geometric-mean ratios per (op, dtype) and overall,
the differences between the two machines' fingerprints, the cells that could not be compared (and why), and
optionally the crossover sizes of both runs side by side. Everything is plain frozen data; rendering
(``compare_render.render_comparison``: table, csv, json) and the chart (``plots.compare.write_compare_chart``)
read that data and compute nothing new. The fingerprint diff itself is ``machine.fingerprint_diff``. No
TensorFlow or matplotlib here.

Verdicts (``threshold`` t, default 0.05; ``alpha``, default 0.01; ratio r = median(new) / median(base);
[lo, hi] its ``confidence`` bootstrap interval; p the two-sided Mann–Whitney U p-value), applied in order:

1. ``uncertain`` when the cell cannot be tested: a side has no raw samples (the ratio then comes from the
   stored ``median_s`` columns and the note says "no raw samples"), fewer than ``MIN_SAMPLES`` samples, or
   non-positive / non-finite times.
2. ``slower`` when p < alpha and r > 1 + t; ``faster`` when p < alpha and r < 1 - t. A change counts only
   where it is both significant and larger than the threshold.
3. ``same`` when the whole interval lies inside the equivalence band: 1 - t <= lo and hi <= 1 + t. This is
   an equivalence test: the data rule out any change larger than the threshold. It holds whether or not the
   change is significant, so a real but small change (2 % under a 5 % threshold, tight samples) is ``same``.
4. ``uncertain`` otherwise: the data cannot tell a change beyond the threshold from no change (noisy
   samples, too few samples, or a significant change whose interval straddles the band edge).

Only ``slower`` counts as a regression (``has_regression``), so ``--fail-on-regression`` never fails on noise.

Matching: cells are matched by (op, size, dtype, device, mode). When a run holds one cell per such key (one
sync method per sweep, the usual case) a differing ``sync`` still matches and the cell carries a note;
cells whose status is not ``ok`` on both sides are listed in ``not_compared``; cells found in one run only
are listed in ``only_in_base`` / ``only_in_new``. Nothing is dropped silently.
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from devbench.compare_data import (
    CROSSOVER_COLUMNS,
    CSV_COLUMNS,
    MATCH_KEY,
    MIN_SAMPLES,
    VERDICTS,
    CellComparison,
    CellKey,
    CompareSettings,
    Comparison,
    CrossoverPair,
    FloatArray,
    GeoMean,
    LoneCell,
    StatusPair,
    Verdict,
    has_regression,
)
from devbench.errors import UsageError
from devbench.machine import FingerprintDiff, fingerprint_diff
from devbench.stats import NOISY_REL_IQR, rel_iqr
from devbench.store import Run

__all__ = [
    "CROSSOVER_COLUMNS",
    "CSV_COLUMNS",
    "MATCH_KEY",
    "MIN_SAMPLES",
    "VERDICTS",
    "CellComparison",
    "CellKey",
    "CompareSettings",
    "Comparison",
    "CrossoverPair",
    "FingerprintDiff",
    "GeoMean",
    "LoneCell",
    "StatusPair",
    "Verdict",
    "bootstrap_medians",
    "compare_runs",
    "crossover_side_by_side",
    "fingerprint_diff",
    "has_regression",
    "verdict_for",
]

_REQUIRED_RESULT_COLUMNS = ("op", "size", "dtype", "device", "mode", "status")


# --------------------------------------------------------------------------------------------------------
# Statistics


def bootstrap_medians(samples: Sequence[float] | FloatArray, n_boot: int,
                      rng: np.random.Generator) -> FloatArray:
    """``n_boot`` bootstrap replicates of the median of ``samples``, exactly as if each replicate drew
    ``len(samples)`` values with replacement and took ``np.median``, but in O(n_boot) instead of
    O(n_boot × n).

    Why it is exact: a resample is ``floor(n·U_i)`` for iid uniform U_i, a monotone map, so its k-th smallest
    index is ``floor(n·U_(k))``, and the k-th of n uniform order statistics is Beta(k, n-k+1). The median
    needs the middle order statistic (odd n) or the two middle ones (even n); given U_(k)=u, U_(k+1) is
    u + (1-u)·Beta(1, n-k).
    """
    values = np.sort(np.asarray(samples, dtype=np.float64))
    n = int(values.size)
    if n == 0:
        raise ValueError("cannot bootstrap zero samples")
    k = (n + 1) // 2 if n % 2 else n // 2  # 1-based rank of the (lower) middle order statistic
    u = rng.beta(k, n - k + 1, size=n_boot)
    lower = np.minimum((u * n).astype(np.int64), n - 1)
    if n % 2:
        return values[lower]
    v = u + (1.0 - u) * rng.beta(1, n - k, size=n_boot)
    upper = np.minimum((v * n).astype(np.int64), n - 1)
    return 0.5 * (values[lower] + values[upper])


def _mann_whitney_p(base: FloatArray, new: FloatArray) -> float:
    """Two-sided Mann–Whitney U p-value; 1.0 when all values are equal (no evidence of any change)."""
    if np.all(base == base[0]) and np.all(new == base[0]):
        return 1.0
    p = float(sps.mannwhitneyu(new, base, alternative="two-sided").pvalue)
    return p if math.isfinite(p) else 1.0


def _min_attainable_p(n_base: int, n_new: int) -> float:
    """Smallest two-sided exact Mann–Whitney p-value for these sample counts (no ties): 2 / C(n1+n2, n1)."""
    return min(1.0, 2.0 / math.comb(n_base + n_new, n_base))


def verdict_for(ratio: float, ci_low: float, ci_high: float, p_value: float, *, threshold: float,
                alpha: float) -> Verdict:
    """The verdict rules 2-4 of the module docstring, for a cell whose statistics could be computed.

    Any NaN input gives ``uncertain`` (rule 1).
    """
    if not all(math.isfinite(x) for x in (ratio, ci_low, ci_high, p_value)):
        return "uncertain"
    if p_value < alpha and ratio > 1.0 + threshold:
        return "slower"
    if p_value < alpha and ratio < 1.0 - threshold:
        return "faster"
    if 1.0 - threshold <= ci_low and ci_high <= 1.0 + threshold:
        return "same"
    return "uncertain"


# --------------------------------------------------------------------------------------------------------
# Matching


def _str(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _check_results(run: Run, side: str) -> pd.DataFrame:
    results = run.results
    missing = [c for c in _REQUIRED_RESULT_COLUMNS if c not in results.columns]
    if missing:
        raise UsageError(f"the {side} run's results lack the columns {', '.join(missing)}; "
                         f"a devbench results table has {', '.join(_REQUIRED_RESULT_COLUMNS)} and more")
    return results


def _rows_by_identity(results: pd.DataFrame) -> dict[tuple[CellKey, str], dict[str, Any]]:
    """(CellKey, sync) → row; a cell listed twice keeps its last row, as the store does."""
    rows: dict[tuple[CellKey, str], dict[str, Any]] = {}
    for record in results.to_dict("records"):
        row = {str(k): v for k, v in record.items()}
        key = CellKey(op=_str(row["op"]), size=int(row["size"]), dtype=_str(row["dtype"]),
                      device=_str(row["device"]), mode=_str(row["mode"]))
        rows[(key, _str(row.get("sync", "")))] = row
    return rows


def _samples_by_identity(samples: pd.DataFrame) -> dict[tuple[CellKey, str], FloatArray]:
    """(CellKey, sync) → per-call times in seconds, in sample order."""
    needed = (*MATCH_KEY, "per_call_s")
    if samples is None or samples.empty or any(c not in samples.columns for c in needed):
        return {}
    frame = samples.copy()
    if "sync" not in frame.columns:
        frame["sync"] = ""
    if "sample" in frame.columns:
        frame = frame.sort_values("sample", kind="stable")
    out: dict[tuple[CellKey, str], FloatArray] = {}
    for ident, group in frame.groupby([*MATCH_KEY, "sync"], sort=False, dropna=False):
        op, size, dtype, device, mode, sync = ident
        key = CellKey(op=_str(op), size=int(size), dtype=_str(dtype), device=_str(device), mode=_str(mode))
        out[(key, _str(sync))] = group["per_call_s"].to_numpy(dtype=np.float64)
    return out


def _pair_cells(
    base_rows: Mapping[tuple[CellKey, str], dict[str, Any]],
    new_rows: Mapping[tuple[CellKey, str], dict[str, Any]],
) -> tuple[list[tuple[tuple[CellKey, str], tuple[CellKey, str]]], list[tuple[CellKey, str]],
           list[tuple[CellKey, str]]]:
    """Pair identities: first exactly (sync included), then leftovers by CellKey when that pairing is
    unambiguous (one leftover on each side). Returns (pairs, only_base, only_new)."""
    pairs = [(ident, ident) for ident in base_rows if ident in new_rows]
    left_base: dict[CellKey, list[tuple[CellKey, str]]] = defaultdict(list)
    left_new: dict[CellKey, list[tuple[CellKey, str]]] = defaultdict(list)
    for ident in base_rows:
        if ident not in new_rows:
            left_base[ident[0]].append(ident)
    for ident in new_rows:
        if ident not in base_rows:
            left_new[ident[0]].append(ident)
    only_base: list[tuple[CellKey, str]] = []
    only_new: list[tuple[CellKey, str]] = []
    for key, idents in left_base.items():
        others = left_new.pop(key, [])
        if len(idents) == 1 and len(others) == 1:
            pairs.append((idents[0], others[0]))
        else:
            only_base.extend(idents)
            only_new.extend(others)
    for idents in left_new.values():
        only_new.extend(idents)
    return pairs, only_base, only_new


# --------------------------------------------------------------------------------------------------------
# Comparison


def _validate(threshold: float, alpha: float, confidence: float, n_boot: int, seed: int) -> None:
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and 0.0 <= threshold < 1.0):
        raise UsageError(f"--threshold {threshold!r} is out of range; allowed: a fraction 0 <= t < 1 "
                         "(0.05 means a 5 % change)")
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and 0.0 < alpha < 1.0):
        raise UsageError(f"--alpha {alpha!r} is out of range; allowed: a significance level 0 < alpha < 1 "
                         "(e.g. 0.01)")
    if not (isinstance(confidence, (int, float)) and math.isfinite(confidence) and 0.0 < confidence < 1.0):
        raise UsageError(f"confidence {confidence!r} is out of range; allowed: 0 < confidence < 1 "
                         "(e.g. 0.95)")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 100:
        raise UsageError(f"n_boot {n_boot!r} is too small; allowed: a whole number >= 100 (e.g. 2000)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"seed {seed!r} is not allowed; give a whole number >= 0")


def _label(run: Run, default: str) -> str:
    if run.path is not None:
        return str(run.path)
    run_id = run.meta.get("run_id") if run.meta else None
    return str(run_id) if run_id else default


def _median_from_row(row: Mapping[str, Any]) -> float:
    try:
        value = float(row.get("median_s", math.nan))
    except (TypeError, ValueError):
        return math.nan
    return value


def _compare_cell(
    *,
    key: CellKey,
    base_sync: str,
    new_sync: str,
    base_row: Mapping[str, Any],
    new_row: Mapping[str, Any],
    base_samples: FloatArray | None,
    new_samples: FloatArray | None,
    settings: CompareSettings,
) -> tuple[CellComparison, FloatArray | None]:
    """Compare one cell; also return its bootstrap log-ratio replicates (None when there is no bootstrap).

    Each cell draws from its own generator, seeded by (seed, CRC-32 of the cell's label), so its interval
    does not depend on which other cells the runs hold or in what order.
    """
    notes: list[str] = []
    if base_sync != new_sync:
        notes.append(f"sync differs (base {base_sync or '?'}, new {new_sync or '?'})")
    if "none" in (base_sync, new_sync):
        notes.append("unsynchronized (sync=none): times measure launch, not work")

    def clean(values: FloatArray | None) -> FloatArray | None:
        if values is None:
            return None
        return values[np.isfinite(values)]

    base_x, new_x = clean(base_samples), clean(new_samples)
    n_base = 0 if base_x is None else int(base_x.size)
    n_new = 0 if new_x is None else int(new_x.size)
    base_med = float(np.median(base_x)) if base_x is not None and n_base else _median_from_row(base_row)
    new_med = float(np.median(new_x)) if new_x is not None and n_new else _median_from_row(new_row)
    ratio = new_med / base_med if base_med > 0 and math.isfinite(new_med) else math.nan

    def untested(note: str) -> tuple[CellComparison, None]:
        cell = CellComparison(key=key, base_sync=base_sync, new_sync=new_sync, n_base=n_base, n_new=n_new,
                              base_median_s=base_med, new_median_s=new_med, ratio=ratio, ci_low=math.nan,
                              ci_high=math.nan, p_value=math.nan, verdict="uncertain",
                              notes=(note, *notes))
        return cell, None

    if base_x is None or new_x is None or n_base == 0 or n_new == 0:
        sides = [name for name, n in (("base", n_base), ("new", n_new)) if n == 0]
        return untested(f"no raw samples ({' and '.join(sides)}): ratio of stored medians, not tested")
    if n_base < MIN_SAMPLES or n_new < MIN_SAMPLES:
        return untested(f"too few samples (base {n_base}, new {n_new}; at least {MIN_SAMPLES} each)")
    if np.any(base_x <= 0) or np.any(new_x <= 0):
        return untested("non-positive per-call times")

    noisy = [f"{side} IQR {spread:.0%}" for side, values in (("base", base_x), ("new", new_x))
             if (spread := rel_iqr(values.tolist())) > NOISY_REL_IQR]
    if noisy:
        notes.append("noisy: " + ", ".join(noisy) + " of median")
    if _min_attainable_p(n_base, n_new) >= settings.alpha:
        notes.append(f"too few samples for alpha={settings.alpha:g} (smallest possible p "
                     f"{_min_attainable_p(n_base, n_new):.2g})")

    p_value = _mann_whitney_p(base_x, new_x)
    rng = np.random.default_rng([settings.seed, zlib.crc32(key.label().encode())])
    log_reps = np.log(bootstrap_medians(new_x, settings.n_boot, rng)) - np.log(
        bootstrap_medians(base_x, settings.n_boot, rng))
    tail = (1.0 - settings.confidence) / 2.0
    lo, hi = (float(v) for v in np.exp(np.quantile(log_reps, [tail, 1.0 - tail])))
    verdict = verdict_for(ratio, lo, hi, p_value, threshold=settings.threshold, alpha=settings.alpha)
    cell = CellComparison(key=key, base_sync=base_sync, new_sync=new_sync, n_base=n_base, n_new=n_new,
                          base_median_s=base_med, new_median_s=new_med, ratio=ratio, ci_low=lo, ci_high=hi,
                          p_value=p_value, verdict=verdict, notes=tuple(notes))
    return cell, log_reps


def _geomean(cells: Sequence[tuple[CellComparison, FloatArray | None]], op: str | None, dtype: str | None,
             confidence: float) -> GeoMean:
    usable = [(c, reps) for c, reps in cells if math.isfinite(c.ratio) and c.ratio > 0]
    if not usable:
        return GeoMean(op=op, dtype=dtype, n_cells=0, ratio=math.nan, ci_low=math.nan, ci_high=math.nan,
                       note="no comparable cells")
    ratio = float(np.exp(np.mean([math.log(c.ratio) for c, _ in usable])))
    missing = sum(reps is None for _, reps in usable)
    if missing:
        return GeoMean(op=op, dtype=dtype, n_cells=len(usable), ratio=ratio, ci_low=math.nan,
                       ci_high=math.nan, note=f"no interval: {missing} cell(s) without a bootstrap")
    stacked = np.vstack([reps for _, reps in usable if reps is not None])
    tail = (1.0 - confidence) / 2.0
    lo, hi = (float(v) for v in np.exp(np.quantile(stacked.mean(axis=0), [tail, 1.0 - tail])))
    return GeoMean(op=op, dtype=dtype, n_cells=len(usable), ratio=ratio, ci_low=lo, ci_high=hi)


def compare_runs(
    base: Run,
    new: Run,
    *,
    threshold: float = 0.05,
    alpha: float = 0.01,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    crossovers: tuple[pd.DataFrame, pd.DataFrame] | Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> Comparison:
    """Compare NEW against BASE cell by cell (verdict rules in the module docstring).

    threshold: smallest relative change of the median per-call time that counts, a fraction 0 <= t < 1
        (0.05 = 5 %). The same band [1 - t, 1 + t] decides ``same``. 0 means any significant change counts
        and ``same`` needs an interval of exactly 1.
    alpha: significance level of the two-sided Mann–Whitney U test, 0 < alpha < 1.
    confidence: level of the bootstrap intervals (per cell and geometric means), 0 < confidence < 1.
    n_boot: bootstrap replicates per cell (>= 100).
    seed: a whole number >= 0 that makes the intervals reproducible; each cell's generator is derived
        from it and the cell's identity, so a cell gets the same interval whatever else the runs hold.
    crossovers: optional crossover sizes to show side by side: either the two frames (base, new) with
        ``CROSSOVER_COLUMNS`` or a function that makes such a frame from a run's results table
        (``analysis.crossover_frame``), applied to both runs.

    Raises UsageError for an out-of-range parameter, runs whose meta give different ``schema_version``s
    (``store.load_run`` already refuses any version but the current one), or a results table without the
    identity columns.
    """
    _validate(threshold, alpha, confidence, n_boot, seed)
    base_version, new_version = base.meta.get("schema_version"), new.meta.get("schema_version")
    if base_version is not None and new_version is not None and base_version != new_version:
        raise UsageError(f"the runs have different schema versions (base {base_version!r}, new "
                         f"{new_version!r}); compare runs written with the same schema version")
    settings = CompareSettings(threshold=float(threshold), alpha=float(alpha), confidence=float(confidence),
                               n_boot=n_boot, seed=seed)
    base_rows = _rows_by_identity(_check_results(base, "base"))
    new_rows = _rows_by_identity(_check_results(new, "new"))
    base_samples = _samples_by_identity(base.samples)
    new_samples = _samples_by_identity(new.samples)
    pairs, only_base, only_new = _pair_cells(base_rows, new_rows)
    pairs.sort(key=lambda pair: (pair[0][0].sort_key, pair[0][1]))

    compared: list[tuple[CellComparison, FloatArray | None]] = []
    not_compared: list[StatusPair] = []
    for base_ident, new_ident in pairs:
        key = base_ident[0]
        b_row, n_row = base_rows[base_ident], new_rows[new_ident]
        b_status, n_status = _str(b_row["status"]), _str(n_row["status"])
        if b_status != "ok" or n_status != "ok":
            not_compared.append(StatusPair(
                key=key, base_sync=base_ident[1], new_sync=new_ident[1], base_status=b_status,
                new_status=n_status, base_reason=_str(b_row.get("reason", "")),
                new_reason=_str(n_row.get("reason", ""))))
            continue
        compared.append(_compare_cell(
            key=key, base_sync=base_ident[1], new_sync=new_ident[1], base_row=b_row, new_row=n_row,
            base_samples=base_samples.get(base_ident), new_samples=new_samples.get(new_ident),
            settings=settings))

    groups: dict[tuple[str, str], list[tuple[CellComparison, FloatArray | None]]] = defaultdict(list)
    for item in compared:
        groups[(item[0].key.op, item[0].key.dtype)].append(item)
    geomeans = tuple(_geomean(items, op, dtype, confidence) for (op, dtype), items in sorted(groups.items()))

    def lone(idents: Iterable[tuple[CellKey, str]], rows: Mapping[tuple[CellKey, str], dict[str, Any]]
             ) -> tuple[LoneCell, ...]:
        return tuple(
            LoneCell(key=ident[0], sync=ident[1], status=_str(rows[ident]["status"]),
                     reason=_str(rows[ident].get("reason", "")))
            for ident in sorted(idents, key=lambda i: (i[0].sort_key, i[1]))
        )

    crossover_pairs: tuple[CrossoverPair, ...] | None = None
    if crossovers is not None:
        frames = crossovers if isinstance(crossovers, tuple) else (crossovers(base.results),
                                                                   crossovers(new.results))
        crossover_pairs = crossover_side_by_side(*frames)

    return Comparison(
        base_label=_label(base, "base"),
        new_label=_label(new, "new"),
        settings=settings,
        fingerprint=tuple(fingerprint_diff(base.meta, new.meta)),
        cells=tuple(cell for cell, _ in compared),
        geomeans=geomeans,
        overall=_geomean(compared, None, None, confidence),
        not_compared=tuple(not_compared),
        only_in_base=lone(only_base, base_rows),
        only_in_new=lone(only_new, new_rows),
        crossovers=crossover_pairs,
    )


# --------------------------------------------------------------------------------------------------------
# Crossovers side by side


_PairKey = tuple[str, str, str, str, str]


def _crossover_rows(frame: pd.DataFrame, side: str) -> dict[_PairKey, list[dict[str, Any]]]:
    """(op, dtype, mode, sorted device pair) → that pair's rows, crossings by size (NaN rows last)."""
    missing = [c for c in CROSSOVER_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{side} crossover frame lacks the columns {', '.join(missing)}")
    rows: dict[_PairKey, list[dict[str, Any]]] = defaultdict(list)
    for record in frame.to_dict("records"):
        row = {str(k): v for k, v in record.items()}
        a, b = sorted((_str(row["device_a"]), _str(row["device_b"])))
        rows[(_str(row["op"]), _str(row["dtype"]), _str(row["mode"]), a, b)].append(row)
    for pair_rows in rows.values():
        pair_rows.sort(key=lambda r: (not math.isfinite(_float(r["crossover_size"])),
                                      _float(r["crossover_size"])))
    return rows


def _float(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def crossover_side_by_side(base: pd.DataFrame, new: pd.DataFrame) -> tuple[CrossoverPair, ...]:
    """Join two crossover frames (``CROSSOVER_COLUMNS``, e.g. ``analysis.crossover_frame``) on (op, dtype,
    mode, device pair), one ``CrossoverPair`` per crossing.

    The device pair matches in either order (device_a/device_b are shown as the base frame has them). A pair
    may cross more than once; its crossings are paired by rank (smallest size with smallest size), and a
    crossing without a partner gets NaN numbers on the other side and the note "not in base run" /
    "not in new run" (or "no crossing #k in ... run" when the pair is there with fewer crossings).
    """
    base_rows, new_rows = _crossover_rows(base, "base"), _crossover_rows(new, "new")
    pairs: list[CrossoverPair] = []
    for key in sorted(set(base_rows) | set(new_rows)):
        b_list, n_list = base_rows.get(key, []), new_rows.get(key, [])
        op, dtype, mode = key[:3]
        for i in range(max(len(b_list), len(n_list))):
            b = b_list[i] if i < len(b_list) else None
            n = n_list[i] if i < len(n_list) else None
            shown = b if b is not None else n
            assert shown is not None

            def pick(row: Mapping[str, Any] | None, col: str) -> Any:
                return None if row is None else row.get(col)

            def absent(rows: list[dict[str, Any]], side: str, i: int = i) -> str:
                return f"not in {side} run" if not rows else f"no crossing #{i + 1} in {side} run"

            pairs.append(CrossoverPair(
                op=op, dtype=dtype, mode=mode, device_a=_str(shown["device_a"]),
                device_b=_str(shown["device_b"]), crossing=i,
                base_size=_float(pick(b, "crossover_size")), new_size=_float(pick(n, "crossover_size")),
                base_low=_float(pick(b, "low")), base_high=_float(pick(b, "high")),
                new_low=_float(pick(n, "low")), new_high=_float(pick(n, "high")),
                base_faster_below=_str(pick(b, "faster_below")),
                base_faster_above=_str(pick(b, "faster_above")),
                new_faster_below=_str(pick(n, "faster_below")),
                new_faster_above=_str(pick(n, "faster_above")),
                base_note=absent(b_list, "base") if b is None else _str(b.get("note")),
                new_note=absent(n_list, "new") if n is None else _str(n.get("note")),
            ))
    return tuple(pairs)
