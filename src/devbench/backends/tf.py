"""The TensorFlow backend: TensorFlow's hooks for the one ``run_cell`` (:class:`~devbench.backends.base.
FrameworkBackend`): build a cell's op on its device, dispatch it per mode and sync, read where its output is.

This is the one place (with devices.py) that talks to TensorFlow; each op's TF expression lives with the op
(``OpDef.tf`` in :mod:`devbench.ops`) and gets the module from here. The runner sees only
:class:`~devbench.backends.base.CellOutcome` or an exception, which :func:`classify` turns into a row's status.
TensorFlow is imported on first use (:func:`devbench.devices.tensorflow`), not when this module is.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    placement_failure,
    python_loop,
)
from devbench.cache import Flush, flush_bytes, gpu_l2
from devbench.devices import canonical, tensorflow, tensorflow_runtime_init
from devbench.frameworks import is_host
from devbench.frameworks.base import FULL_SYNC, NO_SYNC, SCALAR_SYNC, SYNC_DEVICES, TRANSFER_SYNC
from devbench.ops import OpDef, leaves_of
from devbench.spec import Cell
from devbench.timer import Clock

# ---------------------------------------------------------------------------------------------------------
# Building an op on the device


@dataclass
class BuiltOp:
    """An op ready to time: ``fn(*args)`` computes on the device; ``reference()`` gives float64 expectations.

    ``reference`` returns one array per leaf of ``fn``'s output (in ``tf.nest.flatten`` order), computed by the
    op's numpy implementation in float64 from the very values the device holds (after rounding to the dtype),
    so only the computation's own error is measured. ``variables`` keeps Keras state alive while the op is used.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    reference: Callable[[], list[np.ndarray]]
    variables: Any = None


def _on_device(array: np.ndarray, dtype: str) -> Any:
    """A tensor of ``dtype`` on the current device scope, made from host data (cast happens on the device)."""
    tf = tensorflow()
    host_dtype = np.int32 if dtype == "int32" else (np.float64 if dtype == "float64" else np.float32)
    return tf.cast(tf.identity(tf.constant(array.astype(host_dtype))), getattr(tf, dtype))


def _host(tensor: Any) -> np.ndarray:
    host: np.ndarray = np.asarray(tensor.numpy(), dtype=np.float64)
    return host


def build_tf(op: OpDef, n: int, dtype: str, seed: int) -> BuiltOp:
    """``op`` at size ``n`` and ``dtype`` on its seeded host inputs. Call inside ``tf.device(...)``."""
    inputs = op.host_inputs(n, dtype, seed)
    args = tuple(_on_device(a, dtype) for a in inputs.args)
    params = tuple(_on_device(p, dtype) for p in inputs.params)
    expression = op.expression("tf")(tensorflow(), params)

    def reference() -> list[np.ndarray]:
        return [np.asarray(o, dtype=np.float64) for o in leaves_of(op.numpy(*[_host(t) for t in (*args, *params)]))]

    return BuiltOp(fn=expression.fn, args=args, reference=reference, variables=expression.state)


# ---------------------------------------------------------------------------------------------------------
# Sync: how the host waits for the device


def _leaves(output: Any) -> list[Any]:
    tf = tensorflow()
    return [leaf for leaf in tf.nest.flatten(output) if hasattr(leaf, "numpy")]


def sync_scalar(output: Any) -> None:
    """Copy one element of the last output to the host. Device order makes this wait for all queued work."""
    last = _leaves(output)[-1]
    rank = len(last.shape)
    (last[(0,) * rank] if rank else last).numpy()


def sync_full(output: Any) -> None:
    """Copy every output to the host: what naive code that calls ``.numpy()`` on the result pays."""
    for leaf in _leaves(output):
        leaf.numpy()


def sync_devices(output: Any) -> None:
    """``tf.test.experimental.sync_devices()``: waits for every device, copies nothing."""
    del output
    tensorflow().test.experimental.sync_devices()


