"""The TensorFlow backend: build a cell's op on its device, pick the sync, run the timer, check the result.

This is the one place (with devices.py and ops.py) that talks to TensorFlow. The runner sees only
:class:`CellOutcome` or an exception, which :func:`classify` turns into a row's status.

:func:`default_backend` is what a sweep uses: TensorFlow for real devices, numpy for the ``numpy:CPU``
baseline (:mod:`devbench.numpy_backend`), chosen per cell by its device.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from devbench.devices import canonical, tensorflow
from devbench.ops import CHECK_SIZE, ITEMSIZE, OPS, TOLERANCE, UnsupportedCombination, relative_error
from devbench.spec import NUMPY_DEVICE, TRANSFER_SYNC, Cell, TimingPolicy
from devbench.timer import Clock, Measurement, measure, python_loop


class CellFailure(Exception):
    """A cell that ran but must not be reported as ``ok`` (placement or correctness check failed)."""

    def __init__(self, status: str, reason: str, placed_device: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.placed_device = placed_device


@dataclass
class CellOutcome:
    measurement: Measurement[Any]
    placed_device: str
    flops: float
    bytes: float
    traces: int = 0
    """How many times the timed tf.function was traced over the whole cell (0 in eager mode and for numpy).
    The cold call traces once; a larger count means retracing, and ``note`` says it happened while timing."""
    note: str = ""
    """A remark for the row's ``reason`` on an ``ok`` cell."""


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
    "scalar": sync_scalar,
    "full": sync_full,
    "sync_devices": sync_devices,
    "none": sync_none,
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


@dataclass
class Dispatch:
    """How a cell's op is called: ``call()`` once, ``block(number)`` back to back (the timer's block)."""

    call: Callable[[], Any]
    block: Callable[[int], Any]
    traced: Any = None
    """The tf.function being timed, if any: its ``experimental_get_tracing_count()`` counts (re)traces."""

    def traces(self) -> int:
        return int(self.traced.experimental_get_tracing_count()) if self.traced is not None else 0


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
                        traced=loop)
    wrapped = wrap_mode(fn, mode)
    traced = wrapped if mode in ("function", "xla") else None
    if sync == TRANSFER_SYNC:
        hosts = tuple(arg.numpy() for arg in args)
        on_host = device.startswith("CPU:")

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

        return Dispatch(call=call_with_transfer, block=python_loop(call_with_transfer), traced=traced)

    def block(number: int) -> Any:
        output = wrapped(*args)
        for _ in range(number - 1):
            output = wrapped(*args)
        return output

    return Dispatch(call=lambda: wrapped(*args), block=block, traced=traced)




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


def first_line(text: str, limit: int = 300) -> str:
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return line[:limit]


def classify(exc: BaseException) -> tuple[str, str]:
    """(status, reason) for an exception raised while running a cell."""
    tf = tensorflow()
    message = first_line(getattr(exc, "message", None) or str(exc)) or type(exc).__name__
    if isinstance(exc, CellFailure):
        return exc.status, exc.reason
    if isinstance(exc, UnsupportedCombination):
        return "unsupported", message
    if isinstance(exc, (tf.errors.ResourceExhaustedError, MemoryError)):
        return "oom", f"{type(exc).__name__}: {message}"
    if isinstance(exc, (tf.errors.NotFoundError, tf.errors.UnimplementedError)):
        return "unsupported", f"{type(exc).__name__}: {message}"
    if isinstance(exc, (tf.errors.InvalidArgumentError, TypeError, ValueError)) and any(
        hint in str(exc).lower() for hint in _UNSUPPORTED_HINTS
    ):
        return "unsupported", f"{type(exc).__name__}: {message}"
    return "error", f"{type(exc).__name__}: {message}"


# ---------------------------------------------------------------------------------------------------------
# Running a cell


