"""Backends: one module per framework, and the router that sends each cell to the backend of its device.

:func:`route_for` maps a device name to the backend class that runs it: the registry (devbench.frameworks) says
which framework the name is, and that framework's ``backend`` (a ``"module:Class"`` string) is imported only
when a cell of its device runs: a numpy-only sweep never imports TensorFlow. Adding a framework is one module
in devbench.frameworks, one module here (a :class:`~devbench.backends.base.FrameworkBackend` subclass with the
framework's hooks: the one ``run_cell`` there is every framework's), and its expression per op in
:mod:`devbench.ops`. :func:`initialise` times each device's first op before a sweep calibrates or measures;
calibration (devbench.calibrate) and the pytest plugin ask :class:`RoutingBackend` for each device's backend too.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from devbench.backends.base import Backend, CellOutcome, DeviceInit, Timed, classify, require_mode
from devbench.energy import EnergyProbe
from devbench.errors import UsageError
from devbench.frameworks import FRAMEWORKS, Framework, parse
from devbench.spec import Cell, TimingPolicy
from devbench.timer import Clock


@dataclass(frozen=True)
class Route:
    """Cells of framework ``key``'s devices run on ``target`` (``"module:Class"``, made with ``clock=``).

    ``modes`` are the dispatch modes the framework has (empty: any, the numpy baseline has none of its own); a
    cell in another mode is ``unsupported`` before the backend, or its framework, is even loaded.
    """

    key: str
    target: str
    framework: str = ""
    """The framework's label, for messages."""
    modes: tuple[str, ...] = ()


def _route(framework: Framework) -> Route:
    return Route(framework.key, framework.backend, framework.label, framework.modes)


ROUTES: tuple[Route, ...] = tuple(_route(f) for f in FRAMEWORKS.values())
"""The routes of the built-in frameworks, from the registry (devbench.frameworks); :func:`route_for` asks the
registry itself, so a framework registered later is routed too."""


def route_for(device: str) -> Route:
    """The route of canonical device name ``device``; ValueError for a name no framework claims as its own."""
    try:
        parsed = parse(device)
    except UsageError:
        parsed = None
    if parsed is None or parsed.name != device:
        raise ValueError(f"no backend runs device {device!r}")
    return _route(FRAMEWORKS[parsed.framework])


def target_for(device: str) -> str:
    """The ``"module:Class"`` that runs cells of ``device``; ValueError for a name no backend claims."""
    return route_for(device).target


def check_mode(cell: Cell) -> None:
    """UnsupportedCombination for a mode the cell's framework does not have (``jit`` on TF, ``xla`` on torch)."""
    require_mode(FRAMEWORKS[route_for(cell.device).key], cell.mode)


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

    def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int, *,
                 after: Callable[[Timed], None] | None = None, energy: EnergyProbe | None = None) -> CellOutcome:
        """The cell on its device's backend; ``after`` (see :class:`~devbench.backends.base.Timed`) and
        ``energy`` (devbench.energy) need a :class:`~devbench.backends.base.FrameworkBackend` (an injected fake
        without them gets none)."""
        self._last = None  # a mode refused here is classified by the shared rules, and releases nothing
        check_mode(cell)
        self._last = self.backend_for(cell)
        extra = {name: value for name, value in (("after", after), ("energy", energy)) if value is not None}
        outcome: CellOutcome = self._last.run_cell(cell, policy, seed, **extra)  # type: ignore[assignment]
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
