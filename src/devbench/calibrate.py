"""The machine's limits (roofline): peak arithmetic rate per device and dtype, memory bandwidth per device.

``devbench calibrate`` measures, and a sweep stores in ``meta.json["calibration"]`` (unless
``--no-calibrate``), for each device:

- **peak FLOP/s per dtype**: the best rate of an n×n GEMM (2n³ FLOPs) over a few sizes, through numpy/OpenBLAS
  on the host and through each device's own framework (TensorFlow, JAX, PyTorch: the backend the router,
  devbench.backends, sends its cells to); the best of them is that device's practical ceiling;
- **memory bandwidth**: a large copy, bytes read + written per second (numpy ``copyto`` on the host, the
  backend's ``copier`` on each device: TF's ``DeepCopy``, a JAX negation, torch's ``clone``; best of them);
- the **ridge point** peak / bandwidth (FLOP per byte): an op whose arithmetic intensity (its FLOPs over its
  minimum bytes) is below the ridge is memory-bound on that device, above it compute-bound.

Each result row then gets ``pct_of_peak``: its achieved rate by its op's bound as a per cent of these
calibrated ceilings, i.e. achieved FLOP/s over peak for a compute-bound op and achieved bytes/s over bandwidth
for a memory-bound one (devbench.ceilings). It is not clipped: a cell that outruns the probe is over 100 %
and flagged ``above_peak``, and then the calibration is the thing to fix.

Sizes adapt to the device so that one calibration stays short (a few seconds per dtype on a small CPU): GEMM
sizes double from ``START_N`` while the next call is predicted (×8 per doubling) to take at most
``MAX_GEMM_CALL_S``; the copy moves ``COPY_BYTES_HOST`` (CPU) or ``COPY_BYTES_GPU``. The probes are injectable
(:func:`calibrate` takes ``gemm`` and ``copy`` callables), so the logic is tested without TensorFlow or noise.

The host is measured once: every host device (``CPU:k``, ``jax:cpu:0``, ``torch:cpu``: logical CPUs share the
same cores and memory) and the numpy baseline ``numpy:CPU`` share its entry, probed with numpy and with the
framework of each host device asked for (TensorFlow's ``CPU:0`` when only ``numpy:CPU`` is). Units: FLOP/s,
bytes/s, seconds, FLOP per byte.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devbench.errors import UsageError
from devbench.frameworks import framework_for, framework_of, parse
from devbench.spec import NUMPY_DEVICE, TimingPolicy

if TYPE_CHECKING:
    from devbench.backends import RoutingBackend
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
"""``gemm(backend, device, dtype, n)`` -> best seconds per n×n GEMM (backend ``numpy``, or the device's framework
as :func:`probe_backend` names it: ``tensorflow``, ``jax``, ``torch``)."""
CopyProbe = Callable[[str, str, int], float]
"""``copy(backend, device, n_bytes)`` -> best seconds to copy ``n_bytes`` into another buffer."""


@dataclass(frozen=True)
class ProbeResult:
    what: str
    """``gemm`` or ``copy``."""
    backend: str
    device: str
    """A framework's device, or ``host`` for numpy."""
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


def device_kind(device: str) -> str:
    """``CPU`` for every host device (TF's ``CPU:k``, ``jax:cpu:k``, ``torch:cpu``, numpy: one host's cores and
    memory), else the accelerator's kind (``GPU`` for every framework's CUDA device, ``TPU``, ``MPS``), as the
    registry (devbench.frameworks) parses the name; ``unknown`` for a name no framework claims (text read from
    a results file), which is then nobody's host."""
    try:
        return parse(device).kind
    except UsageError:
        return "unknown"


def probe_backend(device: str) -> str:
    """The name a probe of ``device`` goes by in the calibration (``tensorflow``, ``jax``, ``torch``, ``numpy``):
    its framework's module, as the registry has it."""
    return framework_for(device).module