def sync_none(output: Any) -> None:
    """No wait at all: the guide's pitfall. Times only how fast work is enqueued."""
    del output


def sync_transfer(output: Any) -> None:
    """Nothing left to wait for: with sync ``transfer`` every call copies its whole result to the host
    (``.numpy()``), which waits for it (see :func:`make_dispatch`)."""
    del output


SYNCS: dict[str, Callable[[Any], None]] = {
    SCALAR_SYNC: sync_scalar,
    FULL_SYNC: sync_full,
    SYNC_DEVICES: sync_devices,
    NO_SYNC: sync_none,
    TRANSFER_SYNC: sync_transfer,  # each call copies its inputs in and its result out (see make_dispatch)
}


# ---------------------------------------------------------------------------------------------------------
# Modes: how the op is dispatched


def wrap_mode(fn: Callable[..., Any], mode: str) -> Callable[..., Any]:
    """One call of ``fn`` in ``mode`` (``graph_loop`` here is the loop run once; see :func:`graph_loop`)."""
    tf = tensorflow()
    if mode == "eager":
        return fn
    if mode == "function":
        return tf.function(fn)  # type: ignore[no-any-return]
    if mode == "xla":
        return tf.function(fn, jit_compile=True)  # type: ignore[no-any-return]
    if mode == "graph_loop":
        loop = graph_loop(fn)
        one = tf.constant(1, dtype=tf.int32)
        return lambda *args: loop(one, *args)
    raise ValueError(f"unknown mode {mode!r}")


def graph_loop(fn: Callable[..., Any]) -> Any:
    """A tf.function ``loop(number, *args)`` that runs ``fn(*args)`` ``number`` times inside one graph.

    The first call happens before the ``tf.while_loop`` so that the loop carries the op's own output (its
    structure, shapes and dtypes) and returns the last one; the loop runs the other ``number - 1`` calls.
    Each iteration's output is a loop variable, so no iteration is dead code, and ``parallel_iterations=1``
    keeps the calls back to back as in eager mode (the iterations are independent: TF would otherwise overlap
    them). ``number`` is a tensor, so one trace serves every block length.
    """
    tf = tensorflow()

    def loop(number: Any, *args: Any) -> Any:
        first = fn(*args)

        def body(i: Any, _previous: Any) -> Any:
            return i + 1, fn(*args)

        _, last = tf.while_loop(lambda i, _previous: i < number, body, (tf.constant(1), first),
                                parallel_iterations=1)
        return last

    return tf.function(loop)


def make_dispatch(fn: Callable[..., Any], args: tuple[Any, ...], mode: str, sync: str, device: str = "") -> Dispatch:
    """The callables the timer drives, for ``fn(*args)`` in ``mode``. Call inside the cell's device scope.

    Eager, function and xla blocks loop over the (wrapped) op directly, not over ``call``: one Python frame
    less per call. With sync ``transfer`` every call first turns the inputs, kept as host numpy arrays, into
    tensors on the device (``tf.constant``, then ``tf.identity`` under the device scope to copy them there;
    on a CPU device the constant already is there), runs the op, and copies every output back to the host
    with ``.numpy()`` (which waits for it), as a caller holding numpy data does on every call. A graph loop
    cannot do that per call.
    """
    tf = tensorflow()
    if mode == "graph_loop":
        if sync == TRANSFER_SYNC:
            raise UnsupportedCombination(
                "sync 'transfer' copies the inputs in on every call; graph_loop runs all calls inside one graph"
            )
        loop = graph_loop(fn)
        numbers: dict[int, Any] = {}

        def number_tensor(number: int) -> Any:
            if number not in numbers:
                numbers[number] = tf.constant(number, dtype=tf.int32)
            return numbers[number]

        one = number_tensor(1)
        return Dispatch(call=lambda: loop(one, *args), block=lambda number: loop(number_tensor(number), *args),
                        traces=_tracing_count(loop))
    wrapped = wrap_mode(fn, mode)
    traced = wrapped if mode in ("function", "xla") else None
    if sync == TRANSFER_SYNC:
        hosts = tuple(arg.numpy() for arg in args)
        on_host = is_host(device)

        def call_with_transfer() -> Any:
            if on_host:
                output = wrapped(*[tf.constant(host) for host in hosts])
            else:
                output = wrapped(*[tf.identity(tf.constant(host)) for host in hosts])
            if hasattr(output, "numpy"):
                output.numpy()
            else:
                for leaf in _leaves(output):
                    leaf.numpy()
            return output  # the device tensors, for the placement check

        return Dispatch(call=call_with_transfer, block=python_loop(call_with_transfer), traces=_tracing_count(traced))

    return Dispatch(call=lambda: wrapped(*args), block=python_loop(wrapped, *args), traces=_tracing_count(traced))


