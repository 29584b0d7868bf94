"""The numpy baseline (``--baseline numpy``): the same ops in plain numpy on the host, device ``numpy:CPU``.

It answers "what does TensorFlow's dispatch cost me at small sizes?" and gives the crossover analysis a real
second curve on a machine without a GPU. Cells are measured with the same timer (:func:`devbench.timer.measure`)
and the same policy as TensorFlow cells, from the same seeded input data.

What each op is in numpy (the formulas are shared with the float64 references in :mod:`devbench.ops`):

- ``matmul`` ``a @ b`` (BLAS for float32/float64; numpy's own loops for float16 and int32);
- ``add`` ``np.add(a, b)``; ``reduce_sum`` ``a.sum(axis=1)``;
- ``conv2d`` im2col (the k×k windows copied into a matrix) and one ``tensordot`` GEMM;
- ``softmax_xent_grad`` and ``dense_step``: the **analytic** gradients (no autodiff, no forward pass that is
  not needed), so numpy does less work than TF's GradientTape here; that is part of what the comparison shows.

``bfloat16`` is ``unsupported`` (numpy has no bfloat16 arithmetic), as are gradients of int32 (as in TF).
numpy is synchronous: every sync mode, ``transfer`` included, is a no-op here (the data already is in host
memory); the row keeps the sync asked for, and its ``reason`` says so.

No TensorFlow is imported here.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from devbench.backend import CellFailure, CellOutcome
from devbench.ops import (
    CHECK_SIZE,
    CONV_CHANNELS,
    CONV_KERNEL,
    ITEMSIZE,
    OPS,
    TOLERANCE,
    UnsupportedCombination,
    conv2d_numpy,
    dense_step_numpy,
    relative_error,
    xent_grad_numpy,
)
from devbench.spec import NUMPY_DEVICE, Cell, TimingPolicy
from devbench.timer import Clock, measure

NUMPY_DTYPES: dict[str, Any] = {"float16": np.float16, "float32": np.float32, "float64": np.float64,
                                "int32": np.int32}

SYNC_NOTE = "numpy is synchronous: sync {sync!r} is a no-op here"


@dataclass
class NumpyOp:
    """``fn(*args)`` computes in the cell's dtype; ``reference()`` is the float64 result from the same inputs."""

    fn: Callable[..., Any]
    args: tuple[np.ndarray, ...]
    reference: Callable[[], list[np.ndarray]]
    params: tuple[np.ndarray, ...] = ()
    """Model state the op closes over (``dense_step``: kernel and bias), for comparisons with TF."""


