"""Machine fingerprint: what a result was measured on, so that two runs can be told apart and compared.

The host part (OS, Python, CPU, memory, load) needs only psutil; the TensorFlow part (version, build info,
devices) is filled in by the caller that already paid for importing TensorFlow.

Telling two fingerprints apart is one rule, :func:`fingerprint_diff` over :data:`FINGERPRINT_FIELDS`: compare
lists every difference, and resume asks for the subset :data:`INCOMPARABLE_FIELDS` (a change there means cells
measured before and after are not comparable) through :func:`incomparable_changes`.
"""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import psutil

from devbench.formatting import format_gib


def cpu_model() -> str:
    """The CPU's marketing name, e.g. 'AMD EPYC 7B13'; falls back to platform.processor()."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


PERFORMANCE_ENV: tuple[str, ...] = (
    "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "TF_ENABLE_ONEDNN_OPTS", "TF_XLA_FLAGS", "XLA_FLAGS",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
    "DEVBENCH_LOGICAL_CPUS",
)
"""Environment variables that change how fast the same code runs (thread pools, XLA, visible devices): the
fingerprint records those that are set, so a change between two runs can be named (``history`` attributes a
step to it)."""

SIMD_FLAG_PREFIXES: tuple[str, ...] = ("avx", "amx", "fma", "sse4", "f16c", "asimd", "sve", "neon")
"""The CPU flags (``/proc/cpuinfo``) that decide which kernels BLAS and the frameworks pick; the other flags
are left out so a fingerprint stays readable."""


def cpu_flags() -> list[str]:
    """The SIMD-relevant CPU flags of the first CPU in /proc/cpuinfo, sorted (empty where it is not there)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("flags", "features")):
                return sorted({f for f in line.split(":", 1)[1].split() if f.startswith(SIMD_FLAG_PREFIXES)})
    return []


def host_fingerprint() -> dict[str, Any]:
    """Everything about the host that does not need TensorFlow."""
    freq = psutil.cpu_freq()
    memory = psutil.virtual_memory()
    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    return {
        "hostname": socket.gethostname(),
        "os": {
            "system": platform.system(),
            "release": platform.release(),
            "platform": platform.platform(),
        },
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation()},
        "cpu": {
            "model": cpu_model(),
            "arch": platform.machine(),
            "physical_cores": psutil.cpu_count(logical=False),
            "logical_cores": psutil.cpu_count(logical=True),
            "freq_mhz_current": round(freq.current, 1) if freq else None,
            "freq_mhz_max": round(freq.max, 1) if freq else None,
            "affinity": len(psutil.Process().cpu_affinity() or []) if hasattr(psutil.Process, "cpu_affinity")
            else None,
            "flags": cpu_flags(),
        },
        "env": {name: os.environ[name] for name in PERFORMANCE_ENV if name in os.environ},
        "memory": {"total_bytes": memory.total, "available_bytes": memory.available},
        "load_avg_at_start": load,
        "packages": {
            name: _version(name) for name in ("devbench", "tensorflow", "keras", "numpy", "pandas", "jax", "jaxlib",
                                              "torch", "nvidia-ml-py")
        },
    }


def fingerprint(tensorflow: dict[str, Any] | None = None, devices: list[dict[str, Any]] | None = None
                ) -> dict[str, Any]:
    """The full fingerprint stored in meta.json (``tensorflow`` and ``devices`` come from devices.py)."""
    return {**host_fingerprint(), "tensorflow": tensorflow or {}, "devices": devices or []}


def short_name(machine: dict[str, Any]) -> str:
    """One line for chart titles: 'AMD EPYC 7B13 (2 cores) · GPU: NVIDIA H100 · TF 2.21.0'."""
    cpu = machine.get("cpu", {})
    parts = [f"{cpu.get('model', 'unknown CPU')} ({cpu.get('logical_cores', '?')} cores)"]
    gpus = [d.get("details", {}).get("device_name") or d.get("name")
            for d in machine.get("devices", []) if d.get("kind") == "GPU"]
    if gpus:
        parts.append("GPU: " + ", ".join(str(g) for g in dict.fromkeys(gpus)))
    tf_version = machine.get("tensorflow", {}).get("version")
    if tf_version:
        parts.append(f"TF {tf_version}")
    return " · ".join(parts)


# ---------------------------------------------------------------------------------------------------------
# Differences between two fingerprints


class FingerprintDiff(NamedTuple):
    """One fingerprint field whose value differs; None where a run does not record it."""

    field: str
    base: str | int | float | None
    new: str | int | float | None


