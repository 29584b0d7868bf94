"""A cell's rate against two ceilings: ``pct_of_peak`` (the machine's, as calibrated) and ``pct_of_best`` (the run's).

A cell's *rate* is its work by its op's bound (:func:`op_bound`: FLOPs for a compute-bound op, bytes for a
memory-bound one) over its median time, the number the throughput chart draws. Two per cents of it:

- ``pct_of_peak``: over the *calibrated* ceiling of its device and dtype, the calibration probes' sustained
  peak FLOP/s (the best large GEMM) or bandwidth (a large copy), by the bound. The only column that says how
  close an op comes to the machine's limit: a uniform 10 % slowdown lowers it by 10 %. It can exceed 100 %
  (a cell outran the short probe: the default sweep measured matmul at 512, 2048 and 4096 above it); such a
  row is flagged (``above_peak``; rule: :func:`devbench.schema.derive_columns`) and named in the report, never
  clipped: the calibration is the thing to fix. NaN for a row that is not ``ok`` or unsynchronized, and where
  nothing was calibrated (``--no-calibrate``, a probe that failed, a device or dtype the probes did not
  measure): the report says why where it lists the ceilings (:func:`ceilings_frame`'s ``*_reason``).
- ``pct_of_best``: over the best rate the run itself saw on the same device, dtype and bound: at most 100 %
  by construction (100 for the best cell), needs no calibration, and says nothing about the machine's limit
  (a uniform slowdown leaves it unchanged).

Logical CPUs and the numpy baseline share one host (:func:`ceiling_group`) for both. The probes themselves
(``devbench calibrate`` and the start of a sweep) are devbench.calibrate; this module only reads their
results and the run's cells.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from devbench.calibrate import HOST, device_kind

if TYPE_CHECKING:
    import pandas as pd

    from devbench.schema import VisitRecord

Bound = Literal["memory", "compute"]

MEMORY_BOUND_INTENSITY = 4.0
"""FLOPs per byte below which an op devbench does not define (a bare table from another tool) counts as
memory-bound. Known ops say which they are (``OpDef.bound``), so that one op's rate does not change unit with
the size range swept (matmul's intensity is n/6 FLOP/byte in float32, under 4 for n < 24)."""

ABOVE_PEAK_NOTE = "above the calibrated ceiling: the calibration is the thing to fix"
"""What the report, the HTML page and the throughput chart say of a row with ``above_peak``."""


@dataclass(frozen=True)
class Rate:
    """A ceiling: ``value`` (FLOP/s or bytes/s), its 95 % interval ``low``..``high`` (NaN when there is none:
    a probe keeps only its best block), and ``source``, where it was seen (``calibration GEMM numpy n=2048``,
    ``sweep: matmul n=2048 on CPU:0 (eager)``)."""

    value: float
    low: float
    high: float
    source: str


def ceiling_group(device: str) -> str:
    """The devices that share one ceiling: every ``CPU:k`` and ``numpy:CPU`` are the host's cores and memory
    (``host``); any other device is its own. A backend whose device computes on the host joins the host here
    (through :func:`devbench.calibrate.device_kind`)."""
    return HOST if device_kind(device) == "CPU" else device


def op_bound(op: str, flops: Iterable[Any], nbytes: Iterable[Any]) -> Bound:
    """Which ceiling limits ``op``: ``OpDef.bound`` for devbench's ops; for another tool's op, ``memory`` when
    the median intensity of its cells (``flops`` over ``nbytes``, per cell) is under
    :data:`MEMORY_BOUND_INTENSITY`, else ``compute``. The throughput chart's unit follows the same rule."""
    from devbench.ops import known_op, op_named

    if known_op(op):
        return op_named(op).bound
    intensities = sorted(f / b for f, b in zip(map(_number, flops), map(_number, nbytes), strict=True)
                         if _finite_positive(f, b))
    if not intensities:
        return "compute"
    middle = len(intensities) // 2
    median = intensities[middle] if len(intensities) % 2 else (intensities[middle - 1] + intensities[middle]) / 2
    return "memory" if median < MEMORY_BOUND_INTENSITY else "compute"


def _finite_positive(*values: float) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values)


