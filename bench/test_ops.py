"""Every op of the registry, parametrized over op x size x dtype x device (x mode); options in conftest.py.

Ids read ``test_op[matmul-1024-float32-GPU:0]``; each benchmark's group is its op, dtype and size, so
``--benchmark-group-by=group`` (the default) puts the devices of one cell side by side.
"""

from __future__ import annotations

from pytest_benchmark.fixture import BenchmarkFixture

from devbench.backends import RoutingBackend
from devbench.pytest_plugin import BenchCase, Rounds, run_case


def test_op(benchmark: BenchmarkFixture, devbench_case: BenchCase, devbench_backend: RoutingBackend,
            devbench_rounds: Rounds) -> None:
    run_case(benchmark, devbench_case, devbench_backend, devbench_rounds)
