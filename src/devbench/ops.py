"""The op registry: everything about an op in one :class:`OpDef` entry of :data:`OPS`.

An entry holds the op's work per call (FLOP and byte counts, working set, memory- or compute-bound), its seeded
host input data (the same numbers for every backend), its numpy implementation (the float64 reference *and* the
``numpy:CPU`` baseline) and one expression per framework (``tf``, ``jax``, ``torch``: each a function that gets
the framework's module), all computing the same thing from the same numbers, each in the framework's own idiom.
Adding an op is one new entry here; adding a framework is one backend module in :mod:`devbench.backends` plus
one expression field per op.

Nothing here imports a framework at module load, so ``devbench ops`` answers at once; each framework's
expressions get its module passed in by its backend (:mod:`devbench.backends.tf`, ``.jax``, ``.torch``).

Ops over named dimensions (``m, k, n``) are :class:`ShapedOp` entries of :data:`SHAPED`, bound to one curve
(one swept dimension) by name; :func:`op_named` is the one lookup of an op by the name a cell carries
(:mod:`devbench.variants`), and :func:`register` adds a user's op. This module is long because it is the
registry's data: every built-in op with each framework's expression, one entry per op, so that adding an op
stays one edit in one place.

FLOPs and bytes are per call, counted the usual way (a multiply-add is 2 FLOPs; bytes = inputs read +
outputs written once, the minimum traffic, not what caches actually do). They let a result say how fast, in
GFLOP/s or GB/s, not just how long.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from devbench.errors import UsageError, did_you_mean
from devbench.spec import DTYPES
from devbench.variants import DEFAULT_CACHE, Variant, parse_op_name

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")

CONV_CHANNELS = 16
CONV_KERNEL = 3
L2 = 1e-3
"""Weight of the Dense layer's L2 kernel regularizer in ``dense_step``."""

ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "int32": 4}


class UnsupportedCombination(Exception):
    """The op cannot run at this dtype, for a reason the framework does not raise itself (no gradient of ints)."""


@dataclass(frozen=True)
class HostInputs:
    """An op's input data on the host, in float64 (rounded to the cell's dtype by each backend).

    ``args`` are what the timed call takes; ``params`` is state the op closes over (``dense_step``: the Dense
    layer's kernel and bias), set to these very numbers in every framework.
    """

    args: tuple[np.ndarray, ...]
    params: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class Expression:
    """A framework's version of an op: ``fn(*args)`` on the device; ``state`` keeps e.g. a Keras model alive."""

    fn: Callable[..., Any]
    state: Any = None


TFExpression = Callable[[Any, tuple[Any, ...]], Expression]
"""``tf(tf_module, params)`` -> the op's TensorFlow expression; ``params`` are device tensors of the dtype."""

JAXExpression = Callable[[Any], Callable[..., Any]]
"""``jax(jax_module)`` -> a pure function ``fn(*args, *params)`` of device arrays (params are arguments, not
closed over, so ``jax.jit`` never bakes them into the program as constants)."""

TorchExpression = Callable[[Any, tuple[Any, ...]], Expression]
"""``torch(torch_module, params)`` -> the op's PyTorch expression ``fn(*args)``; ``params`` are device tensors
of the dtype (``dense_step`` sets an ``nn.Linear``'s weight and bias to them, kept in ``state``)."""