def _random(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Same draws as the TF builders (ops._random), so both backends see the same numbers."""
    if dtype == "int32":
        return rng.integers(-3, 4, size=shape).astype(np.float64)
    return rng.uniform(-1.0, 1.0, size=shape)


def _as(array: np.ndarray, dtype: str) -> np.ndarray:
    return np.ascontiguousarray(array.astype(NUMPY_DTYPES[dtype]))


def _f64(*arrays: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def _reduce_rows(a: np.ndarray) -> np.ndarray:
    out: np.ndarray = a.sum(axis=1, dtype=a.dtype)
    return out


def _leaves(output: Any) -> list[np.ndarray]:
    return [np.asarray(o) for o in output] if isinstance(output, tuple) else [np.asarray(output)]


def build_numpy(op: str, n: int, dtype: str, rng: np.random.Generator) -> NumpyOp:
    """The numpy version of ``op`` at size ``n``; raises UnsupportedCombination where there is none."""
    if dtype not in NUMPY_DTYPES:
        raise UnsupportedCombination(f"numpy has no {dtype} arithmetic")
    if dtype not in OPS[op].dtypes:
        raise UnsupportedCombination(f"{op} needs a floating-point dtype, not {dtype}")
    if op in ("matmul", "add"):
        a, b = _as(_random(rng, (n, n), dtype), dtype), _as(_random(rng, (n, n), dtype), dtype)
        fn: Callable[..., Any] = np.matmul if op == "matmul" else np.add
        return NumpyOp(fn=fn, args=(a, b), reference=lambda: [fn(*_f64(a, b))])
    if op == "reduce_sum":
        a = _as(_random(rng, (n, n), dtype), dtype)
        return NumpyOp(fn=_reduce_rows, args=(a,), reference=lambda: [_f64(a)[0].sum(axis=1)])
    if op == "conv2d":
        x = _as(_random(rng, (1, n, n, CONV_CHANNELS), dtype), dtype)
        w = _as(_random(rng, (CONV_KERNEL, CONV_KERNEL, CONV_CHANNELS, CONV_CHANNELS), dtype), dtype)
        return NumpyOp(fn=conv2d_numpy, args=(x, w), reference=lambda: [conv2d_numpy(*_f64(x, w))])
    if op == "softmax_xent_grad":
        q_host = rng.uniform(0.5, 1.5, size=(n, n))
        q_host /= q_host.sum(axis=1, keepdims=True)
        p_host = np.zeros((n, n))
        p_host[np.arange(n), rng.integers(0, n, size=n)] = 1.0
        p, q = _as(p_host, dtype), _as(q_host, dtype)
        return NumpyOp(fn=xent_grad_numpy, args=(p, q), reference=lambda: [xent_grad_numpy(*_f64(p, q))])
    if op == "dense_step":
        x, y = _as(_random(rng, (n, n), dtype), dtype), _as(_random(rng, (n, n), dtype), dtype)
        limit = np.sqrt(6.0 / (n + n))  # Keras Dense's default glorot_uniform kernel, zero bias
        w = _as(rng.uniform(-limit, limit, size=(n, n)), dtype)
        b = np.zeros(n, dtype=NUMPY_DTYPES[dtype])

        def step(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return dense_step_numpy(x, y, w, b)

        return NumpyOp(fn=step, args=(x, y), reference=lambda: list(dense_step_numpy(*_f64(x, y, w, b))),
                       params=(w, b))
    raise UnsupportedCombination(f"no numpy version of {op}")


def _no_sync(output: Any) -> None:
    del output


class NumpyBackend:
    """Runs cells of the pseudo-device ``numpy:CPU``. Checks each (op, dtype) once against float64."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock
        self._checked: dict[tuple[str, str], CellFailure | None] = {}

    def check_correctness(self, cell: Cell, seed: int) -> None:
        key = (cell.op, cell.dtype)
        if key not in self._checked:
            built = build_numpy(cell.op, CHECK_SIZE, cell.dtype, np.random.default_rng(seed))
            got, want = _leaves(built.fn(*built.args)), built.reference()
            failure = None
            for i, (g, w) in enumerate(zip(got, want, strict=True)):
                err = relative_error(g, w)
                if not err <= TOLERANCE[cell.dtype]:
                    failure = CellFailure("wrong", f"numpy output {i} at n={CHECK_SIZE} is off float64 by {err:.3g}")
                    break
            self._checked[key] = failure
        failure = self._checked[key]
        if failure is not None:
            raise failure

    def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int) -> CellOutcome:
        if cell.device != NUMPY_DEVICE:
            raise ValueError(f"the numpy backend runs {NUMPY_DEVICE} cells, not {cell.device}")
        self.check_correctness(cell, seed)
        built = build_numpy(cell.op, cell.size, cell.dtype, np.random.default_rng(seed))
        fn, args = built.fn, built.args

        def call() -> Any:
            return fn(*args)

        def block(number: int) -> Any:
            output = fn(*args)
            for _ in range(number - 1):
                output = fn(*args)
            return output

        kwargs: dict[str, Any] = {"block": block}
        if self.clock is not None:
            kwargs["clock"] = self.clock
        measurement = measure(call, _no_sync, policy, **kwargs)
        measurement.output = None
        op = OPS[cell.op]
        return CellOutcome(
            measurement=measurement,
            placed_device=NUMPY_DEVICE,
            flops=op.flops(cell.size),
            bytes=op.bytes(cell.size, ITEMSIZE[cell.dtype]),
            note=SYNC_NOTE.format(sync=cell.sync) if cell.sync != "scalar" else "",
        )

    @staticmethod
    def classify(exc: BaseException) -> tuple[str, str]:
        message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, CellFailure):
            return exc.status, exc.reason
        if isinstance(exc, UnsupportedCombination):
            return "unsupported", message
        if isinstance(exc, MemoryError):
            return "oom", f"MemoryError: {message}"
        return "error", f"{type(exc).__name__}: {message}"

    def release(self) -> None:
        gc.collect()


__all__ = ["NUMPY_DTYPES", "NumpyBackend", "NumpyOp", "build_numpy"]
