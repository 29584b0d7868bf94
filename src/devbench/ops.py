"""The op registry: name -> how to build it at size n and dtype, its work per call, and a numpy reference.

Metadata (names, what n means, FLOP and byte counts) is plain Python so that ``devbench ops`` answers without
importing TensorFlow; each builder imports TensorFlow itself and must be called inside ``tf.device(...)``.

FLOPs and bytes are per call, counted the usual way (a multiply-add is 2 FLOPs; bytes = inputs read +
outputs written once, the minimum traffic, not what caches actually do). They let a result say how fast, in
GFLOP/s or GB/s, not just how long.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from devbench.spec import DTYPES

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")

CONV_CHANNELS = 16
CONV_KERNEL = 3
L2 = 1e-3
"""Weight of the Dense layer's L2 kernel regularizer in ``dense_step``."""

ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "int32": 4}


class UnsupportedCombination(Exception):
    """The op cannot run at this dtype, for a reason TF does not raise itself (e.g. no gradient of ints)."""


@dataclass
class BuiltOp:
    """An op ready to time: ``fn(*args)`` computes on the device; ``reference()`` gives float64 expectations.

    ``reference`` returns one array per leaf of ``fn``'s output (in ``tf.nest.flatten`` order), computed in
    numpy float64 from the very values the device holds (after rounding to the dtype), so only the
    computation's own error is measured. ``variables`` keeps Keras state alive for as long as the op is used.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    reference: Callable[[], list[np.ndarray]]
    variables: Any = None


@dataclass(frozen=True)
class OpDef:
    name: str
    n_means: str
    summary: str
    flops: Callable[[int], float]
    bytes: Callable[[int, int], float]
    """Minimum bytes moved per call, given n and the dtype's item size."""
    working_set: Callable[[int, int], float]
    """Bytes held at once (inputs, outputs, temporaries), for the memory guard."""
    build: Callable[[int, str, np.random.Generator], BuiltOp]
    flops_formula: str
    dtypes: tuple[str, ...] = DTYPES


# ---------------------------------------------------------------------------------------------------------
# Helpers shared by the builders


def _on_device(array: np.ndarray, dtype: str) -> Any:
    """A tensor of ``dtype`` on the current device scope, made from host data (cast happens on the device)."""
    import tensorflow as tf

    host_dtype = np.int32 if dtype == "int32" else (np.float64 if dtype == "float64" else np.float32)
    return tf.cast(tf.identity(tf.constant(array.astype(host_dtype))), getattr(tf, dtype))


def _host(tensor: Any) -> np.ndarray:
    host: np.ndarray = np.asarray(tensor.numpy(), dtype=np.float64)
    return host


def _random(rng: np.random.Generator, shape: Sequence[int], dtype: str) -> np.ndarray:
    """Seeded data, never zeros; small integers for int32 so sums cannot overflow."""
    if dtype == "int32":
        return rng.integers(-3, 4, size=tuple(shape)).astype(np.float64)
    return rng.uniform(-1.0, 1.0, size=tuple(shape))


# ---------------------------------------------------------------------------------------------------------
# Builders


def _build_matmul(n: int, dtype: str, rng: np.random.Generator) -> BuiltOp:
    import tensorflow as tf

    a = _on_device(_random(rng, (n, n), dtype), dtype)
    b = _on_device(_random(rng, (n, n), dtype), dtype)
    return BuiltOp(fn=tf.linalg.matmul, args=(a, b), reference=lambda: [_host(a) @ _host(b)])


