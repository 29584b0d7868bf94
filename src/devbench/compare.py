"""Machine-vs-machine comparison of two runs: the statistical core of ``devbench compare``.

``compare_runs(base, new)`` matches the cells of two runs, and for every cell measured ``ok`` in both gives
the ratio NEW/BASE of the median per-call time, its interval, a verdict read off that interval, and the
gate's p-values. It adds geometric-mean ratios per (op, dtype) and overall, the differences between the two
machines' fingerprints, the cells that could not be compared (and why), and optionally the crossover sizes
of both runs side by side. Everything is plain frozen data; rendering (``compare_render.render_comparison``:
table, csv, json), the chart (``plots.compare``) and the HTML page read that data and compute nothing new.
No TensorFlow or matplotlib here.

The unit of evidence is the round. A sweep visits every cell ``--rounds`` times, interleaved with the other
cells, so the machine's drift shows up as differences between a cell's rounds. A cell's ratio interval is
``resampling.ratio_of_cells``: a two-level bootstrap on each side (rounds, then samples within the drawn
rounds), widened for few rounds, at ``confidence`` (default 95 %). Its seed is (``seed``, CRC-32 of the
cell's label), so a cell's interval is the same whatever else the runs hold.

Verdicts (threshold t, default 0.05; [lo, hi] the interval of r = median(new) / median(base)), from the
interval alone (``stats.verdict_from_interval``), so a verdict and its printed interval never disagree:

- ``slower`` when lo > 1 + t; ``faster`` when hi < 1 - t;
- ``same`` when 1 - t <= lo and hi <= 1 + t (an equivalence test: the data rule out any change beyond t,
  so a real 2 % change under a 5 % threshold is ``same``);
- ``uncertain`` otherwise, and whenever there is no interval: a side without raw samples (a bare results
  table: the ratio then comes from the stored ``median_s``), fewer than ``resampling.MIN_ROUNDS_FOR_CI``
  rounds on a side ("1 round: cannot see drift between rounds"), or non-positive times. The note says why.

The gate (``--fail-on-regression``): per cell p = ``interval.p_above(1 + t)``, the one-sided p-value of
"slower by more than t" (the ``p_value`` column); the p-values of every cell that has one are corrected
together, by Holm (default: family-wise error rate) or Benjamini–Hochberg (``gate_method="bh"``: false
discovery rate), and the gate fails on a cell when its adjusted p is at most ``alpha`` (default 0.05) *and*
its verdict is ``slower``. The second condition only makes the gate stricter (its promise holds), and it
means every cell the gate names is ``slower`` in the table. The converse does not hold: a cell can be
``slower`` by its own 95 % interval and still not fail the gate once the number of cells is accounted for
(``Comparison.slower_not_significant``; the table notes it).

What the gate promises, in numbers: with Holm at alpha 0.05, when no cell is truly slower by more than t,
the gate fails on at most 5 % of comparisons whatever the number of cells and however they are correlated,
as long as each cell's interval holds its nominal coverage (the two-level bootstrap's ratio intervals
covered 96-99 % at 3, 5 and 10 rounds in ``resampling``'s simulation: on the safe side). Simulated end to
end in tests/test_compare.py (``test_aa_families_*``): 12 A/A comparisons of 200 cells (5 rounds x 10
samples, 5 % drift between rounds, each run its own), judged at threshold 0 where the gate is most
exposed: Holm failed 0 of 12, BH 0 of 12, with drift shared by a run's cells and with drift drawn per
cell; a gate without correction (any p < 0.05) failed 2 and 12 of 12, and "any cell ``slower`` by its own
95 % interval" 1 and 12 of 12. At the default t = 5 %: 0 of 12 families, 0 of 2400 cells ``slower``. With
BH the promise is the same when nothing changed; when some cells did, on average at most 5 % of the cells
it names are false alarms, and it names more of the real ones than Holm.

The geometric means are ``resampling.joint_geomean_ratio``: one draw of rounds per run and replicate, shared
by every cell of that run, since the cells of a run were measured interleaved and share its drift.

Matching: cells are matched by (op, size, dtype, device, mode). When a run holds one cell per such key (one
sync method per sweep, the usual case) a differing ``sync`` still matches and the cell carries a note;
cells whose status is not ``ok`` on both sides are listed in ``not_compared``; cells found in one run only
are listed in ``only_in_base`` / ``only_in_new``. Nothing is dropped silently.

Why this module is long (over 600 lines): matching, per-cell intervals, the gate, the geometric means and
the pairing of crossovers are the steps of one comparison and share its identity types; the data types
live in ``compare_data`` and every rendering elsewhere, and the statistics themselves in ``resampling`` and
``stats``.

The module is long (about 630 lines) because matching, the per-cell intervals, the gate and the joint geometric
mean are one pipeline over the same matched cells; its data types (compare_data) and its rendering
(compare_render) live apart.
"""

