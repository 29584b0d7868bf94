"""devbench: which device is faster for each op, size and dtype, and where is the crossover?

TensorFlow, JAX, PyTorch and a numpy baseline (one adapter each: devbench.frameworks).

The public Python API; the README shows each of these. Attributes load lazily (PEP 562) so that
``devbench --help`` does not pay for pandas, and a framework is imported only by the functions that run its ops.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "DevbenchError": "devbench.errors",
    "UsageError": "devbench.errors",
    "RESULT_COLUMNS": "devbench.schema",
    "SAMPLE_COLUMNS": "devbench.schema",
    "SCHEMA_VERSION": "devbench.schema",
    "CellRow": "devbench.schema",
    "VisitRecord": "devbench.schema",
    "Cell": "devbench.spec",
    "SweepSpec": "devbench.spec",
    "TimingPolicy": "devbench.spec",
    "parse_sizes": "devbench.spec",
    "Summary": "devbench.stats",
    "summarize": "devbench.stats",
    "Run": "devbench.store",
    "load_run": "devbench.store",
    "execute": "devbench.sweep",
    "Measurement": "devbench.timer",
    "measure": "devbench.timer",
    "op": "devbench.userops",
}

__all__ = [
    "RESULT_COLUMNS",
    "SAMPLE_COLUMNS",
    "SCHEMA_VERSION",
    "Cell",
    "CellRow",
    "DevbenchError",
    "Measurement",
    "Run",
    "Summary",
    "SweepSpec",
    "TimingPolicy",
    "UsageError",
    "VisitRecord",
    "__version__",
    "execute",
    "load_run",
    "measure",
    "op",
    "parse_sizes",
    "summarize",
]

if TYPE_CHECKING:
    from devbench.errors import DevbenchError, UsageError
    from devbench.schema import RESULT_COLUMNS, SAMPLE_COLUMNS, SCHEMA_VERSION, CellRow, VisitRecord
    from devbench.spec import Cell, SweepSpec, TimingPolicy, parse_sizes
    from devbench.stats import Summary, summarize
    from devbench.store import Run, load_run
    from devbench.sweep import execute
    from devbench.timer import Measurement, measure
    from devbench.userops import op


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'devbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
