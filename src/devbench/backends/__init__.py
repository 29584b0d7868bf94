"""Backends: one module per framework, and the router that sends each cell to the backend of its device.

:data:`ROUTES` maps a device name to the backend class that runs it, as ``"module:Class"`` strings, so a
backend's module (and its framework) is imported only when a cell of its device runs: a numpy-only sweep never
imports TensorFlow. Adding a framework is one module here (a class with ``run_cell``, ``classify`` and
``release``, see :class:`~devbench.backends.base.Backend`), one route below, and its expression per op in
:mod:`devbench.ops`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from devbench.backends.base import Backend, CellOutcome, UnsupportedCombination, classify
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
        target = target_for(cell.device)
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


__all__ = ["ROUTES", "Route", "RoutingBackend", "check_mode", "default_backend", "route_for", "target_for"]
