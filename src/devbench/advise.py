"""Placement advice per op: which device to use at each size over N calls, and from how many calls moving
to the accelerator pays. Pure analysis of a run (results, samples by round, meta.json); no framework, no I/O.

**The fit.** Per (op, dtype, mode) and device, the cells' medians are fitted with ``t(n) = a + b·n^p``
(:mod:`devbench.advise_fit`: least squares on the log of the time, so sizes spanning decades weigh alike),
``a`` the fixed cost of a call, ``b·n^p`` the work; where that one law leaves a cell outside its 95 %
interval, with one step (the work times ``1 + c`` from a measured size on: a cache boundary, a kernel switch)
where the information criterion prefers it.

**Intervals: the unit is the round.** Each round's medians (the cell's samples of that visit) are fitted
again; at every size the spread of the per-round log fits over R rounds gives a t interval (R - 1 degrees
of freedom) around the fit of each size's geometric mean of its round medians (:func:`fit_device` says
why). Devices of one size are measured back to back in each round, so a difference between two devices is
taken round by round (the drift both saw cancels) before its t interval. A round that lacks a size (a cell
visited once) takes the cell's median moved by that round's mean offset at the sizes it has. Fewer than 3
rounds, or no samples (a bare table), give the fit without interval.

**The cost of N calls on a device** is ``init + first-call excess + transfer + N · t(n)``: ``init`` the
device's initialisation (meta.json ``init``), paid once per process; the first call's excess over a warm call
(``cold_s - median_s``: tracing, kernel selection); ``transfer`` one copy of the op's inputs to the device and
of its result back, measured where the run has ``sync=transfer`` cells (their median minus the resident one),
else estimated from the op's bytes over the calibrated copy bandwidth (a lower bound: a bus is no faster than
the memories it joins) for an accelerator, nothing for a host device (the data is already there), and "not
included" without a calibration. The one-time costs are single measurements (one cold call per cell): they
carry no interval, so the break-even interval is that of the per-call times. Framework start-up (importing
TensorFlow: seconds) is not counted: a process pays it once whatever device it then uses.

**Advice.** On a fine log grid over the sizes every device measured, the device with the lowest cost per call
amortised over N calls (``t(n) + one-time / N``) is chosen; where its round-paired difference to another
device has a 95 % interval that holds 0, the range says both (within noise). The **break-even** call count of
an accelerator A against the baseline B at a size is the smallest N with ``N·t_A + C_A <= N·t_B + C_B``:
``(C_A - C_B) / (t_B - t_A)``, "never" when A is not faster per call, 1 when A's one-time costs are no larger.

**Roles.** With an accelerator (``frameworks.is_accelerator``) in the group, the baseline is the host
(``CPU:0`` where measured); without one (a CPU-only machine), the baseline is the numpy baseline and every
other device plays the accelerator (``CPU:0`` vs ``numpy:CPU``, or ``CPU:1`` vs ``CPU:0`` with
``DEVBENCH_LOGICAL_CPUS=2``), and the advice says so.

**How good is the fit?** Each cell says whether the fit lies within its own 95 % interval of the median
(``DeviceFit.within``). The rates on synthetic runs (fit within the cells' intervals, coverage of the curve
and of the break-even) are measured in :mod:`devbench.simulation.advise` (``bench/statistical_rates.py
advise``); on real sweeps, README "Which device should I use?". Text and tables: :mod:`devbench.advise_render`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from devbench.advise_fit import MIN_SIZES, PowerLaw, choose_step, fit_power_law
from devbench.crossover import BySamples, samples_by_cell, usable_samples
from devbench.errors import UsageError
from devbench.frameworks import framework_of, is_accelerator
from devbench.resampling import MIN_ROUNDS_FOR_CI, t_quantile
from devbench.selection import GROUP, REFERENCE_DEVICE, TRANSFER_SUFFIX, device_order, ok_cells

FloatArray = npt.NDArray[np.float64]

FIT_FORM = "t(n) = a + b·n^p"
CONFIDENCE = 0.95
DEFAULT_CALLS = 1000
GRID_POINTS = 241
"""Sizes on the log grid the advice is read from (about 1 % apart over 64..4096)."""
NUMPY = "numpy"


# ---------------------------------------------------------------------------------------------------------
# One device's curve: its fit, the per-round refits, agreement with the cells


@dataclass(frozen=True)
class DeviceFit:
    """One device's fit over its ok sizes in one (op, dtype, mode), and the per-round refits behind its
    interval. Arrays are per measured size (sorted); times in seconds per call."""

    device: str
    sizes: tuple[int, ...]
    medians: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    fit: PowerLaw
    round_ids: tuple[int, ...] = ()
    round_fits: tuple[PowerLaw, ...] = ()
    reason: str = ""
    """"" when the per-round fits give an interval, else why not."""

    def round_logs(self, n: npt.ArrayLike) -> FloatArray:
        """log t_r(n) per round (rows) and size (columns)."""
        return np.log(np.array([f.at(n) for f in self.round_fits], dtype=np.float64).reshape(
            len(self.round_fits), -1))

    def interval(self, n: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(fit, low, high) at sizes ``n``: the fit and its 95 % t interval from the spread of the per-round
        fits (NaN bounds when :attr:`reason` says there is none)."""
        est = self.fit.at(n)
        if self.reason:
            nan = np.full(est.shape, math.nan)
            return est, nan, nan
        half = t_half(self.round_logs(n))
        return est, est * np.exp(-half), est * np.exp(half)

    @property
    def within(self) -> list[bool | None]:
        """Per measured size: the fit lies within the cell's 95 % interval of its median (None: no interval)."""
        fitted = self.fit.at(self.sizes)
        return [None if not (math.isfinite(lo) and math.isfinite(hi)) else bool(lo <= f <= hi)
                for f, lo, hi in zip(fitted, self.ci_low, self.ci_high, strict=True)]

    def agreement(self) -> tuple[int, int]:
        """(cells whose interval holds the fit, cells with an interval)."""
        judged = [w for w in self.within if w is not None]
        return sum(judged), len(judged)


