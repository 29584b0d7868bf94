"""The machine's limits (roofline): peak arithmetic rate per device and dtype, memory bandwidth per device.

``devbench calibrate`` measures, and a sweep stores in ``meta.json["calibration"]`` (unless
``--no-calibrate``), for each device:

- **peak FLOP/s per dtype**: the best rate of an n×n GEMM (2n³ FLOPs) over a few sizes, through numpy/OpenBLAS
  on the host and TensorFlow on each device; the best of them is that device's practical ceiling;
- **memory bandwidth**: a large copy, bytes read + written per second (numpy ``copyto`` on the host and TF's
  ``DeepCopy`` on each device; best of them);
- the **ridge point** peak / bandwidth (FLOP per byte): an op whose arithmetic intensity (its FLOPs over its
  minimum bytes) is below the ridge is memory-bound on that device, above it compute-bound.

Each result row then gets ``pct_of_peak``: its achieved rate as a per cent of the roofline at its intensity,
``min(peak, intensity × bandwidth)``, i.e. achieved FLOP/s over peak for a compute-bound op and achieved bytes/s
over bandwidth for a memory-bound one. The roofline a results table is measured against is the *effective*
one (:func:`effective_ceilings`): per device and dtype the best sustained rate of the calibration and of the
sweep's own cells, so ``pct_of_peak`` never exceeds 100 %, and each ceiling says where it came from.

Sizes adapt to the device so that one calibration stays short (a few seconds per dtype on a small CPU): GEMM
sizes double from ``START_N`` while the next call is predicted (×8 per doubling) to take at most
``MAX_GEMM_CALL_S``; the copy moves ``COPY_BYTES_HOST`` (CPU) or ``COPY_BYTES_GPU``. The probes are injectable
(:func:`calibrate` takes ``gemm`` and ``copy`` callables), so the logic is tested without TensorFlow or noise.

The host is measured once: every ``CPU:k`` (logical CPUs share the same cores and memory) and the numpy
baseline ``numpy:CPU`` share its entry. Units: FLOP/s, bytes/s, seconds, FLOP per byte.

``meta["calibration"]`` layout (version 1)::

    {"version": 1, "measured_at": "...", "duration_s": 6.1, "dtypes": ["float32"],
     "devices": {"CPU:0": {"kind": "CPU", "peak_flops": {"float32": 1.9e11},
                           "peak_source": {"float32": "tensorflow n=2048"},
                           "peak_by_backend": {"float32": {"numpy": 1.8e11, "tensorflow": 1.9e11}},
                           "bandwidth": 2.1e10, "bandwidth_source": "numpy 128 MiB",
                           "bandwidth_by_backend": {"numpy": 2.1e10, "tensorflow": 1.9e10},
                           "ridge": {"float32": 9.0}}, "numpy:CPU": {...same as CPU:0...}},
     "numpy_gemm": {"float32": 8.1e10},
     "measurements": [{"what": "gemm", "backend": "numpy", "device": "host", "dtype": "float32", "n": 2048,
                       "seconds": 0.21, "rate": 8.1e10, "error": ""}, ...]}
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devbench.spec import NUMPY_DEVICE, TimingPolicy

if TYPE_CHECKING:
    import pandas as pd

    from devbench.schema import Record
    from devbench.spec import SweepSpec

CALIBRATION_VERSION = 1

START_N = 256
MAX_GEMM_CALL_S = 0.5
"""Do not try a GEMM size whose single call is predicted to take longer than this (seconds). Generous enough that
a CPU slowed by another process still reaches the sizes where GEMM efficiency saturates (2048 on a 2-core host)."""
MAX_N = {"CPU": 4096, "GPU": 32768}
COPY_BYTES_HOST = 128 * 2**20
"""Each of the two arrays of the host copy: far beyond any CPU cache, small enough for a few seconds."""
COPY_BYTES_GPU = 1 * 2**30

PROBE_POLICY = TimingPolicy(max_cell_time=1.0, min_samples=5, max_samples=5, target_rel_iqr=0.5, warmup_time=0.0,
                            min_warmup_calls=1, min_block_time=0.01)
"""Short timing for probes: the best of 5 samples (a ceiling wants the fastest run, not the typical one; other
processes only ever slow a sample down), fewer when a slow GEMM uses up the 1 s budget first."""

HOST = "host"

GemmProbe = Callable[[str, str, str, int], float]
"""``gemm(backend, device, dtype, n)`` -> best seconds per n×n GEMM (backend ``numpy`` or ``tensorflow``)."""
CopyProbe = Callable[[str, str, int], float]
"""``copy(backend, device, n_bytes)`` -> best seconds to copy ``n_bytes`` into another buffer."""


@dataclass(frozen=True)
class ProbeResult:
    what: str
    """``gemm`` or ``copy``."""
    backend: str
    device: str
    """A TF device, or ``host`` for numpy."""
    dtype: str
    n: int
    """GEMM size n, or bytes per array for a copy."""
    seconds: float
    rate: float
    """FLOP/s for a GEMM, bytes (read + written)/s for a copy; NaN on error."""
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"what": self.what, "backend": self.backend, "device": self.device, "dtype": self.dtype,
                "n": self.n, "seconds": self.seconds, "rate": self.rate, "error": self.error}


def gemm_flops(n: int) -> float:
    return 2.0 * n**3


def _kind(device: str) -> str:
    return "CPU" if device == NUMPY_DEVICE or device.startswith("CPU:") else device.split(":", 1)[0].upper()


def search_gemm(probe: GemmProbe, backend: str, device: str, dtype: str, *, start_n: int = START_N,
                max_n: int = 4096, max_call_s: float = MAX_GEMM_CALL_S) -> list[ProbeResult]:
    """GEMMs of doubling size until the next one would take over ``max_call_s`` or exceed ``max_n``.

    Small sizes underuse the cores and large ones are slow to time; the rate saturates in between, and the
    best rate seen is the ceiling. A probe that raises ends the search for this (backend, device, dtype).
    """
    results: list[ProbeResult] = []
    n = start_n
    while n <= max_n:
        try:
            seconds = probe(backend, device, dtype, n)
        except Exception as exc:  # unsupported dtype, out of memory: record it and stop
            results.append(ProbeResult("gemm", backend, device, dtype, n, math.nan, math.nan,
                                       f"{type(exc).__name__}: {str(exc).strip()[:200]}"))
            break
        rate = gemm_flops(n) / seconds if seconds > 0 else math.nan
        results.append(ProbeResult("gemm", backend, device, dtype, n, seconds, rate))
        if not seconds > 0 or seconds * 8 > max_call_s:
            break
        n *= 2
    return results


def _copy_probe(probe: CopyProbe, backend: str, device: str, n_bytes: int) -> ProbeResult:
    try:
        seconds = probe(backend, device, n_bytes)
    except Exception as exc:
        return ProbeResult("copy", backend, device, "", n_bytes, math.nan, math.nan,
                           f"{type(exc).__name__}: {str(exc).strip()[:200]}")
    return ProbeResult("copy", backend, device, "", n_bytes, seconds, 2.0 * n_bytes / seconds if seconds > 0
                       else math.nan)


def _best(results: Iterable[ProbeResult]) -> ProbeResult | None:
    usable = [r for r in results if math.isfinite(r.rate) and r.rate > 0]
    return max(usable, key=lambda r: r.rate) if usable else None


def _source(result: ProbeResult) -> str:
    if result.what == "gemm":
        return f"{result.backend} n={result.n}"
    return f"{result.backend} {result.n / 2**20:g} MiB"


def calibrate(
    devices: Sequence[str],
    dtypes: Sequence[str],
    *,
    gemm: GemmProbe,
    copy: CopyProbe,
    max_n: Mapping[str, int] | None = None,
    max_call_s: float = MAX_GEMM_CALL_S,
    copy_bytes: Mapping[str, int] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    now: Callable[[], str] | None = None,
) -> dict[str, Any]:
    """Measure the ceilings of ``devices`` for ``dtypes`` with the given probes; the meta["calibration"] dict.

    The host (``CPU:*`` and ``numpy:CPU``) is probed once, with numpy and with TensorFlow on the first CPU
    device asked for (``CPU:0`` when only ``numpy:CPU`` is); every other device with TensorFlow.
    """
    start = clock()
    limits = {**MAX_N, **(max_n or {})}
    copy_sizes = {"CPU": COPY_BYTES_HOST, "GPU": COPY_BYTES_GPU, **(copy_bytes or {})}
    measurements: list[ProbeResult] = []
    entries: dict[str, dict[str, Any]] = {}

    def entry(gemms: list[ProbeResult], copies: list[ProbeResult], kind: str) -> dict[str, Any]:
        peak: dict[str, float] = {}
        source: dict[str, str] = {}
        by_backend: dict[str, dict[str, float]] = {}
        for dtype in dtypes:
            best = _best(r for r in gemms if r.dtype == dtype)
            if best is not None:
                peak[dtype], source[dtype] = best.rate, _source(best)
            for backend in sorted({r.backend for r in gemms}):
                best_of_backend = _best(r for r in gemms if r.dtype == dtype and r.backend == backend)
                if best_of_backend is not None:
                    by_backend.setdefault(dtype, {})[backend] = best_of_backend.rate
        best_copy = _best(copies)
        bandwidth = best_copy.rate if best_copy is not None else math.nan
        return {
            "kind": kind,
            "peak_flops": peak,
            "peak_source": source,
            "peak_by_backend": by_backend,
            "bandwidth": bandwidth,
            "bandwidth_source": _source(best_copy) if best_copy is not None else "",
            "bandwidth_by_backend": {r.backend: r.rate for r in copies if math.isfinite(r.rate)},
            "ridge": {d: p / bandwidth for d, p in peak.items() if math.isfinite(bandwidth) and bandwidth > 0},
        }

    host_devices = [d for d in devices if _kind(d) == "CPU"]
    if host_devices:
        tf_cpu = next((d for d in host_devices if d != NUMPY_DEVICE), "CPU:0")
        gemms: list[ProbeResult] = []
        for dtype in dtypes:
            for backend, device in (("numpy", HOST), ("tensorflow", tf_cpu)):
                gemms += search_gemm(gemm, backend, device, dtype, max_n=limits["CPU"], max_call_s=max_call_s)
        copies = [_copy_probe(copy, backend, device, copy_sizes["CPU"])
                  for backend, device in (("numpy", HOST), ("tensorflow", tf_cpu))]
        measurements += gemms + copies
        host = entry(gemms, copies, "CPU")
        for device in host_devices:
            entries[device] = host
    for device in devices:
        if device in entries:
            continue
        kind = _kind(device)
        gemms = []
        for dtype in dtypes:
            gemms += search_gemm(gemm, "tensorflow", device, dtype, max_n=limits.get(kind, limits["GPU"]),
                                 max_call_s=max_call_s)
        copies = [_copy_probe(copy, "tensorflow", device, copy_sizes.get(kind, copy_sizes["GPU"]))]
        measurements += gemms + copies
        entries[device] = entry(gemms, copies, kind)

    numpy_gemm: dict[str, float] = {}
    for dtype in dtypes:
        best = _best(r for r in measurements if r.what == "gemm" and r.backend == "numpy" and r.dtype == dtype)
        if best is not None:
            numpy_gemm[dtype] = best.rate
    if now is None:
        from devbench.store import utc_now

        now = utc_now
    return {
        "version": CALIBRATION_VERSION,
        "measured_at": now(),
        "duration_s": clock() - start,
        "dtypes": list(dtypes),
        "devices": {d: dict(e) for d, e in entries.items()},
        "numpy_gemm": numpy_gemm,
        "measurements": [m.as_dict() for m in measurements],
    }


# ---------------------------------------------------------------------------------------------------------
# The real probes (import numpy and TensorFlow lazily)


def measure_gemm(backend: str, device: str, dtype: str, n: int) -> float:
    """Best seconds per n×n ``matmul`` through devbench's own backends (same timer, checks and placement)."""
    from devbench.spec import Cell

    cell = Cell(size=n, op="matmul", dtype=dtype, device=NUMPY_DEVICE if backend == "numpy" else device)
    runner: Any
    if backend == "numpy":
        from devbench.backends.numpy import NumpyBackend

        runner = NumpyBackend()
    else:
        from devbench.backends.tf import TFBackend

        runner = TFBackend()
    outcome = runner.run_cell(cell, PROBE_POLICY, seed=0)
    return float(min(outcome.measurement.samples))


