"""NVIDIA GPU telemetry and state through NVML: what the GPU is (fingerprint), what it was doing at a moment
(snapshot: clocks, temperature, power, throttle reasons), and whether it throttled over a cell.

NVML comes from the optional ``nvidia-ml-py`` package (module ``pynvml``; extra ``devbench[gpu-telemetry]``).
Without it, without a driver or without a GPU, every function answers ``{"available": False, "reason": ...}``
(the reason says which of these it was) and nothing raises: telemetry never costs a sweep its results.

Every function takes ``nvml=``, the pynvml module to use; None imports the real one. Tests pass a small object
with the same function names, so that the decoding below is tested without a GPU.

Units: clocks in MHz, temperature in °C, power in W, memory in bytes, violation times in ns.
"""

from __future__ import annotations

import importlib
import os
import weakref
from collections.abc import Mapping
from typing import Any

from devbench.errors import UsageError
from devbench.frameworks import parse
from devbench.schema import TELEMETRY_COLUMNS, GpuTelemetry

__all__ = [
    "POWER_OR_HEAT_REASONS",
    "TELEMETRY_COLUMNS",
    "THROTTLE_REASONS",
    "gpu_fingerprint",
    "nvml_index",
    "snapshot",
    "throttle_reason_names",
    "throttled",
    "visit_telemetry",
]

THROTTLE_REASONS: dict[int, str] = {
    0x001: "gpu_idle",
    0x002: "applications_clocks_setting",
    0x004: "sw_power_cap",
    0x008: "hw_slowdown",
    0x010: "sync_boost",
    0x020: "sw_thermal_slowdown",
    0x040: "hw_thermal_slowdown",
    0x080: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
    0x200: "board_limit",
    0x400: "reliability",
}
"""NVML's clock event (formerly "throttle") reason bits -> names (``nvmlClocksEventReason*`` in nvml.h)."""

POWER_OR_HEAT_REASONS: frozenset[str] = frozenset(
    {"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"}
)
"""The reasons that mean clocks are held down for power or heat. ``gpu_idle``, ``applications_clocks_setting``,
``sync_boost`` and ``display_clock_setting`` are not: they are the GPU doing what it was asked."""

_PERF_POLICY_POWER = 0
_PERF_POLICY_THERMAL = 1
"""``NVML_PERF_POLICY_POWER`` / ``_THERMAL``: the violation counters of :func:`snapshot`."""

_CLOCK_SM = 1
_CLOCK_MEM = 2
_TEMPERATURE_GPU = 0

_initialised: weakref.WeakSet[Any] = weakref.WeakSet()
"""The NVML modules already initialised in this process (nvmlInit is paid once, not per snapshot)."""


def _unavailable(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason}


def _open(nvml: Any | None) -> tuple[Any, None] | tuple[None, str]:
    """(the initialised NVML module, None) or (None, why not): package missing, library or driver missing."""
    if nvml is None:
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            return None, ("NVML not available: the nvidia-ml-py package is not installed "
                          "(pip install 'devbench[gpu-telemetry]')")
    if nvml not in _initialised:
        try:
            nvml.nvmlInit()
        except Exception as exc:  # pynvml.NVMLError_LibraryNotFound, _DriverNotLoaded, ...
            return None, f"NVML not available: no NVIDIA driver or GPU ({type(exc).__name__}: {exc})"
        _initialised.add(nvml)
    return nvml, None


def _text(value: object) -> str:
    """NVML strings: str in recent nvidia-ml-py, bytes in old ones."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _ask(call: Any, *args: Any) -> Any | None:
    """``call(*args)``, or None where this GPU or driver does not support it (NVMLError_NotSupported, ...)."""
    try:
        return call(*args)
    except Exception:
        return None


def _cuda_version(code: int | None) -> str | None:
    """NVML's CUDA driver version code (e.g. 12040) as ``"12.4"``."""
    if code is None:
        return None
    return f"{code // 1000}.{code % 1000 // 10}"


