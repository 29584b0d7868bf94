"""Crossover detection and the pure half of refining (which sizes to measure next). No TensorFlow, no plotting.

The question devbench answers is *from which size on is one device faster than another*. For each
(op, dtype, mode) and each pair of devices, the crossover is where ``log(median_a) - log(median_b)`` changes
sign, located by linear interpolation against ``log(size)`` between the two bracketing measured sizes
(time per call is close to a power law in n, so log–log interpolation is nearly exact on a coarse grid).

Units: times are seconds per call, sizes are the matrix side n, speed-ups are plain ratios of times.

Only ``status == "ok"`` rows with a finite, positive ``median_s`` enter; a cell measured more than once
(different ``sync`` policies) counts once, preferring a synchronized measurement. ``CPU:0`` is the
reference device of every speed-up, and sorts first so that pairs read (CPU:0, other).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from devbench.errors import UsageError
from devbench.formatting import format_size
from devbench.schema import RESULT_COLUMNS
from devbench.selection import (
    GROUP,
    device_order,
    merge_results,
    ok_cells,
    records,
    transfer_as_mode,
)

CROSSOVER_COLUMNS: tuple[str, ...] = (
    "op",
    "dtype",
    "mode",
    "device_a",
    "device_b",
    "crossover_size",
    "low",
    "high",
    "faster_below",
    "faster_above",
    "note",
)
"""The public columns of ``crossover_frame`` (and its CSV), in this order."""

CROSSOVER_EXTRA_COLUMNS: tuple[str, ...] = (
    "min_size",
    "max_size",
    "speedup_min",
    "speedup_max",
    "bracket_low",
    "bracket_high",
    "n_shared",
    "uncertain",
    "unsynchronized",
)
"""Extra columns after the public ones. ``speedup_*`` = median_a / median_b at the smallest / largest shared
size, i.e. how many times faster device_b is than device_a (> 1: device_b faster). ``bracket_low/high``: the
measured shared sizes that enclose the crossing (equal when it sits exactly on a grid point)."""


# ---------------------------------------------------------------------------------------------------------
# Crossover


def _zero(x0: float, x1: float, y0: float, y1: float) -> float:
    """Where the line through (x0, y0), (x1, y1) (x in log size) crosses zero; returned as a size."""
    if y0 == y1:
        return math.exp(x0)
    t = y0 / (y0 - y1)
    return math.exp(x0 + min(max(t, 0.0), 1.0) * (x1 - x0))


@dataclass(frozen=True)
class _Crossing:
    size: float
    low: float
    high: float
    bracket_low: int
    bracket_high: int
    rising: bool
    """True when device_a is faster below (log-ratio goes from negative to positive)."""
    notes: tuple[str, ...]
    uncertain: bool


def _bounds(
    sizes: Sequence[int], e_hi: np.ndarray, e_lo: np.ndarray, *, p: int, q: int
) -> tuple[float, float, list[str], bool]:
    """Range of a rising crossing of ``e`` between indices p (e < 0) and q (e > 0).

    ``e_hi`` / ``e_lo`` are the largest / smallest plausible log-ratios from the medians' CIs. The low end is
    where ``e_hi`` last turns positive before the crossing, the high end where ``e_lo`` first turns positive
    after it. If the CIs already overlap at a bracketing size, that search walks past the bracket (the
    crossing could be anywhere the two devices are indistinguishable) and the crossing is uncertain.
    """
    x = np.log(np.asarray(sizes, dtype=np.float64))
    notes: list[str] = []
    uncertain = False
    low = float(sizes[0])
    j = q - 1
    while j >= 0 and e_hi[j] > 0:
        j -= 1
    if j < 0:
        notes.append(f"may lie below n={format_size(sizes[0])} (CIs overlap down to the smallest size)")
        uncertain = True
    else:
        low = float(sizes[j]) if e_hi[j] == 0 else _zero(x[j], x[j + 1], e_hi[j], e_hi[j + 1])
    high = float(sizes[-1])
    k = p + 1
    while k < len(sizes) and e_lo[k] < 0:
        k += 1
    if k >= len(sizes):
        notes.append(f"may lie above n={format_size(sizes[-1])} (CIs overlap up to the largest size)")
        uncertain = True
    else:
        high = float(sizes[k]) if e_lo[k] == 0 else _zero(x[k - 1], x[k], e_lo[k - 1], e_lo[k])
    overlap = [sizes[i] for i in (p, q) if e_hi[i] > 0 > e_lo[i]]
    if overlap:
        uncertain = True
        at = " and ".join(f"n={format_size(s)}" for s in overlap)
        notes.insert(0, f"uncertain: the CIs overlap at {at}, so the range is widened past the bracket")
    return low, high, notes, uncertain


@dataclass(frozen=True)
class _Curve:
    """One device's medians and their CI bounds (seconds) at the shared sizes."""

    median: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray


