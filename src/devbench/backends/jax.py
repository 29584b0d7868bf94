"""The JAX backend: a cell's op on a JAX device (``jax:cpu:0``, ``jax:gpu:N``), its sync, the timer, the checks.

Modes: ``eager`` (op by op: every ``jax.numpy`` call is dispatched on its own, ``jax.grad`` traces on every
call), ``jit`` (``jax.jit`` of the whole op: the cold call compiles it) and ``graph_loop`` (one jitted
``jax.lax.fori_loop`` runs the op ``number`` times, carrying its output; see :func:`graph_loop`). TensorFlow's
``function``/``xla`` and torch's ``compile`` are ``unsupported`` here (see :data:`MODES`; the one
``run_cell`` in :mod:`devbench.backends.base` checks it, this module holds JAX's hooks).

dtypes: all five. ``float64`` runs in float64 because :func:`devbench.devices.jax` enables ``jax_enable_x64``
(JAX's default would silently compute it in float32); int32 gradients are ``unsupported`` as everywhere.

JAX dispatches asynchronously on every platform, the CPU included: a call returns once the work is enqueued,
so sync ``none`` measures enqueueing only (``drain`` waits for the queue once at the end of the cell).

Inputs are the op's seeded host data (:meth:`devbench.ops.OpDef.host_inputs`), put on the device in float32,
float64 or int32 and cast there, so the float64 reference sees exactly the rounded values the device holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from devbench.backends.base import (
    FIRST_OPS,
    Built,
    DeviceInit,
    Dispatch,
    FrameworkBackend,
    UnsupportedCombination,
    classify_common,
    error_reason,
    python_loop,
)
from devbench.cache import Flush, flush_bytes, gpu_l2
from devbench.devices import jax, jax_device, jax_device_name
from devbench.frameworks import is_host
from devbench.frameworks.base import FULL_SYNC, NO_SYNC, SCALAR_SYNC, SYNC_DEVICES, TRANSFER_SYNC
from devbench.frameworks.jax import MODES
from devbench.ops import OpDef, leaves_of
from devbench.spec import Cell
from devbench.timer import Clock

# ---------------------------------------------------------------------------------------------------------
# Building an op on the device


def _host_dtype(dtype: str) -> Any:
    return np.int32 if dtype == "int32" else (np.float64 if dtype == "float64" else np.float32)


def to_device(array: np.ndarray, dtype: str, device: Any) -> Any:
    """An array of ``dtype`` committed to ``device``, from host data (the cast to the dtype runs on the device)."""
    module = jax()
    placed = module.device_put(array.astype(_host_dtype(dtype)), device)
    return placed.astype(getattr(module.numpy, dtype))


def host_f64(array: Any) -> np.ndarray:
    """A device array's values on the host, in float64."""
    out: np.ndarray = np.asarray(array).astype(np.float64)
    return out


@dataclass
class BuiltOp:
    """``fn(*operands)`` computes on the device (``operands`` = the op's args then its params)."""

    fn: Callable[..., Any]
    operands: tuple[Any, ...]
    reference: Callable[[], list[np.ndarray]]


def build_jax(op: OpDef, n: int, dtype: str, seed: int, device: Any) -> BuiltOp:
    inputs = op.host_inputs(n, dtype, seed)
    operands = tuple(to_device(a, dtype, device) for a in (*inputs.args, *inputs.params))

    def reference() -> list[np.ndarray]:
        return [np.asarray(o, dtype=np.float64) for o in leaves_of(op.numpy(*[host_f64(a) for a in operands]))]

    return BuiltOp(fn=op.expression("jax")(jax()), operands=operands, reference=reference)


def leaves(output: Any) -> list[Any]:
    """The arrays of an op's output, in order (dense_step: loss, kernel gradient, bias gradient)."""
    found: list[Any] = jax().tree_util.tree_leaves(output)
    return found


# ---------------------------------------------------------------------------------------------------------
# Sync


def sync_scalar(output: Any) -> None:
    """Read one element of every output leaf back to the host (``float(x.reshape(-1)[0])``).

    Every leaf, not only the last: JAX gives no order between separately dispatched computations on the CPU
    (an eager ``dense_step`` is several), so one leaf done would not mean all are.
    """
    for leaf in leaves(output):
        float(leaf.reshape(-1)[0])