@dataclass(frozen=True)
class OpDef:
    name: str
    n_means: str
    summary: str
    flops: Callable[[int], float]
    flops_formula: str
    bytes: Callable[[int, int], float]
    """Minimum bytes moved per call, given n and the dtype's item size."""
    working_set: Callable[[int, int], float]
    """Bytes held at once (inputs, outputs, temporaries), for the memory guard."""
    bound: Literal["memory", "compute"]
    """Which roofline ceiling limits the op at large n: memory bandwidth or arithmetic."""
    inputs: Callable[[int, str, np.random.Generator], HostInputs]
    """Seeded host data at size n (float64; never zeros; small integers where int32 must not overflow)."""
    numpy: Callable[..., Any]
    """``numpy(*args, *params)`` in the inputs' dtype: the numpy baseline, and in float64 the reference.
    Returns one array or a tuple of arrays (the leaves, in the framework's output order)."""
    tf: TFExpression | None = None
    jax: JAXExpression | None = None
    torch: TorchExpression | None = None
    """A framework without an expression has no version of the op: its cells are ``unsupported``."""
    needs_float: str = ""
    """Non-empty for ops without integer versions (gradients): names what needs a floating-point dtype."""
    cache: str = DEFAULT_CACHE
    """``warm`` or ``cold`` (inputs evicted from the caches before every timed call): from the op's name,
    :mod:`devbench.variants`."""

    @property
    def dtypes(self) -> tuple[str, ...]:
        return FLOAT_DTYPES if self.needs_float else DTYPES

    def require_dtype(self, dtype: str) -> None:
        """Raise UnsupportedCombination for a dtype this op has no version of (the same rule in every backend)."""
        if dtype not in self.dtypes:
            raise UnsupportedCombination(f"{self.needs_float} needs a floating-point dtype, not {dtype}")

    def expression(self, framework: str) -> Any:
        """The op's expression for ``framework`` (``tf``, ``jax``, ``torch``), or UnsupportedCombination."""
        found = getattr(self, framework, None)
        if found is None:
            raise UnsupportedCombination(f"op {self.name} has no {framework} version")
        return found

    def host_inputs(self, n: int, dtype: str, seed: int) -> HostInputs:
        """The op's input data for a cell: seeded, so every backend computes on the same numbers."""
        self.require_dtype(dtype)
        return self.inputs(n, dtype, np.random.default_rng(seed))


Shape = Mapping[str, int]
"""A cell's dimensions by name (``{"m": 512, "k": 256, "n": 256}``)."""


@dataclass(frozen=True)
class ShapedOp:
    """An op over named dimensions (``m, k, n``, ``batch, seq``, …), swept along one of them.

    The same fields as :class:`OpDef`, taking a :data:`Shape` where OpDef takes n. :meth:`bind` turns it into
    the OpDef of one curve (one dimension swept as the cell's ``size``, the others fixed), so that everything
    downstream of the registry still sees an op of one size; :meth:`square` is the curve with every dimension
    equal to n (what ``--sizes`` sweeps).
    """

    name: str
    dims: tuple[str, ...]
    summary: str
    flops: Callable[[Shape], float]
    flops_formula: str
    bytes: Callable[[Shape, int], float]
    working_set: Callable[[Shape, int], float]
    bound: Literal["memory", "compute"]
    inputs: Callable[[Shape, str, np.random.Generator], HostInputs]
    numpy: Callable[..., Any]
    tf: TFExpression | None = None
    jax: JAXExpression | None = None
    torch: TorchExpression | None = None
    needs_float: str = ""
    shape_means: str = ""
    """What the dimensions are, for ``devbench ops`` (``m×k @ k×n``)."""
    square_shape: Callable[[int], Shape] | None = None
    """How the square curve (``--sizes``, the op's plain name) maps n to a shape; None: every dimension is n.
    An attention block sweeps ``seq = n`` with ``batch`` and ``d`` fixed, not a batch of n heads of width n."""

    def bind(self, variant: Variant) -> OpDef:
        """The OpDef of one curve: ``variant`` names every dimension, one of them swept (``size``)."""
        if tuple(dim for dim, _ in variant.dims) != self.dims:
            raise UsageError(f"op {self.name} has the dimensions {','.join(self.dims)} (in that order); "
                             f"{variant.name!r} names {','.join(dim for dim, _ in variant.dims) or 'none'}")
        return self._curve(variant.without_cache().name,
                           f"{variant.axis} in {self.shape_means or ','.join(self.dims)} ({variant.curve_label})",
                           variant.shape_at)

    def shape_at_square(self, n: int) -> dict[str, int]:
        """The shape of the square curve at n: :attr:`square_shape`'s, else every dimension n."""
        if self.square_shape is None:
            return dict.fromkeys(self.dims, n)
        return {dim: int(self.square_shape(n)[dim]) for dim in self.dims}

    def square_text(self) -> str:
        """The square mapping in words, read off two sizes: ``batch=4, seq=n, d=64`` (``f(n)`` where a
        dimension is neither n nor fixed)."""
        if self.square_shape is None:
            return f"{' = '.join(self.dims)} = n"
        small, large = self.shape_at_square(2), self.shape_at_square(3)
        return ", ".join(f"{dim}=" + ("n" if (small[dim], large[dim]) == (2, 3) else
                                      str(small[dim]) if small[dim] == large[dim] else "f(n)")
                         for dim in self.dims)

    def square(self) -> OpDef:
        """The op's square curve (``square_shape``, default every dimension n): what ``--sizes`` sweeps, under
        the op's plain name."""
        return self._curve(self.name, f"{self.shape_means or ','.join(self.dims)} with {self.square_text()}",
                           self.shape_at_square)

    def _curve(self, name: str, n_means: str, shape_at: Callable[[int], Shape]) -> OpDef:
        """The OpDef whose size n stands for the shape ``shape_at(n)``: the one translation of this op's
        shape-taking fields into the n-taking ones (for :meth:`bind` and :meth:`square` alike)."""
        return OpDef(
            name=name,
            n_means=n_means,
            summary=self.summary,
            flops=lambda n: self.flops(shape_at(n)),
            flops_formula=self.flops_formula,
            bytes=lambda n, s: self.bytes(shape_at(n), s),
            working_set=lambda n, s: self.working_set(shape_at(n), s),
            bound=self.bound,
            inputs=lambda n, dtype, rng: self.inputs(shape_at(n), dtype, rng),
            numpy=self.numpy, tf=self.tf, jax=self.jax, torch=self.torch,
            needs_float=self.needs_float,
        )