def measure_copy(backend: str, device: str, n_bytes: int) -> float:
    """Best seconds to copy a float32 array of ``n_bytes`` into another buffer (numpy copyto / TF DeepCopy)."""
    import numpy as np

    from devbench.timer import measure

    elements = n_bytes // 4
    if backend == "numpy":
        src = np.ones(elements, dtype=np.float32)
        dst = np.empty_like(src)

        def host_copy() -> None:
            np.copyto(dst, src)

        m = measure(host_copy, lambda _out: None, PROBE_POLICY)
        return float(min(m.samples))
    from devbench.backends.tf import initialise_device, sync_scalar
    from devbench.devices import tensorflow

    tf = tensorflow()
    initialise_device(device)  # the device's first op is timed on its own, never inside a probe
    with tf.device(f"/device:{device}"):
        x = tf.identity(tf.ones([elements], dtype=tf.float32))
        copy_op: Callable[[], Any] = lambda: tf.raw_ops.DeepCopy(x=x)  # noqa: E731
        try:
            sync_scalar(copy_op())
        except Exception:  # no DeepCopy kernel here: negation reads and writes exactly as much
            copy_op = lambda: tf.math.negative(x)  # noqa: E731
        m = measure(copy_op, sync_scalar, PROBE_POLICY)
    return float(min(m.samples))