def sync_full(output: Any) -> None:
    """Copy every output leaf to the host (``np.asarray``): what code that uses the whole result pays."""
    for leaf in leaves(output):
        np.asarray(leaf)


def sync_devices(output: Any) -> None:
    """``jax.block_until_ready``: waits for the output's computation, copies nothing."""
    jax().block_until_ready(output)


def sync_none(output: Any) -> None:
    """No wait: times how fast work is enqueued (JAX dispatches asynchronously, on the CPU too)."""
    del output


def sync_transfer(output: Any) -> None:
    """Nothing left to wait for: with sync ``transfer`` every call copies its result to the host itself."""
    del output


SYNCS: dict[str, Callable[[Any], None]] = {
    SCALAR_SYNC: sync_scalar,
    FULL_SYNC: sync_full,
    SYNC_DEVICES: sync_devices,
    NO_SYNC: sync_none,
    TRANSFER_SYNC: sync_transfer,
}


# ---------------------------------------------------------------------------------------------------------
# Modes


def graph_loop(fn: Callable[..., Any]) -> Any:
    """A jitted ``loop(number, *operands)`` that runs ``fn(*operands)`` ``number`` times in one compiled call.

    The first call happens before the ``fori_loop`` so that the loop carries the op's own output and returns
    the last one. ``number`` is a traced argument, so one compilation serves every block length. The loop
    carries the operands too, and each iteration passes them with the previous output through
    ``lax.optimization_barrier``: otherwise XLA sees a loop-invariant computation and hoists it out of the
    loop, running the op once per block (it does: a barrier on the operands alone is simplified away).
    """
    module = jax()

    def loop(number: Any, *operands: Any) -> Any:
        def body(_i: Any, carry: Any) -> Any:
            fresh, _previous = module.lax.optimization_barrier(carry)
            return fresh, fn(*fresh)

        _, last = module.lax.fori_loop(1, number, body, (operands, fn(*operands)))
        return last

    return module.jit(loop)


def _cache_size(compiled: Any) -> Callable[[], int]:
    """How many programs the jitted function being timed (None: none, eager) has compiled so far."""
    def count() -> int:
        size = getattr(compiled, "_cache_size", None)
        return int(size()) if callable(size) else 0

    return count


def make_dispatch(fn: Callable[..., Any], operands: tuple[Any, ...], mode: str, sync: str, device: Any) -> Dispatch:
    """The callables the timer drives for ``fn(*operands)`` in ``mode``.

    With sync ``transfer`` each call puts the operands, kept as host numpy arrays in the cell's dtype, on the
    device (``jax.device_put``), runs the op and copies every output leaf back (``np.asarray``).
    """
    module = jax()
    if mode == "graph_loop":
        if sync == TRANSFER_SYNC:
            raise UnsupportedCombination(
                "sync 'transfer' copies the inputs in on every call; graph_loop runs all calls inside one program"
            )
        loop = graph_loop(fn)
        return Dispatch(call=lambda: loop(1, *operands), block=lambda number: loop(number, *operands),
                        traces=_cache_size(loop))
    wrapped = module.jit(fn) if mode == "jit" else fn
    compiled = wrapped if mode == "jit" else None
    if sync == TRANSFER_SYNC:
        hosts = tuple(np.asarray(a) for a in operands)

        def call_with_transfer() -> Any:
            output = wrapped(*[module.device_put(host, device) for host in hosts])
            for leaf in leaves(output):
                np.asarray(leaf)
            return output

        return Dispatch(call=call_with_transfer, block=python_loop(call_with_transfer), traces=_cache_size(compiled))
    return Dispatch(call=lambda: wrapped(*operands), block=python_loop(wrapped, *operands),
                    traces=_cache_size(compiled))


# ---------------------------------------------------------------------------------------------------------
# Placement


def placed_devices(output: Any) -> list[str]:
    """Canonical names of the devices every output leaf lives on (``array.devices()``)."""
    return [jax_device_name(d) for leaf in leaves(output) for d in leaf.devices()]


# ---------------------------------------------------------------------------------------------------------
# Errors -> status

_UNSUPPORTED_HINTS = ("unimplemented", "not implemented", "not supported", "unsupported")