def t_half(values: FloatArray) -> FloatArray:
    """Half-width of the 95 % t interval of the mean of ``values`` over rows (the rounds), per column."""
    r = values.shape[0]
    sd = np.std(values, axis=0, ddof=1)
    return np.asarray(t_quantile(0.5 + CONFIDENCE / 2.0, r - 1.0) * sd / math.sqrt(r), dtype=np.float64)


def round_matrix(by_cell: BySamples, key: tuple[str, str, str], device: str, sizes: Sequence[int], *,
                 syncs: Sequence[str], medians: FloatArray) -> tuple[tuple[int, ...], FloatArray]:
    """(round numbers, per-round medians: rows rounds, columns sizes). A round missing at a size takes the
    cell's median moved by that round's mean log offset at the sizes it has, so the round's drift stays."""
    op, dtype, mode = key
    found = [by_cell.get((op, dtype, mode, device, int(s), sync)) for s, sync in zip(sizes, syncs, strict=True)]
    rounds = sorted({r for f in found if f is not None for r in f.medians})
    logs = np.full((len(rounds), len(sizes)), math.nan)
    for j, f in enumerate(found):
        if f is not None:
            for i, r in enumerate(rounds):
                if r in f.medians:
                    logs[i, j] = math.log(f.medians[r])
    base = np.log(medians)
    offset = np.nanmean(logs - base[None, :], axis=1) if rounds else np.zeros(0)
    filled = np.where(np.isnan(logs), base[None, :] + offset[:, None], logs)
    return tuple(rounds), np.exp(filled)


def fit_device(device: str, cells: pd.DataFrame, key: tuple[str, str, str], by_cell: BySamples | None, *,
               steps: bool = True) -> DeviceFit:
    """The fit of one device's ok cells (``cells``: its rows of ``ok_cells``, any order), with per-round refits
    when ``by_cell`` holds its samples by round.

    With rounds, the curve fitted is each size's geometric mean of its round medians (the typical time
    ``compare`` uses too), the centre of the per-round fits' spread: the rounds-weighted pooled median sits
    nearer the middle round, and its sampling spread is about 1.25 times the mean's, which an interval built
    from the rounds' spread would not cover (90 % instead of 95 % in simulation). Without rounds, the cells'
    medians. One power law first; a step (``advise_fit.choose_step``) only where that law leaves some cell
    outside its 95 % interval (``steps``), and the per-round refits keep the same break."""
    cells = cells.sort_values("size")
    sizes = tuple(int(s) for s in cells["size"])
    medians = cells["median_s"].to_numpy(dtype=np.float64)
    low, high = (pd.to_numeric(cells[c], errors="coerce").to_numpy(dtype=np.float64) for c in ("ci_low_s", "ci_high_s"))
    ids, matrix = (round_matrix(by_cell, key, device, sizes, syncs=[str(s) for s in cells["sync"]],
                                medians=medians)
                   if by_cell is not None else ((), np.zeros((0, len(sizes)))))
    typical = np.exp(np.log(matrix).mean(axis=0)) if ids else medians
    fit = fit_power_law(sizes, typical)
    if steps and any(w is False for w in DeviceFit(device, sizes, medians, low, high, fit).within):
        step_at = choose_step(sizes, typical)
        fit = fit_power_law(sizes, typical, step_at=step_at) if step_at is not None else fit
    base = DeviceFit(device, sizes, medians, low, high, fit, round_ids=ids)
    if not ids:
        return replace(base, reason="no samples by round (a bare results table): the fit has no interval")
    if len(ids) < MIN_ROUNDS_FOR_CI:
        return replace(base, reason=f"{len(ids)} round{'s' if len(ids) != 1 else ''}: too few for an interval "
                       f"(need {MIN_ROUNDS_FOR_CI})")
    step = fit.step_at if fit.has_step else None
    return replace(base, round_fits=tuple(fit_power_law(sizes, row, step_at=step) for row in matrix))