def _is_nan(value: Any) -> bool:
    """A float NaN (a missing flag in a concatenated table): unknown, not true."""
    return isinstance(value, float) and math.isnan(value)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def is_witness(row: Mapping[str, Any]) -> bool:
    """Does this result row have a rate? It must be ``ok``, synchronised (an unsynchronized row times the
    launch, not the work: see :func:`devbench.schema.derive_columns`) and have a positive median time."""
    # A visit record's ``unsynchronized`` is only derived when the table is built: read the sync too.
    flag = row.get("unsynchronized")
    unsynchronized = (flag is not None and not _is_nan(flag) and bool(flag)) or row.get("sync") == "none"
    return (row.get("status", "ok") == "ok" and not unsynchronized
            and _finite_positive(_number(row.get("median_s"))))


def rate_of(row: Mapping[str, Any], bound: Bound) -> float:
    """The row's rate by ``bound``: FLOP/s or bytes/s from its median time; NaN when it has none."""
    work = _number(row.get("bytes" if bound == "memory" else "flops"))
    median = _number(row.get("median_s"))
    return work / median if is_witness(row) and _finite_positive(work, median) else math.nan


# ---------------------------------------------------------------------------------------------------------
# The calibrated ceilings, and why one is missing


NO_CALIBRATION = "the run was not calibrated (--no-calibrate, or a results table without a run's meta.json)"


@dataclass
class Calibrated:
    """What the calibration measured: per (group, dtype) the peak FLOP/s, per group the bandwidth (bytes/s;
    the memory does not know the element type), each a :class:`Rate` with its probe as source, and per
    (group, dtype) / group why one is missing. Build with :func:`calibrated`."""

    peaks: dict[tuple[str, str], Rate] = field(default_factory=dict)
    bandwidths: dict[str, Rate] = field(default_factory=dict)
    entries: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    """The calibration's entry of each group (meta.json ``calibration.devices``)."""
    calibration: Mapping[str, Any] | None = None
    pairs: list[tuple[str, str]] = field(default_factory=list)
    """(device, dtype) the calibration names, in its order."""

    def of(self, device: str, dtype: str) -> tuple[Rate | None, Rate | None]:
        """(peak, bandwidth) of ``device`` at ``dtype``; None for what the calibration did not measure."""
        group = ceiling_group(device)
        return self.peaks.get((group, dtype)), self.bandwidths.get(group)

    def by_bound(self, device: str, dtype: str, bound: Bound) -> Rate | None:
        """The ceiling that limits an op of ``bound`` on ``device`` at ``dtype``."""
        peak, bandwidth = self.of(device, dtype)
        return bandwidth if bound == "memory" else peak

    def reason(self, device: str, dtype: str, bound: Bound) -> str:
        """Why :meth:`by_bound` is None, in words ("" when it is not)."""
        if self.by_bound(device, dtype, bound) is not None:
            return ""
        if not self.calibration or not self.calibration.get("devices"):
            return NO_CALIBRATION
        group = ceiling_group(device)
        if group not in self.entries:
            return f"the calibration did not probe {device}"
        what, probe = ("copy", "bandwidth probe (a large copy)") if bound == "memory" else \
            ("gemm", f"{dtype} GEMM probe")
        if bound == "compute" and dtype not in (self.calibration.get("dtypes") or [dtype]):
            return f"the calibration did not probe {dtype}"
        errors = [str(m.get("error")) for m in self.calibration.get("measurements") or []
                  if isinstance(m, Mapping) and m.get("error") and m.get("what") == what
                  and ceiling_group(str(m.get("device"))) == group and (what == "copy" or m.get("dtype") == dtype)]
        return f"the {probe} failed: {errors[0]}" if errors else f"the {probe} measured no rate"


def calibrated(calibration: Mapping[str, Any] | None) -> Calibrated:
    """The calibrated ceilings of meta.json's ``calibration`` (None: no calibration, every reason says so)."""
    out = Calibrated(calibration=calibration)
    for device, entry in ((calibration or {}).get("devices") or {}).items():
        if not isinstance(entry, Mapping):
            continue
        group = ceiling_group(str(device))
        out.entries.setdefault(group, entry)
        peaks = entry.get("peak_flops") or {}
        sources = entry.get("peak_source") or {}
        for dtype, value in peaks.items():
            peak = _number(value)
            if (str(device), str(dtype)) not in out.pairs:
                out.pairs.append((str(device), str(dtype)))
            if _finite_positive(peak) and (group, str(dtype)) not in out.peaks:
                source = f"calibration GEMM {sources.get(dtype, '')}".strip()
                out.peaks[(group, str(dtype))] = Rate(peak, math.nan, math.nan, source)
        if not peaks and (str(device), "") not in out.pairs:
            out.pairs.append((str(device), ""))
        bandwidth = _number(entry.get("bandwidth"))
        if _finite_positive(bandwidth) and group not in out.bandwidths:
            source = f"calibration copy {entry.get('bandwidth_source', '')}".strip()
            out.bandwidths[group] = Rate(bandwidth, math.nan, math.nan, source)
    return out


