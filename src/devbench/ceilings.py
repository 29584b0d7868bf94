"""The roofline of a run: each device's ceilings (peak FLOP/s per dtype, memory bandwidth) and ``pct_of_peak``.

A ceiling is the best sustained rate seen on a device at a dtype: the calibration probe's, or a sweep cell's
where one ran faster (a short probe at the start of a sweep is not always the fastest thing the sweep sees:
the default sweep measured matmul at 512, 2048 and 4096 above it). A cell's rate is its work over its median
time, the very number ``pct_of_peak`` is computed from, so a cell can never be above a ceiling it takes part
in: pct_of_peak <= 100 % by construction. (Its work over ``ci_high_s``, the slow end of its interval, would be
more conservative but would leave the cell that set the ceiling above it.) The interval of a ceiling set by a
cell is that cell's work over its median's 95 % interval; a calibrated ceiling has none (a probe keeps only
its best block).

The probes themselves (what ``devbench calibrate`` and the start of a sweep measure) are devbench.calibrate;
this module only uses their results, and the results of the run's own cells.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devbench.calibrate import HOST, device_kind

if TYPE_CHECKING:
    import pandas as pd

    from devbench.schema import Record

PCT_CAP = 100.0
"""``pct_of_peak`` of the cell that sets a ceiling; every other cell is at or below it."""


@dataclass(frozen=True)
class Rate:
    """A candidate ceiling: ``value`` (FLOP/s or bytes/s), its 95 % interval ``low``..``high`` (NaN when there
    is none), and ``source``, where it was seen (``calibration GEMM numpy n=2048``, ``sweep: matmul n=2048 on
    CPU:0 (eager)``)."""

    value: float
    low: float
    high: float
    source: str


def ceiling_group(device: str) -> str:
    """The devices that share one ceiling: every ``CPU:k`` and ``numpy:CPU`` are the host's cores and memory
    (``host``); any other device is its own. A backend whose device computes on the host joins the host here
    (through :func:`devbench.calibrate.device_kind`)."""
    return HOST if device_kind(device) == "CPU" else device


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


@dataclass
class Ceilings:
    """The effective ceilings of a run: per (group, dtype) the best peak FLOP/s, per group the best bandwidth
    (bytes/s; one per device whatever the dtype: the memory does not know the element type), and what the
    calibration alone said. Build with :func:`ceilings_of`; look up with :meth:`of`."""

    peaks: dict[tuple[str, str], Rate] = field(default_factory=dict)
    bandwidths: dict[str, Rate] = field(default_factory=dict)
    calibrated_peaks: dict[tuple[str, str], float] = field(default_factory=dict)
    calibrated_bandwidths: dict[str, float] = field(default_factory=dict)
    pairs: list[tuple[str, str]] = field(default_factory=list)
    """(device, dtype) to report, in the order first seen (calibration, then results)."""

    def offer_peak(self, group: str, dtype: str, rate: Rate) -> None:
        best = self.peaks.get((group, dtype))
        if best is None or rate.value > best.value:
            self.peaks[(group, dtype)] = rate

    def offer_bandwidth(self, group: str, rate: Rate) -> None:
        best = self.bandwidths.get(group)
        if best is None or rate.value > best.value:
            self.bandwidths[group] = rate

    def add_pair(self, device: str, dtype: str) -> None:
        if (device, dtype) not in self.pairs:
            self.pairs.append((device, dtype))

    def of(self, device: str, dtype: str) -> tuple[Rate | None, Rate | None]:
        """(peak, bandwidth) of ``device`` at ``dtype``; None for what neither calibration nor sweep measured."""
        group = ceiling_group(device)
        return self.peaks.get((group, dtype)), self.bandwidths.get(group)

    def pct_of_peak(self, flops: float, nbytes: float, median_s: float, device: str, dtype: str) -> float:
        """``flops``/``nbytes`` per call done in ``median_s`` as a per cent of the roofline (NaN when unknown)."""
        peak, bandwidth = self.of(device, dtype)
        if peak is None or bandwidth is None:
            return math.nan
        return _pct(flops, nbytes, median_s, peak.value, bandwidth.value)


def _pct(flops: float, nbytes: float, median_s: float, peak: float, bandwidth: float) -> float:
    """100 × achieved / min(peak, intensity × bandwidth), written as 100 × max(FLOP rate / peak, byte rate /
    bandwidth) (the same number): each ratio is computed exactly as a witness's rate is, so a cell that set a
    ceiling is at exactly 100 and no cell above it, not even by a rounding error."""
    if not _finite_positive(flops, nbytes, median_s, peak, bandwidth):
        return math.nan
    return PCT_CAP * max((flops / median_s) / peak, (nbytes / median_s) / bandwidth)


def _add_calibration(ceilings: Ceilings, calibration: Mapping[str, Any] | None) -> None:
    for device, entry in ((calibration or {}).get("devices") or {}).items():
        if not isinstance(entry, Mapping):
            continue
        group = ceiling_group(str(device))
        peaks = entry.get("peak_flops") or {}
        sources = entry.get("peak_source") or {}
        for dtype, value in peaks.items():
            peak = _number(value)
            ceilings.add_pair(str(device), str(dtype))
            if _finite_positive(peak):
                ceilings.calibrated_peaks[(group, str(dtype))] = peak
                ceilings.offer_peak(group, str(dtype), Rate(peak, math.nan, math.nan,
                                                            f"calibration GEMM {sources.get(dtype, '')}".strip()))
        if not peaks:
            ceilings.add_pair(str(device), "")
        bandwidth = _number(entry.get("bandwidth"))
        if _finite_positive(bandwidth):
            ceilings.calibrated_bandwidths[group] = bandwidth
            source = f"calibration copy {entry.get('bandwidth_source', '')}".strip()
            ceilings.offer_bandwidth(group, Rate(bandwidth, math.nan, math.nan, source))


def _witness_source(row: Mapping[str, Any], *, with_dtype: bool) -> str:
    dtype = f" {row.get('dtype')}" if with_dtype else ""
    return f"sweep: {row.get('op')} n={row.get('size')}{dtype} on {row.get('device')} ({row.get('mode', 'eager')})"


def is_witness(row: Mapping[str, Any]) -> bool:
    """Can this result row set a ceiling? It must be ``ok``, synchronised (an unsynchronized row times the
    launch, not the work: see :func:`devbench.schema.derive_columns`) and have a positive median time."""
    # A Record's ``unsynchronized`` is only derived when the table is built: read the sync too.
    flag = row.get("unsynchronized")
    unsynchronized = (flag is not None and not _is_nan(flag) and bool(flag)) or row.get("sync") == "none"
    return (row.get("status", "ok") == "ok" and not unsynchronized
            and _finite_positive(_number(row.get("median_s"))))


def _add_cells(ceilings: Ceilings, rows: Iterable[Mapping[str, Any]]) -> None:
    for row in rows:
        if not is_witness(row):
            continue
        device, dtype = str(row.get("device")), str(row.get("dtype"))
        group = ceiling_group(device)
        median, ci_low, ci_high = (_number(row.get(k)) for k in ("median_s", "ci_low_s", "ci_high_s"))
        interval_known = _finite_positive(ci_low, ci_high)
        offered = False
        for work_key in ("flops", "bytes"):
            work = _number(row.get(work_key))
            if not _finite_positive(work):
                continue
            low, high = (work / ci_high, work / ci_low) if interval_known else (math.nan, math.nan)
            if work_key == "flops":
                ceilings.offer_peak(group, dtype, Rate(work / median, low, high,
                                                       _witness_source(row, with_dtype=False)))
            else:
                ceilings.offer_bandwidth(group, Rate(work / median, low, high, _witness_source(row, with_dtype=True)))
            offered = True
        if offered:
            ceilings.add_pair(device, dtype)


def ceilings_of(calibration: Mapping[str, Any] | None, rows: Iterable[Mapping[str, Any]] = ()) -> Ceilings:
    """The effective ceilings from ``calibration`` (meta.json's) and result ``rows`` (dicts with at least
    ``device, dtype, status, flops, bytes, median_s``; ``op, size, mode, sync, ci_low_s, ci_high_s`` when known).

    Every synchronised ``ok`` row is a witness of both ceilings of its device: its FLOP rate of the peak and
    its byte rate of the bandwidth. Both, not only the one its op is bound by (``OpDef.bound``), because
    pct_of_peak is achieved over the *lower* roof: a matmul's byte rate above the bandwidth would push it over
    100 % as surely as a FLOP rate above the peak. In practice an op only ever sets the ceiling it is bound by.
    A small memory-bound cell whose data sits in cache can set a bandwidth above main memory's: the source then
    names it, and that is the bandwidth the sweep saw."""
    ceilings = Ceilings()
    _add_calibration(ceilings, calibration)
    _add_cells(ceilings, rows)
    return ceilings


def _rows_of(results: pd.DataFrame) -> list[dict[str, Any]]:
    from devbench.schema import derive_columns

    frame = results if "unsynchronized" in results.columns or "sync" not in results.columns else \
        derive_columns(results, ["unsynchronized"])
    return [{str(key): value for key, value in record.items()} for record in frame.to_dict("records")]


def ceilings_for(calibration: Mapping[str, Any] | None, results: pd.DataFrame | None) -> Ceilings:
    """:func:`ceilings_of` a results table (the whole run's: a matmul chart's peak may be set by any compute
    cell of its device). ``.of(device, dtype)`` gives the (peak, bandwidth) :class:`Rate` with its source."""
    return ceilings_of(calibration, _rows_of(results) if results is not None else ())


CEILING_COLUMNS = ["device", "dtype", "peak_flops", "peak_source", "bandwidth", "bandwidth_source", "ridge",
                   "peak_low", "peak_high", "bandwidth_low", "bandwidth_high", "calibrated_peak_flops",
                   "calibrated_bandwidth"]
"""Of :func:`effective_ceilings`: FLOP/s, bytes/s, FLOP/byte; ``*_low``/``*_high`` the 95 % interval of the
rate that set the ceiling (NaN for a calibrated one); ``calibrated_*`` what the calibration alone measured."""


def effective_ceilings(calibration: Mapping[str, Any] | None, results: pd.DataFrame | None) -> pd.DataFrame:
    """One row per (device, dtype) of the calibration and of the results' witnesses (see :func:`ceilings_of`):
    the best sustained peak FLOP/s and bandwidth and where each came from (:data:`CEILING_COLUMNS`). What
    :func:`with_pct_of_peak` measures against, and what the throughput chart and the report draw and state."""
    import pandas as pd

    ceilings = ceilings_for(calibration, results)
    rows = []
    for device, dtype in ceilings.pairs:
        group = ceiling_group(device)
        peak, bandwidth = ceilings.of(device, dtype)
        ridge = peak.value / bandwidth.value if peak is not None and bandwidth is not None else math.nan
        rows.append({
            "device": device,
            "dtype": dtype,
            "peak_flops": peak.value if peak is not None else math.nan,
            "peak_source": peak.source if peak is not None else "",
            "bandwidth": bandwidth.value if bandwidth is not None else math.nan,
            "bandwidth_source": bandwidth.source if bandwidth is not None else "",
            "ridge": ridge,
            "peak_low": peak.low if peak is not None else math.nan,
            "peak_high": peak.high if peak is not None else math.nan,
            "bandwidth_low": bandwidth.low if bandwidth is not None else math.nan,
            "bandwidth_high": bandwidth.high if bandwidth is not None else math.nan,
            "calibrated_peak_flops": ceilings.calibrated_peaks.get((group, dtype), math.nan),
            "calibrated_bandwidth": ceilings.calibrated_bandwidths.get(group, math.nan),
        })
    frame: pd.DataFrame = pd.DataFrame(rows, columns=CEILING_COLUMNS)
    return frame


def ceilings_frame(calibration: Mapping[str, Any] | None, results: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`effective_ceilings`; without ``results``, the calibration's own ceilings (same columns)."""
    return effective_ceilings(calibration, results)