def leaves_of(output: Any) -> list[np.ndarray]:
    """A numpy implementation's output as a list of arrays (one per leaf)."""
    return [np.asarray(o) for o in output] if isinstance(output, tuple) else [np.asarray(output)]


# ---------------------------------------------------------------------------------------------------------
# Input data


def _random(rng: np.random.Generator, shape: Sequence[int], dtype: str) -> np.ndarray:
    """Seeded uniform data in [-1, 1], or for int32 small integers in [-3, 3] (their sums cannot overflow)."""
    if dtype == "int32":
        return rng.integers(-3, 4, size=tuple(shape)).astype(np.float64)
    return rng.uniform(-1.0, 1.0, size=tuple(shape))


def _two_squares(n: int, dtype: str, rng: np.random.Generator) -> HostInputs:
    return HostInputs((_random(rng, (n, n), dtype), _random(rng, (n, n), dtype)))


def _one_square(n: int, dtype: str, rng: np.random.Generator) -> HostInputs:
    return HostInputs((_random(rng, (n, n), dtype),))


def _conv2d_inputs(n: int, dtype: str, rng: np.random.Generator) -> HostInputs:
    return HostInputs((_random(rng, (1, n, n, CONV_CHANNELS), dtype),
                       _random(rng, (CONV_KERNEL, CONV_KERNEL, CONV_CHANNELS, CONV_CHANNELS), dtype)))


def _xent_inputs(n: int, dtype: str, rng: np.random.Generator) -> HostInputs:
    """One-hot labels p and probabilities q bounded away from 0, so Keras' clipping (epsilon 1e-7) never engages."""
    q = rng.uniform(0.5, 1.5, size=(n, n))
    q /= q.sum(axis=1, keepdims=True)
    p = np.zeros((n, n))
    p[np.arange(n), rng.integers(0, n, size=n)] = 1.0
    return HostInputs((p, q))


def _dense_step_inputs(n: int, dtype: str, rng: np.random.Generator) -> HostInputs:
    """Batch x, target y, and the layer's kernel (Keras' glorot_uniform range) and zero bias."""
    x, y = _random(rng, (n, n), dtype), _random(rng, (n, n), dtype)
    limit = np.sqrt(6.0 / (n + n))
    return HostInputs((x, y), (rng.uniform(-limit, limit, size=(n, n)), np.zeros(n)))


# ---------------------------------------------------------------------------------------------------------
# numpy implementations (in the inputs' dtype; in float64 they are the references)


def reduce_rows_numpy(a: np.ndarray) -> np.ndarray:
    out: np.ndarray = a.sum(axis=1, dtype=a.dtype)
    return out


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