def ceiling(calibration: Mapping[str, Any] | None, device: str, dtype: str) -> tuple[float, float]:
    """(peak FLOP/s, bandwidth bytes/s) the calibration gives ``device`` at ``dtype``; NaN for what was not
    calibrated. A logical CPU (or numpy:CPU) not in the calibration shares the host's."""
    peak, bandwidth = calibrated(calibration).of(device, dtype)
    return (peak.value if peak is not None else math.nan, bandwidth.value if bandwidth is not None else math.nan)


def roofline(flops: float, nbytes: float, peak: float, bandwidth: float) -> tuple[float, str]:
    """(attainable FLOP/s, ``compute`` | ``memory``) for an op of ``flops`` and ``nbytes`` per call.

    Attainable = min(peak, intensity × bandwidth) with intensity = flops / nbytes (FLOP per byte): the op is
    memory-bound when its intensity is below the ridge point peak / bandwidth. NaN and "" when unknown.
    """
    if not _finite_positive(flops, nbytes, peak, bandwidth):
        return math.nan, ""
    memory_roof = flops / nbytes * bandwidth
    return (memory_roof, "memory") if memory_roof < peak else (peak, "compute")


def pct_of_peak(flops: float, nbytes: float, median_s: float, *, device: str, dtype: str, bound: Bound,
                calibration: Mapping[str, Any] | None) -> float:
    """The rate by ``bound`` (FLOP/s or bytes/s over ``median_s``) as a per cent of the calibrated ceiling of
    ``device`` at ``dtype`` by that bound; NaN when it was not calibrated or the work or time is unknown. Not
    clipped: above 100 % the probe was slower than the cell."""
    row = {"flops": flops, "bytes": nbytes, "median_s": median_s}
    return _pct(rate_of(row, bound), calibrated(calibration).by_bound(device, dtype, bound))


def _pct(rate: float, ceiling_rate: Rate | None) -> float:
    if ceiling_rate is None or not _finite_positive(rate, ceiling_rate.value):
        return math.nan
    return 100.0 * (rate / ceiling_rate.value)  # the ratio first: the best cell is at exactly 100, not 99.999…


# ---------------------------------------------------------------------------------------------------------
# The run's own best rates (pct_of_best)


@dataclass
class Best:
    """The best rate the run saw per (group, dtype, bound), each a :class:`Rate` whose interval is its cell's
    work over its median's 95 % interval and whose source names the cell. Build with :func:`best_rates`."""

    rates: dict[tuple[str, str, Bound], Rate] = field(default_factory=dict)

    def offer(self, group: str, dtype: str, bound: Bound, rate: Rate) -> None:
        best = self.rates.get((group, dtype, bound))
        if best is None or rate.value > best.value:
            self.rates[(group, dtype, bound)] = rate

    def of(self, device: str, dtype: str, bound: Bound) -> Rate | None:
        return self.rates.get((ceiling_group(device), dtype, bound))


def _cell_source(row: Mapping[str, Any]) -> str:
    from devbench.shapes import axis_name

    op = str(row.get("op"))
    return f"sweep: {op} {axis_name(op)}={row.get('size')} on {row.get('device')} ({row.get('mode', 'eager')})"


def best_rates(rows: Iterable[tuple[Mapping[str, Any], Bound]]) -> Best:
    """The best of ``rows`` (each with its op's bound) per device group, dtype and bound."""
    best = Best()
    for row, bound in rows:
        rate = rate_of(row, bound)
        if not math.isfinite(rate):
            continue
        work = rate * _number(row.get("median_s"))
        ci_low, ci_high = _number(row.get("ci_low_s")), _number(row.get("ci_high_s"))
        low, high = (work / ci_high, work / ci_low) if _finite_positive(ci_low, ci_high) else (math.nan, math.nan)
        best.offer(ceiling_group(str(row.get("device"))), str(row.get("dtype")), bound,
                   Rate(rate, low, high, _cell_source(row)))
    return best


