"""TensorFlow: devbench's default framework. Its device names carry no prefix.

Canonical ``KIND:INDEX`` (``CPU:0``, ``GPU:1``). Also accepted: ``tf:CPU:0``, ``cpu``, ``/GPU:1``, ``gpu:1``,
``/device:GPU:1`` and a full TF name such as ``/job:localhost/replica:0/task:0/device:GPU:1``.
"""

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

KEY = "tf"
_NAME = re.compile(r"(?:^|/)(?:device:)?([A-Za-z_]+)(?::(\d+))?$")

MODES = ("eager", "function", "xla", "graph_loop")
"""``eager`` op by op, ``function`` (tf.function), ``xla`` (jit_compile=True), ``graph_loop`` (one
``tf.while_loop`` runs the op ``number`` times)."""

SYNCS = {
    SCALAR_SYNC: "reads one element of the output back to the host",
    FULL_SYNC: "copies every output to the host (.numpy())",
    SYNC_DEVICES: "tf.test.experimental.sync_devices(): waits for every device, copies nothing",
    NO_SYNC: "no wait: times how fast work is enqueued",
    TRANSFER_SYNC: "each call copies its inputs in and its result out",
}


def parse(text: str, written: str) -> Device:
    """``KIND:INDEX`` from any accepted spelling (see the module docstring)."""
    match = _NAME.search(text)
    if not text or not match:
        raise UsageError(f"bad device name {written!r}; write it like CPU:0, GPU:1, jax:cpu:0 or torch:cuda:0")
    kind = match[1].upper()
    ordinal = int(match[2]) if match[2] is not None else 0
    name = f"{kind}:{ordinal}"
    return Device(name, KEY, kind, ordinal, name)


def tf32_state(tf: Any) -> tuple[str, str, dict[str, Any]]:
    enabled = bool(tf.config.experimental.tensor_float_32_execution_enabled())
    return ("enabled" if enabled else "disabled",
            f"tf.config.experimental.tensor_float_32_execution_enabled() is {enabled}",
            {"tensor_float_32_execution": enabled})


def tf32_apply(tf: Any, allow: bool) -> list[str]:
    tf.config.experimental.enable_tensor_float_32_execution(allow)
    return [f"tf.config.experimental.enable_tensor_float_32_execution({allow})"]


FRAMEWORK = Framework(
    key=KEY, label="TensorFlow", module="tensorflow",
    install="pip install tensorflow (devbench's default install has it)", grammar=parse, host="CPU:0",
    backend="devbench.backends.tf:TFBackend", modes=MODES, syncs=SYNCS, unprefixed=True,
    tf32_state=tf32_state, tf32_apply=tf32_apply,
)