def gpu_fingerprint(nvml: Any | None = None) -> dict[str, Any]:
    """What the NVIDIA GPUs of this machine are, for meta.json.

    ``{"available": True, "driver_version", "cuda_version", "gpus": [{"index", "name", "uuid",
    "compute_capability" ("9.0"), "memory_total_bytes", "persistence_mode" (bool), "mig_mode" (bool)}]}``;
    a field this GPU or driver cannot report is None. ``{"available": False, "reason"}`` without NVML, a
    driver or a GPU.
    """
    module, reason = _open(nvml)
    if module is None:
        return _unavailable(reason or "NVML not available")
    count = _ask(module.nvmlDeviceGetCount)
    if not count:
        return _unavailable("no NVIDIA GPU: NVML found a driver but no GPU")
    gpus = []
    for index in range(int(count)):
        handle = module.nvmlDeviceGetHandleByIndex(index)
        capability = _ask(module.nvmlDeviceGetCudaComputeCapability, handle)
        memory = _ask(module.nvmlDeviceGetMemoryInfo, handle)
        persistence = _ask(module.nvmlDeviceGetPersistenceMode, handle)
        mig = _ask(module.nvmlDeviceGetMigMode, handle)
        name = _ask(module.nvmlDeviceGetName, handle)
        uuid = _ask(module.nvmlDeviceGetUUID, handle)
        gpus.append({
            "index": index,
            "name": _text(name) if name is not None else None,
            "uuid": _text(uuid) if uuid is not None else None,
            "compute_capability": f"{capability[0]}.{capability[1]}" if capability else None,
            "memory_total_bytes": int(memory.total) if memory is not None else None,
            "persistence_mode": bool(persistence) if persistence is not None else None,
            # nvmlDeviceGetMigMode answers [current, pending]; the current mode is what this run ran under.
            "mig_mode": bool(mig[0]) if mig else None,
        })
    driver = _ask(module.nvmlSystemGetDriverVersion)
    return {
        "available": True,
        "driver_version": _text(driver) if driver is not None else None,
        "cuda_version": _cuda_version(_ask(module.nvmlSystemGetCudaDriverVersion)),
        "gpus": gpus,
    }


def throttle_reason_names(mask: int) -> list[str]:
    """The names of the reason bits set in ``mask``, in bit order; an unknown bit is ``unknown_0x...``."""
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASONS)
    names.extend(f"unknown_{1 << b:#x}" for b in range(64) if unknown & (1 << b))
    return names


def _reasons_mask(nvml: Any, handle: Any) -> int | None:
    # Renamed "event reasons" in driver 535; the old name remains in older nvidia-ml-py releases.
    for name in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
        if hasattr(nvml, name):
            value = _ask(getattr(nvml, name), handle)
            if value is not None:
                return int(value)
    return None


def _violation_ns(nvml: Any, handle: Any, policy: int) -> int | None:
    status = _ask(nvml.nvmlDeviceGetViolationStatus, handle, policy) if hasattr(
        nvml, "nvmlDeviceGetViolationStatus") else None
    return int(status.violationTime) if status is not None else None


def snapshot(gpu_index: int, nvml: Any | None = None) -> dict[str, Any]:
    """The state of NVML GPU ``gpu_index`` now.

    ``{"available": True, "index", "sm_clock_mhz", "mem_clock_mhz", "temperature_c", "power_w",
    "throttle_reasons" (names, :func:`throttle_reason_names`), "power_violation_ns", "thermal_violation_ns"}``:
    the violation counters are NVML's cumulative time (ns) that clocks were held below the requested ones for
    power / for heat since the driver loaded, so their growth between two snapshots sees throttling that came
    and went between them. A value the GPU cannot report is None. ``{"available": False, "reason"}`` without
    NVML, or for an index NVML does not have.
    """
    module, reason = _open(nvml)
    if module is None:
        return _unavailable(reason or "NVML not available")
    try:
        handle = module.nvmlDeviceGetHandleByIndex(gpu_index)
    except Exception as exc:
        return _unavailable(f"no NVIDIA GPU with NVML index {gpu_index} ({type(exc).__name__}: {exc})")
    sm = _ask(module.nvmlDeviceGetClockInfo, handle, _CLOCK_SM)
    mem = _ask(module.nvmlDeviceGetClockInfo, handle, _CLOCK_MEM)
    temperature = _ask(module.nvmlDeviceGetTemperature, handle, _TEMPERATURE_GPU)
    power_mw = _ask(module.nvmlDeviceGetPowerUsage, handle)
    mask = _reasons_mask(module, handle)
    return {
        "available": True,
        "index": gpu_index,
        "sm_clock_mhz": int(sm) if sm is not None else None,
        "mem_clock_mhz": int(mem) if mem is not None else None,
        "temperature_c": int(temperature) if temperature is not None else None,
        "power_w": power_mw / 1000.0 if power_mw is not None else None,
        "throttle_reasons": throttle_reason_names(mask) if mask is not None else None,
        "power_violation_ns": _violation_ns(module, handle, _PERF_POLICY_POWER),
        "thermal_violation_ns": _violation_ns(module, handle, _PERF_POLICY_THERMAL),
    }