def xent_grad_numpy(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """d/dq of sum(categorical_crossentropy(p, q, from_logits=False)), analytically.

    Keras normalizes q/sum(q) before the log, so dL/dq_i = -p_i/q_i + sum(p)/sum(q) per row: for q = [.8, .1, .1]
    and p = [1, 0, 0] that is [-0.25, 1, 1], not the naive [-1.25, 0, 0].
    """
    grad: np.ndarray = -p / q + p.sum(axis=1, keepdims=True) / q.sum(axis=1, keepdims=True)
    return grad


def dense_step_numpy(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loss, kernel gradient and bias gradient of ``dense_step`` (mean squared error + L2·sum(W²)), analytically.

    Same outputs as the Keras step under GradientTape: ``(total, dL/dW, dL/db)``. No autodiff and no forward
    pass that is not needed, so numpy does less work than TF's GradientTape; that is part of what it shows.
    """
    pred = x @ w + b
    diff = pred - y
    residual = (2.0 / diff.size) * diff
    total = np.mean(diff * diff) + L2 * np.sum(w * w)
    kernel_grad: np.ndarray = x.T @ residual + (2.0 * L2) * w
    bias_grad: np.ndarray = residual.sum(axis=0)
    return np.asarray(total), kernel_grad, bias_grad


# ---------------------------------------------------------------------------------------------------------
# TensorFlow expressions (``tf`` is the tensorflow module, passed in so this module never imports it)


def _tf_matmul(tf: Any, params: tuple[Any, ...]) -> Expression:
    return Expression(tf.linalg.matmul)


def _tf_add(tf: Any, params: tuple[Any, ...]) -> Expression:
    return Expression(tf.math.add)


def _tf_reduce_sum(tf: Any, params: tuple[Any, ...]) -> Expression:
    def reduce_rows(a: Any) -> Any:
        return tf.math.reduce_sum(a, axis=1)

    return Expression(reduce_rows)


def _tf_conv2d(tf: Any, params: tuple[Any, ...]) -> Expression:
    def conv(x: Any, w: Any) -> Any:
        return tf.nn.conv2d(x, w, strides=1, padding="SAME")

    return Expression(conv)


def _tf_xent_grad(tf: Any, params: tuple[Any, ...]) -> Expression:
    def xent_grad(p: Any, q: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(q)
            loss = tf.reduce_sum(tf.keras.losses.categorical_crossentropy(p, q, from_logits=False))
        return tape.gradient(loss, q)

    return Expression(xent_grad)


def _tf_dense_step(tf: Any, params: tuple[Any, ...]) -> Expression:
    """One training step's gradients of Dense(n) with an L2 kernel regularizer, kernel and bias set to ``params``.

    ``model.losses`` is read *inside* the tape: Keras recomputes the regularization term when the property is
    read, so its gradient (2·L2·W) flows into the kernel's gradient.
    """
    kernel, bias = params
    n = int(kernel.shape[0])
    dtype = kernel.dtype.name
    model = tf.keras.Sequential([
        tf.keras.Input(shape=(n,), dtype=dtype),
        tf.keras.layers.Dense(n, kernel_regularizer=tf.keras.regularizers.L2(L2), dtype=dtype),
    ])
    layer = model.layers[0]
    layer.kernel.assign(kernel)
    layer.bias.assign(bias)
    variables = model.trainable_variables

    def step(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            pred_loss = tf.reduce_mean(tf.square(pred - y))
            total = pred_loss + tf.cast(tf.reduce_sum(model.losses), pred_loss.dtype)
        kernel_grad, bias_grad = tape.gradient(total, variables)
        return total, kernel_grad, bias_grad

    return Expression(step, state=model)


# ---------------------------------------------------------------------------------------------------------
# JAX expressions (``jax`` is the jax module; ``jax.numpy`` and ``jax.lax`` are reached through it)


def _jax_matmul(jax: Any) -> Callable[..., Any]:
    return jax.numpy.matmul  # type: ignore[no-any-return]


def _jax_add(jax: Any) -> Callable[..., Any]:
    return jax.numpy.add  # type: ignore[no-any-return]


def _jax_reduce_sum(jax: Any) -> Callable[..., Any]:
    def reduce_rows(a: Any) -> Any:
        return jax.numpy.sum(a, axis=1, dtype=a.dtype)  # int32 would otherwise widen to int64

    return reduce_rows


def _jax_conv2d(jax: Any) -> Callable[..., Any]:
    def conv(x: Any, w: Any) -> Any:
        return jax.lax.conv_general_dilated(x, w, window_strides=(1, 1), padding="SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    return conv


def _xent(np_like: Any, p: Any, q: Any, epsilon: float) -> Any:
    """Keras' categorical_crossentropy(from_logits=False), summed: q normalised by its row sums, clipped to
    [epsilon, 1 - epsilon], then -sum(p·log q). Written once for any numpy-like module (jax.numpy)."""
    normalised = q / np_like.sum(q, axis=-1, keepdims=True)
    return -np_like.sum(p * np_like.log(np_like.clip(normalised, epsilon, 1.0 - epsilon)))


KERAS_EPSILON = 1e-7
"""Keras' ``backend.epsilon()``, the clipping bound of its cross-entropy."""


def _jax_xent_grad(jax: Any) -> Callable[..., Any]:
    def loss(q: Any, p: Any) -> Any:
        return _xent(jax.numpy, p, q, KERAS_EPSILON)

    gradient = jax.grad(loss)

    def xent_grad(p: Any, q: Any) -> Any:
        return gradient(q, p)

    return xent_grad


def _jax_dense_step(jax: Any) -> Callable[..., Any]:
    """Loss and gradients of a linear layer ``x @ w + b`` with MSE plus L2·sum(w²), by ``jax.value_and_grad``."""
    jnp = jax.numpy

    def loss(params: tuple[Any, Any], x: Any, y: Any) -> Any:
        w, b = params
        pred = x @ w + b
        return jnp.mean(jnp.square(pred - y)) + L2 * jnp.sum(jnp.square(w))

    value_and_grad = jax.value_and_grad(loss)

    def step(x: Any, y: Any, w: Any, b: Any) -> Any:
        total, (kernel_grad, bias_grad) = value_and_grad((w, b), x, y)
        return total, kernel_grad, bias_grad

    return step


# ---------------------------------------------------------------------------------------------------------
# PyTorch expressions (``torch`` is the torch module)


def _torch_matmul(torch: Any, params: tuple[Any, ...]) -> Expression:
    return Expression(torch.matmul)


def _torch_add(torch: Any, params: tuple[Any, ...]) -> Expression:
    return Expression(torch.add)


def _torch_reduce_sum(torch: Any, params: tuple[Any, ...]) -> Expression:
    def reduce_rows(a: Any) -> Any:
        return torch.sum(a, dim=1, dtype=a.dtype)  # int32 would otherwise widen to int64

    return Expression(reduce_rows)


def _torch_conv2d(torch: Any, params: tuple[Any, ...]) -> Expression:
    """torch convolves NCHW with OIHW filters: the NHWC input and HWIO filter are permuted views (no copy; the
    input is then NCHW in channels-last memory, which torch's kernels take as is), the output permuted back."""

    def conv(x: Any, w: Any) -> Any:
        out = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), w.permute(3, 2, 0, 1), padding="same")
        return out.permute(0, 2, 3, 1)

    return Expression(conv)