HOST_FALLBACK = "CPU:0"
"""The framework host device that probes the host when only ``numpy:CPU`` is asked for (TensorFlow's, as before
devbench had other frameworks: the numpy baseline is compared with it)."""


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

    The host (every host device and ``numpy:CPU``) is probed once, with numpy and with the framework of each
    host device asked for, on its first such device (TensorFlow's ``CPU:0`` when only ``numpy:CPU`` is); every
    other device with its own framework (:func:`probe_backend`).
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

    host_devices = [d for d in devices if device_kind(d) == "CPU"]
    if host_devices:
        first_per_framework = {framework_of(d): d for d in reversed(host_devices) if framework_of(d) != "numpy"}
        framework_hosts = list(dict.fromkeys(first_per_framework[framework_of(d)] for d in host_devices
                                             if framework_of(d) in first_per_framework)) or [HOST_FALLBACK]
        probes = [("numpy", HOST), *((probe_backend(d), d) for d in framework_hosts)]
        gemms: list[ProbeResult] = []
        for dtype in dtypes:
            for backend, device in probes:
                gemms += search_gemm(gemm, backend, device, dtype, max_n=limits["CPU"], max_call_s=max_call_s)
        copies = [_copy_probe(copy, backend, device, copy_sizes["CPU"]) for backend, device in probes]
        measurements += gemms + copies
        host = entry(gemms, copies, "CPU")
        for device in host_devices:
            entries[device] = host
    for device in devices:
        if device in entries:
            continue
        kind = device_kind(device)
        backend = probe_backend(device)
        gemms = []
        for dtype in dtypes:
            gemms += search_gemm(gemm, backend, device, dtype, max_n=limits.get(kind, limits["GPU"]),
                                 max_call_s=max_call_s)
        copies = [_copy_probe(copy, backend, device, copy_sizes.get(kind, copy_sizes["GPU"]))]
        measurements += gemms + copies
        entries[device] = entry(gemms, copies, kind)

    numpy_gemm: dict[str, float] = {}
    for dtype in dtypes:
        best = _best(r for r in measurements if r.what == "gemm" and r.backend == "numpy" and r.dtype == dtype)
        if best is not None:
            numpy_gemm[dtype] = best.rate
    if now is None:
        from devbench.formatting import utc_now

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
# The real probes: through the router (devbench.backends), which imports each framework on first use


def _router(router: RoutingBackend | None) -> RoutingBackend:
    if router is not None:
        return router
    from devbench.backends import RoutingBackend

    return RoutingBackend()


def measure_gemm(backend: str, device: str, dtype: str, n: int, router: RoutingBackend | None = None) -> float:
    """Best seconds per n×n ``matmul`` through the device's own backend, as the router picks it (the one
    ``run_cell``: same timer, checks and placement as a sweep's cell); ``backend`` ``numpy`` probes the host
    through the numpy baseline."""
    from devbench.spec import Cell

    cell = Cell(size=n, op="matmul", dtype=dtype, device=NUMPY_DEVICE if backend == "numpy" else device)
    outcome = _router(router).run_cell(cell, PROBE_POLICY, seed=0)
    return float(min(outcome.measurement.samples))


def measure_copy(backend: str, device: str, n_bytes: int, router: RoutingBackend | None = None) -> float:
    """Best seconds to copy a float32 array of ``n_bytes`` into another buffer on ``device`` (numpy ``copyto``
    on the host for ``backend`` ``numpy``; else the ``copier`` of the device's backend, as the router picks it)."""
    from devbench.backends.base import FrameworkBackend

    runner = _router(router).backend_for_device(NUMPY_DEVICE if backend == "numpy" else device)
    if not isinstance(runner, FrameworkBackend):
        raise TypeError(f"{type(runner).__name__} has no copy probe")
    return runner.measure_copy(NUMPY_DEVICE if backend == "numpy" else device, n_bytes, PROBE_POLICY)


def calibrate_devices(devices: Sequence[str], dtypes: Sequence[str] = ("float32",),
                      router: RoutingBackend | None = None, **limits: Any) -> dict[str, Any]:
    """Measure the real ceilings of ``devices`` (any framework's device names and/or ``numpy:CPU``), each through
    the backend the router gives it (one router for the whole calibration). ``limits`` go to :func:`calibrate`
    (``max_n``, ``max_call_s``, ``copy_bytes``: tests keep a real calibration short with them)."""
    probes = _router(router)

    def gemm(backend: str, device: str, dtype: str, n: int) -> float:
        return measure_gemm(backend, device, dtype, n, router=probes)

    def copy(backend: str, device: str, n_bytes: int) -> float:
        return measure_copy(backend, device, n_bytes, router=probes)

    return calibrate(devices, dtypes, gemm=gemm, copy=copy, **limits)


def calibrate_spec(spec: SweepSpec) -> dict[str, Any]:
    """The calibration a sweep stores in meta.json: its devices and dtypes."""
    return calibrate_devices(spec.devices, spec.dtypes)


def render_calibration(calibration: Mapping[str, Any]) -> list[str]:
    """Plain-text lines: per device and dtype the ceiling and its source, the best GEMM of numpy and of the
    best framework (TensorFlow, JAX, PyTorch: the source says which), the bandwidth and its source, and the ridge
    point."""

    def gflops(value: Any) -> str:
        return f"{value / 1e9:.1f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"

    lines = [f"{'device':<12} {'dtype':<9} {'peak GFLOP/s':>12}  {'from':<18} {'numpy':>7} {'frmwrk':>7}  "
             f"{'GB/s':>6}  {'from':<18} {'ridge FLOP/B':>12}"]
    for device, entry in calibration.get("devices", {}).items():
        bw = entry.get("bandwidth", math.nan)
        for dtype in list(entry.get("peak_flops", {})) or ["-"]:
            peak = entry.get("peak_flops", {}).get(dtype, math.nan)
            ridge = entry.get("ridge", {}).get(dtype, math.nan)
            source = entry.get("peak_source", {}).get(dtype, "")
            backends = entry.get("peak_by_backend", {}).get(dtype, {})
            frameworks = [rate for name, rate in backends.items() if name != "numpy"]
            lines.append(f"{device:<12} {dtype:<9} {gflops(peak):>12}  {source:<18} "
                         f"{gflops(backends.get('numpy')):>7} {gflops(max(frameworks, default=None)):>7}  "
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