def conv2d_numpy(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """SAME, stride-1 2-D convolution (cross-correlation, as TF does), NHWC input and HWIO filter.

    im2col then one GEMM: ``tensordot`` copies the k×k windows into a matrix and hands it to BLAS, which is
    also what oneDNN's CPU kernel does. Computes in the inputs' dtype.
    """
    k = w.shape[0]
    pad = k // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(1, 2))  # N,H,W,C,kh,kw
    out: np.ndarray = np.tensordot(windows, w, axes=((3, 4, 5), (2, 0, 1)))  # N,H,W,O
    return out


_conv2d_reference = conv2d_numpy


def xent_grad_numpy(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """d/dq of sum(categorical_crossentropy(p, q, from_logits=False)), analytically (see softmax_xent_grad)."""
    grad: np.ndarray = -p / q + p.sum(axis=1, keepdims=True) / q.sum(axis=1, keepdims=True)
    return grad


def dense_step_numpy(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loss, kernel gradient and bias gradient of ``dense_step`` (mean squared error + L2·sum(W²)), analytically.

    Same outputs as the Keras step under GradientTape: ``(total, dL/dW, dL/db)``.
    """
    pred = x @ w + b
    diff = pred - y
    residual = (2.0 / diff.size) * diff
    total = np.mean(diff * diff) + L2 * np.sum(w * w)
    kernel_grad: np.ndarray = x.T @ residual + (2.0 * L2) * w
    bias_grad: np.ndarray = residual.sum(axis=0)
    return np.asarray(total), kernel_grad, bias_grad


def _build_conv2d(n: int, dtype: str, rng: np.random.Generator) -> BuiltOp:
    import tensorflow as tf

    x = _on_device(_random(rng, (1, n, n, CONV_CHANNELS), dtype), dtype)
    w = _on_device(_random(rng, (CONV_KERNEL, CONV_KERNEL, CONV_CHANNELS, CONV_CHANNELS), dtype), dtype)

    def conv(x: Any, w: Any) -> Any:
        return tf.nn.conv2d(x, w, strides=1, padding="SAME")

    return BuiltOp(fn=conv, args=(x, w), reference=lambda: [_conv2d_reference(_host(x), _host(w))])


def _build_add(n: int, dtype: str, rng: np.random.Generator) -> BuiltOp:
    import tensorflow as tf

    a = _on_device(_random(rng, (n, n), dtype), dtype)
    b = _on_device(_random(rng, (n, n), dtype), dtype)
    return BuiltOp(fn=tf.math.add, args=(a, b), reference=lambda: [_host(a) + _host(b)])


def _build_reduce_sum(n: int, dtype: str, rng: np.random.Generator) -> BuiltOp:
    import tensorflow as tf

    a = _on_device(_random(rng, (n, n), dtype), dtype)

    def reduce_rows(a: Any) -> Any:
        return tf.math.reduce_sum(a, axis=1)

    return BuiltOp(fn=reduce_rows, args=(a,), reference=lambda: [_host(a).sum(axis=1)])


def _require_float(dtype: str, why: str) -> None:
    if dtype not in FLOAT_DTYPES:
        raise UnsupportedCombination(f"{why} needs a floating-point dtype, not {dtype}")


def _build_softmax_xent_grad(n: int, dtype: str, rng: np.random.Generator) -> BuiltOp:
    """d/dq of Keras categorical cross-entropy with from_logits=False (the seed's third question).

    Keras normalizes q/sum(q) before the log, so dL/dq_i = -p_i/q_i + sum(p)/sum(q) per row: for q = [.8, .1, .1]
    and p = [1, 0, 0] that is [-0.25, 1, 1], not the naive [-1.25, 0, 0].
    """
    import tensorflow as tf

    _require_float(dtype, "a gradient")
    # Probabilities bounded away from 0 so that Keras' clipping (epsilon 1e-7) never engages.
    q_host = rng.uniform(0.5, 1.5, size=(n, n))
    q_host /= q_host.sum(axis=1, keepdims=True)
    p_host = np.zeros((n, n))
    p_host[np.arange(n), rng.integers(0, n, size=n)] = 1.0
    q = _on_device(q_host, dtype)
    p = _on_device(p_host, dtype)

    def xent_grad(p: Any, q: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(q)
            loss = tf.reduce_sum(tf.keras.losses.categorical_crossentropy(p, q, from_logits=False))
        return tape.gradient(loss, q)

    def reference() -> list[np.ndarray]:
        return [xent_grad_numpy(_host(p), _host(q))]

    return BuiltOp(fn=xent_grad, args=(p, q), reference=reference)


def _build_dense_step(n: int, dtype: str, rng: np.random.Generator) -> BuiltOp:
    """One training step's gradients of Dense(n) with an L2 kernel regularizer (the seed's second question).

    ``model.losses`` is read *inside* the tape: Keras recomputes the regularization term when the property is
    read, so its gradient (2·L2·W) flows into the kernel's gradient.
    """
    import tensorflow as tf

    _require_float(dtype, "a training step")
    x = _on_device(_random(rng, (n, n), dtype), dtype)
    y = _on_device(_random(rng, (n, n), dtype), dtype)
    model = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(n,), dtype=dtype),
            tf.keras.layers.Dense(n, kernel_regularizer=tf.keras.regularizers.L2(L2), dtype=dtype),
        ]
    )
    layer = model.layers[0]
    variables = model.trainable_variables

    def step(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            pred_loss = tf.reduce_mean(tf.square(pred - y))
            total = pred_loss + tf.cast(tf.reduce_sum(model.losses), pred_loss.dtype)
        kernel_grad, bias_grad = tape.gradient(total, variables)
        return total, kernel_grad, bias_grad

    def reference() -> list[np.ndarray]:
        w = np.asarray(layer.kernel.numpy(), dtype=np.float64)
        b = np.asarray(layer.bias.numpy(), dtype=np.float64)
        return list(dense_step_numpy(_host(x), _host(y), w, b))

    return BuiltOp(fn=step, args=(x, y), reference=reference, variables=model)


# ---------------------------------------------------------------------------------------------------------
# The registry

OPS: dict[str, OpDef] = {
    op.name: op
    for op in (
        OpDef(
            name="matmul",
            n_means="n×n @ n×n matrix product",
            summary="tf.linalg.matmul(a, b): the guide's time_matmul example",
            flops=lambda n: 2.0 * n**3,
            flops_formula="2n³",
            bytes=lambda n, s: 3.0 * n * n * s,
            working_set=lambda n, s: 4.0 * n * n * s,
            build=_build_matmul,
        ),
        OpDef(
            name="conv2d",
            n_means=f"1×n×n×{CONV_CHANNELS} image, {CONV_KERNEL}×{CONV_KERNEL}×{CONV_CHANNELS}×{CONV_CHANNELS} "
            "filter, SAME",
            summary="tf.nn.conv2d, stride 1",
            flops=lambda n: 2.0 * n * n * CONV_KERNEL**2 * CONV_CHANNELS**2,
            flops_formula=f"2·n²·{CONV_KERNEL**2}·{CONV_CHANNELS}²",
            bytes=lambda n, s: (2.0 * n * n * CONV_CHANNELS + CONV_KERNEL**2 * CONV_CHANNELS**2) * s,
            # Input and output, plus the im2col workspace of CPU kernels (k² copies of the input): a 4096²
            # conv2d peaked near 11 GiB here and 8192² was OOM-killed at 24 GiB.
            working_set=lambda n, s: (2.0 + CONV_KERNEL**2) * n * n * CONV_CHANNELS * s,
            build=_build_conv2d,
        ),
        OpDef(
            name="add",
            n_means="n×n + n×n elementwise",
            summary="tf.math.add: memory-bound",
            flops=lambda n: 1.0 * n * n,
            flops_formula="n²",
            bytes=lambda n, s: 3.0 * n * n * s,
            working_set=lambda n, s: 3.0 * n * n * s,
            build=_build_add,
        ),
        OpDef(
            name="reduce_sum",
            n_means="n×n summed over rows to n",
            summary="tf.math.reduce_sum(axis=1): memory-bound",
            flops=lambda n: 1.0 * n * n,
            flops_formula="n²",
            bytes=lambda n, s: (n * n + n) * float(s),
            working_set=lambda n, s: (n * n + n) * float(s),
            build=_build_reduce_sum,
        ),
        OpDef(
            name="softmax_xent_grad",
            n_means="n×n probabilities (n rows of n classes)",
            summary="gradient of categorical_crossentropy(from_logits=False) under GradientTape",
            # Forward: row sums, divide, log, multiply, sum (~5n²); backward about the same again.
            flops=lambda n: 10.0 * n * n,
            flops_formula="≈10n²",
            bytes=lambda n, s: 3.0 * n * n * s,
            working_set=lambda n, s: 8.0 * n * n * s,
            build=_build_softmax_xent_grad,
            dtypes=FLOAT_DTYPES,
        ),
        OpDef(
            name="dense_step",
            n_means="Dense(n) on an n×n batch, L2 regularizer, loss + gradients",
            summary="Keras training step: pred_loss + reduce_sum(model.losses) under GradientTape",
            # Forward x@W (2n³) and the kernel gradient xᵀ@g (2n³); the input needs no gradient.
            flops=lambda n: 4.0 * n**3 + 10.0 * n * n,
            flops_formula="4n³ + O(n²)",
            bytes=lambda n, s: 6.0 * n * n * s,
            working_set=lambda n, s: 8.0 * n * n * s,
            build=_build_dense_step,
            dtypes=FLOAT_DTYPES,
        ),
    )
}

DEFAULT_OPS = tuple(OPS)

TOLERANCE = {"float16": 2e-2, "bfloat16": 8e-2, "float32": 1e-4, "float64": 1e-7, "int32": 0.0}
"""Relative error allowed against the float64 reference, as max|out - ref| / max|ref|.

float64 allows 1e-7, not 1e-12: Keras keeps the L2 factor as a float32 constant (1e-3 becomes 1.00000005e-3),
so ``dense_step``'s float64 loss differs from exact arithmetic by about 5e-8 of the regularization term."""

CHECK_SIZE = 16
"""The small n at which each (op, dtype, device, mode) is checked against numpy once."""


def relative_error(output: np.ndarray, reference: np.ndarray) -> float:
    """max|output - reference| / max|reference| (0 when both are all zeros); shape mismatch is infinite."""
    out = np.asarray(output, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if out.shape != ref.shape:
        return float("inf")
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    err = float(np.max(np.abs(out - ref))) if ref.size else 0.0
    if scale == 0.0:
        return err
    return err / scale