# ---------------------------------------------------------------------------------------------------------
# One-time costs


@dataclass(frozen=True)
class OneTime:
    """A device's one-time costs in one group: ``init_s`` once, and per measured size the first call's excess
    over a warm call and one transfer (seconds); ``*_source`` say where each came from."""

    device: str
    init_s: float
    init_source: str
    sizes: tuple[int, ...]
    first_call_s: FloatArray
    transfer_s: FloatArray
    transfer_source: str

    def at(self, n: npt.ArrayLike) -> FloatArray:
        """Total one-time seconds at sizes ``n`` (per-size parts interpolated in log n, held at the ends)."""
        per_size = np.nan_to_num(self.first_call_s) + np.nan_to_num(self.transfer_s)
        return self.init_s + np.interp(np.log(np.asarray(n, dtype=np.float64)), np.log(self.sizes), per_size)


def _init_of(meta: Mapping[str, Any], device: str) -> tuple[float, str]:
    """(seconds, where from) of ``device``'s initialisation in meta.json ``init`` (0 when none was needed or
    recorded, and the source says which)."""
    init = meta.get("init")
    entry = ((init or {}).get("devices") or {}).get(device) if isinstance(init, Mapping) else None
    if not isinstance(entry, Mapping):
        return 0.0, "not recorded: not included"
    value = entry.get("init_s")
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value), "meta.json init"
    if entry.get("error"):
        return 0.0, f"not measured ({entry['error']}): not included"
    return 0.0, "nothing to initialise"


def _bandwidth_of(meta: Mapping[str, Any], device: str) -> float:
    calibration = meta.get("calibration")
    devices = calibration.get("devices") if isinstance(calibration, Mapping) else None
    entry = devices.get(device) if isinstance(devices, Mapping) else None
    value = entry.get("bandwidth") if isinstance(entry, Mapping) else None
    return float(value) if isinstance(value, (int, float)) and value > 0 else math.nan


def one_time_costs(device: str, cells: pd.DataFrame, transfer: pd.DataFrame | None, meta: Mapping[str, Any],
                   baseline: str) -> OneTime:
    """``device``'s one-time costs at its ok sizes (``cells``); ``transfer``: its ok ``sync=transfer`` cells
    of the same op, dtype and mode (None or empty: none measured); ``baseline``: the device the data starts on,
    whose calibrated bandwidth also bounds a copy."""
    cells = cells.sort_values("size")
    sizes = tuple(int(s) for s in cells["size"])
    median = cells["median_s"].to_numpy(dtype=np.float64)
    cold = pd.to_numeric(cells["cold_s"], errors="coerce").to_numpy(dtype=np.float64)
    first = np.where(np.isfinite(cold), np.maximum(cold - median, 0.0), 0.0)
    init_s, init_source = _init_of(meta, device)
    if transfer is not None and not transfer.empty:
        moved = transfer.set_index("size")["median_s"]
        with_copy = np.array([float(moved.get(s, math.nan)) for s in sizes])
        ok = np.isfinite(with_copy)
        if ok.any():  # a size without a transfer cell takes the copy cost interpolated in log n
            copy = np.interp(np.log(sizes), np.log(np.asarray(sizes)[ok]), np.maximum(with_copy - median, 0.0)[ok])
            return OneTime(device, init_s, init_source, sizes, first, copy,
                           "measured: sync=transfer median minus the resident one")
    if not is_accelerator(device):
        return OneTime(device, init_s, init_source, sizes, first, np.zeros(len(sizes)),
                       "none: a host device, the data is already there")
    known = [b for b in (_bandwidth_of(meta, device), _bandwidth_of(meta, baseline)) if math.isfinite(b)]
    if known:
        bandwidth = min(known)
        nbytes = pd.to_numeric(cells["bytes"], errors="coerce").to_numpy(dtype=np.float64)
        return OneTime(device, init_s, init_source, sizes, first, np.nan_to_num(nbytes) / bandwidth,
                       f"estimated: the op's bytes over the calibrated copy bandwidth ({bandwidth / 1e9:.3g} GB/s; "
                       "a lower bound)")
    return OneTime(device, init_s, init_source, sizes, first, np.zeros(len(sizes)),
                   "not included: no sync=transfer cells and no calibration")


