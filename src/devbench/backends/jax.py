"""The JAX backend: a cell's op on a JAX device (``jax:cpu:0``, ``jax:gpu:N``), its sync, the timer, the checks.

Modes: ``eager`` (op by op: every ``jax.numpy`` call is dispatched on its own, ``jax.grad`` traces on every
call), ``jit`` (``jax.jit`` of the whole op: the cold call compiles it) and ``graph_loop`` (one jitted
``jax.lax.fori_loop`` runs the op ``number`` times, carrying its output; see :func:`graph_loop`). TensorFlow's
``function``/``xla`` and torch's ``compile`` are ``unsupported`` here (see :data:`MODES`).

dtypes: all five. ``float64`` runs in float64 because :func:`devbench.devices.jax` enables ``jax_enable_x64``
(JAX's default would silently compute it in float32); int32 gradients are ``unsupported`` as everywhere.

JAX dispatches asynchronously on every platform, the CPU included: a call returns once the work is enqueued,
so sync ``none`` measures enqueueing only (``drain`` waits for the queue once at the end of the cell).

Inputs are the op's seeded host data (:meth:`devbench.ops.OpDef.host_inputs`), put on the device in float32,
float64 or int32 and cast there, so the float64 reference sees exactly the rounded values the device holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from devbench.backends.base import (
    CellFailure,
    CellOutcome,
    CheckedOnce,
    UnsupportedCombination,
    check_against_reference,
    classify_common,
    error_reason,
    python_loop,
)
from devbench.devices import jax, jax_device, jax_device_name
from devbench.frameworks.base import FULL_SYNC, NO_SYNC, SCALAR_SYNC, SYNC_DEVICES, TRANSFER_SYNC
from devbench.frameworks.jax import MODES
from devbench.ops import CHECK_SIZE, ITEMSIZE, OPS, OpDef, leaves_of
from devbench.spec import Cell, TimingPolicy
from devbench.timer import Clock, measure

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

    return BuiltOp(fn=op.jax(jax()), operands=operands, reference=reference)


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


@dataclass
class Dispatch:
    """How a cell's op is called: ``call()`` once, ``block(number)`` back to back (the timer's block)."""

    call: Callable[[], Any]
    block: Callable[[int], Any]
    compiled: Any = None
    """The jitted function being timed, if any: its cache size counts compilations."""

    def traces(self) -> int:
        size = getattr(self.compiled, "_cache_size", None)
        return int(size()) if callable(size) else 0


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise UnsupportedCombination(f"mode {mode!r} does not exist on JAX (it has {', '.join(MODES)})")


def make_dispatch(fn: Callable[..., Any], operands: tuple[Any, ...], mode: str, sync: str, device: Any) -> Dispatch:
    """The callables the timer drives for ``fn(*operands)`` in ``mode``.

    With sync ``transfer`` each call puts the operands, kept as host numpy arrays in the cell's dtype, on the
    device (``jax.device_put``), runs the op and copies every output leaf back (``np.asarray``).
    """
    check_mode(mode)
    module = jax()
    if mode == "graph_loop":
        if sync == TRANSFER_SYNC:
            raise UnsupportedCombination(
                "sync 'transfer' copies the inputs in on every call; graph_loop runs all calls inside one program"
            )
        loop = graph_loop(fn)
        return Dispatch(call=lambda: loop(1, *operands), block=lambda number: loop(number, *operands),
                        compiled=loop)
    wrapped = module.jit(fn) if mode == "jit" else fn
    compiled = wrapped if mode == "jit" else None
    if sync == TRANSFER_SYNC:
        hosts = tuple(np.asarray(a) for a in operands)

        def call_with_transfer() -> Any:
            output = wrapped(*[module.device_put(host, device) for host in hosts])
            for leaf in leaves(output):
                np.asarray(leaf)
            return output

        return Dispatch(call=call_with_transfer, block=python_loop(call_with_transfer), compiled=compiled)
    return Dispatch(call=lambda: wrapped(*operands), block=python_loop(wrapped, *operands), compiled=compiled)


# ---------------------------------------------------------------------------------------------------------
# Placement


def placement_failure(requested: str, placed: Sequence[str]) -> CellFailure | None:
    """A ``fallback`` failure unless every output leaf is on ``requested`` (canonical names of its devices)."""
    devices = sorted(set(placed))
    if devices != [requested]:
        return CellFailure("fallback", f"output placed on {', '.join(devices)}, not on the requested {requested}",
                           ", ".join(devices))
    return None


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
# Running a cell


class JaxBackend:
    """Runs cells on JAX devices. Remembers which (op, dtype, device, mode) passed the numpy check."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.jax = jax()
        self.clock = clock
        self._checked = CheckedOnce()
        self._compiled = False

    def check_correctness(self, cell: Cell, seed: int) -> None:
        """Compare the op at a small size with its numpy float64 reference, once per (op, dtype, device, mode)."""
        def check() -> CellFailure | None:
            built = build_jax(OPS[cell.op], CHECK_SIZE, cell.dtype, seed, jax_device(cell.device))
            output = make_dispatch(built.fn, built.operands, cell.mode, "scalar", None).call()
            got = [host_f64(leaf) for leaf in leaves(output)]
            return check_against_reference(got, built.reference(), cell.dtype)

        self._checked.require((cell.op, cell.dtype, cell.device, cell.mode), check)

    def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int) -> CellOutcome:
        check_mode(cell.mode)
        op = OPS[cell.op]
        op.require_dtype(cell.dtype)
        self._compiled = cell.mode != "eager"
        self.check_correctness(cell, seed)
        device = jax_device(cell.device)
        built = build_jax(op, cell.size, cell.dtype, seed, device)
        dispatch = make_dispatch(built.fn, built.operands, cell.mode, cell.sync, device)
        placed: list[str] = []
        traces_after_cold: list[int] = []

        def check(output: Any) -> None:
            traces_after_cold.append(dispatch.traces())
            names = placed_devices(output)
            placed.extend(sorted(set(names)))
            failure = placement_failure(cell.device, names)
            if failure is not None:
                raise failure

        kwargs: dict[str, Any] = {"check": check, "block": dispatch.block}
        if cell.sync == NO_SYNC:
            kwargs["drain"] = sync_full
        if self.clock is not None:
            kwargs["clock"] = self.clock
        measurement = measure(dispatch.call, SYNCS[cell.sync], policy, **kwargs)
        measurement.output = None  # do not keep device memory alive through the result
        traces = dispatch.traces()
        retraced = traces - traces_after_cold[0] if traces_after_cold else 0
        return CellOutcome(
            measurement=measurement,
            placed_device=placed[0] if placed else "",
            flops=op.flops(cell.size),
            bytes=op.bytes(cell.size, ITEMSIZE[cell.dtype]),
            traces=traces,
            note=f"recompiled {retraced} time(s) while timing: samples include compiling" if retraced else "",
        )

    @staticmethod
    def classify(exc: BaseException) -> tuple[str, str]:
        return classify(exc)

    def release(self) -> None:
        """Drop compiled programs after a jit or graph_loop cell (each size compiles its own, and a sweep would
        otherwise keep them all); an eager cell's arrays are freed by reference counting."""
        if self._compiled:
            self.jax.clear_caches()
            self._compiled = False


__all__ = ["MODES", "SYNCS", "JaxBackend", "build_jax", "classify", "graph_loop", "make_dispatch",
           "placement_failure"]
