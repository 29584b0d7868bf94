"""The TensorFlow backend: build a cell's op on its device, pick the sync, run the timer, check the result.

This is the one place (with devices.py and ops.py) that talks to TensorFlow. The runner sees only
:class:`CellOutcome` or an exception, which :func:`classify` turns into a row's status.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from devbench.devices import canonical, tensorflow
from devbench.ops import CHECK_SIZE, ITEMSIZE, OPS, TOLERANCE, UnsupportedCombination, relative_error
from devbench.spec import Cell, TimingPolicy
from devbench.timer import Clock, Measurement, measure


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


SYNCS: dict[str, Callable[[Any], None]] = {
    "scalar": sync_scalar,
    "full": sync_full,
    "sync_devices": sync_devices,
    "none": sync_none,
}


# ---------------------------------------------------------------------------------------------------------
# Modes: how the op is dispatched


def wrap_mode(fn: Callable[..., Any], mode: str) -> Callable[..., Any]:
    tf = tensorflow()
    if mode == "eager":
        return fn
    if mode == "function":
        return tf.function(fn)  # type: ignore[no-any-return]
    if mode == "xla":
        return tf.function(fn, jit_compile=True)  # type: ignore[no-any-return]
    raise ValueError(f"unknown mode {mode!r}")


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

        with self.tf.device(self._tf_device(cell.device)):
            built = op.build(cell.size, cell.dtype, rng)
            fn = wrap_mode(built.fn, cell.mode)
            args = built.args

            def call() -> Any:
                return fn(*args)

            kwargs: dict[str, Any] = {"check": check_placement}
            if cell.sync == "none":
                kwargs["drain"] = sync_full
            if self.clock is not None:
                kwargs["clock"] = self.clock
            measurement = measure(call, SYNCS[cell.sync], policy, **kwargs)
        measurement.output = None  # do not keep device memory alive through the result
        return CellOutcome(
            measurement=measurement,
            placed_device=placed[0] if placed else "",
            flops=op.flops(cell.size),
            bytes=op.bytes(cell.size, ITEMSIZE[cell.dtype]),
        )

    @staticmethod
    def classify(exc: BaseException) -> tuple[str, str]:
        return classify(exc)

    def release(self) -> None:
        """Drop what a cell left behind (Keras state, tensors) so it cannot change the next cell's result."""
        self.tf.keras.backend.clear_session()
        gc.collect()