def calibrate_devices(devices: Sequence[str], dtypes: Sequence[str] = ("float32",)) -> dict[str, Any]:
    """Measure the real ceilings of ``devices`` (TensorFlow device names and/or ``numpy:CPU``)."""
    return calibrate(devices, dtypes, gemm=measure_gemm, copy=measure_copy)


def calibrate_spec(spec: SweepSpec) -> dict[str, Any]:
    """The calibration a sweep stores in meta.json: its devices and dtypes."""
    return calibrate_devices(spec.devices, spec.dtypes)


# ---------------------------------------------------------------------------------------------------------
# Using a calibration: the effective ceilings
#
# A ceiling is the best sustained rate seen on a device at a dtype: the calibration probe's, or a sweep cell's
# where one ran faster (a short probe at the start of a sweep is not always the fastest thing the sweep sees:
# the default sweep measured matmul at 512, 2048 and 4096 above it). A cell's rate is its work over its median
# time, the very number ``pct_of_peak`` is computed from, so a cell can never be above a ceiling it takes part
# in: pct_of_peak <= 100 % by construction. (Its work over ``ci_high_s``, the slow end of its interval, would be
# more conservative but would leave the cell that set the ceiling above it.) The interval of a ceiling set by a
# cell is that cell's work over its median's 95 % interval; a calibrated ceiling has none (a probe keeps only
# its best block).

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
    (through :func:`_kind`)."""
    return HOST if _kind(device) == "CPU" else device


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


def render_calibration(calibration: Mapping[str, Any]) -> list[str]:
    """Plain-text lines: per device and dtype the ceiling and its source, the best GEMM of numpy and of TF,
    the bandwidth and its source, and the ridge point."""

    def gflops(value: Any) -> str:
        return f"{value / 1e9:.1f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"

    lines = [f"{'device':<10} {'dtype':<9} {'peak GFLOP/s':>12}  {'from':<18} {'numpy':>7} {'TF':>7}  "
             f"{'GB/s':>6}  {'from':<18} {'ridge FLOP/B':>12}"]
    for device, entry in calibration.get("devices", {}).items():
        bw = entry.get("bandwidth", math.nan)
        for dtype in list(entry.get("peak_flops", {})) or ["-"]:
            peak = entry.get("peak_flops", {}).get(dtype, math.nan)
            ridge = entry.get("ridge", {}).get(dtype, math.nan)
            source = entry.get("peak_source", {}).get(dtype, "")
            backends = entry.get("peak_by_backend", {}).get(dtype, {})
            lines.append(f"{device:<10} {dtype:<9} {gflops(peak):>12}  {source:<18} "
                         f"{gflops(backends.get('numpy')):>7} {gflops(backends.get('tensorflow')):>7}  "
                         f"{bw / 1e9:>6.1f}  {entry.get('bandwidth_source', ''):<18} {ridge:>12.1f}")
    numpy_gemm = calibration.get("numpy_gemm", {})
    if numpy_gemm:
        lines.append("numpy's best GEMM: " + ", ".join(f"{d} {r / 1e9:.1f} GFLOP/s" for d, r in numpy_gemm.items()))
    errors = [m for m in calibration.get("measurements", []) if m.get("error")]
    lines.extend(f"not measured: {m['backend']} {m['what']} {m['dtype']} n={m['n']} on {m['device']}: {m['error']}"
                 for m in errors)
    lines.append(f"calibration took {calibration.get('duration_s', math.nan):.1f} s")
    return lines


# ---------------------------------------------------------------------------------------------------------
# In a sweep

Calibrator = Callable[["SweepSpec"], dict[str, Any]]


def sweep_calibrator(calibrate: bool | Calibrator | None, *, real_backend: bool) -> Calibrator | None:
    """What a sweep calls at its start to fill meta["calibration"], or None to skip (the key is then null).

    ``calibrate`` None means: calibrate when measuring with the real backends (``real_backend``), not with an
    injected one (tests); True/False force it; a callable is used as is (tests inject measurements this way).
    """
    if calibrate is None:
        calibrate = real_backend
    if calibrate is True:
        return calibrate_spec
    if calibrate is False:
        return None
    return calibrate