# ---------------------------------------------------------------------------------------------------------
# Advice for one group


@dataclass(frozen=True)
class Range:
    """Sizes ``low``..``high`` where ``device`` costs least per call over N calls; ``also`` the devices within
    noise of it there (empty: decisive, when ``judged``); ``judged`` False: no interval to judge by."""

    low: float
    high: float
    device: str
    also: tuple[str, ...]
    judged: bool = True

    @property
    def decisive(self) -> bool:
        return self.judged and not self.also


@dataclass(frozen=True)
class BreakEven:
    """Accelerator vs baseline at one measured size: per-call times, the one-time extra, and the break-even
    call count with its 95 % interval (inf: never; NaN: no interval)."""

    accelerator: str
    size: int
    baseline_s: float
    accelerator_s: float
    extra_once_s: float
    calls: float
    calls_low: float
    calls_high: float


@dataclass
class GroupAdvice:
    """The advice for one (op, dtype, mode)."""

    key: tuple[str, str, str]
    syncs: tuple[str, ...]
    calls: int
    baseline: str = ""
    accelerators: tuple[str, ...] = ()
    roles: str = ""
    fits: dict[str, DeviceFit] = field(default_factory=dict)
    one_time: dict[str, OneTime] = field(default_factory=dict)
    ranges: list[Range] = field(default_factory=list)
    break_even: list[BreakEven] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def agreement(self) -> tuple[int, int]:
        within, judged = zip(*(f.agreement() for f in self.fits.values()), strict=True) if self.fits else ((), ())
        return sum(within), sum(judged)


def roles(devices: Sequence[str]) -> tuple[str, tuple[str, ...], str]:
    """(baseline, accelerators, sentence): who is compared with whom (see the module docstring)."""
    ordered = device_order(devices)
    accel = [d for d in ordered if is_accelerator(d)]
    hosts = [d for d in ordered if not is_accelerator(d)]
    if accel and hosts:
        base = REFERENCE_DEVICE if REFERENCE_DEVICE in hosts else hosts[0]
        verb = "are the accelerators" if len(accel) > 1 else "is the accelerator"
        return base, tuple(accel), f"{', '.join(accel)} {verb}, against the host baseline {base}"
    numpy = [d for d in ordered if _framework(d) == NUMPY]
    base = numpy[0] if numpy else (REFERENCE_DEVICE if REFERENCE_DEVICE in ordered else ordered[0])
    others = tuple(d for d in ordered if d != base)
    kind = "no accelerator in this run" if not accel else "no host device in this run"
    return base, others, f"{kind}: {', '.join(others)} play{'s' if len(others) == 1 else ''} the accelerator " \
        f"against the baseline {base}"


def _framework(device: str) -> str:
    try:
        return framework_of(device)
    except UsageError:
        return ""


def _grid(fits: Sequence[DeviceFit]) -> FloatArray:
    low = max(f.sizes[0] for f in fits)
    high = min(f.sizes[-1] for f in fits)
    if high <= low:
        return np.zeros(0)
    measured = [s for f in fits for s in f.sizes if low <= s <= high]
    return np.unique(np.concatenate([np.geomspace(low, high, GRID_POINTS), np.asarray(measured, dtype=float)]))


