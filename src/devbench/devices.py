"""Devices: canonical names (pure), and TensorFlow start-up, discovery and placement (lazy TF import).

Canonical names are ``KIND:INDEX`` (``CPU:0``, ``GPU:1``). Users may write ``cpu``, ``/GPU:1``, ``gpu:1``,
``/device:GPU:1`` or a full TF name such as ``/job:localhost/replica:0/task:0/device:GPU:1``.

Without a GPU, ``DEVBENCH_LOGICAL_CPUS=N`` splits the CPU into N logical devices (``CPU:0`` … ``CPU:N-1``) so
that multi-device sweeps can be exercised anywhere; tests use it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from devbench.errors import UsageError
from devbench.spec import NUMPY_DEVICE

_DEVICE = re.compile(r"(?:^|/)(?:device:)?([A-Za-z_]+)(?::(\d+))?$")

LOGICAL_CPUS_ENV = "DEVBENCH_LOGICAL_CPUS"


def canonical(name: str) -> str:
    """Canonical ``KIND:INDEX`` for any accepted spelling; raises UsageError for what is not a device."""
    text = name.strip()
    if text.lower() in ("numpy", NUMPY_DEVICE.lower()):
        return NUMPY_DEVICE  # the numpy baseline (--baseline numpy): plain numpy on the host
    match = _DEVICE.search(text)
    if not text or not match:
        raise UsageError(f"bad device name {name!r}; write it like CPU:0 or GPU:1")
    kind = match[1].upper()
    index = int(match[2]) if match[2] is not None else 0
    return f"{kind}:{index}"


DEFAULT_KEYWORDS = ("", "default")
"""A device list that means the default devices: CPU:0 plus every GPU."""
ALL_KEYWORD = "all"
"""A device list that means every device TensorFlow sees."""


def check_names(requested: str | None) -> None:
    """Check the spelling of a ``--devices`` list without TensorFlow; raises UsageError for a bad name.

    The one syntax check of a device list (sweep, calibrate, the pytest plugin's ``--devbench-devices``), run
    before TensorFlow is imported so a typo costs no TF start-up. Whether the devices exist is for
    :func:`resolve`, once TF lists them.
    """
    if requested is None or requested.strip().lower() in (*DEFAULT_KEYWORDS, ALL_KEYWORD):
        return
    for name in requested.split(","):
        canonical(name)


def resolve(requested: str | None, available: list[str]) -> tuple[str, ...]:
    """The devices to sweep: the default (CPU:0 plus every GPU) or the user's comma list, validated."""
    if requested is None or requested.strip().lower() in DEFAULT_KEYWORDS:
        default = ["CPU:0", *[d for d in available if d.startswith("GPU:")]]
        return tuple(d for d in default if d in available)
    if requested.strip().lower() == ALL_KEYWORD:
        return tuple(available)
    chosen: list[str] = []
    for raw in requested.split(","):
        if not raw.strip():
            raise UsageError(f"empty device in {requested!r}; available: {', '.join(available)}")
        name = canonical(raw)
        if name not in available and name != NUMPY_DEVICE:
            raise UsageError(f"device {raw.strip()!r} does not exist here; available: {', '.join(available)}")
        if name not in chosen:
            chosen.append(name)
    return tuple(chosen)


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    """Canonical name, e.g. ``GPU:0``."""
    kind: str
    tf_name: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "tf_name": self.tf_name, "details": self.details}


_tf: ModuleType | None = None