def ceiling(calibration: Mapping[str, Any] | None, device: str, dtype: str) -> tuple[float, float]:
    """(peak FLOP/s, bandwidth bytes/s) the calibration alone gives ``device`` at ``dtype``; NaN for what was not
    calibrated. A logical CPU (or numpy:CPU) not in the calibration shares the host's. For the ceilings a run's
    rows are measured against, use :func:`effective_ceilings` or :func:`ceilings_of`."""
    peak, bandwidth = ceilings_of(calibration).of(device, dtype)
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


def pct_of_peak(flops: float, nbytes: float, median_s: float, *, device: str, dtype: str,
                calibration: Mapping[str, Any] | None) -> float:
    """Achieved rate as a per cent of the *calibrated* roofline at the op's intensity: FLOP/s over peak when
    compute-bound, bytes/s over bandwidth when memory-bound (the same number: both are achieved / attainable).
    NaN when the device or dtype was not calibrated, or the time or work is unknown. This one can exceed 100 %
    (a cell faster than the probe); the tables use :func:`with_pct_of_peak`, whose ceilings include the cells."""
    return ceilings_of(calibration).pct_of_peak(flops, nbytes, median_s, device, dtype)


def annotate(record: Record, calibration: Mapping[str, Any] | None) -> Record:
    """Set ``record.pct_of_peak`` against the calibration and the record itself (so it is at most 100 %); NaN
    unless it is ``ok``, synchronised, and there is a calibration. The results table recomputes it against
    every cell of the run (:func:`with_pct_of_peak`)."""
    record.pct_of_peak = math.nan
    if calibration:
        row = record.as_dict()
        if is_witness(row):
            record.pct_of_peak = ceilings_of(calibration, [row]).pct_of_peak(
                record.flops, record.bytes, record.median_s, record.device, record.dtype)
    return record