# ---------------------------------------------------------------------------------------------------------
# The columns


def _rows_of(results: pd.DataFrame) -> list[dict[str, Any]]:
    from devbench.schema import derive_columns

    frame = results if "unsynchronized" in results.columns or "sync" not in results.columns else \
        derive_columns(results, ["unsynchronized"])
    return [{str(key): value for key, value in record.items()} for record in frame.to_dict("records")]


def _bounds(rows: list[dict[str, Any]]) -> list[Bound]:
    """Each row's bound by :func:`op_bound` over its (op, dtype, mode) group, as the throughput chart does."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((str(row.get("op")), str(row.get("dtype")), str(row.get("mode"))), []).append(row)
    bound = {key: op_bound(key[0], [r.get("flops") for r in members], [r.get("bytes") for r in members])
             for key, members in groups.items()}
    return [bound[(str(row.get("op")), str(row.get("dtype")), str(row.get("mode")))] for row in rows]


def with_pct_columns(results: pd.DataFrame, calibration: Mapping[str, Any] | None) -> pd.DataFrame:
    """A copy of a results table with ``pct_of_peak`` (over the calibrated ceilings only), ``above_peak`` and
    ``pct_of_best`` (over the table's own best rates) (re)computed; see the module docstring."""
    from devbench.schema import derive_columns

    out: pd.DataFrame = results.copy()
    rows = _rows_of(out)
    bounds = _bounds(rows)
    ceilings = calibrated(calibration)
    best = best_rates(zip(rows, bounds, strict=True))
    out["pct_of_peak"] = [_pct(rate_of(r, b), ceilings.by_bound(str(r.get("device")), str(r.get("dtype")), b))
                          for r, b in zip(rows, bounds, strict=True)]
    out["pct_of_best"] = [_pct(rate_of(r, b), best.of(str(r.get("device")), str(r.get("dtype")), b))
                          for r, b in zip(rows, bounds, strict=True)]
    framed: pd.DataFrame = derive_columns(out, ["above_peak"])
    return framed


def annotate(record: VisitRecord, calibration: Mapping[str, Any] | None) -> VisitRecord:
    """Set ``record.pct_of_peak`` and ``above_peak`` against the calibration (final: they need nothing else);
    ``pct_of_best`` is a cell row's, computed when the results table is built (it needs the run's other cells)."""
    from devbench.schema import with_derived

    row = record.as_dict()
    bound = op_bound(record.op, [record.flops], [record.bytes])
    record.pct_of_peak = _pct(rate_of(row, bound), calibrated(calibration).by_bound(record.device, record.dtype, bound))
    return with_derived(record)


# ---------------------------------------------------------------------------------------------------------
# What the report lists


CEILING_COLUMNS = ["device", "dtype", "peak_flops", "peak_source", "peak_reason", "bandwidth", "bandwidth_source",
                   "bandwidth_reason", "ridge", "best_flops", "best_flops_source", "best_flops_low",
                   "best_flops_high", "best_bandwidth", "best_bandwidth_source", "best_bandwidth_low",
                   "best_bandwidth_high"]
"""Of :func:`ceilings_frame`: the calibrated ``peak_flops`` (FLOP/s) and ``bandwidth`` (bytes/s), their probes,
why one is NaN (``*_reason``) and the ``ridge`` (FLOP/byte); ``best_*`` the run's best rate of its
compute-bound (``best_flops``) and memory-bound (``best_bandwidth``) cells, the cell that set it and its 95 %
interval (what ``pct_of_best`` is measured against; NaN without such cells)."""


def ceilings_frame(calibration: Mapping[str, Any] | None, results: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (device, dtype) of the calibration and of the results' rows with a rate (ok, synchronised,
    with a work count; :data:`CEILING_COLUMNS`): what ``pct_of_peak`` and ``pct_of_best`` are measured
    against, with sources and reasons."""
    import pandas as pd

    ceilings = calibrated(calibration)
    pairs = list(ceilings.pairs)
    best = Best()
    if results is not None and not results.empty:
        rows = _rows_of(results)
        bounds = _bounds(rows)
        best = best_rates(zip(rows, bounds, strict=True))
        for row, bound in zip(rows, bounds, strict=True):
            pair = (str(row.get("device")), str(row.get("dtype")))
            if math.isfinite(rate_of(row, bound)) and pair not in pairs:  # a row with a rate to measure
                pairs.append(pair)
    out = []
    for device, dtype in pairs:
        peak, bandwidth = ceilings.of(device, dtype)
        best_flops, best_bytes = best.of(device, dtype, "compute"), best.of(device, dtype, "memory")
        out.append({
            "device": device,
            "dtype": dtype,
            "peak_flops": peak.value if peak is not None else math.nan,
            "peak_source": peak.source if peak is not None else "",
            "peak_reason": ceilings.reason(device, dtype, "compute") if dtype else "",
            "bandwidth": bandwidth.value if bandwidth is not None else math.nan,
            "bandwidth_source": bandwidth.source if bandwidth is not None else "",
            "bandwidth_reason": ceilings.reason(device, dtype, "memory"),
            "ridge": peak.value / bandwidth.value if peak is not None and bandwidth is not None else math.nan,
            **_best_fields("best_flops", best_flops),
            **_best_fields("best_bandwidth", best_bytes),
        })
    frame: pd.DataFrame = pd.DataFrame(out, columns=CEILING_COLUMNS)
    return frame


def _best_fields(name: str, rate: Rate | None) -> dict[str, Any]:
    if rate is None:
        return {name: math.nan, f"{name}_source": "", f"{name}_low": math.nan, f"{name}_high": math.nan}
    return {name: rate.value, f"{name}_source": rate.source, f"{name}_low": rate.low, f"{name}_high": rate.high}


def _giga(value: float) -> str:
    """In units of 1e9, three significant figures, whole thousands written out (10,400 rather than 1.04e+04)."""
    if not math.isfinite(value):
        return "-"
    giga = value / 1e9
    return f"{giga:.3g}" if abs(giga) < 1000 else f"{giga:,.0f}"


def _best_text(row: Mapping[str, Any], name: str, unit: str) -> str:
    value, low, high = (_number(row.get(k)) for k in (name, f"{name}_low", f"{name}_high"))
    if not math.isfinite(value):
        return ""
    text = f"{_giga(value)} {unit}"
    if math.isfinite(low) and math.isfinite(high):
        text += f" (95 % CI {_giga(low)}–{_giga(high)})"
    return f"{text} from {row.get(f'{name}_source')}"


CEILINGS_SENTENCE = (
    "pct_of_peak is a cell's rate (FLOP/s for a compute-bound op, bytes/s for a memory-bound one, over its "
    "median time) as a per cent of its device's calibrated ceiling listed here: how close it comes to the "
    "machine's limit. It is not clipped: a cell above 100 % ran faster than the probe (above_peak), and the "
    "calibration is the thing to fix. pct_of_best is the same rate as a per cent of the best the run itself "
    "reached on that device, dtype and bound (the run's best, listed here too): at most 100 % by construction, "
    "it says nothing about the machine's limit.")
"""The first line of :func:`render_ceilings`: what the two columns are measured against."""


def render_ceilings(frame: pd.DataFrame) -> list[str]:
    """Plain-text lines (Markdown list items) for the report: per device and dtype, each calibrated ceiling and
    its probe, or why there is none (then pct_of_peak is empty there), and the run's best rates with the cell
    that set each and its interval. ``frame`` is :func:`ceilings_frame`'s."""
    lines = [CEILINGS_SENTENCE]
    for record in frame.to_dict("records"):
        row = {str(key): value for key, value in record.items()}
        parts = []
        for name, unit, key in (("peak", "GFLOP/s", "peak_flops"), ("bandwidth", "GB/s", "bandwidth")):
            value = _number(row.get(key))
            if math.isfinite(value):
                parts.append(f"calibrated {name} {_giga(value)} {unit} from {row.get(f'{name}_source')}")
            elif row.get(f"{name}_reason"):
                parts.append(f"no calibrated {name} ({row.get(f'{name}_reason')}): pct_of_peak is empty for its "
                             f"{'memory' if name == 'bandwidth' else 'compute'}-bound cells")
        best = [text for text in (_best_text(row, "best_flops", "GFLOP/s"), _best_text(row, "best_bandwidth", "GB/s"))
                if text]
        if best:
            parts.append("the run's best " + " and ".join(best))
        if parts:
            lines.append(f"- {row.get('device')} {row.get('dtype') or '(no dtype)'}: " + "; ".join(parts))
    return lines