def _torch_xent_grad(torch: Any, params: tuple[Any, ...]) -> Expression:
    def xent_grad(p: Any, q: Any) -> Any:
        q = q.detach().requires_grad_(True)
        normalised = q / q.sum(dim=-1, keepdim=True)
        loss = -(p * torch.log(normalised.clamp(KERAS_EPSILON, 1.0 - KERAS_EPSILON))).sum()
        (gradient,) = torch.autograd.grad(loss, (q,))
        return gradient

    return Expression(xent_grad)


def _torch_dense_step(torch: Any, params: tuple[Any, ...]) -> Expression:
    """Loss and gradients of ``nn.Linear(n, n)`` with MSE plus L2·sum(W²), by ``torch.autograd.grad``.

    torch stores the weight as (out, in) and computes x @ Wᵀ + b; the kernel ``params[0]`` is (in, out) as in
    Keras and numpy, so the weight is set to its transpose and its gradient is returned transposed back.
    """
    kernel, bias = params
    n = int(kernel.shape[0])
    layer = torch.nn.Linear(n, n, device=kernel.device, dtype=kernel.dtype)
    with torch.no_grad():
        layer.weight.copy_(kernel.T)
        layer.bias.copy_(bias)

    def step(x: Any, y: Any) -> Any:
        pred = layer(x)
        total = torch.mean(torch.square(pred - y)) + L2 * torch.sum(torch.square(layer.weight))
        weight_grad, bias_grad = torch.autograd.grad(total, (layer.weight, layer.bias))
        return total.detach(), weight_grad.T, bias_grad

    return Expression(step, state=layer)


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
            bound="compute",
            inputs=_two_squares,
            numpy=np.matmul,  # BLAS for float32/float64; numpy's own loops for float16 and int32
            tf=_tf_matmul,
            jax=_jax_matmul,
            torch=_torch_matmul,
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
            bound="compute",
            inputs=_conv2d_inputs,
            numpy=conv2d_numpy,
            tf=_tf_conv2d,
            jax=_jax_conv2d,
            torch=_torch_conv2d,
        ),
        OpDef(
            name="add",
            n_means="n×n + n×n elementwise",
            summary="tf.math.add: memory-bound",
            flops=lambda n: 1.0 * n * n,
            flops_formula="n²",
            bytes=lambda n, s: 3.0 * n * n * s,
            working_set=lambda n, s: 3.0 * n * n * s,
            bound="memory",
            inputs=_two_squares,
            numpy=np.add,
            tf=_tf_add,
            jax=_jax_add,
            torch=_torch_add,
        ),
        OpDef(
            name="reduce_sum",
            n_means="n×n summed over rows to n",
            summary="tf.math.reduce_sum(axis=1): memory-bound",
            flops=lambda n: 1.0 * n * n,
            flops_formula="n²",
            bytes=lambda n, s: (n * n + n) * float(s),
            working_set=lambda n, s: (n * n + n) * float(s),
            bound="memory",
            inputs=_one_square,
            numpy=reduce_rows_numpy,
            tf=_tf_reduce_sum,
            jax=_jax_reduce_sum,
            torch=_torch_reduce_sum,
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
            bound="memory",
            inputs=_xent_inputs,
            numpy=xent_grad_numpy,
            tf=_tf_xent_grad,
            jax=_jax_xent_grad,
            torch=_torch_xent_grad,
            needs_float="a gradient",
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
            bound="compute",
            inputs=_dense_step_inputs,
            numpy=dense_step_numpy,
            tf=_tf_dense_step,
            jax=_jax_dense_step,
            torch=_torch_dense_step,
            needs_float="a training step",
        ),
    )
}