def _get(data: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(part)
    return data


def _first(*values: Any) -> Any:
    for value in values:
        if value not in (None, "", [], {}):
            return value
    return None


def _scalar(value: Any) -> str | int | float | None:
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return ".".join(str(v) for v in value) if all(isinstance(v, int) for v in value) else ", ".join(
            str(v) for v in value)
    return str(value)


def _gpus(machine: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    devices = machine.get("devices") or []
    return [d for d in devices if isinstance(d, Mapping) and str(d.get("kind", "")).upper() == "GPU"]


def _join(values: Iterable[Any]) -> str | None:
    items = [str(v) for v in values if v not in (None, "")]
    return ", ".join(items) if items else None


def _memory(machine: Mapping[str, Any]) -> str | None:
    total = _get(machine, "memory", "total_bytes")
    return format_gib(total) if isinstance(total, (int, float)) else None


def _build(machine: Mapping[str, Any], name: str) -> Any:
    """A TF build-info value (tf.sysconfig.get_build_info()), under tensorflow.build_info or tensorflow."""
    return _scalar(_first(_get(machine, "tensorflow", "build_info", name), _get(machine, "tensorflow", name)))


FINGERPRINT_FIELDS: tuple[tuple[str, Callable[[Mapping[str, Any]], Any]], ...] = (
    ("hostname", lambda m: m.get("hostname")),
    ("cpu.model", lambda m: _get(m, "cpu", "model")),
    ("cpu.logical_cores", lambda m: _get(m, "cpu", "logical_cores")),
    ("cpu.physical_cores", lambda m: _get(m, "cpu", "physical_cores")),
    ("memory", _memory),
    ("os", lambda m: _join([_get(m, "os", "system"), _get(m, "os", "release")])),
    ("python", lambda m: _get(m, "python", "version")),
    ("tensorflow", lambda m: _first(_get(m, "tensorflow", "version"), _get(m, "packages", "tensorflow"))),
    ("cuda", lambda m: _build(m, "cuda_version")),
    ("cudnn", lambda m: _build(m, "cudnn_version")),
    ("devices", lambda m: _join(d.get("name") for d in m.get("devices") or [] if isinstance(d, Mapping))),
    ("gpu.names",
     lambda m: _join(_first(_get(d, "details", "device_name"), d.get("name")) for d in _gpus(m))),
    ("gpu.compute_capability",
     lambda m: _join(_scalar(_get(d, "details", "compute_capability")) for d in _gpus(m))),
    ("gpu.driver", lambda m: _scalar(_first(
        m.get("gpu_driver"), _get(m, "tensorflow", "driver_version"),
        _join(_get(d, "details", "driver_version") for d in _gpus(m))))),
    ("numpy", lambda m: _get(m, "packages", "numpy")),
    ("jax", lambda m: _get(m, "packages", "jax")),
    ("torch", lambda m: _get(m, "packages", "torch")),
    ("cpu.flags", lambda m: _join(_get(m, "cpu", "flags") or [])),
    ("env", lambda m: _join(f"{k}={v}" for k, v in sorted((_get(m, "env") or {}).items()))),
    ("devbench", lambda m: _get(m, "packages", "devbench")),
)
"""(field name, how to read it from meta["machine"]) for every fingerprint field that ``fingerprint_diff``
compares. Memory is compared in GiB at 0.1 GiB resolution so kernels reserving a few MB differently do not
count as a different machine; lists are joined into one string."""


def _machine(meta: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if not meta:
        return {}
    machine = meta.get("machine")
    if isinstance(machine, Mapping):
        return machine
    return meta if ("cpu" in meta or "hostname" in meta) else {}


def fingerprint_diff(base_meta: Mapping[str, Any] | None, new_meta: Mapping[str, Any] | None,
                     fields: Sequence[str] | None = None) -> list[FingerprintDiff]:
    """The fingerprint fields (``FINGERPRINT_FIELDS``, or only the names in ``fields``) whose values differ,
    in ``FINGERPRINT_FIELDS`` order.

    Takes each run's meta.json dict (or the ``machine`` dict itself). A field missing from one run reads
    as None and counts as a difference; a field missing from both does not.
    """
    if fields is not None:
        unknown = sorted(set(fields) - {name for name, _ in FINGERPRINT_FIELDS})
        if unknown:
            raise ValueError(f"unknown fingerprint fields {unknown}")
    base_machine, new_machine = _machine(base_meta), _machine(new_meta)
    diffs: list[FingerprintDiff] = []
    for name, read in FINGERPRINT_FIELDS:
        if fields is not None and name not in fields:
            continue
        b, n = _scalar(read(base_machine)), _scalar(read(new_machine))
        if b != n:
            diffs.append(FingerprintDiff(name, b, n))
    return diffs


INCOMPARABLE_FIELDS: tuple[str, ...] = ("hostname", "cpu.model", "tensorflow", "devices", "gpu.names", "devbench")
"""The fields of :data:`FINGERPRINT_FIELDS` whose change makes cells measured before and after incomparable
(host, CPU model, TF version, device list and GPU models, devbench version): resume warns on these."""


def incomparable_changes(before: Mapping[str, Any] | None, now: Mapping[str, Any] | None) -> list[FingerprintDiff]:
    """The differences in :data:`INCOMPARABLE_FIELDS` only: what makes a resumed run mix two machines."""
    return fingerprint_diff(before, now, INCOMPARABLE_FIELDS)
