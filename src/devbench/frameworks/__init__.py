"""The frameworks devbench runs cells on, one module each, and the registry that answers every question about a
device name: which framework runs it (:func:`framework_of`), its canonical spelling and parts (:func:`parse`),
host or accelerator (:func:`is_accelerator`), the modes and syncs each framework has.

This is the one device-name parser: no other module splits a device name to find its framework (checked by
``tests/test_architecture.py``). Nothing here imports a framework; starting one, discovery and free memory
are :mod:`devbench.devices`, running a cell :mod:`devbench.backends`.

Adding a framework is one module here (a :class:`Framework`: grammar, host device, modes, syncs, backend) plus
its backend and op expressions; :func:`register` also accepts one at run time (the README's "Add a framework").
"""

from __future__ import annotations

from collections.abc import Iterable

from devbench.errors import UsageError
from devbench.frameworks import jax as _jax
from devbench.frameworks import numpy as _numpy
from devbench.frameworks import tf as _tf
from devbench.frameworks import torch as _torch
from devbench.frameworks.base import (
    FULL_SYNC,
    HOST_KIND,
    NO_SYNC,
    SCALAR_SYNC,
    SYNC_DEVICES,
    SYNC_MODES,
    TRANSFER_SYNC,
    Device,
    Framework,
    Grammar,
)

FRAMEWORKS: dict[str, Framework] = {}
"""Key -> framework, in the order of preference for the default devices: TensorFlow (devbench's default
backend), then PyTorch (what most GPU users have), then JAX, then the numpy baseline; then any registered later."""

NUMPY_DEVICE = _numpy.DEVICE


def register(framework: Framework) -> Framework:
    """Add ``framework`` (or replace the one with its key); its names parse from now on. Returns it."""
    if framework.unprefixed and any(f.unprefixed for f in FRAMEWORKS.values() if f.key != framework.key):
        raise ValueError(f"framework {framework.key!r}: only one framework's names may carry no prefix")
    FRAMEWORKS[framework.key] = framework
    return framework


def unregister(key: str) -> None:
    """Forget framework ``key`` (a test's fake); unknown keys are ignored."""
    FRAMEWORKS.pop(key, None)


for _framework in (_tf.FRAMEWORK, _torch.FRAMEWORK, _jax.FRAMEWORK, _numpy.FRAMEWORK):
    register(_framework)

MODES: tuple[str, ...] = tuple(dict.fromkeys(m for key in ("tf", "jax", "torch") for m in FRAMEWORKS[key].modes))
"""Every dispatch mode of the built-in frameworks (``spec.MODES`` is this tuple), in the order the CLI has always
listed them (TensorFlow's, then JAX's, then PyTorch's). ``eager`` (op by op) is every framework's; a mode a
framework does not have is an ``unsupported`` cell, not an error."""


def get(key: str) -> Framework:
    """The framework ``key``; UsageError naming the known ones otherwise."""
    try:
        return FRAMEWORKS[key]
    except KeyError:
        raise UsageError(f"unknown framework {key!r}; known: {', '.join(FRAMEWORKS)}") from None


def parse(name: str) -> Device:
    """The :class:`Device` that ``name`` (any accepted spelling) names; UsageError, one line, for what is not one.

    The text before the first ``:`` picks the framework (``jax:gpu:0``); a name without a known prefix is the
    unprefixed framework's (TensorFlow: ``CPU:0``, ``/device:GPU:1``), unless it reads ``word:...:...`` like
    another framework's name (``mxnet:cpu:0``), which is refused as an unknown framework.
    """
    text = name.strip()
    prefix, _, rest = text.partition(":")
    framework = FRAMEWORKS.get(prefix.lower())
    if framework is not None:
        return framework.grammar(rest.strip(), name)
    if prefix.isalpha() and prefix.islower() and text.count(":") >= 2 and "/" not in text:
        raise UsageError(f"unknown framework {prefix!r} in device name {name!r}; known: {', '.join(FRAMEWORKS)}")
    default = next((f for f in FRAMEWORKS.values() if f.unprefixed), None)
    if default is None:  # pragma: no cover - TensorFlow's module registers itself above
        raise UsageError(f"device {name!r} has no framework prefix; known: {', '.join(FRAMEWORKS)}")
    return default.grammar(text, name)


def canonical(name: str) -> str:
    """The canonical spelling of device ``name`` (``tf:gpu:1`` -> ``GPU:1``, ``jax:cuda`` -> ``jax:gpu:0``)."""
    return parse(name).name


def framework_of(device: str) -> str:
    """Key of the framework that runs ``device`` (``tf``, ``jax``, ``torch``, ``numpy``, or a registered one)."""
    return parse(device).framework


def framework_for(device: str) -> Framework:
    """The :class:`Framework` that runs ``device``."""
    return FRAMEWORKS[framework_of(device)]


def _parsed(device: str) -> Device | None:
    try:
        return parse(device)
    except UsageError:
        return None


def is_host(device: str) -> bool:
    """True for a device whose data lives in host memory and whose work runs on the host's cores: every CPU
    (``CPU:k``, ``tf:CPU:0``, ``jax:cpu:k``, ``torch:cpu``) and the numpy baseline. False for a name no
    framework claims."""
    parsed = _parsed(device)
    return parsed is not None and parsed.is_host


def is_accelerator(device: str) -> bool:
    """The one rule for "accelerator": a device that is not the host (a GPU, TPU or Apple GPU of any framework:
    ``GPU:0``, ``tf:GPU:0``, ``jax:gpu:0``, ``torch:cuda:0``, ``torch:mps``). False for every CPU, numpy, and a
    name no framework claims."""
    parsed = _parsed(device)
    return parsed is not None and parsed.is_accelerator


def frameworks_of(devices: Iterable[str]) -> tuple[str, ...]:
    """The frameworks with a runtime (to import, discover and configure) that run ``devices``, in
    :data:`FRAMEWORKS` order: ``CPU:0``/``tf:GPU:0`` -> tf, ``torch:...`` -> torch, ``jax:...`` -> jax;
    ``numpy:CPU`` -> none."""
    used = {framework_of(d) for d in devices}
    return tuple(key for key, f in FRAMEWORKS.items() if key in used and f.runtime)


def runtimes() -> tuple[str, ...]:
    """Keys of the frameworks with a runtime, in :data:`FRAMEWORKS` order (what discovery looks for)."""
    return tuple(key for key, f in FRAMEWORKS.items() if f.runtime)


def modes_of(key: str) -> tuple[str, ...]:
    """The dispatch modes framework ``key`` has; empty: any mode (the numpy baseline has none of its own)."""
    return get(key).modes


def all_modes() -> tuple[str, ...]:
    """Every mode of every registered framework, built-in ones first (:data:`MODES`), each once."""
    return tuple(dict.fromkeys([*MODES, *(m for f in FRAMEWORKS.values() for m in f.modes)]))


__all__ = [
    "FRAMEWORKS", "FULL_SYNC", "HOST_KIND", "MODES", "NO_SYNC", "NUMPY_DEVICE", "SCALAR_SYNC", "SYNC_DEVICES",
    "SYNC_MODES", "TRANSFER_SYNC", "Device", "Framework", "Grammar", "all_modes", "canonical", "framework_for",
    "framework_of", "frameworks_of", "get", "is_accelerator", "is_host", "modes_of", "parse", "register",
    "runtimes", "unregister",
]
