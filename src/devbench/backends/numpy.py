"""The numpy baseline (``--baseline numpy``): the same ops in plain numpy on the host, device ``numpy:CPU``.

It answers "what does the framework's dispatch cost me at small sizes?" and gives the crossover analysis a real
second curve on a machine without a GPU. Cells are measured with the same timer and policy as framework
cells, from the same seeded input data (:meth:`devbench.ops.OpDef.host_inputs`), with each op's
``OpDef.numpy`` implementation: the very function that, in float64, is the reference of every backend.

``bfloat16`` is ``unsupported`` (numpy has no bfloat16 arithmetic), as are gradients of int32 (as in TF).
numpy is synchronous: every sync mode, ``transfer`` included, is a no-op here (the data already is in host
memory); the row keeps the sync asked for, and its ``reason`` says so.

No framework is imported here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from devbench.backends.base import (
    FIRST_OPS,
    Built,
    DeviceInit,
    Dispatch,
    FrameworkBackend,
    UnsupportedCombination,
    python_loop,
)
from devbench.frameworks.base import SCALAR_SYNC, SYNC_MODES
from devbench.ops import OpDef, leaves_of, op_named
from devbench.spec import NUMPY_DEVICE, Cell

NUMPY_DTYPES: dict[str, Any] = {"float16": np.float16, "float32": np.float32, "float64": np.float64,
                                "int32": np.int32}

SYNC_NOTE = "numpy is synchronous: sync {sync!r} is a no-op here"

NO_INIT = "nothing: numpy computes on the host, in this process, and was imported before any device was used"


@dataclass
class NumpyOp:
    """``fn(*args)`` computes in the cell's dtype; ``reference()`` is the float64 result from the same inputs."""

    fn: Callable[..., Any]
    args: tuple[np.ndarray, ...]
    params: tuple[np.ndarray, ...]
    """Model state the op closes over (``dense_step``: kernel and bias), in the cell's dtype."""

    def reference(self) -> list[np.ndarray]:
        as_f64 = [np.asarray(a, dtype=np.float64) for a in (*self.args, *self.params)]
        return leaves_of(self.fn(*as_f64))


def _as(array: np.ndarray, dtype: str) -> np.ndarray:
    return np.ascontiguousarray(array.astype(NUMPY_DTYPES[dtype]))


def build_numpy(op: str, n: int, dtype: str, seed: int) -> NumpyOp:
    """``op`` at size ``n`` in numpy, on the op's seeded inputs; raises UnsupportedCombination where there is none."""
    if dtype not in NUMPY_DTYPES:
        raise UnsupportedCombination(f"numpy has no {dtype} arithmetic")
    definition = op_named(op)
    inputs = definition.host_inputs(n, dtype, seed)
    return NumpyOp(fn=definition.numpy, args=tuple(_as(a, dtype) for a in inputs.args),
                   params=tuple(_as(p, dtype) for p in inputs.params))


def _no_sync(output: Any) -> None:
    del output


SYNCS: dict[str, Callable[[Any], None]] = {sync: _no_sync for sync in SYNC_MODES}
"""numpy is synchronous: every sync, ``transfer`` included, is a no-op (the data already is in host memory)."""


class NumpyBackend(FrameworkBackend):
    """Runs cells of the pseudo-device ``numpy:CPU``. Checks each (op, dtype) once against float64."""

    FRAMEWORK = "numpy"
    SYNCS = SYNCS
    WHO = "numpy"

    @staticmethod
    def initialise(device: str) -> DeviceInit:
        """Nothing to initialise: numpy computes on the host in this process, already imported (``init_s`` None,
        not a timed no-op, so that no chart shows an initialisation that does not exist)."""
        return FIRST_OPS.nothing_to_initialise("numpy", device, NO_INIT)

    @staticmethod
    def runtime_init() -> dict[str, Any] | None:
        return None

    def build(self, op: OpDef, n: int, dtype: str, seed: int, device: str) -> Built:
        built = build_numpy(op.name, n, dtype, seed)
        return Built(built.fn, (*built.args, *built.params), built.reference)

    def dispatch(self, built: Built, mode: str, sync: str, device: str) -> Dispatch:
        fn, args = built.fn, built.args
        return Dispatch(call=lambda: fn(*args), block=python_loop(fn, *args))

    def placed(self, output: Any) -> list[tuple[str, str]]:
        return [(NUMPY_DEVICE, NUMPY_DEVICE)]

    def host_leaves(self, output: Any) -> list[np.ndarray]:
        return leaves_of(output)

    def copier(self, device: str, elements: int) -> Callable[[], Any]:
        """``np.copyto`` between two preallocated float32 arrays."""
        src = np.ones(elements, dtype=np.float32)
        dst = np.empty_like(src)

        def host_copy() -> None:
            np.copyto(dst, src)

        return host_copy

    def check_key(self, cell: Cell) -> tuple[str, ...]:
        """One check per (op, dtype): numpy has one device and no modes of its own."""
        return cell.op, cell.dtype

    def note(self, cell: Cell, retraced: int) -> str:
        return SYNC_NOTE.format(sync=cell.sync) if cell.sync != SCALAR_SYNC else ""

    def release(self) -> None:
        """Nothing to do: a numpy cell holds plain arrays, freed by reference counting when its frame ends. (A
        ``gc.collect()`` here cost 0.9 s a visit once TensorFlow was loaded, for nothing to collect.)"""


__all__ = ["NUMPY_DTYPES", "SYNCS", "NumpyBackend", "NumpyOp", "build_numpy"]