def _ranges(grid: FloatArray, group: GroupAdvice) -> list[Range]:
    """The cheapest device per grid size over N calls, and the devices within noise of it, merged into ranges."""
    devices = list(group.fits)
    fits = [group.fits[d] for d in devices]
    once = np.array([group.one_time[d].at(grid) / group.calls for d in devices])
    cost = np.array([f.fit.at(grid) for f in fits]) + once
    best = np.argmin(cost, axis=0)
    rounds = _shared_rounds(fits)
    judged = len(rounds) >= MIN_ROUNDS_FOR_CI
    # low[o][b]: the lower 95 % bound of cost_o - cost_b (the one-time parts carry no interval)
    low = {(o, b): difference_interval(fits[o], fits[b], rounds, grid)[1] + once[o] - once[b]
           for o in range(len(devices)) for b in set(best.tolist()) if o != b} if judged else {}
    labels = [_label(devices, b, [o for o in range(len(devices)) if judged and o != b and not low[(o, b)][j] > 0])
              for j, b in enumerate(best.tolist())]
    out: list[Range] = []
    start = 0
    for j in range(1, grid.size + 1):
        if j == grid.size or labels[j] != labels[start]:
            lo = grid[start] if start == 0 else math.sqrt(grid[start - 1] * grid[start])
            hi = grid[j - 1] if j == grid.size else math.sqrt(grid[j - 1] * grid[j])
            out.append(Range(float(lo), float(hi), *labels[start], judged=judged))
            start = j
    return out


def _label(devices: Sequence[str], best: int, tied: Sequence[int]) -> tuple[str, tuple[str, ...]]:
    """(device, devices within noise of it): a tie lists its devices in device order, whichever is cheaper on
    the point estimate, so a stretch within noise is one range however often the estimates swap inside it."""
    if not tied:
        return devices[best], ()
    names = device_order([devices[i] for i in (best, *tied)])
    return names[0], tuple(names[1:])


def _shared_rounds(fits: Sequence[DeviceFit]) -> tuple[int, ...]:
    if any(f.reason for f in fits):
        return ()
    common = set(fits[0].round_ids)
    for f in fits[1:]:
        common &= set(f.round_ids)
    return tuple(sorted(common)) if len(common) >= MIN_ROUNDS_FOR_CI else ()


def _per_round(fit: DeviceFit, rounds: Sequence[int], n: npt.ArrayLike) -> FloatArray:
    """t_r(n) for the ``rounds`` (rows) at sizes ``n`` (columns)."""
    index = {r: i for i, r in enumerate(fit.round_ids)}
    return np.array([fit.round_fits[index[r]].at(n) for r in rounds], dtype=np.float64).reshape(len(rounds), -1)


