"""Devices of every framework: start-up, discovery, placement and free memory.

Device names (canonical spellings, which framework runs a device, host or accelerator) are the registry's,
:mod:`devbench.frameworks`, one module per framework; this module re-exports its answers (``canonical``,
``framework_of``, ``frameworks_of``, ``is_host_device``, ``is_accelerator``) and adds what needs the framework
itself. Checking a name never imports a framework. Each framework is imported on first use (:func:`tensorflow`,
:func:`jax`, :func:`torch`); one that is not installed (or fails to import) is reported missing by
:func:`discover_frameworks` instead of raising.

Without a GPU, ``DEVBENCH_LOGICAL_CPUS=N`` splits TensorFlow's CPU into N logical devices (``CPU:0`` …
``CPU:N-1``) so that multi-device sweeps can be exercised anywhere; tests use it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from devbench.errors import UsageError, first_line
from devbench.frameworks import FRAMEWORKS as _REGISTRY
from devbench.frameworks import (
    NUMPY_DEVICE,
    Framework,
    canonical,
    framework_for,
    framework_of,
    frameworks_of,
    is_accelerator,
    is_host,
    parse,
    runtimes,
)

LOGICAL_CPUS_ENV = "DEVBENCH_LOGICAL_CPUS"

is_host_device = is_host
"""The registry's :func:`devbench.frameworks.is_host`, under the name this module's callers know."""

FRAMEWORKS: dict[str, Framework] = {key: _REGISTRY[key] for key in runtimes()}
"""The frameworks with a runtime to import and discover (not the numpy baseline), in the order of preference for
the default devices: TensorFlow (devbench's default backend), then PyTorch (what most GPU users have), then JAX.
Names are parsed by the registry, :mod:`devbench.frameworks`; ``canonical``, ``framework_of``, ``frameworks_of``,
``is_host_device`` and ``is_accelerator`` here are its answers, re-exported for callers of this module."""


DEFAULT_KEYWORDS = ("", "default")
"""A device list that means the default devices (see :func:`default_devices`)."""
ALL_KEYWORD = "all"
"""A device list that means every device of every installed framework."""


def check_names(requested: str | None) -> None:
    """Check the spelling of a ``--devices`` list without any framework; raises UsageError for a bad name.

    The one syntax check of a device list (sweep, calibrate, the pytest plugin's ``--devbench-devices``), run
    before a framework is imported so a typo costs no start-up. Whether the devices exist is for
    :func:`resolve`, once the frameworks list them.
    """
    if requested is None or requested.strip().lower() in (*DEFAULT_KEYWORDS, ALL_KEYWORD):
        return
    for name in requested.split(","):
        canonical(name)


def default_devices(available: list[str]) -> tuple[str, ...]:
    """The devices of a sweep that names none: the host CPU of the preferred installed framework (``CPU:0``
    when TensorFlow is there), plus every accelerator of the first framework (TensorFlow, PyTorch, JAX) that
    has one: each GPU is measured once, not once per framework. No accelerator: the host CPU alone."""
    host = next((FRAMEWORKS[key].host for key in FRAMEWORKS if FRAMEWORKS[key].host in available), None)
    accelerators: list[str] = []
    for key in FRAMEWORKS:
        accelerators = [d for d in available if framework_of(d) == key and is_accelerator(d)]
        if accelerators:
            break
    return tuple([host] if host else []) + tuple(accelerators)


def resolve(requested: str | None, available: list[str]) -> tuple[str, ...]:
    """The devices to sweep: the default (:func:`default_devices`) or the user's comma list, validated.

    A JAX or PyTorch name missing from ``available`` is looked up in its own framework (imported then), so a
    list of TensorFlow's devices is enough to validate any name.
    """
    if requested is None or requested.strip().lower() in DEFAULT_KEYWORDS:
        return default_devices(available)
    if requested.strip().lower() == ALL_KEYWORD:
        return tuple(available)
    chosen: list[str] = []
    for raw in requested.split(","):
        if not raw.strip():
            raise UsageError(f"empty device in {requested!r}; available: {', '.join(available)}")
        name = canonical(raw)
        if name not in available and framework_of(name) in FRAMEWORKS and framework_of(name) != "tf":
            # ``available`` may hold TensorFlow's devices only (a run's fingerprint): ask the framework itself.
            available = [*available, *framework_device_names(framework_of(name))]
        if name not in available and name != NUMPY_DEVICE:
            raise UsageError(f"device {raw.strip()!r} does not exist here{_missing_hint(name)}; "
                             f"available: {', '.join(available) or 'none'}")
        if name not in chosen:
            chosen.append(name)
    return tuple(chosen)


def _missing_hint(device: str) -> str:
    """`` (TensorFlow is not installed: ...)`` when the device's framework cannot be imported, else ``""``."""
    framework = framework_for(device)
    if framework.key not in FRAMEWORKS:  # the numpy baseline is never missing
        return ""
    reason = framework_missing(framework.key)
    return f" ({framework.label} is not available: {reason}; {framework.install})" if reason else ""


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    """Canonical name, e.g. ``GPU:0``, ``jax:gpu:0``, ``torch:cuda:0``."""
    kind: str
    """``CPU`` or ``GPU`` (``TPU``, ``MPS`` for those), whatever the framework."""
    tf_name: str
    """The framework's own name of the device (TF's full name, JAX's ``repr``, torch's ``cuda:0``)."""
    details: dict[str, Any] = field(default_factory=dict)
    framework: str = "tf"
    """Key of :data:`FRAMEWORKS`."""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "tf_name": self.tf_name, "details": self.details,
                "framework": self.framework}


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


def _discover_tf() -> list[DeviceInfo]:
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


# ---------------------------------------------------------------------------------------------------------
# JAX and PyTorch start-up

_jax: ModuleType | None = None
_torch: ModuleType | None = None

JAX_PREALLOCATE_ENV = "XLA_PYTHON_CLIENT_PREALLOCATE"


def jax() -> ModuleType:
    """Import and configure JAX once: no GPU memory preallocation, 64-bit types enabled.

    JAX reserves 75 % of each GPU's memory at start-up by default, which would starve every other framework
    in the process and make its free memory meaningless to the memory guard; ``XLA_PYTHON_CLIENT_PREALLOCATE``
    must be set before JAX starts (a user's own setting wins). ``jax_enable_x64`` lets ``float64`` cells run
    as asked instead of being silently computed in float32 (JAX's default); every array devbench makes has an
    explicit dtype, so the flag changes nothing else.
    """
    global _jax
    if _jax is not None:
        return _jax
    os.environ.setdefault(JAX_PREALLOCATE_ENV, "false")
    import jax as module

    module.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
    _jax = module
    return _jax


OMP_WAIT_POLICY_ENV = "OMP_WAIT_POLICY"


def torch() -> ModuleType:
    """Import PyTorch once; next to TensorFlow, with passive OpenMP waiting.

    torch's OpenMP threads spin between parallel regions by default, and so do TensorFlow's own threads: in one
    process on a small CPU they take each other's cores, and a 64² torch matmul measured 20 ms per call instead
    of 35 µs (2 cores, TF's CPU:0 cells interleaved). ``OMP_WAIT_POLICY=PASSIVE`` (set before torch loads its
    OpenMP runtime; a user's own setting wins) lets torch's idle threads sleep. Without TensorFlow in the
    process torch keeps its default.
    """
    global _torch
    if _torch is None:
        if _tf is not None:
            os.environ.setdefault(OMP_WAIT_POLICY_ENV, "PASSIVE")
        import torch as module

        _torch = module
    return _torch


_LOADERS = {"tf": tensorflow, "jax": jax, "torch": torch}
_missing: dict[str, str] = {}


def framework_missing(key: str) -> str:
    """Why framework ``key`` cannot be used here (``"not installed"``, or its import error), ``""`` if it can.

    Imports the framework to find out (a broken install fails only then); the answer is kept for the process.
    """
    if key in _missing:
        return _missing[key]
    try:
        _LOADERS[key]()
        _missing[key] = ""
    except ImportError as exc:
        wanted = FRAMEWORKS[key].module
        missing_module = getattr(exc, "name", None)
        _missing[key] = "not installed" if missing_module == wanted else f"import failed: {first_line(str(exc))}"
    except Exception as exc:  # a framework whose import crashes is unusable, not a reason to crash devbench
        _missing[key] = f"import failed: {type(exc).__name__}: {first_line(str(exc))}"
    return _missing[key]


def _discover_jax() -> list[DeviceInfo]:
    """Every JAX device, by platform (``jax.devices()`` alone lists only the default platform's)."""
    module = jax()
    devices: list[DeviceInfo] = []
    for platform in ("cpu", "gpu", "tpu"):
        try:
            found = module.devices(platform)
        except RuntimeError:  # no such backend in this jaxlib, or no device of it
            continue
        for index, device in enumerate(found):
            details: dict[str, Any] = {"device_name": str(getattr(device, "device_kind", ""))}
            if platform != "cpu":
                with contextlib.suppress(Exception):
                    stats = device.memory_stats() or {}
                    if "bytes_limit" in stats:
                        details["memory_limit_bytes"] = int(stats["bytes_limit"])
                capability = getattr(device, "compute_capability", None)
                if capability:
                    details["compute_capability"] = str(capability)
            devices.append(DeviceInfo(name=f"jax:{platform}:{index}", kind=platform.upper(), tf_name=repr(device),
                                      details=details, framework="jax"))
    return devices


def jax_device(name: str) -> Any:
    """The ``jax.Device`` of canonical name ``jax:PLATFORM:INDEX``; UsageError if there is none."""
    device = parse(name)
    try:
        return jax().devices(device.native)[device.ordinal or 0]
    except (RuntimeError, IndexError):
        raise UsageError(f"device {name!r} does not exist here") from None


def jax_device_name(device: Any) -> str:
    """Canonical name of a ``jax.Device`` (its position among its platform's devices)."""
    platform = str(device.platform)
    return f"jax:{platform}:{list(jax().devices(platform)).index(device)}"


def torch_cuda_available() -> bool:
    """``torch.cuda.is_available()``, without its UserWarning where CUDA cannot initialise (a CPU-only machine
    with torch's CUDA wheel, or CUDA libraries TensorFlow loaded first): no CUDA is the answer, not a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return bool(torch().cuda.is_available())


def _discover_torch() -> list[DeviceInfo]:
    module = torch()
    devices = [DeviceInfo(name="torch:cpu", kind="CPU", tf_name="cpu", framework="torch")]
    if torch_cuda_available():
        for index in range(module.cuda.device_count()):
            props = module.cuda.get_device_properties(index)
            devices.append(DeviceInfo(
                name=f"torch:cuda:{index}", kind="GPU", tf_name=f"cuda:{index}", framework="torch",
                details={"device_name": props.name, "memory_limit_bytes": int(props.total_memory),
                         "compute_capability": f"{props.major}.{props.minor}"}))
    mps = getattr(module.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append(DeviceInfo(name="torch:mps", kind="MPS", tf_name="mps", framework="torch"))
    return devices


def torch_device_name(device: Any) -> str:
    """Canonical name of a ``torch.device`` (``cuda`` without an index is the current one)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch().cuda.current_device()
        return f"torch:cuda:{index}"
    return f"torch:{device.type}"


_DISCOVERERS = {"tf": _discover_tf, "jax": _discover_jax, "torch": _discover_torch}


@dataclass(frozen=True)
class Discovery:
    """The devices of every installed framework, and why the others cannot be used."""

    devices: list[DeviceInfo]
    missing: dict[str, str]
    """Framework key -> reason (``not installed``, or its import error)."""
    versions: dict[str, str]
    """Framework key -> version, for those that loaded."""


def discover_frameworks(frameworks: tuple[str, ...] = tuple(FRAMEWORKS)) -> Discovery:
    """Import each installed framework of ``frameworks`` and list its devices; never raises for a missing one."""
    devices: list[DeviceInfo] = []
    missing: dict[str, str] = {}
    versions: dict[str, str] = {}
    for key in frameworks:
        reason = framework_missing(key)
        if reason:
            missing[key] = reason
            continue
        versions[key] = str(getattr(_LOADERS[key](), "__version__", ""))
        devices += _DISCOVERERS[key]()
    return Discovery(devices=devices, missing=missing, versions=versions)


def discover() -> list[DeviceInfo]:
    """TensorFlow's devices (the default framework), ``[]`` where TensorFlow cannot be imported.

    What a run's machine fingerprint lists. Every framework's devices: :func:`discover_frameworks`.
    """
    return discover_frameworks(("tf",)).devices


_device_names: dict[str, list[str]] = {}


def framework_device_names(key: str) -> list[str]:
    """Canonical names of framework ``key``'s devices (``[]`` where it is missing), listed once per process."""
    if key not in _device_names:
        _device_names[key] = [d.name for d in discover_frameworks((key,)).devices]
    return _device_names[key]


# ---------------------------------------------------------------------------------------------------------
# Free memory (the memory guard asks here)


def free_memory_bytes(device: str) -> int | None:
    """Free memory on an accelerator as its framework sees it (bytes), or None when it cannot tell.

    TF GPUs: TF's limit minus its current use; ``jax:gpu:N``: the allocator's ``bytes_limit`` minus
    ``bytes_in_use`` (``memory_stats()``); ``torch:cuda:N``: the driver's free memory (``mem_get_info``).
    Host devices: None (the guard uses the host's available memory).
    """
    parsed = parse(device)
    if parsed.is_host:
        return None
    if parsed.framework == "jax":
        return _jax_free(device)
    if parsed.framework == "torch":
        return _torch_free(device)
    if parsed.framework != "tf" or parsed.kind != "GPU":
        return None
    tf = tensorflow()
    try:
        info = tf.config.experimental.get_memory_info(device)
    except (ValueError, RuntimeError):
        return None
    limit = info.get("limit") if isinstance(info, dict) else None
    return int(limit - info["current"]) if limit else None


def _jax_free(device: str) -> int | None:
    try:
        stats = jax_device(device).memory_stats() or {}
    except Exception:  # a backend without memory statistics
        return None
    if "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def _torch_free(device: str) -> int | None:
    parsed = parse(device)
    if parsed.kind != "GPU" or parsed.ordinal is None:
        return None
    free, _total = torch().cuda.mem_get_info(parsed.ordinal)
    return int(free)


def tensorflow_fingerprint() -> dict[str, Any]:
    """TensorFlow's version and build, or ``{"missing": reason}`` where it cannot be imported."""
    reason = framework_missing("tf")
    if reason:
        return {"missing": reason}
    tf = tensorflow()
    build = dict(tf.sysconfig.get_build_info())
    return {
        "version": tf.__version__,
        "git_version": getattr(tf.version, "GIT_VERSION", ""),
        "build_info": {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in build.items()},
        "gpus_visible": len(tf.config.list_physical_devices("GPU")),
    }


__all__ = [
    "ALL_KEYWORD",
    "DEFAULT_KEYWORDS",
    "FRAMEWORKS",
    "JAX_PREALLOCATE_ENV",
    "LOGICAL_CPUS_ENV",
    "NUMPY_DEVICE",
    "OMP_WAIT_POLICY_ENV",
    "TF_LOGS_ENV",
    "DeviceInfo",
    "Discovery",
    "canonical",
    "check_names",
    "default_devices",
    "discover",
    "discover_frameworks",
    "framework_device_names",
    "framework_missing",
    "framework_of",
    "frameworks_of",
    "free_memory_bytes",
    "is_accelerator",
    "is_host_device",
    "jax",
    "jax_device",
    "jax_device_name",
    "resolve",
    "tensorflow",
    "tensorflow_fingerprint",
    "tensorflow_runtime_init",
    "torch",
    "torch_cuda_available",
    "torch_device_name",
]