TF_LOGS_ENV = "DEVBENCH_TF_LOGS"


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence what TensorFlow's C++ side prints while it loads and initialises its devices.

    Those lines (oneDNN notice, CUDA probes) are written before TF reads TF_CPP_MIN_LOG_LEVEL, so the only way
    to keep a CLI's stderr readable is to point file descriptor 2 at /dev/null meanwhile. Python exceptions
    are unaffected (they are printed after the descriptor is restored). ``DEVBENCH_TF_LOGS=1`` shows them.
    """
    if os.environ.get(TF_LOGS_ENV, "") not in ("", "0"):
        yield
        return
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def tensorflow() -> ModuleType:
    """Import and configure TensorFlow once: quiet logs, no soft placement, logical CPUs, GPU memory growth.

    Must run before any other TF call in the process, since device configuration is fixed at TF start-up.
    """
    global _tf
    if _tf is not None:
        return _tf
    started, imported_before = time.perf_counter(), "tensorflow" in sys.modules
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _quiet_native_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()
    loaded = time.perf_counter()
    tf.get_logger().setLevel("ERROR")
    # A cell must run where it is asked or fail: a silent CPU fallback would be a CPU number under a GPU label.
    tf.config.set_soft_device_placement(False)
    for gpu in tf.config.list_physical_devices("GPU"):
        # Allocate as needed, so free-memory queries mean something and cells do not share a huge pool.
        # RuntimeError: already initialised (e.g. by a test); the settings are then fixed.
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)
    logical = os.environ.get(LOGICAL_CPUS_ENV, "").strip()
    if logical:
        if not logical.isdigit() or int(logical) < 1:
            raise UsageError(f"{LOGICAL_CPUS_ENV}={logical!r} must be a whole number >= 1")
        cpu = tf.config.list_physical_devices("CPU")[0]
        with contextlib.suppress(RuntimeError):
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(int(logical))]
            )
    with _quiet_native_stderr():
        tf.config.list_logical_devices()  # initialises the devices (and prints CUDA probes on CPU hosts)
    _record_runtime_init(started, loaded, time.perf_counter(), imported_before)
    _tf = tf
    return _tf


_runtime_init: dict[str, Any] | None = None


def _record_runtime_init(started: float, loaded: float, ready: float, imported_before: bool) -> None:
    """Keep what starting TensorFlow cost (perf_counter readings taken in :func:`tensorflow`)."""
    global _runtime_init
    _runtime_init = {
        "runtime_init_s": ready - started,
        "import_s": loaded - started,
        "context_s": ready - loaded,
        "what": "import tensorflow and list its physical devices (import_s), then configure it and create the "
                "eager context, which initialises every device (context_s)",
        "imported_before": imported_before,
    }


def tensorflow_runtime_init() -> dict[str, Any] | None:
    """What starting TensorFlow cost this process, in seconds, or None before :func:`tensorflow` has run.

    ``runtime_init_s`` = ``import_s`` (import and physical device listing: loads the CUDA libraries on a GPU
    host) + ``context_s`` (configuration and context creation: TensorFlow creates every logical device here,
    GPU contexts and allocators included, so no per-device share can be told apart). ``imported_before`` is
    True when something had imported TensorFlow before devbench did: ``import_s`` then misses that cost."""
    return dict(_runtime_init) if _runtime_init is not None else None


def discover() -> list[DeviceInfo]:
    """Every logical CPU and GPU device TensorFlow can use, with the details TF gives about each."""
    tf = tensorflow()
    physical = {d.name.split("physical_device:")[-1]: d for d in tf.config.list_physical_devices()}
    memory_limits = _memory_limits()
    devices: list[DeviceInfo] = []
    for logical in tf.config.list_logical_devices():
        if logical.device_type not in ("CPU", "GPU"):
            continue
        name = canonical(logical.name)
        details: dict[str, Any] = {}
        phys = physical.get(name)
        if phys is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                details.update(tf.config.experimental.get_device_details(phys))
        if name in memory_limits:
            details["memory_limit_bytes"] = memory_limits[name]
        if "compute_capability" in details:
            details["compute_capability"] = ".".join(str(v) for v in details["compute_capability"])
        devices.append(DeviceInfo(name=name, kind=logical.device_type, tf_name=logical.name, details=details))
    return devices


def _memory_limits() -> dict[str, int]:
    """Memory TF may use on each device (bytes). device_lib is TF's own listing; it has no public twin."""
    try:
        from tensorflow.python.client import device_lib

        # For CPUs TF reports a nominal 256 MiB, not the host's memory: only GPU limits mean something.
        return {canonical(d.name): int(d.memory_limit) for d in device_lib.list_local_devices()
                if d.device_type == "GPU"}
    except Exception:  # a private module: never let its absence break discovery
        return {}


def free_memory_bytes(device: str) -> int | None:
    """Free memory on a GPU as TF sees it (limit minus current use), or None when TF cannot tell."""
    if not device.startswith("GPU:"):
        return None
    tf = tensorflow()
    try:
        info = tf.config.experimental.get_memory_info(device)
    except (ValueError, RuntimeError):
        return None
    limit = info.get("limit") if isinstance(info, dict) else None
    return int(limit - info["current"]) if limit else None


def tensorflow_fingerprint() -> dict[str, Any]:
    tf = tensorflow()
    build = dict(tf.sysconfig.get_build_info())
    return {
        "version": tf.__version__,
        "git_version": getattr(tf.version, "GIT_VERSION", ""),
        "build_info": {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in build.items()},
        "gpus_visible": len(tf.config.list_physical_devices("GPU")),
    }