def with_pct_of_peak(results: pd.DataFrame, calibration: Mapping[str, Any] | None) -> pd.DataFrame:
    """A copy of a results table with ``pct_of_peak`` (re)computed against the run's effective ceilings: the
    calibration and every synchronised ok row of ``results`` (:func:`ceilings_of`), so no row exceeds 100 %.
    NaN for every row without a calibration (``--no-calibrate``), and for rows that are not ok or are
    unsynchronized (they time the launch, not the work)."""
    out: pd.DataFrame = results.copy()
    if not calibration:
        out["pct_of_peak"] = math.nan
        return out
    rows = _rows_of(out)
    ceilings = ceilings_of(calibration, rows)
    out["pct_of_peak"] = [
        ceilings.pct_of_peak(_number(r.get("flops")), _number(r.get("bytes")), _number(r.get("median_s")),
                             str(r.get("device")), str(r.get("dtype")))
        if is_witness(r) else math.nan
        for r in rows
    ]
    return out


def _giga(value: float) -> str:
    return f"{value / 1e9:.3g}" if math.isfinite(value) else "-"


def render_ceilings(frame: pd.DataFrame) -> list[str]:
    """Plain-text lines (Markdown list items) for the report: per device and dtype, each ceiling, its interval
    and its source, and what the calibration alone measured where a sweep cell set it. ``frame`` is
    :func:`effective_ceilings`'s."""
    lines = [CEILINGS_SENTENCE]
    for row in frame.to_dict("records"):
        parts = []
        for name, unit, key, source_key, calibrated_key in (
            ("peak", "GFLOP/s", "peak_flops", "peak_source", "calibrated_peak_flops"),
            ("bandwidth", "GB/s", "bandwidth", "bandwidth_source", "calibrated_bandwidth"),
        ):
            value, low, high = (_number(row.get(k)) for k in (key, f"{name}_low", f"{name}_high"))
            if not math.isfinite(value):
                continue
            source, calibrated = str(row.get(source_key, "")), _number(row.get(calibrated_key))
            text = f"{name} {_giga(value)} {unit}"
            if math.isfinite(low) and math.isfinite(high):
                text += f" (95 % CI {_giga(low)}–{_giga(high)})"
            text += f" from {source}"
            if source.startswith("sweep") and math.isfinite(calibrated):
                text += f" (the calibration measured {_giga(calibrated)})"
            parts.append(text)
        if parts:
            lines.append(f"- {row.get('device')} {row.get('dtype')}: " + "; ".join(parts))
    return lines


CEILINGS_SENTENCE = ("Ceilings are the best sustained rate seen on each device and dtype: the calibration's, or "
                     "a sweep cell's (its work over its median time) where one ran faster; so no pct_of_peak "
                     "exceeds 100 %.")
"""The first line of :func:`render_ceilings`: how the ceilings were made."""


