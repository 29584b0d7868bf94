"""Machine fingerprint: what a result was measured on, so that two runs can be told apart and compared.

The host part (OS, Python, CPU, memory, load) needs only psutil; the TensorFlow part (version, build info,
devices) is filled in by the caller that already paid for importing TensorFlow.
"""

from __future__ import annotations

import os
import platform
import socket
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil


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
        },
        "memory": {"total_bytes": memory.total, "available_bytes": memory.available},
        "load_avg_at_start": load,
        "packages": {
            name: _version(name) for name in ("devbench", "tensorflow", "keras", "numpy", "pandas")
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