class TFBackend:
    """Runs cells on TensorFlow devices. Remembers which (op, dtype, device, mode) passed the numpy check."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.tf = tensorflow()
        self.clock = clock
        self._checked: dict[tuple[str, str, str, str], CellFailure | None] = {}
        self._needs_cleanup = False

    def _tf_device(self, device: str) -> str:
        return f"/device:{device}"

    def check_correctness(self, cell: Cell, seed: int) -> None:
        """Compare the op at a small size with its numpy float64 reference, once per (op, dtype, device, mode)."""
        key = (cell.op, cell.dtype, cell.device, cell.mode)
        if key not in self._checked:
            self._checked[key] = self._run_check(cell, seed)
        failure = self._checked[key]
        if failure is not None:
            raise failure

    def _run_check(self, cell: Cell, seed: int) -> CellFailure | None:
        op = OPS[cell.op]
        rng = np.random.default_rng(seed)
        with self.tf.device(self._tf_device(cell.device)):
            built = op.build(CHECK_SIZE, cell.dtype, rng)
            output = wrap_mode(built.fn, cell.mode)(*built.args)
            leaves = [np.asarray(leaf.numpy()).astype(np.float64) for leaf in _leaves(output)]
        expected = built.reference()
        tolerance = TOLERANCE[cell.dtype]
        if len(leaves) != len(expected):
            return CellFailure("wrong", f"{len(leaves)} outputs where the reference has {len(expected)}")
        for i, (got, want) in enumerate(zip(leaves, expected, strict=True)):
            err = relative_error(got, want)
            if not err <= tolerance:
                return CellFailure(
                    "wrong",
                    f"output {i} at n={CHECK_SIZE} is off the numpy float64 reference by {err:.3g} "
                    f"(relative; {cell.dtype} allows {tolerance:g})",
                )
        return None

    def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int) -> CellOutcome:
        op = OPS[cell.op]
        # Until this cell is known to have left nothing but refcounted tensors, release() cleans up fully.
        self._needs_cleanup = True
        self.check_correctness(cell, seed)
        rng = np.random.default_rng(seed)
        placed: list[str] = []

        def check_placement(output: Any) -> None:
            devices = sorted({canonical(leaf.device) for leaf in _leaves(output)})
            placed.extend(devices)
            if devices != [cell.device]:
                raise CellFailure(
                    "fallback",
                    f"output placed on {', '.join(devices)}, not on the requested {cell.device}",
                    ", ".join(devices),
                )

        traces_after_cold: list[int] = []
        with self.tf.device(self._tf_device(cell.device)):
            built = op.build(cell.size, cell.dtype, rng)
            dispatch = make_dispatch(built.fn, built.args, cell.mode, cell.sync, cell.device)

            def check(output: Any) -> None:
                traces_after_cold.append(dispatch.traces())
                check_placement(output)

            kwargs: dict[str, Any] = {"check": check, "block": dispatch.block}
            if cell.sync == "none":
                kwargs["drain"] = sync_full
            if self.clock is not None:
                kwargs["clock"] = self.clock
            measurement = measure(dispatch.call, SYNCS[cell.sync], policy, **kwargs)
        measurement.output = None  # do not keep device memory alive through the result
        # An eager op without Keras state leaves only tensors, freed by reference counting when this frame
        # ends; Keras models and traced functions hold reference cycles that need the full clean-up.
        self._needs_cleanup = built.variables is not None or cell.mode != "eager"
        traces = dispatch.traces()
        retraced = traces - traces_after_cold[0] if traces_after_cold else 0
        return CellOutcome(
            measurement=measurement,
            placed_device=placed[0] if placed else "",
            flops=op.flops(cell.size),
            bytes=op.bytes(cell.size, ITEMSIZE[cell.dtype]),
            traces=traces,
            note=f"retraced {retraced} time(s) while timing: samples include tracing" if retraced else "",
        )

    @staticmethod
    def classify(exc: BaseException) -> tuple[str, str]:
        return classify(exc)

    def release(self) -> None:
        """Drop what a cell left behind (Keras state, traced functions, tensors of a failed cell) so it cannot
        change the next cell's result. The full clean-up costs about 0.35 s (Keras ``clear_session`` and a
        garbage collection with TensorFlow loaded), so it is skipped after an eager cell that succeeded without
        Keras state: that cell's tensors are already gone."""
        if not self._needs_cleanup:
            return
        self.tf.keras.backend.clear_session()
        gc.collect()
        self._needs_cleanup = False


class RoutingBackend:
    """Sends each cell to the backend for its device: ``numpy:CPU`` to numpy, everything else to TensorFlow.

    Both are created on first use, so a numpy-only sweep never imports TensorFlow.
    """

    def __init__(self, tf_backend: Any = None, numpy_backend: Any = None, clock: Clock | None = None) -> None:
        self._tf = tf_backend
        self._numpy = numpy_backend
        self._clock = clock
        self._last: Any = None

    def backend_for(self, cell: Cell) -> Any:
        if cell.device == NUMPY_DEVICE:
            if self._numpy is None:
                from devbench.numpy_backend import NumpyBackend

                self._numpy = NumpyBackend(clock=self._clock)
            return self._numpy
        if self._tf is None:
            self._tf = TFBackend(clock=self._clock)
        return self._tf

    def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int) -> CellOutcome:
        self._last = self.backend_for(cell)
        outcome: CellOutcome = self._last.run_cell(cell, policy, seed)
        return outcome

    def classify(self, exc: BaseException) -> tuple[str, str]:
        if self._last is None:
            return "error", f"{type(exc).__name__}: {first_line(str(exc))}"
        result: tuple[str, str] = self._last.classify(exc)
        return result

    def release(self) -> None:
        if self._last is not None:
            self._last.release()


def default_backend(clock: Clock | None = None) -> RoutingBackend:
    """The backend a sweep uses: TensorFlow for its devices, numpy for the ``numpy:CPU`` baseline."""
    return RoutingBackend(clock=clock)