from __future__ import annotations

import inspect
import math
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from devbench.compare_data import (
    CROSSOVER_COLUMNS,
    CSV_COLUMNS,
    GATE_METHODS,
    MATCH_KEY,
    VERDICTS,
    CellComparison,
    CellKey,
    CompareSettings,
    Comparison,
    CrossoverPair,
    FloatArray,
    GateMethod,
    GeoMean,
    LoneCell,
    StatusPair,
    Verdict,
    has_regression,
)
from devbench.errors import UsageError
from devbench.machine import FingerprintDiff, fingerprint_diff
from devbench.resampling import joint_geomean_ratio, ratio_of_cells
from devbench.stats import NOISY_REL_IQR, between_round_rel, gate_failures, rel_iqr, verdict_from_interval
from devbench.store import Run

__all__ = [
    "CROSSOVER_COLUMNS",
    "CSV_COLUMNS",
    "GATE_METHODS",
    "MATCH_KEY",
    "VERDICTS",
    "CellComparison",
    "CellKey",
    "CompareSettings",
    "Comparison",
    "CrossoverFrames",
    "CrossoverPair",
    "FingerprintDiff",
    "GateMethod",
    "GeoMean",
    "LoneCell",
    "StatusPair",
    "Verdict",
    "compare_runs",
    "crossover_side_by_side",
    "fingerprint_diff",
    "has_regression",
]

_REQUIRED_RESULT_COLUMNS = ("op", "size", "dtype", "device", "mode", "status")

CellRounds = list[FloatArray]
"""A cell's samples by round, in round order (round 1 first); rounds without samples are left out."""

CrossoverFrames = tuple[pd.DataFrame, pd.DataFrame] | Callable[..., pd.DataFrame]
"""Crossover frames for ``compare_runs``: (base, new) frames, or ``crossover_frame(results)`` /
``crossover_frame(results, samples)`` applied to each run."""


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


def _samples_by_identity(samples: pd.DataFrame) -> dict[tuple[CellKey, str], CellRounds]:
    """(CellKey, sync) → the cell's finite per-call times (s) grouped by round, rounds in order.

    A samples table without ``round`` (a hand-made table) is one round per cell."""
    needed = (*MATCH_KEY, "per_call_s")
    if samples is None or samples.empty or any(c not in samples.columns for c in needed):
        return {}
    frame = samples.copy()
    if "sync" not in frame.columns:
        frame["sync"] = ""
    if "round" not in frame.columns:
        frame["round"] = 1
    order = [c for c in ("round", "sample") if c in frame.columns]
    frame = frame.sort_values(order, kind="stable")
    out: dict[tuple[CellKey, str], CellRounds] = {}
    for ident, group in frame.groupby([*MATCH_KEY, "sync"], sort=False, dropna=False):
        op, size, dtype, device, mode, sync = ident
        key = CellKey(op=_str(op), size=int(size), dtype=_str(dtype), device=_str(device), mode=_str(mode))
        rounds: CellRounds = []
        for _, visit in group.groupby("round", sort=True):
            values = visit["per_call_s"].to_numpy(dtype=np.float64)
            values = values[np.isfinite(values)]
            if values.size:
                rounds.append(values)
        out[(key, _str(sync))] = rounds
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