DEFAULT_OPS = tuple(OPS)


def _matmul_inputs(shape: Shape, dtype: str, rng: np.random.Generator) -> HostInputs:
    m, k, n = shape["m"], shape["k"], shape["n"]
    return HostInputs((_random(rng, (m, k), dtype), _random(rng, (k, n), dtype)))


SHAPED: dict[str, ShapedOp] = {
    op.name: op
    for op in (
        ShapedOp(
            name="matmul",
            dims=("m", "k", "n"),
            shape_means="m×k @ k×n",
            summary="tf.linalg.matmul(a, b) of an m×k and a k×n matrix",
            flops=lambda d: 2.0 * d["m"] * d["k"] * d["n"],
            flops_formula="2mkn",
            bytes=lambda d, s: float(d["m"] * d["k"] + d["k"] * d["n"] + d["m"] * d["n"]) * s,
            working_set=lambda d, s: float(d["m"] * d["k"] + d["k"] * d["n"] + 2 * d["m"] * d["n"]) * s,
            bound="compute",
            inputs=_matmul_inputs,
            numpy=np.matmul,
            tf=_tf_matmul,
            jax=_jax_matmul,
            torch=_torch_matmul,
        ),
    )
}
"""Ops with named dimensions (``--shape``). An op here under a built-in's name is the same op: its square
curve (every dimension n) computes what the entry in :data:`OPS` does."""


def register(op: OpDef | ShapedOp) -> None:
    """Add a user's op (from an op file or an installed package) to the registry under its own name.

    A shaped op is also registered square (every dimension n), so ``--sizes`` and ``--shape`` both sweep it.
    A name already taken by a built-in is refused: results must mean the same thing in every run.
    """
    if op.name in OPS or op.name in SHAPED:
        raise UsageError(f"op {op.name!r} is already defined (built-in or registered twice); give it another name")
    if isinstance(op, ShapedOp):
        SHAPED[op.name] = op
        OPS[op.name] = op.square()
    else:
        OPS[op.name] = op


def op_named(name: str) -> OpDef:
    """The op a cell's op name stands for (:mod:`devbench.variants`): the registry's entry, bound to its shape
    and cache state. The one lookup of an op by name; an unknown op or bad name is a UsageError. Not memoised:
    tests replace registry entries, and a lookup is a parse and a dict access."""
    variant = parse_op_name(name)
    if variant.shaped:
        shaped = SHAPED.get(variant.base)
        if shaped is None:
            known = ", ".join(SHAPED) or "none"
            raise UsageError(f"op {variant.base!r} has no named dimensions to sweep; ops with them: {known}")
        op = shaped.bind(variant)
    elif variant.base in OPS:
        op = OPS[variant.base]
    else:
        raise UsageError(f"unknown op {variant.base!r}{did_you_mean(variant.base, OPS)}; allowed: {', '.join(OPS)}")
    return op if variant.cache == op.cache else replace(op, name=variant.name, cache=variant.cache)


def known_op(name: str) -> bool:
    """Whether ``name`` resolves to an op (a table read from elsewhere may hold ops this registry lacks)."""
    try:
        op_named(name)
    except UsageError:
        return False
    return True


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