def _tracing_count(traced: Any) -> Callable[[], int]:
    """How often the tf.function being timed (None: none, eager) has traced so far: it counts (re)traces."""
    if traced is None:
        return lambda: 0
    return lambda: int(traced.experimental_get_tracing_count())


# ---------------------------------------------------------------------------------------------------------
# Placement


def placed_leaves(output: Any) -> list[tuple[str, str]]:
    """Canonical (``device``, ``backing_device``) of each output leaf, for
    :func:`~devbench.backends.base.placement_failure` (which also reads the memory: a host-memory kernel)."""
    return [(canonical(leaf.device), canonical(leaf.backing_device)) for leaf in _leaves(output)]


# ---------------------------------------------------------------------------------------------------------
# Errors -> status

_UNSUPPORTED_HINTS = (
    "no registered",
    "could not find device",
    "could not satisfy",
    "not supported",
    "unsupported",
    "not in list of allowed values",
    "no kernel",
    "was expected to be a",
    "xla compilation requires",
    "not implemented",
)


def classify(exc: BaseException) -> tuple[str, str]:
    """(status, reason) for an exception raised while running a cell: the shared rules, then TensorFlow's."""
    common = classify_common(exc)
    if common is not None:
        return common
    tf = tensorflow()
    if isinstance(exc, tf.errors.ResourceExhaustedError):
        return "oom", error_reason(exc)
    if isinstance(exc, (tf.errors.NotFoundError, tf.errors.UnimplementedError)):
        return "unsupported", error_reason(exc)
    if isinstance(exc, (tf.errors.InvalidArgumentError, TypeError, ValueError)) and any(
        hint in str(exc).lower() for hint in _UNSUPPORTED_HINTS
    ):
        return "unsupported", error_reason(exc)
    return "error", error_reason(exc)


# ---------------------------------------------------------------------------------------------------------
# Device initialisation: the first op on each device, timed on its own

FIRST_OP = "a 1-element float32 add on the device and its copy back to the host (.numpy())"


def initialise_device(device: str) -> DeviceInit:
    """Time the first op of this process on ``device`` (once; see :class:`devbench.backends.base.FirstOps`).

    TensorFlow created the device with its context (:func:`devbench.devices.tensorflow`); what is left for the
    first op is what a device pays on first use: on a GPU the first kernel launch, stream and allocator set-up
    and the first host-to-device copy; on a CPU little. Call it before anything else runs on the device."""
    tf = tensorflow()

    def first_op() -> None:
        with tf.device(f"/device:{device}"):
            one = tf.constant([1.0], dtype=tf.float32)
            total = tf.math.add(one, one)
        total.numpy()

    return FIRST_OPS.time("tensorflow", device, first_op, FIRST_OP)


# ---------------------------------------------------------------------------------------------------------
# The backend: TensorFlow's hooks for the one run_cell (devbench.backends.base.FrameworkBackend)