def difference_interval(slower: DeviceFit, faster: DeviceFit, rounds: Sequence[int], n: npt.ArrayLike
                        ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """t_slower(n) - t_faster(n) from the fits of the cells' medians, with the 95 % t interval of the
    per-round differences (rounds paired by number: the drift both devices saw cancels). NaN bounds without
    enough shared rounds."""
    est = slower.fit.at(n) - faster.fit.at(n)
    if len(rounds) < MIN_ROUNDS_FOR_CI:
        nan = np.full(est.shape, math.nan)
        return est, nan, nan
    diffs = _per_round(slower, rounds, n) - _per_round(faster, rounds, n)
    half = t_half(diffs)
    return est, est - half, est + half


def _break_even(group: GroupAdvice, accelerator: str) -> list[BreakEven]:
    base, acc = group.fits[group.baseline], group.fits[accelerator]
    sizes = np.array(sorted(set(base.sizes) & set(acc.sizes)), dtype=np.float64)
    if sizes.size == 0:
        return []
    rounds = _shared_rounds([base, acc])
    dt, dt_low, dt_high = difference_interval(base, acc, rounds, sizes)
    extra = group.one_time[accelerator].at(sizes) - group.one_time[group.baseline].at(sizes)
    t_base, t_acc = base.fit.at(sizes), acc.fit.at(sizes)
    return [BreakEven(accelerator, int(n), float(t_base[i]), float(t_acc[i]), float(extra[i]),
                      *break_even_calls(float(extra[i]), float(dt[i]), float(dt_low[i]), float(dt_high[i])))
            for i, n in enumerate(sizes)]


def break_even_calls(extra_once: float, saved: float, saved_low: float, saved_high: float
                     ) -> tuple[float, float, float]:
    """(N*, low, high): the calls from which the accelerator's total is no larger than the baseline's, given
    its one-time extra ``extra_once`` and the per-call time it saves ``saved`` (with its interval). inf:
    never (not faster per call); 1: from the first call. NaN bounds where the saving has no interval."""

    def calls(s: float) -> float:
        return max(extra_once / s, 1.0) if s > 0 else math.inf

    point = calls(saved)
    if not (math.isfinite(saved_low) and math.isfinite(saved_high)):
        return point, math.nan, math.nan
    return point, calls(saved_high), calls(saved_low)


def advise_group(key: tuple[str, str, str], cells: pd.DataFrame, transfer: pd.DataFrame | None, *,
                 by_cell: BySamples | None, meta: Mapping[str, Any], calls: int, steps: bool = True) -> GroupAdvice:
    """The advice for one (op, dtype, mode): ``cells`` its ok resident cells, ``transfer`` its ok
    ``sync=transfer`` cells (mode ``<mode>+transfer``), ``by_cell`` the run's samples by round (None: none)."""
    group = GroupAdvice(key=key, syncs=tuple(sorted(set(cells["sync"].astype(str)))), calls=calls)
    for device in device_order(cells["device"].astype(str)):
        mine = cells[cells["device"] == device]
        if mine["size"].nunique() < MIN_SIZES:
            group.notes.append(f"{device}: {mine['size'].nunique()} ok size(s), too few to fit {FIT_FORM} "
                               f"(need {MIN_SIZES})")
            continue
        group.fits[device] = fit_device(device, mine, key, by_cell, steps=steps)
    if len(group.fits) < 2:
        group.notes.append("fewer than two devices fitted: nothing to choose between")
        return group
    group.baseline, group.accelerators, group.roles = roles(list(group.fits))
    for device in group.fits:
        moved = transfer[transfer["device"] == device] if transfer is not None else None
        group.one_time[device] = one_time_costs(device, cells[cells["device"] == device], moved, meta,
                                                group.baseline)
    grid = _grid(list(group.fits.values()))
    if grid.size == 0:
        group.notes.append("the devices' measured sizes do not overlap")
        return group
    group.ranges = _ranges(grid, group)
    for accelerator in group.accelerators:
        group.break_even.extend(_break_even(group, accelerator))
    return group


# ---------------------------------------------------------------------------------------------------------
# A run


@dataclass
class Advice:
    """The advice for every (op, dtype, mode) of a run."""

    calls: int
    groups: list[GroupAdvice]

    def agreement(self) -> tuple[int, int]:
        """(cells whose 95 % interval holds the fit, cells with an interval) over every fitted device."""
        within, judged = zip(*(g.agreement() for g in self.groups), strict=True) if self.groups else ((), ())
        return sum(within), sum(judged)


def advise(results: pd.DataFrame, samples: pd.DataFrame | None, meta: Mapping[str, Any],
           calls: int = DEFAULT_CALLS, *, steps: bool = True) -> Advice:
    """The placement advice for a run (``store.Run``'s results, samples and meta), over ``calls`` calls.

    ``steps`` False keeps every fit to one power law (how much the step buys: ``bench/advise_agreement.py``).
    UsageError when ``calls`` < 1 or the run has no ok cell."""
    if calls < 1:
        raise UsageError(f"--calls {calls} must be at least 1 (the number of calls the one-time costs are "
                         "spread over)")
    cells = ok_cells(results) if not results.empty else results
    if cells.empty:
        raise UsageError("the run has no ok cells: nothing to fit or advise on")
    by_cell = samples_by_cell(samples) if samples is not None and usable_samples(samples) else None
    modes = cells["mode"].astype(str)
    resident = cells[~modes.str.endswith(TRANSFER_SUFFIX)]
    moved = cells[modes.str.endswith(TRANSFER_SUFFIX)]
    groups = []
    for key, group in resident.groupby(list(GROUP), sort=True):
        k = (str(key[0]), str(key[1]), str(key[2]))
        transfer = moved[(moved["op"] == k[0]) & (moved["dtype"] == k[1]) & (moved["mode"] == k[2] + TRANSFER_SUFFIX)]
        groups.append(advise_group(k, group, transfer, by_cell=by_cell, meta=meta, calls=calls, steps=steps))
    return Advice(calls=calls, groups=groups)


def fitted_curves(results: pd.DataFrame, samples: pd.DataFrame | None, key: tuple[str, str, str]
                  ) -> dict[str, DeviceFit]:
    """The fit of every device with enough ok sizes in group ``key`` (for the crossover chart); {} when none."""
    cells = ok_cells(results) if not results.empty else results
    if cells.empty:
        return {}
    op, dtype, mode = key
    group = cells[(cells["op"] == op) & (cells["dtype"] == dtype) & (cells["mode"] == mode)]
    by_cell = samples_by_cell(samples) if samples is not None and usable_samples(samples) else None
    return {device: fit_device(device, group[group["device"] == device], key, by_cell)
            for device in device_order(group["device"].astype(str))
            if group[group["device"] == device]["size"].nunique() >= MIN_SIZES}

