"""Guards that decide, before a cell allocates anything, whether it may run at all.

A guard returns ``None`` (go ahead) or the reason the cell is ``skipped``. Skipping with a reason is always
better than what happens otherwise: the kernel's OOM killer ends the whole sweep (a 8192² conv2d on a 24 GiB
machine needs ~44 GiB, most of it oneDNN's im2col workspace).
"""

from __future__ import annotations

from collections.abc import Callable

import psutil

from devbench.ops import ITEMSIZE, OPS
from devbench.spec import Cell

Guard = Callable[[Cell], "str | None"]

HOST_HEADROOM = 0.85
"""Use at most this fraction of the host's available memory: the OS, TF's own pools and fragmentation
need the rest."""

DEVICE_HEADROOM = 0.9


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


def estimated_bytes(cell: Cell) -> float:
    """Peak bytes a cell holds at once on its device (inputs, outputs, temporaries), from the op registry.

    Host-side staging of the inputs (float64 random data, converted on the way) is added for every device,
    since inputs are generated in host memory first.
    """
    op = OPS[cell.op]
    return op.working_set(cell.size, ITEMSIZE[cell.dtype]) + 2.0 * cell.size * cell.size * 8


class MemoryGuard:
    """Skips a cell whose estimated working set exceeds free host memory (CPU) or free device memory (GPU).

    ``host_available`` and ``device_free`` are injectable so the logic is testable without filling memory.
    """

    def __init__(
        self,
        host_available: Callable[[], int] | None = None,
        device_free: Callable[[str], int | None] | None = None,
    ) -> None:
        self.host_available = host_available or (lambda: int(psutil.virtual_memory().available))
        self.device_free = device_free or _tf_device_free

    def __call__(self, cell: Cell) -> str | None:
        need = estimated_bytes(cell)
        if cell.device.startswith("GPU:"):
            free = self.device_free(cell.device)
            if free is not None and need > DEVICE_HEADROOM * free:
                return (f"memory guard: needs about {_gib(need)} on {cell.device}, "
                        f"{_gib(free)} free there")
        available = self.host_available()
        host_need = need if cell.device.startswith("CPU:") else 2.0 * cell.size * cell.size * 8
        if host_need > HOST_HEADROOM * available:
            return f"memory guard: needs about {_gib(host_need)} of host memory, {_gib(available)} available"
        return None


def _tf_device_free(device: str) -> int | None:
    from devbench.devices import free_memory_bytes

    return free_memory_bytes(device)


def combine(*guards: Guard) -> Guard:
    """The first guard that objects decides."""

    def guard(cell: Cell) -> str | None:
        for g in guards:
            reason = g(cell)
            if reason is not None:
                return reason
        return None

    return guard