def throttled(start: Mapping[str, Any], end: Mapping[str, Any]) -> bool:
    """Whether the GPU held its clocks down for power or heat between snapshots ``start`` and ``end``.

    True when either holds:

    - a power-or-heat reason (:data:`POWER_OR_HEAT_REASONS`) is reported in ``start`` or in ``end``: NVML's
      own statement that clocks were below what was asked, at that moment;
    - NVML's power or thermal violation time grew from ``start`` to ``end``: the clocks were held down at some
      moment in between, even if the reason had cleared by ``end``.

    False when neither snapshot is available or neither shows it: the flag never guesses from a clock value
    alone (a falling SM clock is also what an idle GPU does).
    """
    if not (start.get("available") or end.get("available")):
        return False
    for snap in (start, end):
        if set(snap.get("throttle_reasons") or ()) & POWER_OR_HEAT_REASONS:
            return True
    for counter in ("power_violation_ns", "thermal_violation_ns"):
        before, after = start.get(counter), end.get(counter)
        if isinstance(before, int) and isinstance(after, int) and after > before:
            return True
    return False


def _visible_entry(position: int, env: Mapping[str, str]) -> str | None:
    """The ``position``-th entry of CUDA_VISIBLE_DEVICES, or None when it is not set (all GPUs, NVML order)."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return None
    entries = [entry.strip() for entry in visible.split(",")]
    # CUDA stops at the first invalid entry: what follows it is not visible.
    valid: list[str] = []
    for entry in entries:
        if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
            break
        valid.append(entry)
    return valid[position] if position < len(valid) else ""


def _framework_position(device: str) -> int | None:
    """The CUDA ordinal in a devbench device name: ``GPU:N``, ``tf:GPU:N``, ``torch:cuda:N``, ``jax:gpu:N``."""
    try:
        parsed = parse(device)
    except UsageError:
        return None
    return parsed.ordinal if parsed.kind == "GPU" else None


def nvml_index(device: str, env: Mapping[str, str] | None = None, nvml: Any | None = None) -> int | None:
    """The NVML index of devbench device ``device``; None for a device that is not an NVIDIA GPU or that
    CUDA_VISIBLE_DEVICES hides.

    The framework numbers the GPUs it sees (``torch:cuda:N``, ``jax:gpu:N``, ``GPU:N`` -> N). With
    CUDA_VISIBLE_DEVICES set, ordinal N is its N-th entry: a number is an NVML index, a ``GPU-...`` UUID (or
    its prefix) is looked up in NVML (``nvml`` / the real module). The approximation: CUDA's own order is
    "fastest first" unless CUDA_DEVICE_ORDER=PCI_BUS_ID, while NVML's is PCI bus order, so on a machine with
    GPUs of different models and no CUDA_DEVICE_ORDER the numbers may name different GPUs. On a machine with
    one GPU, or GPUs of one model, they agree. MIG instances (``MIG-...``) get None: NVML's per-GPU clocks are
    not the instance's.
    """
    position = _framework_position(device)
    if position is None:
        return None
    entry = _visible_entry(position, os.environ if env is None else env)
    if entry is None:
        return position
    if entry.isdigit():
        return int(entry)
    if entry.startswith("GPU-"):
        fingerprint = gpu_fingerprint(nvml)
        for gpu in fingerprint.get("gpus", []):
            if str(gpu.get("uuid") or "").startswith(entry):
                return int(gpu["index"])
    return None


def visit_telemetry(start: Mapping[str, Any], end: Mapping[str, Any]) -> GpuTelemetry:
    """The GPU state of one visit (:class:`devbench.schema.GpuTelemetry`, whose fields are the
    :data:`TELEMETRY_COLUMNS`), from the snapshots taken before and after it: NaN for what a snapshot lacks (or
    an unavailable one), ``throttle_reasons`` the comma-joined power-or-heat reasons seen in either snapshot
    (what matters for the timing; idle or sync boost are left out)."""

    def number(snap: Mapping[str, Any], key: str) -> float:
        value = snap.get(key) if snap.get("available") else None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")

    seen = [r for snap in (start, end) for r in (snap.get("throttle_reasons") or ()) if r in POWER_OR_HEAT_REASONS]
    return GpuTelemetry(
        sm_clock_start_mhz=number(start, "sm_clock_mhz"),
        sm_clock_end_mhz=number(end, "sm_clock_mhz"),
        mem_clock_start_mhz=number(start, "mem_clock_mhz"),
        mem_clock_end_mhz=number(end, "mem_clock_mhz"),
        temperature_start_c=number(start, "temperature_c"),
        temperature_end_c=number(end, "temperature_c"),
        power_start_w=number(start, "power_w"),
        power_end_w=number(end, "power_w"),
        throttle_reasons=",".join(dict.fromkeys(seen)),
        throttled=throttled(start, end),
    )
