"""Backends: one module per framework, and the router that sends each cell to the backend of its device.

:data:`ROUTES` maps a device name to the backend class that runs it, as ``"module:Class"`` strings, so a
backend's module (and its framework) is imported only when a cell of its device runs: a numpy-only sweep never
imports TensorFlow. Adding a framework is one module here (a class with ``run_cell``, ``classify`` and
``release``, see :class:`~devbench.backends.base.Backend`, and ``initialise``/``runtime_init``, see
:class:`~devbench.backends.base.Initialising`), one route below, and its expression per op in
:mod:`devbench.ops`. :func:`initialise` times each device's first op before a sweep calibrates or measures.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from devbench.backends.base import Backend, CellOutcome, DeviceInit, UnsupportedCombination, classify
from devbench.spec import NUMPY_DEVICE, Cell, TimingPolicy
from devbench.timer import Clock


@dataclass(frozen=True)
class Route:
    """Cells whose device name ``matches`` run on ``target`` (``"module:Class"``, made with ``clock=``).

    ``modes`` are the dispatch modes the framework has (empty: any, the numpy baseline has none of its own); a
    cell in another mode is ``unsupported`` before the backend, or its framework, is even loaded.
    """

    matches: Callable[[str], bool]
    target: str
    framework: str = ""
    modes: tuple[str, ...] = ()


def _is_tensorflow_device(device: str) -> bool:
    """TensorFlow's own names carry no framework prefix: ``CPU:0``, ``GPU:1``."""
    kind, _, index = device.partition(":")
    return kind.isalpha() and kind.isupper() and index.isdigit()


ROUTES: tuple[Route, ...] = (
    Route(lambda device: device == NUMPY_DEVICE, "devbench.backends.numpy:NumpyBackend", "numpy"),
    Route(_is_tensorflow_device, "devbench.backends.tf:TFBackend", "TensorFlow",
          ("eager", "function", "xla", "graph_loop")),
    Route(lambda device: device.startswith("jax:"), "devbench.backends.jax:JaxBackend", "JAX",
          ("eager", "jit", "graph_loop")),
    Route(lambda device: device.startswith("torch:"), "devbench.backends.torch:TorchBackend", "PyTorch",
          ("eager", "compile")),
)
"""First match wins. A new framework adds a line here."""


def route_for(device: str) -> Route:
    """The route of ``device``; ValueError for a name no backend claims."""
    for route in ROUTES:
        if route.matches(device):
            return route
    raise ValueError(f"no backend runs device {device!r}")


def target_for(device: str) -> str:
    """The ``"module:Class"`` that runs cells of ``device``; ValueError for a name no backend claims."""
    return route_for(device).target


def check_mode(cell: Cell) -> None:
    """UnsupportedCombination for a mode the cell's framework does not have (``jit`` on TF, ``xla`` on torch)."""
    route = route_for(cell.device)
    if route.modes and cell.mode not in route.modes:
        raise UnsupportedCombination(
            f"mode {cell.mode!r} does not exist on {route.framework} (it has {', '.join(route.modes)})")


def _create(target: str, clock: Clock | None) -> Backend:
    module, _, name = target.partition(":")
    backend: Backend = getattr(importlib.import_module(module), name)(clock=clock)
    return backend


class RoutingBackend:
    """Sends each cell to the backend for its device, creating each backend on first use.

    ``backends`` pre-seeds instances by target (tests inject fakes that way).
    """

    def __init__(self, clock: Clock | None = None, backends: dict[str, Backend] | None = None) -> None:
        self._clock = clock
        self._backends: dict[str, Backend] = dict(backends or {})
        self._last: Backend | None = None

    @property
    def created(self) -> tuple[str, ...]:
        """The targets created or injected so far, in order."""
        return tuple(self._backends)

    def backend_for(self, cell: Cell) -> Backend:
        return self.backend_for_device(cell.device)

    def backend_for_device(self, device: str) -> Backend:
        target = target_for(device)
        if target not in self._backends:
            self._backends[target] = _create(target, self._clock)
        return self._backends[target]

    def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int) -> CellOutcome:
        self._last = None  # a mode refused here is classified by the shared rules, and releases nothing
        check_mode(cell)
        self._last = self.backend_for(cell)
        outcome: CellOutcome = self._last.run_cell(cell, policy, seed)  # type: ignore[assignment]
        return outcome

    def classify(self, exc: BaseException) -> tuple[str, str]:
        return self._last.classify(exc) if self._last is not None else classify(exc)

    def release(self) -> None:
        if self._last is not None:
            self._last.release()


def default_backend(clock: Clock | None = None) -> RoutingBackend:
    """The backend a sweep uses: each device's framework (TensorFlow, JAX, PyTorch), numpy for ``numpy:CPU``."""
    return RoutingBackend(clock=clock)


NOT_INITIALISED = "not timed: this backend has no initialise()"


def initialise(devices: Sequence[str], router: RoutingBackend | None = None) -> dict[str, Any]:
    """Time the first op of this process on each of ``devices`` (before calibration and the first cell), and
    what each framework's start-up cost; ``meta.json["init"]``.

    ``{"devices": {device: DeviceInit.as_dict()}, "runtimes": {runtime: {...}}}``: per device ``init_s``
    (seconds, None where nothing is initialised or the op failed, see ``error``), ``what`` was timed,
    ``runtime`` and ``already_initialised`` (an earlier call in this process timed it: the number is that
    one, not re-timed); per framework what its ``runtime_init()`` reports (TensorFlow: ``runtime_init_s`` =
    ``import_s`` + ``context_s``, see :func:`devbench.devices.tensorflow_runtime_init`). A backend without
    ``initialise`` (a test's fake) is listed with ``init_s`` None. Starting a backend (TensorFlow) happens
    here if nothing started it before.
    """
    router = router if router is not None else RoutingBackend()
    per_device: dict[str, dict[str, Any]] = {}
    runtimes: dict[str, dict[str, Any]] = {}
    for device in devices:
        backend = router.backend_for_device(device)
        initialise_one = getattr(backend, "initialise", None)
        if not callable(initialise_one):
            per_device[device] = DeviceInit(device, type(backend).__name__, None, NOT_INITIALISED).as_dict()
            continue
        result: DeviceInit = initialise_one(device)
        per_device[device] = result.as_dict()
        runtime_init = getattr(backend, "runtime_init", None)
        timings = runtime_init() if callable(runtime_init) else None
        if timings is not None and result.runtime not in runtimes:
            runtimes[result.runtime] = dict(timings)
    return {"devices": per_device, "runtimes": runtimes}


__all__ = ["NOT_INITIALISED", "ROUTES", "Route", "RoutingBackend", "check_mode", "default_backend", "initialise",
           "route_for", "target_for"]