class TFBackend(FrameworkBackend):
    """Runs cells on TensorFlow devices. Remembers which (op, dtype, device, mode) passed the numpy check."""

    FRAMEWORK = "tf"
    SYNCS = SYNCS
    RETRACED = "retraced {n} time(s) while timing: samples include tracing"

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self.tf = tensorflow()
        self._needs_cleanup = False
        self._flushes: dict[str, Flush] = {}

    @staticmethod
    def initialise(device: str) -> DeviceInit:
        return initialise_device(device)

    @staticmethod
    def runtime_init() -> dict[str, Any] | None:
        return tensorflow_runtime_init()

    @contextmanager
    def scope(self, device: str) -> Iterator[None]:
        with self.tf.device(f"/device:{device}"):
            yield

    def build(self, op: OpDef, n: int, dtype: str, seed: int, device: str) -> Built:
        built = build_tf(op, n, dtype, seed)
        return Built(built.fn, built.args, built.reference, built.variables)

    def dispatch(self, built: Built, mode: str, sync: str, device: str) -> Dispatch:
        return make_dispatch(built.fn, built.args, mode, sync, device)

    def placed(self, output: Any) -> list[tuple[str, str]]:
        return placed_leaves(output)

    def host_leaves(self, output: Any) -> list[np.ndarray]:
        return [np.asarray(leaf.numpy()).astype(np.float64) for leaf in _leaves(output)]

    def flusher(self, device: str) -> Flush:
        """On a GPU, a negation of a device buffer of :data:`devbench.cache.DEFAULT_GPU_FLUSH_BYTES` (TensorFlow
        does not say a GPU's L2 size, nor does NVML), waited for with the scalar sync; the host's flush on a CPU.
        Made inside the cell's device scope; one buffer per device for the backend's life."""
        if is_host(device):
            return super().flusher(device)
        if device not in self._flushes:
            tf = self.tf
            cache = gpu_l2(None, "TensorFlow and NVML do not report a GPU's L2 size")
            buffer = tf.ones([flush_bytes(cache) // 4], dtype=tf.float32)

            def write() -> None:
                sync_scalar(tf.math.negative(buffer))

            self._flushes[device] = Flush(write, flush_bytes(cache), cache)
        return self._flushes[device]

    def copier(self, device: str, elements: int) -> Callable[[], Any]:
        """TF's ``DeepCopy``, or where it has no kernel a negation (which reads and writes exactly as much)."""
        tf = self.tf
        x = tf.identity(tf.ones([elements], dtype=tf.float32))
        copy_op: Callable[[], Any] = lambda: tf.raw_ops.DeepCopy(x=x)  # noqa: E731
        try:
            sync_scalar(copy_op())
        except Exception:  # no DeepCopy kernel here
            copy_op = lambda: tf.math.negative(x)  # noqa: E731
        return copy_op

    def begin(self, cell: Cell) -> None:
        # Until this cell is known to have left nothing but refcounted tensors, release() cleans up fully.
        self._needs_cleanup = True

    def done(self, cell: Cell, built: Built) -> None:
        # An eager op without Keras state leaves only tensors, freed by reference counting when run_cell's frame
        # ends; Keras models and traced functions hold reference cycles that need the full clean-up.
        self._needs_cleanup = built.state is not None or cell.mode != "eager"

    @staticmethod
    def classify(exc: BaseException) -> tuple[str, str]:
        return classify(exc)

    def release(self) -> None:
        """Drop what a cell left behind (Keras state, traced functions, tensors of a failed cell) so it cannot
        change the next cell's result. Keras ``clear_session`` resets its global state and runs a full garbage
        collection itself (a second ``gc.collect()`` after it found nothing and cost another 1.2 s with
        TensorFlow loaded, on every visit of a Keras cell); it takes 0.35-1.4 s, so it is skipped after an
        eager cell that succeeded without Keras state: that cell's tensors are already gone."""
        if not self._needs_cleanup:
            return
        self.tf.keras.backend.clear_session()
        if not gc.isenabled():  # clear_session's collection relies on the collector; without it, do it here
            gc.collect()
        self._needs_cleanup = False


__all__ = ["SYNCS", "TFBackend", "build_tf", "classify", "graph_loop", "initialise_device", "make_dispatch",
           "placed_leaves", "placement_failure", "sync_scalar", "wrap_mode"]
