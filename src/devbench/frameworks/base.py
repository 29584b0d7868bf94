"""What a framework is to devbench (:class:`Framework`), a parsed device name (:class:`Device`) and the sync names.

Plain data, no framework import: every question about a device name is answered from here without starting
TensorFlow, JAX or PyTorch. The registry of frameworks is :mod:`devbench.frameworks`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

SCALAR_SYNC = "scalar"
"""Wait by reading one element of the output back to the host."""
FULL_SYNC = "full"
"""Wait by copying the whole output to the host."""
SYNC_DEVICES = "sync_devices"
"""Wait for every device, copying nothing."""
NO_SYNC = "none"
"""No wait at all: times how fast work is enqueued (an unsynchronized cell, flagged everywhere)."""
TRANSFER_SYNC = "transfer"
"""Each call first copies the inputs from host memory to the device and afterwards copies its whole result back
(``.numpy()``): what a caller holding numpy data pays on every call."""
SYNC_MODES: tuple[str, ...] = (SCALAR_SYNC, FULL_SYNC, SYNC_DEVICES, NO_SYNC, TRANSFER_SYNC)
"""Every sync a cell may ask for; a framework's :attr:`Framework.syncs` says what each does there."""

HOST_KIND = "CPU"
"""The :attr:`Device.kind` of every host device: its data lives in host memory, its work runs on the host's cores."""


@dataclass(frozen=True)
class Device:
    """A device name, parsed: ``Device("jax:gpu:1", "jax", "GPU", 1, "gpu")``."""

    name: str
    """Canonical name (``CPU:0``, ``jax:gpu:1``, ``torch:cuda:0``, ``numpy:CPU``)."""
    framework: str
    """Key of the framework that runs it (its name's prefix; TensorFlow's names have none)."""
    kind: str
    """``CPU`` (:data:`HOST_KIND`) for a host device, else ``GPU``, ``TPU``, ``MPS`` ..., whatever the framework."""
    ordinal: int | None
    """The framework's index of the device among those of its kind (``GPU:2`` -> 2); None where the name has none
    (``torch:cpu``, ``torch:mps``, ``numpy:CPU``)."""
    native: str
    """The framework's own spelling where it differs (torch's ``cuda:0``, JAX's platform ``gpu``), else the name."""

    @property
    def is_host(self) -> bool:
        return self.kind == HOST_KIND

    @property
    def is_accelerator(self) -> bool:
        return not self.is_host


Grammar = Callable[[str, str], Device]
"""``grammar(text, written)``: the :class:`Device` that ``text`` (the name without its framework prefix, stripped)
names, or a :class:`~devbench.errors.UsageError` quoting ``written`` (the name as the user wrote it)."""

TF32State = Callable[[Any], tuple[str, str, dict[str, Any]]]
"""``state(module)``: ``(state, why, settings)`` read from the imported framework (state ``enabled``, ``disabled``
or ``partial``)."""
TF32Apply = Callable[[Any, bool], list[str]]
"""``apply(module, allow)``: set TF32 on or off, returning the calls made (for meta.json)."""


@dataclass(frozen=True)
class Framework:
    """Everything devbench knows about one framework without importing it (one module of this package each)."""

    key: str
    """The device-name prefix (``jax`` in ``jax:gpu:0``) and the framework's key everywhere (meta.json, --tf32)."""
    label: str
    """Its name for people: ``TensorFlow``, ``JAX``."""
    module: str
    """What to import to use it."""
    install: str
    """How to install it, for the line that says it is missing."""
    grammar: Grammar
    backend: str
    """``"module:Class"`` of the backend that runs its cells, imported on first use (see devbench.backends)."""
    host: str = ""
    """Canonical name of its host device (the one a sweep's default device list starts from); empty for a
    framework without one (a GPU-only library)."""
    modes: tuple[str, ...] = ()
    """The dispatch modes it has; empty: it has none of its own and runs any mode (the numpy baseline)."""
    syncs: Mapping[str, str] = field(default_factory=dict)
    """Sync name (:data:`SYNC_MODES`) -> what it waits for in this framework. The backend's table of sync
    functions has exactly these keys (tested)."""
    runtime: bool = True
    """False for a framework with nothing to import, discover or configure (the numpy baseline, on the host)."""
    unprefixed: bool = False
    """True for the one framework whose names carry no prefix (TensorFlow's ``CPU:0``, ``/device:GPU:1``)."""
    tf32_state: TF32State | None = None
    tf32_apply: TF32Apply | None = None
    """TF32 knobs, where the framework has them (see devbench.tf32)."""