def _crossings(sizes: Sequence[int], a: _Curve, b: _Curve) -> list[_Crossing]:
    """Every sign change of log(median_a / median_b) over the shared sizes (ascending), with its range."""
    ma, mb, la, ha, lb, hb = a.median, b.median, a.ci_low, a.ci_high, b.ci_low, b.ci_high
    d = np.log(ma) - np.log(mb)
    have_ci = bool(np.all(np.isfinite([la, ha, lb, hb])) and np.all(la > 0) and np.all(lb > 0))
    if have_ci:
        # A CI that does not contain its median (hand-made tables) is widened to contain it.
        la, ha = np.minimum(la, ma), np.maximum(ha, ma)
        lb, hb = np.minimum(lb, mb), np.maximum(hb, mb)
        d_hi = np.log(ha) - np.log(lb)
        d_lo = np.log(la) - np.log(hb)
    x = np.log(np.asarray(sizes, dtype=np.float64))
    signs = np.sign(d)
    nonzero = [i for i in range(len(sizes)) if signs[i] != 0]
    found: list[_Crossing] = []
    for p, q in itertools.pairwise(nonzero):
        if signs[p] == signs[q]:
            continue
        rising = bool(signs[p] < 0)
        if q == p + 1:
            size = _zero(x[p], x[q], d[p], d[q])
            bracket = (sizes[p], sizes[q])
        else:  # exact ties on grid points between p and q: the crossing sits on them
            bracket = (sizes[p + 1], sizes[q - 1])
            size = math.sqrt(bracket[0] * bracket[1])
        if have_ci:
            e_hi, e_lo = (d_hi, d_lo) if rising else (-d_lo, -d_hi)
            low, high, notes, uncertain = _bounds(sizes, e_hi, e_lo, p=p, q=q)
        else:
            low, high = float(sizes[p]), float(sizes[q])
            notes, uncertain = ["no CI in the data: the range is the measured bracket"], False
        found.append(
            _Crossing(
                size=float(size),
                low=min(low, size),
                high=max(high, size),
                bracket_low=int(bracket[0]),
                bracket_high=int(bracket[1]),
                rising=rising,
                notes=tuple(notes),
                uncertain=uncertain,
            )
        )
    return found


def crossover_sentence(faster_above: str, size: float, low: float, high: float, than: str = "") -> str:
    """'GPU:0 faster above n≈724 (range 690–760)'; with ``than``: 'GPU:1 faster than GPU:0 above …'."""
    text = f"{faster_above} faster{f' than {than}' if than else ''} above n≈{format_size(size)}"
    if math.isfinite(low) and math.isfinite(high) and (low, high) != (size, size):
        text += f" (range {format_size(low)}–{format_size(high)})"
    return text


