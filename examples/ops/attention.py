"""Two transformer blocks as devbench ops, from a file outside the package:

    devbench ops --op-file examples/ops/attention.py
    devbench sweep --op-file examples/ops/attention.py --ops attention,layer_norm \\
        --devices CPU:0,jax:cpu:0 --sizes 32..512

- ``attention``: scaled dot-product attention softmax(q kᵀ / √d) v over ``batch, seq, d``; the square curve
  (``--sizes``) sweeps the sequence length with batch 4 and width 64 (``--shape`` can sweep any of the three).
- ``layer_norm``: (x - mean) / √(var + ε) · γ + β over the last axis of a ``tokens × d`` batch; its square curve
  is n × n (every dimension n, the default).

Each has a numpy reference (float64: the correctness reference; the inputs' dtype: the ``numpy:CPU``
baseline) and TensorFlow and JAX versions, plain functions of the framework's arrays. No PyTorch version: its
cells are ``unsupported``. The frameworks are imported inside the functions, so listing the ops imports none.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from devbench.userops import op

BATCH = 4
WIDTH = 64
EPSILON = 1e-5


# --- attention -----------------------------------------------------------------------------------------------


def attention_numpy(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    scores = q @ np.swapaxes(k, -1, -2) / np.asarray(math.sqrt(q.shape[-1]), dtype=q.dtype)
    scores = scores - scores.max(axis=-1, keepdims=True)  # the usual stabilisation, as the frameworks do
    weights = np.exp(scores)
    weights = weights / weights.sum(axis=-1, keepdims=True)
    out: np.ndarray = weights @ v
    return out


def attention_tf(q: Any, k: Any, v: Any) -> Any:
    import tensorflow as tf

    scores = tf.linalg.matmul(q, k, transpose_b=True) / tf.cast(math.sqrt(q.shape[-1]), q.dtype)
    return tf.linalg.matmul(tf.nn.softmax(scores, axis=-1), v)


def attention_jax(q: Any, k: Any, v: Any) -> Any:
    import jax

    scores = q @ jax.numpy.swapaxes(k, -1, -2) / jax.numpy.asarray(math.sqrt(q.shape[-1]), dtype=q.dtype)
    return jax.nn.softmax(scores, axis=-1) @ v


attention = op(
    "attention",
    dims=("batch", "seq", "d"),
    means="softmax(q kᵀ/√d) v, q, k, v of batch×seq×d",
    summary="scaled dot-product attention (two batched matmuls around a softmax)",
    inputs=lambda s: [(s["batch"], s["seq"], s["d"])] * 3,
    numpy=attention_numpy,
    tf=attention_tf,
    jax=attention_jax,
    # q kᵀ and weights v: 2·b·s²·d each; the softmax about 5 per score.
    flops=lambda s: 4.0 * s["batch"] * s["seq"] ** 2 * s["d"] + 5.0 * s["batch"] * s["seq"] ** 2,
    flops_formula="4·b·s²·d + 5·b·s²",
    # q, k, v and the output, plus the b·s² scores and weights held at once.
    working_set=lambda s, itemsize: (4.0 * s["batch"] * s["seq"] * s["d"]
                                     + 2.0 * s["batch"] * s["seq"] ** 2) * itemsize,
    square=lambda n: {"batch": BATCH, "seq": n, "d": WIDTH},
)


# --- layer norm ----------------------------------------------------------------------------------------------


def layer_norm_numpy(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    out: np.ndarray = (x - mean) / np.sqrt(var + np.asarray(EPSILON, dtype=x.dtype)) * gamma + beta
    return out


def layer_norm_tf(x: Any, gamma: Any, beta: Any) -> Any:
    import tensorflow as tf

    mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(var + tf.cast(EPSILON, x.dtype)) * gamma + beta


def layer_norm_jax(x: Any, gamma: Any, beta: Any) -> Any:
    import jax

    jnp = jax.numpy
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + jnp.asarray(EPSILON, dtype=x.dtype)) * gamma + beta


layer_norm = op(
    "layer_norm",
    dims=("tokens", "d"),
    means="layer norm over d of a tokens×d batch, γ and β of d",
    summary="layer normalisation (mean, variance, scale and shift per row)",
    inputs=lambda s: [(s["tokens"], s["d"]), (s["d"],), (s["d"],)],
    numpy=layer_norm_numpy,
    tf=layer_norm_tf,
    jax=layer_norm_jax,
    flops=lambda s: 8.0 * s["tokens"] * s["d"],
    flops_formula="≈8·tokens·d",
)

OPS = [attention, layer_norm]