def _validate(threshold: float, alpha: float, confidence: float, n_boot: int, seed: int, *,
              gate_method: str) -> None:
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and 0.0 <= threshold < 1.0):
        raise UsageError(f"--threshold {threshold!r} is out of range; allowed: a fraction 0 <= t < 1 "
                         "(0.05 means a 5 % change)")
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and 0.0 < alpha < 1.0):
        raise UsageError(f"--alpha {alpha!r} is out of range; allowed: a family-wise level 0 < alpha < 1 "
                         "(e.g. 0.05)")
    if not (isinstance(confidence, (int, float)) and math.isfinite(confidence) and 0.0 < confidence < 1.0):
        raise UsageError(f"confidence {confidence!r} is out of range; allowed: 0 < confidence < 1 "
                         "(e.g. 0.95)")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 100:
        raise UsageError(f"n_boot {n_boot!r} is too small; allowed: a whole number >= 100 (e.g. 2000)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"seed {seed!r} is not allowed; give a whole number >= 0")
    if gate_method not in GATE_METHODS:
        raise UsageError(f"--gate-method {gate_method!r} is unknown; allowed: {', '.join(GATE_METHODS)}")


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


def _cell_seed(seed: int, label: str) -> list[int]:
    """The generator seed of one cell or group: its own, so its interval ignores every other cell."""
    return [seed, zlib.crc32(label.encode())]


_CellResult = tuple[CellComparison, tuple[CellRounds, CellRounds] | None]
"""A compared cell and its rounds (base, new) when both sides have valid samples (for the geometric mean)."""


def _compare_cell(
    *,
    key: CellKey,
    base_sync: str,
    new_sync: str,
    base_row: Mapping[str, Any],
    new_row: Mapping[str, Any],
    base_rounds: CellRounds | None,
    new_rounds: CellRounds | None,
    settings: CompareSettings,
) -> _CellResult:
    """Compare one cell (rules in the module docstring); p_adjusted and gate_fails are filled in later."""
    notes: list[str] = []
    if base_sync != new_sync:
        notes.append(f"sync differs (base {base_sync or '?'}, new {new_sync or '?'})")
    if "none" in (base_sync, new_sync):
        notes.append("unsynchronized (sync=none): times measure launch, not work")

    b_rounds, n_rounds = base_rounds or [], new_rounds or []
    n_base = sum(int(r.size) for r in b_rounds)
    n_new = sum(int(r.size) for r in n_rounds)
    base_med = float(np.median(np.concatenate(b_rounds))) if n_base else _median_from_row(base_row)
    new_med = float(np.median(np.concatenate(n_rounds))) if n_new else _median_from_row(new_row)
    ratio = new_med / base_med if base_med > 0 and math.isfinite(new_med) else math.nan

    def cell(ci_low: float = math.nan, ci_high: float = math.nan, p_value: float = math.nan,
             verdict: Verdict = "uncertain", first: str = "") -> CellComparison:
        return CellComparison(key=key, base_sync=base_sync, new_sync=new_sync, n_base=n_base, n_new=n_new,
                              base_median_s=base_med, new_median_s=new_med, ratio=ratio, ci_low=ci_low,
                              ci_high=ci_high, p_value=p_value, verdict=verdict,
                              notes=(first, *notes) if first else tuple(notes),
                              n_rounds_base=len(b_rounds), n_rounds_new=len(n_rounds))

    if n_base == 0 or n_new == 0:
        sides = [name for name, n in (("base", n_base), ("new", n_new)) if n == 0]
        return cell(first=f"no raw samples ({' and '.join(sides)}): ratio of stored medians, not tested"), None
    if any(np.any(r <= 0) for r in (*b_rounds, *n_rounds)):
        return cell(first="non-positive per-call times: not tested"), None

    noisy = [f"{side} IQR {spread:.0%}" for side, rounds in (("base", b_rounds), ("new", n_rounds))
             if (spread := rel_iqr(np.concatenate(rounds).tolist())) > NOISY_REL_IQR]
    if noisy:
        notes.append("noisy: " + ", ".join(noisy) + " of median")
    drifting = [f"{side} {spread:.0%}" for side, rounds in (("base", b_rounds), ("new", n_rounds))
                if len(rounds) > 1 and (spread := between_round_rel(rounds)) > NOISY_REL_IQR]
    if drifting:
        notes.append("drift between rounds: " + ", ".join(drifting) + " of median")

    interval = ratio_of_cells(b_rounds, n_rounds, confidence=settings.confidence, n_boot=settings.n_boot,
                              seed=_cell_seed(settings.seed, key.label()))
    if interval.reason:
        return cell(first=f"{interval.reason}: not tested"), (b_rounds, n_rounds)
    lo, hi = interval.ci_low, interval.ci_high
    return cell(ci_low=lo, ci_high=hi, p_value=interval.p_above(1.0 + settings.threshold),
                verdict=verdict_from_interval(lo, hi, settings.threshold)), (b_rounds, n_rounds)


def _apply_gate(cells: Sequence[CellComparison], settings: CompareSettings) -> list[CellComparison]:
    """Fill in ``p_adjusted`` and ``gate_fails``: the correction runs over every cell with a p-value."""
    p = np.array([c.p_value for c in cells], dtype=np.float64)
    if not cells:
        return []
    if settings.gate_method == "holm":
        from devbench.stats import holm_adjust as adjust
    else:
        from devbench.stats import bh_adjust as adjust
    adjusted = adjust(p)
    flagged = gate_failures(p, settings.alpha, settings.gate_method)
    out = []
    for c, p_adj, flag in zip(cells, adjusted.tolist(), flagged.tolist(), strict=True):
        fails = bool(flag) and c.verdict == "slower"
        notes = c.notes
        if c.verdict == "slower" and not fails:
            notes = (*notes, f"not significant after {settings.gate_method} over {int(np.isfinite(p).sum())} "
                     f"cells (adjusted p {p_adj:.2g} > alpha {settings.alpha:g})")
        out.append(replace(c, p_adjusted=float(p_adj), gate_fails=fails, notes=notes))
    return out


def _geomean(items: Sequence[_CellResult], op: str | None, dtype: str | None,
             settings: CompareSettings) -> GeoMean:
    usable = [(c, rounds) for c, rounds in items if math.isfinite(c.ratio) and c.ratio > 0]
    if not usable:
        return GeoMean(op=op, dtype=dtype, n_cells=0, ratio=math.nan, ci_low=math.nan, ci_high=math.nan,
                       note="no comparable cells")
    ratio = float(np.exp(np.mean([math.log(c.ratio) for c, _ in usable])))
    pairs = [rounds for _, rounds in usable if rounds is not None]
    missing = len(usable) - len(pairs)
    if missing:
        return GeoMean(op=op, dtype=dtype, n_cells=len(usable), ratio=ratio, ci_low=math.nan,
                       ci_high=math.nan, note=f"no interval: {missing} cell(s) without usable raw samples")
    label = "overall" if op is None else f"{op} {dtype}"
    interval = joint_geomean_ratio(pairs, confidence=settings.confidence, n_boot=settings.n_boot,
                                   seed=_cell_seed(settings.seed, "geomean " + label))
    if interval.reason:
        return GeoMean(op=op, dtype=dtype, n_cells=len(usable), ratio=ratio, ci_low=math.nan,
                       ci_high=math.nan, note=f"no interval: {interval.reason}")
    return GeoMean(op=op, dtype=dtype, n_cells=len(usable), ratio=ratio, ci_low=interval.ci_low,
                   ci_high=interval.ci_high)


def _takes_samples(function: Callable[..., pd.DataFrame]) -> bool:
    """Whether a crossover function accepts (results, samples) rather than (results) alone."""
    try:
        inspect.signature(function).bind(pd.DataFrame(), pd.DataFrame())
    except TypeError:
        return False
    except ValueError:  # no signature to read (a builtin): call it the old way
        return False
    return True


def _crossover_frames(crossovers: CrossoverFrames, base: Run, new: Run) -> tuple[pd.DataFrame, pd.DataFrame]:
    if isinstance(crossovers, tuple):
        return crossovers
    if _takes_samples(crossovers):
        return crossovers(base.results, base.samples), crossovers(new.results, new.samples)
    return crossovers(base.results), crossovers(new.results)


def compare_runs(
    base: Run,
    new: Run,
    *,
    threshold: float = 0.05,
    alpha: float = 0.05,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    gate_method: GateMethod = "holm",
    crossovers: CrossoverFrames | None = None,
) -> Comparison:
    """Compare NEW against BASE cell by cell (verdict rules and the gate in the module docstring).

    threshold: smallest relative change of the median per-call time that counts, a fraction 0 <= t < 1
        (0.05 = 5 %). The same band [1 - t, 1 + t] decides ``same``. 0 means any change counts and ``same``
        needs an interval of exactly 1.
    alpha: the gate's level over all judged cells (family-wise with Holm, false discovery rate with BH),
        0 < alpha < 1.
    confidence: level of the bootstrap intervals (per cell and geometric means), 0 < confidence < 1.
    n_boot: bootstrap replicates per cell (>= 100).
    seed: a whole number >= 0 that makes the intervals reproducible; each cell's generator is derived
        from it and the cell's identity, so a cell gets the same interval whatever else the runs hold.
    gate_method: ``holm`` or ``bh`` (see ``stats.gate_failures``).
    crossovers: optional crossover sizes to show side by side: either the two frames (base, new) with
        ``CROSSOVER_COLUMNS`` or a function making such a frame from a run's results table (and its samples
        table, when it takes a second argument: ``crossover.crossover_frame``), applied to both runs.

    Raises UsageError for an out-of-range parameter, runs whose meta give different ``schema_version``s, or
    a results table without the identity columns.
    """
    _validate(threshold, alpha, confidence, n_boot, seed, gate_method=gate_method)
    base_version, new_version = base.meta.get("schema_version"), new.meta.get("schema_version")
    if base_version is not None and new_version is not None and base_version != new_version:
        raise UsageError(f"the runs have different schema versions (base {base_version!r}, new "
                         f"{new_version!r}); compare runs written with the same schema version")
    settings = CompareSettings(threshold=float(threshold), alpha=float(alpha), confidence=float(confidence),
                               n_boot=n_boot, seed=seed, gate_method=gate_method)
    base_rows = _rows_by_identity(_check_results(base, "base"))
    new_rows = _rows_by_identity(_check_results(new, "new"))
    base_samples = _samples_by_identity(base.samples)
    new_samples = _samples_by_identity(new.samples)
    pairs, only_base, only_new = _pair_cells(base_rows, new_rows)
    pairs.sort(key=lambda pair: (pair[0][0].sort_key, pair[0][1]))

    compared: list[_CellResult] = []
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
            base_rounds=base_samples.get(base_ident), new_rounds=new_samples.get(new_ident),
            settings=settings))
    gated = _apply_gate([c for c, _ in compared], settings)
    compared = [(c, rounds) for c, (_, rounds) in zip(gated, compared, strict=True)]

    groups: dict[tuple[str, str], list[_CellResult]] = defaultdict(list)
    for item in compared:
        groups[(item[0].key.op, item[0].key.dtype)].append(item)
    geomeans = tuple(_geomean(items, op, dtype, settings) for (op, dtype), items in sorted(groups.items()))

    def lone(idents: Iterable[tuple[CellKey, str]], rows: Mapping[tuple[CellKey, str], dict[str, Any]]
             ) -> tuple[LoneCell, ...]:
        return tuple(
            LoneCell(key=ident[0], sync=ident[1], status=_str(rows[ident]["status"]),
                     reason=_str(rows[ident].get("reason", "")))
            for ident in sorted(idents, key=lambda i: (i[0].sort_key, i[1]))
        )

    crossover_pairs: tuple[CrossoverPair, ...] | None = None
    if crossovers is not None:
        crossover_pairs = crossover_side_by_side(*_crossover_frames(crossovers, base, new))

    return Comparison(
        base_label=_label(base, "base"),
        new_label=_label(new, "new"),
        settings=settings,
        fingerprint=tuple(fingerprint_diff(base.meta, new.meta)),
        cells=tuple(cell for cell, _ in compared),
        geomeans=geomeans,
        overall=_geomean(compared, None, None, settings),
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


def _extent(row: Mapping[str, Any]) -> tuple[float, float]:
    """The sizes a crossing may lie in: its [low, high] bracket/range, else its point estimate."""
    size, low, high = (_float(row.get(c)) for c in ("crossover_size", "low", "high"))
    low = low if math.isfinite(low) else size
    high = high if math.isfinite(high) else size
    return (min(low, high), max(low, high))


def _same_direction(b: Mapping[str, Any], n: Mapping[str, Any]) -> bool:
    """Whether two crossings hand over the same way (the same device faster below); unknown counts as same."""
    below_b, below_n = _str(b.get("faster_below")), _str(n.get("faster_below"))
    return not below_b or not below_n or below_b == below_n


def _match_crossings(base: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
                     ) -> list[tuple[int | None, int | None]]:
    """Pair the crossings of one device pair in two runs by overlap, not by rank.

    Two crossings can be the same one when their brackets/ranges overlap and they hand over the same way;
    among such candidates the closest sizes (log scale) pair first, each crossing at most once. So one
    spurious crossing on one side stays alone instead of shifting every pairing after it. One rule more:
    when exactly one crossing is left over on each side and they hand over the same way, they are the same
    crossing that moved beyond its bracket (a different machine), and pair. The rest are unpaired
    (index None on the other side). Returned in order of size.
    """
    candidates = []
    for i, b in enumerate(base):
        b_low, b_high = _extent(b)
        for j, n in enumerate(new):
            n_low, n_high = _extent(n)
            if max(b_low, n_low) <= min(b_high, n_high) and _same_direction(b, n):
                distance = abs(math.log(_float(b["crossover_size"]) / _float(n["crossover_size"])))
                candidates.append((distance, i, j))
    used_b: set[int] = set()
    used_n: set[int] = set()
    matched: list[tuple[int | None, int | None]] = []
    for _, i, j in sorted(candidates):
        if i not in used_b and j not in used_n:
            matched.append((i, j))
            used_b.add(i)
            used_n.add(j)
    left_b = [i for i in range(len(base)) if i not in used_b]
    left_n = [j for j in range(len(new)) if j not in used_n]
    if len(left_b) == 1 and len(left_n) == 1 and _same_direction(base[left_b[0]], new[left_n[0]]):
        matched.append((left_b[0], left_n[0]))
        left_b, left_n = [], []
    matched.extend((i, None) for i in left_b)
    matched.extend((None, j) for j in left_n)

    def position(pair: tuple[int | None, int | None]) -> float:
        sizes = [_float(rows[k]["crossover_size"]) for rows, k in ((base, pair[0]), (new, pair[1]))
                 if k is not None]
        return min(sizes)

    return sorted(matched, key=position)


def _absent(rows: Sequence[Mapping[str, Any]] | None, side: str, other: str) -> str:
    """The note for the missing side of an unpaired crossing: why ``side`` has none to show."""
    if rows is None:
        return f"not in {side} run"
    if any(math.isfinite(_float(r["crossover_size"])) for r in rows):
        return f"only in {other} run: no crossing in the {side} run overlaps it"
    notes = [_str(r.get("note")) for r in rows if _str(r.get("note"))]
    return "; ".join(notes) if notes else f"no crossing in {side} run"


def crossover_side_by_side(base: pd.DataFrame, new: pd.DataFrame) -> tuple[CrossoverPair, ...]:
    """Join two crossover frames (``CROSSOVER_COLUMNS``, e.g. ``crossover.crossover_frame``) on (op, dtype,
    mode, device pair), one ``CrossoverPair`` per crossing.

    The device pair matches in either order (device_a/device_b are shown as the base frame has them). A pair
    may cross more than once; its crossings are paired by overlap of their brackets (``_match_crossings``),
    not by rank. A crossing without a partner gets NaN numbers on the other side and a note there: "not in
    base run" (the pair is absent), the other run's own note for the pair (e.g. "no crossover in [64, 4096]:
    CPU:0 is faster throughout"), or "only in new run: no crossing here overlaps it". A pair with no
    crossing in either run gets one row with both notes.
    """
    base_rows, new_rows = _crossover_rows(base, "base"), _crossover_rows(new, "new")
    pairs: list[CrossoverPair] = []
    for key in sorted(set(base_rows) | set(new_rows)):
        op, dtype, mode = key[:3]
        sides = {"base": base_rows.get(key), "new": new_rows.get(key)}
        crossings = {side: [r for r in (rows or []) if math.isfinite(_float(r["crossover_size"]))]
                     for side, rows in sides.items()}

        matched = _match_crossings(crossings["base"], crossings["new"])
        if not matched:  # no crossing on either side: one row with what each run says about the pair
            shown_rows = [*(sides["base"] or []), *(sides["new"] or [])]
            matched_rows: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = [(None, None)]
        else:
            shown_rows = []
            matched_rows = [(None if i is None else crossings["base"][i],
                             None if j is None else crossings["new"][j]) for i, j in matched]
        for index, (b, n) in enumerate(matched_rows):
            shown = b if b is not None else n if n is not None else shown_rows[0]

            def pick(row: Mapping[str, Any] | None, col: str) -> Any:
                return None if row is None else row.get(col)

            pairs.append(CrossoverPair(
                op=op, dtype=dtype, mode=mode, device_a=_str(shown["device_a"]),
                device_b=_str(shown["device_b"]), crossing=index,
                base_size=_float(pick(b, "crossover_size")), new_size=_float(pick(n, "crossover_size")),
                base_low=_float(pick(b, "low")), base_high=_float(pick(b, "high")),
                new_low=_float(pick(n, "low")), new_high=_float(pick(n, "high")),
                base_faster_below=_str(pick(b, "faster_below")),
                base_faster_above=_str(pick(b, "faster_above")),
                new_faster_below=_str(pick(n, "faster_below")),
                new_faster_above=_str(pick(n, "faster_above")),
                base_note=_absent(sides["base"], "base", "new") if b is None else _str(b.get("note")),
                new_note=_absent(sides["new"], "new", "base") if n is None else _str(n.get("note")),
            ))
    return tuple(pairs)