def _pair_rows(key: tuple[str, str, str], a: str, b: str, cells: pd.DataFrame) -> list[dict[str, Any]]:
    op, dtype, mode = key
    ta = cells[cells["device"] == a].set_index("size")
    tb = cells[cells["device"] == b].set_index("size")
    shared = sorted(set(ta.index) & set(tb.index))
    base: dict[str, Any] = {
        "op": op,
        "dtype": dtype,
        "mode": mode,
        "device_a": a,
        "device_b": b,
        "crossover_size": math.nan,
        "low": math.nan,
        "high": math.nan,
        "faster_below": "",
        "faster_above": "",
        "note": "",
        "min_size": math.nan,
        "max_size": math.nan,
        "speedup_min": math.nan,
        "speedup_max": math.nan,
        "bracket_low": math.nan,
        "bracket_high": math.nan,
        "n_shared": len(shared),
        "uncertain": False,
        "unsynchronized": False,
    }
    if len(shared) < 2:
        base["note"] = (
            f"too few ok cells to compare: {a} has {len(ta)}, {b} has {len(tb)}, "
            f"{len(shared)} shared size{'s' if len(shared) != 1 else ''} (need 2)"
        )
        return [base]

    def column(table: pd.DataFrame, name: str) -> np.ndarray:
        values: np.ndarray = table.loc[shared, name].to_numpy(dtype=np.float64)
        return values

    def curve(table: pd.DataFrame) -> _Curve:
        return _Curve(column(table, "median_s"), column(table, "ci_low_s"), column(table, "ci_high_s"))

    ma, mb = column(ta, "median_s"), column(tb, "median_s")
    unsync = bool(ta.loc[shared, "is_unsynchronized"].any() or tb.loc[shared, "is_unsynchronized"].any())
    base.update(
        min_size=float(shared[0]),
        max_size=float(shared[-1]),
        speedup_min=float(ma[0] / mb[0]),
        speedup_max=float(ma[-1] / mb[-1]),
        unsynchronized=unsync,
    )
    tail = ["unsynchronized cells: measures launch, not work"] if unsync else []
    crossings = _crossings(shared, curve(ta), curve(tb))
    span = f"[{format_size(shared[0])}, {format_size(shared[-1])}]"
    if not crossings:
        d = np.log(ma) - np.log(mb)
        if np.all(d == 0):
            text = f"no crossover in {span}: {a} and {b} are tied throughout"
            faster = ""
        else:
            faster = a if np.all(d <= 0) else b
            text = f"no crossover in {span}: {faster} is faster throughout"
        row = {**base, "faster_below": faster, "faster_above": faster}
        row["note"] = "; ".join([text, *tail])
        return [row]
    rows = []
    for c in crossings:
        below, above = (a, b) if c.rising else (b, a)
        rows.append(
            {
                **base,
                "crossover_size": c.size,
                "low": c.low,
                "high": c.high,
                "faster_below": below,
                "faster_above": above,
                "bracket_low": float(c.bracket_low),
                "bracket_high": float(c.bracket_high),
                "uncertain": c.uncertain,
                "note": "; ".join([crossover_sentence(above, c.size, c.low, c.high), *c.notes, *tail]),
            }
        )
    return rows


def crossover_frame(results: pd.DataFrame) -> pd.DataFrame:
    """Every crossover for each (op, dtype, mode) and each pair of devices present in it.

    One row per crossing; a pair that never changes sign gets one row with NaN ``crossover_size`` and the
    note "no crossover in [min, max]: X is faster throughout". A pair with fewer than two shared ok sizes gets
    one row with NaN numbers, empty ``faster_*`` and a note saying so: nothing is invented. Devices count as
    present in a group if they have any row there (whatever the status), so a device whose cells all failed
    still shows up as "too few ok cells". Pairs come CPU:0-first (``device_order``), crossings by size.

    ``crossover_size``, ``low`` and ``high`` are matrix sides n (floats). ``low``/``high`` are where the
    optimistic and pessimistic log-ratio curves (from ``ci_low_s``/``ci_high_s``) cross zero; without CIs,
    the bracketing measured sizes. Columns: ``CROSSOVER_COLUMNS`` then ``CROSSOVER_EXTRA_COLUMNS``.
    """
    columns = [*CROSSOVER_COLUMNS, *CROSSOVER_EXTRA_COLUMNS]
    if results.empty:
        empty: pd.DataFrame = pd.DataFrame(columns=columns)
        return empty
    results = transfer_as_mode(results)
    cells = ok_cells(results)
    by_group = {key: frame for key, frame in cells.groupby(list(GROUP), sort=False)}
    rows: list[dict[str, Any]] = []
    for key, group in results.groupby(list(GROUP), sort=True):
        op, dtype, mode = (str(k) for k in key)
        group_cells = by_group.get(key, cells.iloc[0:0])
        for a, b in itertools.combinations(device_order(group["device"].astype(str)), 2):
            rows.extend(_pair_rows((op, dtype, mode), a, b, group_cells))
    frame = pd.DataFrame(rows, columns=columns)
    for col in (
        "crossover_size",
        "low",
        "high",
        "min_size",
        "max_size",
        "speedup_min",
        "speedup_max",
        "bracket_low",
        "bracket_high",
    ):
        frame[col] = frame[col].astype("float64")
    frame["n_shared"] = frame["n_shared"].astype("int64")
    for col in ("uncertain", "unsynchronized"):
        frame[col] = frame[col].astype(bool)
    out: pd.DataFrame = frame
    return out


# ---------------------------------------------------------------------------------------------------------
# Refining


class RefineCell(NamedTuple):
    """A cell to measure while refining: the devices that still lack ``size`` (matrix side n)."""

    op: str
    dtype: str
    mode: str
    devices: tuple[str, ...]
    size: int


MeasureFn = Callable[[list[RefineCell]], pd.DataFrame]
"""Measures the given cells and returns their result rows (RESULT_COLUMNS, any status)."""


def bracket_converged(low: float, high: float, crossover: float, rel_tol: float = 0.05) -> bool:
    """A bracket [low, high] of measured sizes is narrow enough: within ``rel_tol`` of the crossover size,
    or adjacent integers (nothing left to measure in between)."""
    return high - low <= 1 or high - low <= rel_tol * crossover


