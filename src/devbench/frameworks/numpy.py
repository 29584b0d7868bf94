"""The numpy baseline (``--baseline numpy``): the same ops in plain numpy on the host, device ``numpy:CPU``
(``numpy`` and ``numpy:cpu`` are accepted). Nothing to import, discover or configure; every sync is a no-op."""

from __future__ import annotations

from devbench.errors import UsageError
from devbench.frameworks.base import HOST_KIND, SYNC_MODES, Device, Framework

KEY = "numpy"
DEVICE = "numpy:CPU"
"""The baseline's pseudo-device name."""

SYNCS = {sync: "a no-op: numpy is synchronous" for sync in SYNC_MODES}


def parse(text: str, written: str) -> Device:
    if text.lower() not in ("", "cpu"):
        raise UsageError(f"bad numpy device name {written!r}; the numpy baseline is numpy:CPU")
    return Device(DEVICE, KEY, HOST_KIND, None, "cpu")


FRAMEWORK = Framework(
    key=KEY, label="numpy", module="numpy", install="pip install numpy (devbench requires it)", grammar=parse,
    host=DEVICE, backend="devbench.backends.numpy:NumpyBackend", syncs=SYNCS, runtime=False,
)
