"""JAX: ``jax:cpu:0``, ``jax:gpu:N`` (``jax:cuda:N`` and ``jax:gpu`` are accepted), ``jax:tpu:N``."""

from __future__ import annotations

import re
from typing import Any

from devbench.errors import UsageError
from devbench.frameworks.base import (
    FULL_SYNC,
    NO_SYNC,
    SCALAR_SYNC,
    SYNC_DEVICES,
    TRANSFER_SYNC,
    Device,
    Framework,
)

KEY = "jax"
_NAME = re.compile(r"^(cpu|gpu|cuda|tpu)(?::(\d+))?$")

MODES = ("eager", "jit", "graph_loop")
"""``eager`` op by op, ``jit`` (``jax.jit``), ``graph_loop`` (one ``jax.lax.fori_loop`` runs the op ``number``
times)."""

SYNCS = {
    SCALAR_SYNC: "reads one element of the output back to the host",
    FULL_SYNC: "copies every output to the host",
    SYNC_DEVICES: "jax.block_until_ready: waits for the output's computation, copies nothing",
    NO_SYNC: "no wait: times how fast work is enqueued (JAX dispatches asynchronously, on the CPU too)",
    TRANSFER_SYNC: "each call copies its inputs in and its result out",
}

FULL_FLOAT32 = frozenset({"highest", "float32", "F32_F32_F32", "F64_F64_F64", "TF32_TF32_F32_X3",
                          "BF16_BF16_F32_X6", "BF16_BF16_F32_X9"})
"""JAX matmul precisions that give (at least) float32 accuracy; every other one, None included, lets XLA use
TF32 (or bfloat16 passes) for float32 on a GPU that has them."""


def parse(text: str, written: str) -> Device:
    match = _NAME.match(text.lower())
    if not match:
        raise UsageError(f"bad JAX device name {written!r}; write it like jax:cpu:0 or jax:gpu:1")
    platform = "gpu" if match[1] == "cuda" else match[1]
    ordinal = int(match[2] or 0)
    return Device(f"{KEY}:{platform}:{ordinal}", KEY, platform.upper(), ordinal, platform)


def tf32_state(jax: Any) -> tuple[str, str, dict[str, Any]]:
    precision = jax.config.jax_default_matmul_precision
    if precision in FULL_FLOAT32:
        return ("disabled", f"jax_default_matmul_precision is {precision!r}: full float32",
                {"default_matmul_precision": precision})
    return ("enabled", f"jax_default_matmul_precision is {precision!r}: XLA may use TF32 on a GPU",
            {"default_matmul_precision": precision})


def tf32_apply(jax: Any, allow: bool) -> list[str]:
    precision = "tensorfloat32" if allow else "highest"
    jax.config.update("jax_default_matmul_precision", precision)
    return [f"jax.config.update('jax_default_matmul_precision', {precision!r})"]


FRAMEWORK = Framework(
    key=KEY, label="JAX", module="jax", install='pip install "devbench[jax]"', grammar=parse, host="jax:cpu:0",
    backend="devbench.backends.jax:JaxBackend", modes=MODES, syncs=SYNCS, tf32_state=tf32_state,
    tf32_apply=tf32_apply,
)