def classify(exc: BaseException) -> tuple[str, str]:
    """(status, reason): the shared rules, then XLA's ``RESOURCE_EXHAUSTED`` (``oom``) and unsupported kernels."""
    common = classify_common(exc)
    if common is not None:
        return common
    message = str(exc)
    if "RESOURCE_EXHAUSTED" in message or "out of memory" in message.lower():
        return "oom", error_reason(exc)
    if isinstance(exc, (NotImplementedError, TypeError)) or any(h in message.lower() for h in _UNSUPPORTED_HINTS):
        return "unsupported", error_reason(exc)
    return "error", error_reason(exc)


# ---------------------------------------------------------------------------------------------------------
# Device initialisation

FIRST_OP = "a 1-element float32 add on the device and its copy back to the host (np.asarray)"


def initialise_device(device: str) -> DeviceInit:
    """Time the first op of this process on ``device`` (once; see :class:`devbench.backends.base.FirstOps`): the
    backend's client and the device's first compilation and transfer, which no ``cold_s`` should carry."""
    def first_op() -> None:
        one = jax().device_put(np.ones(1, dtype=np.float32), jax_device(device))
        np.asarray(one + one)

    return FIRST_OPS.time("jax", device, first_op, FIRST_OP)


# ---------------------------------------------------------------------------------------------------------
# The backend: JAX's hooks for the one run_cell (devbench.backends.base.FrameworkBackend)


class JaxBackend(FrameworkBackend):
    """Runs cells on JAX devices. Remembers which (op, dtype, device, mode) passed the numpy check."""

    FRAMEWORK = "jax"
    SYNCS = SYNCS
    RETRACED = "recompiled {n} time(s) while timing: samples include compiling"

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self.jax = jax()
        self._compiled = False
        self._flushes: dict[str, Flush] = {}

    @staticmethod
    def initialise(device: str) -> DeviceInit:
        return initialise_device(device)

    def build(self, op: OpDef, n: int, dtype: str, seed: int, device: str) -> Built:
        built = build_jax(op, n, dtype, seed, jax_device(device))
        return Built(built.fn, built.operands, built.reference)

    def dispatch(self, built: Built, mode: str, sync: str, device: str) -> Dispatch:
        return make_dispatch(built.fn, built.args, mode, sync, jax_device(device))

    def placed(self, output: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in placed_devices(output)]

    def host_leaves(self, output: Any) -> list[np.ndarray]:
        return [host_f64(leaf) for leaf in leaves(output)]

    def copier(self, device: str, elements: int) -> Callable[[], Any]:
        """A negation, which reads and writes exactly as much as a copy (jax.numpy has no device-side copy that
        XLA would not be free to elide)."""
        x = self.jax.device_put(np.ones(elements, dtype=np.float32), jax_device(device))
        negative = self.jax.numpy.negative
        return lambda: negative(x)

    def flusher(self, device: str) -> Flush:
        """On an accelerator, a negation of a device buffer of :data:`devbench.cache.DEFAULT_GPU_FLUSH_BYTES`
        (JAX does not say a GPU's L2 size, nor does NVML), waited for; the host's flush on ``jax:cpu``. One
        buffer per device, kept for the backend's life (putting it on the device costs more than a flush)."""
        if is_host(device):
            return super().flusher(device)
        if device not in self._flushes:
            cache = gpu_l2(None, "JAX and NVML do not report a GPU's L2 size")
            buffer = self.jax.device_put(np.ones(flush_bytes(cache) // 4, dtype=np.float32), jax_device(device))
            negative = self.jax.numpy.negative

            def write() -> None:
                negative(buffer).block_until_ready()

            self._flushes[device] = Flush(write, int(buffer.nbytes), cache)
        return self._flushes[device]

    def begin(self, cell: Cell) -> None:
        self._compiled = cell.mode != "eager"

    @staticmethod
    def classify(exc: BaseException) -> tuple[str, str]:
        return classify(exc)

    def release(self) -> None:
        """Drop compiled programs after a jit or graph_loop cell (each size compiles its own, and a sweep would
        otherwise keep them all); an eager cell's arrays are freed by reference counting."""
        if self._compiled:
            self.jax.clear_caches()
            self._compiled = False


__all__ = ["MODES", "SYNCS", "JaxBackend", "build_jax", "classify", "graph_loop", "initialise_device",
           "make_dispatch", "placed_devices"]