def _bisection_size(low: int, high: int, unusable: set[int]) -> int | None:
    """The integer nearest the geometric mean of (low, high), strictly inside, not in ``unusable``."""
    middle = round(math.sqrt(low * high))
    for step in range(32):
        for candidate in (middle - step, middle + step) if step else (middle,):
            if low < candidate < high and candidate not in unusable:
                return candidate
    return None


def refine_plan(results: pd.DataFrame, rel_tol: float = 0.05) -> list[RefineCell]:
    """The cells to measure next: one bisection point (in log size) inside each unconverged bracket.

    Only pairs with a located crossing are refined, each bracket independently. A size already attempted by
    either device and not ok (failed, skipped…) is avoided, since measuring it again would not narrow
    anything; a device that already has an ok cell at the chosen size is not asked again. Requests for the
    same (op, dtype, mode, size) are merged. Sorted, so the plan is deterministic.
    """
    if not 0 < rel_tol < 1:
        raise UsageError(f"refine tolerance {rel_tol!r} must be a fraction between 0 and 1 (0.05 is 5 %)")
    frame = crossover_frame(results)
    frame = frame[np.isfinite(frame["crossover_size"])]
    if frame.empty:
        return []
    status = results.assign(ok=results["status"].astype(str) == "ok")
    attempted: dict[tuple[str, str, str, str], dict[int, bool]] = {}
    for r in records(status[[*GROUP, "device", "size", "ok"]]):
        key = (str(r["op"]), str(r["dtype"]), str(r["mode"]), str(r["device"]))
        sizes = attempted.setdefault(key, {})
        sizes[int(r["size"])] = sizes.get(int(r["size"]), False) or bool(r["ok"])
    wanted: dict[tuple[str, str, str, int], set[str]] = {}
    for r in records(frame):
        lo, hi = int(r["bracket_low"]), int(r["bracket_high"])
        if bracket_converged(lo, hi, r["crossover_size"], rel_tol):
            continue
        op, dtype, mode = str(r["op"]), str(r["dtype"]), str(r["mode"])
        pair = (str(r["device_a"]), str(r["device_b"]))
        seen = [attempted.get((op, dtype, mode, d), {}) for d in pair]
        unusable = {s for sizes in seen for s, ok in sizes.items() if not ok}
        unusable |= set(seen[0]) & set(seen[1])
        size = _bisection_size(lo, hi, unusable)
        if size is None:
            continue
        need = {d for d, sizes in zip(pair, seen, strict=True) if size not in sizes}
        wanted.setdefault((op, dtype, mode, size), set()).update(need)
    return sorted(
        RefineCell(op, dtype, mode, tuple(device_order(devices)), size)
        for (op, dtype, mode, size), devices in wanted.items()
    )


@dataclass
class Refinement:
    """What ``refine`` did: the merged results, the rounds run, and what is left."""

    results: pd.DataFrame
    rounds: int
    converged: bool
    """True when no bracket is left that more measurements could narrow."""
    pending: list[RefineCell] = field(default_factory=list)
    """The cells the next round would measure (empty when converged)."""
    measured: list[RefineCell] = field(default_factory=list)
    """Every cell requested from ``measure``, in order."""


def refine(results: pd.DataFrame, measure: MeasureFn, max_rounds: int = 6, rel_tol: float = 0.05) -> Refinement:
    """Narrow every crossover bracket by bisection in log size until within ``rel_tol`` or out of rounds.

    Each round asks ``measure`` for the cells of ``refine_plan`` and merges the rows it returns (a cell it
    returns again replaces the old row). A round whose ``measure`` returns nothing ends the loop, since
    nothing would change. From a x2 grid, each round halves the bracket in log space: about five rounds take
    a bracket from 100 % to within 5 %.
    """
    if max_rounds < 0:
        raise UsageError(f"refine rounds {max_rounds!r} must be 0 or more")
    current = results.reset_index(drop=True)
    measured: list[RefineCell] = []
    for done in range(max_rounds):
        plan = refine_plan(current, rel_tol)
        if not plan:
            return Refinement(current, done, True, [], measured)
        measured.extend(plan)
        new = measure(plan)
        if new.empty:
            return Refinement(current, done + 1, False, plan, measured)
        current = merge_results(current, new.reindex(columns=list(RESULT_COLUMNS)))
    plan = refine_plan(current, rel_tol)
    return Refinement(current, max_rounds, not plan, plan, measured)
