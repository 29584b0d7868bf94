"""pytest-benchmark suites over devbench's op registry: benchmarks, not tests.

``pytest`` alone collects only ``tests/`` (``testpaths``); run these with ``pytest bench [options]``::

    pytest bench --devbench-sizes 256..1024 --devbench-ops matmul,conv2d --devbench-devices CPU:0,GPU:0 \\
        --benchmark-group-by=group --benchmark-autosave

The ``--devbench-*`` options choose what to run; pytest-benchmark's own ``--benchmark-max-time`` (seconds of
timed rounds per benchmark) and ``--benchmark-min-rounds`` say how long. Each benchmark follows the sweep's
timing protocol (see :mod:`devbench.pytest_plugin`).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import pytest
from pytest_benchmark.logger import PytestBenchmarkWarning

from devbench import pytest_plugin
from devbench.ops import OPS
from devbench.pytest_plugin import BenchCase, BenchOptions, Rounds, bench_cases, parse_options, resolve_devices

if TYPE_CHECKING:
    from devbench.backends import RoutingBackend

DEFAULT_SIZES = "64..256"
DEFAULT_DTYPES = "float32"
DEFAULT_MODES = "eager"

MACHINE_INFO_DIFFERS = "Benchmark machine_info is different"
"""pytest-benchmark warns so when ``--benchmark-compare`` loads a run saved on another machine (or with other
devices): expected when comparing machines, and under ``filterwarnings = error`` it would abort the run."""

OPTIONS = pytest.StashKey[BenchOptions]()
DEVICES = pytest.StashKey[tuple[str, ...]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("devbench", "devbench benchmarks (pytest bench)")
    group.addoption("--devbench-sizes", default=DEFAULT_SIZES, metavar="SIZES",
                    help=f"sizes n, in devbench's size grammar (64, 64..1024, 100..500:+100, 1k, lists); "
                         f"default {DEFAULT_SIZES}")
    group.addoption("--devbench-ops", default=",".join(OPS), metavar="OPS",
                    help=f"comma-separated ops (default: all of {', '.join(OPS)})")
    group.addoption("--devbench-dtypes", default=DEFAULT_DTYPES, metavar="DTYPES",
                    help=f"comma-separated dtypes; default {DEFAULT_DTYPES}")
    group.addoption("--devbench-devices", default=None, metavar="DEVICES",
                    help="comma-separated devices (CPU:0, GPU:0, ...) or 'all'; default CPU:0 plus every GPU")
    group.addoption("--devbench-modes", default=DEFAULT_MODES, metavar="MODES",
                    help=f"comma-separated modes ({', '.join(pytest_plugin.MODES)}); default {DEFAULT_MODES}")


def pytest_configure(config: pytest.Config) -> None:
    # Shown, not raised. pytest-benchmark compares machine_info inside its own (trylast) pytest_configure,
    # under the filters pytest installed just before the configure hooks, so the filter goes in there
    # directly as well as into the ini lines that later phases use.
    warnings.filterwarnings("default", message=MACHINE_INFO_DIFFERS, category=PytestBenchmarkWarning)
    config.addinivalue_line("filterwarnings",
                            f"default:{MACHINE_INFO_DIFFERS}:pytest_benchmark.logger.PytestBenchmarkWarning")
    # Installed, the package registers the plugin through its pytest11 entry point; from a source checkout
    # (PYTHONPATH=src) it is not registered yet, and the machine_info hook must still run.
    if not config.pluginmanager.is_registered(pytest_plugin):
        config.pluginmanager.register(pytest_plugin, "devbench")
    config.stash[OPTIONS] = parse_options(
        ops=config.getoption("--devbench-ops"),
        sizes=config.getoption("--devbench-sizes"),
        dtypes=config.getoption("--devbench-dtypes"),
        modes=config.getoption("--devbench-modes"),
        devices=config.getoption("--devbench-devices"),
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    """Resolve the devices once, before collection: this is where TensorFlow is imported (seconds)."""
    from devbench.devices import discover

    config = session.config
    available = [device.name for device in discover()]
    config.stash[DEVICES] = resolve_devices(config.stash[OPTIONS].devices, available)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "op" not in metafunc.fixturenames:
        return
    options = metafunc.config.stash[OPTIONS]
    devices: tuple[str, ...] = metafunc.config.stash[DEVICES]
    cases = bench_cases(options.ops, options.sizes, options.dtypes, devices, options.modes)
    metafunc.parametrize(
        ("op", "size", "dtype", "device", "mode"),
        [pytest.param(c.op, c.size, c.dtype, c.device, c.mode, id=c.id) for c in cases],
    )


@pytest.fixture(scope="session")
def devbench_backend() -> RoutingBackend:
    """One router for the session: each case runs on its device's backend (created on first use), which
    remembers which (op, dtype, device, mode) passed the numpy check."""
    from devbench.backends import RoutingBackend

    return RoutingBackend()


@pytest.fixture
def devbench_case(op: str, size: int, dtype: str, device: str, mode: str) -> BenchCase:
    """The case a ``test_op[...]`` runs, from its parameters (which pytest-benchmark saves as ``params``)."""
    return BenchCase(op=op, size=size, dtype=dtype, device=device, mode=mode)


@pytest.fixture(scope="session")
def devbench_rounds(pytestconfig: pytest.Config) -> Rounds:
    return Rounds.from_config(pytestconfig)
