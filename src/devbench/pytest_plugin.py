"""pytest-benchmark adapter: the op registry and the sweep's timing protocol as pytest-benchmark benchmarks.

Two things live here:

* :func:`run_case` times one (op, size, dtype, device, mode) with ``benchmark.pedantic`` the way ``devbench
  sweep`` times a cell, because it is the sweep's one ``run_cell`` (through the router, so any framework's
  device): inputs made on the device first, the cold call and the warm-up measured by
  :func:`devbench.timer.measure` and kept out of the statistics (the cold call lands in ``extra_info``), the
  placement and numpy-reference checks, then rounds of ``number`` back-to-back calls whose last call syncs
  (the framework's scalar sync: one element back to the host). pytest-benchmark divides each round by
  ``iterations = number``, so its numbers are per-call seconds of real work, comparable with the sweep's
  ``median_s``. The suites in ``bench/`` call it with the router.
* :func:`pytest_benchmark_update_machine_info`, a hook that records TensorFlow's version and build, the
  devices and their details, the CPU model and devbench's version in every saved run (``machine_info``),
  so a saved run says what machine it came from.

pytest loads this module in every session once devbench is installed (entry point ``pytest11``), so it
imports neither TensorFlow nor numpy, pandas or matplotlib at import time: TensorFlow is imported inside the
functions that need it, and only pytest-benchmark runs that save or compare results pay for it in the hook.
The hook is optional, so sessions without pytest-benchmark (``-p no:benchmark``) are not affected.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from devbench.errors import UsageError

if TYPE_CHECKING:
    from devbench.backends import RoutingBackend
    from devbench.backends.base import FrameworkBackend, Timed
    from devbench.spec import TimingPolicy

SYNC = "scalar"
"""The sweep's default sync: ``.numpy()`` on one element of the last output (waits for all queued work)."""

GROUP_SIZE_WIDTH = 5
"""Sizes in group names are right-aligned to this width, so that groups sort by size (``n=   64`` before
``n= 1024``): pytest-benchmark and ``pytest-benchmark compare`` order groups by their names as text."""

MAX_ROUNDS = 100_000

MODES = ("eager", "function", "xla", "jit", "compile")
"""Modes a benchmark can run in: every framework's (TensorFlow's function and xla, JAX's jit, PyTorch's compile)
where one call of the wrapped op is one call of the op; not ``graph_loop``, whose call is a loop. A mode the
case's framework does not have is skipped as ``unsupported``."""


class Benchmark(Protocol):
    """The part of pytest-benchmark's ``benchmark`` fixture that :func:`run_case` uses."""

    group: str | None
    extra_info: dict[str, Any]
    stats: Any

    def pedantic(self, target: Callable[..., Any], *, rounds: int, warmup_rounds: int, iterations: int) -> Any: ...


# ---------------------------------------------------------------------------------------------------------
# What to run: parsed from the command line, one BenchCase per test


@dataclass(frozen=True)
class BenchCase:
    """One benchmark: an op at size n and a dtype, on a device, dispatched in a mode."""

    op: str
    size: int
    dtype: str
    device: str
    mode: str = "eager"

    @property
    def id(self) -> str:
        """The pytest id: ``matmul-1024-float32-GPU:0`` (``-function``/``-xla`` appended for other modes)."""
        suffix = "" if self.mode == "eager" else f"-{self.mode}"
        return f"{self.op}-{self.size}-{self.dtype}-{self.device}{suffix}"

    @property
    def group(self) -> str:
        """pytest-benchmark group: every device and mode of one op, dtype and size, side by side."""
        return f"{self.op} {self.dtype} n={self.size:>{GROUP_SIZE_WIDTH}}"


@dataclass(frozen=True)
class BenchOptions:
    """The ``--devbench-*`` options, validated. Devices stay unresolved: that needs TensorFlow."""

    ops: tuple[str, ...]
    sizes: tuple[int, ...]
    dtypes: tuple[str, ...]
    modes: tuple[str, ...]
    devices: str | None


def parse_options(*, ops: str, sizes: str, dtypes: str, modes: str = "eager",
                  devices: str | None = None) -> BenchOptions:
    """Validate the options that need no TensorFlow; a bad value is a :class:`pytest.UsageError` naming it."""
    from devbench.errors import choose_list
    from devbench.ops import OPS
    from devbench.spec import DTYPES, parse_sizes

    def parse(option: str, what: Callable[[], Any]) -> Any:
        try:
            return what()
        except UsageError as exc:
            raise pytest.UsageError(f"{option}: {exc}") from exc

    from devbench.devices import check_names

    parse("--devbench-devices", lambda: check_names(devices))  # existence is checked once TF is up (resolve_devices)
    return BenchOptions(
        ops=parse("--devbench-ops", lambda: choose_list("op", ops, OPS)),
        sizes=parse("--devbench-sizes", lambda: parse_sizes(sizes)),
        dtypes=parse("--devbench-dtypes", lambda: choose_list("dtype", dtypes, DTYPES)),
        modes=parse("--devbench-modes", lambda: choose_list("mode", modes, MODES)),
        devices=devices,
    )


def resolve_devices(requested: str | None, available: Sequence[str]) -> tuple[str, ...]:
    """``--devbench-devices`` against the devices TF sees (default: CPU:0 plus every GPU)."""
    from devbench.devices import resolve

    try:
        return resolve(requested, list(available))
    except UsageError as exc:
        raise pytest.UsageError(f"--devbench-devices: {exc}") from exc


def bench_cases(ops: Iterable[str], sizes: Iterable[int], dtypes: Iterable[str], devices: Iterable[str],
                modes: Iterable[str] = ("eager",)) -> list[BenchCase]:
    """op x size x dtype x mode x device, devices adjacent (as the group tables show them).

    A dtype an op does not define (``softmax_xent_grad`` on int32) is left out rather than listed as a skip.
    """
    from devbench.ops import OPS

    devices, modes, dtypes, sizes = tuple(devices), tuple(modes), tuple(dtypes), tuple(sizes)
    return [
        BenchCase(op=op, size=size, dtype=dtype, device=device, mode=mode)
        for op in ops
        for size in sizes
        for dtype in dtypes
        if dtype in OPS[op].dtypes
        for mode in modes
        for device in devices
    ]


# ---------------------------------------------------------------------------------------------------------
# Timing


@dataclass(frozen=True)
class Rounds:
    """How many timed rounds a benchmark gets: pytest-benchmark's ``--benchmark-max-time`` (seconds of timed
    rounds per benchmark) and ``--benchmark-min-rounds`` (at least this many, even past ``max_time``)."""

    max_time: float = 1.0
    min_rounds: int = 5

    @classmethod
    def from_config(cls, config: pytest.Config) -> Rounds:
        default = cls()
        return cls(max_time=float(config.getoption("benchmark_max_time", default.max_time)),
                   min_rounds=int(config.getoption("benchmark_min_rounds", default.min_rounds)))

    def count(self, block_s: float) -> int:
        """Rounds of ``block_s`` seconds each so that they last about ``max_time``, and at least
        ``min_rounds``."""
        if not block_s > 0:
            return max(1, self.min_rounds)
        return max(1, self.min_rounds, min(MAX_ROUNDS, math.ceil(self.max_time / block_s)))


class SyncEvery:
    """The timed target: calls ``fn`` and, on every ``number``-th call, syncs on its output.

    ``benchmark.pedantic(target, iterations=number)`` calls the target ``number`` times between two clock
    reads, so each round is exactly one sweep block: ``number`` calls, the last of which waits for the device
    through ``.numpy()``. The sync is paid once per block, as in the sweep, not once per call.
    """

    def __init__(self, fn: Callable[[], Any], sync: Callable[[Any], None], number: int) -> None:
        if number < 1:
            raise ValueError(f"number must be at least 1, got {number}")
        self.fn = fn
        self.sync = sync
        self.number = number
        self.calls = 0
        self.output: Any = None

    def __call__(self) -> Any:
        self.output = self.fn()
        self.calls += 1
        if self.calls % self.number == 0:
            self.sync(self.output)
        return self.output

    def drain(self) -> None:
        """Wait for whatever is still queued (the untimed extra call pedantic makes), so it cannot leak."""
        if self.output is not None:
            self.sync(self.output)


def time_rounds(benchmark: Benchmark, fn: Callable[[], Any], sync: Callable[[Any], None], *, number: int,
                rounds: int, warmup_rounds: int = 1) -> SyncEvery:
    """Run pedantic rounds of ``number`` calls each ending in one sync; returns the target (for its counts)."""
    target = SyncEvery(fn, sync, number)
    benchmark.pedantic(target, rounds=rounds, warmup_rounds=warmup_rounds, iterations=number)
    target.drain()
    return target


def calibration_policy() -> TimingPolicy:
    """The sweep's policy for cold call, warm-up and block length, with one sample (pytest-benchmark takes
    the samples)."""
    from dataclasses import replace

    from devbench.spec import TimingPolicy

    return replace(TimingPolicy(), min_samples=1, max_samples=1)


class _RoundsFailed(Exception):
    """An exception from pytest-benchmark's rounds, carried out of ``run_cell`` unclassified (``__cause__``):
    only what fails before the rounds (check, build, placement, calibration) is a skip or a failure."""


def run_case(benchmark: Benchmark, case: BenchCase, backend: RoutingBackend | FrameworkBackend,
             rounds: Rounds = Rounds(), seed: int = 0) -> None:
    """Benchmark one case with the sweep's protocol (module docstring). Skips what cannot run here.

    ``backend`` is the router (:class:`devbench.backends.RoutingBackend`, any framework's device) or one
    framework's backend; the case runs through the one ``run_cell``
    (:meth:`devbench.backends.base.FrameworkBackend.run_cell`) with the calibration policy, and
    pytest-benchmark's rounds run in its ``after`` callback, on the op it built. ``unsupported``, ``oom`` and
    memory-guard ``skipped`` cases are pytest skips with the reason; ``fallback`` (output not on the requested
    device) and ``wrong`` (off the numpy reference) fail the test, since their numbers would mislead; anything
    else is a bug and propagates.
    """

    from devbench import __version__
    from devbench.guards import MemoryGuard
    from devbench.ops import ITEMSIZE, OPS
    from devbench.spec import Cell

    op = OPS[case.op]
    cell = Cell(size=case.size, op=case.op, dtype=case.dtype, device=case.device, mode=case.mode, sync=SYNC)
    benchmark.group = case.group
    benchmark.extra_info.update(
        op=case.op, size=case.size, dtype=case.dtype, device=case.device, mode=case.mode, sync=SYNC,
        flops=op.flops(case.size), bytes=op.bytes(case.size, ITEMSIZE[case.dtype]), devbench=__version__,
    )
    skipped = MemoryGuard()(cell)
    if skipped is not None:
        pytest.skip(skipped)

    def time_the_rounds(timed: Timed) -> None:
        calibration = timed.measurement
        block_s = calibration.samples[0] * calibration.number
        benchmark.extra_info.update(cold_s=calibration.cold_s, number=calibration.number,
                                    warmup_calls=calibration.warmup_calls)
        try:
            time_rounds(benchmark, timed.call, timed.sync, number=calibration.number, rounds=rounds.count(block_s))
        except Exception as exc:
            raise _RoundsFailed from exc

    try:
        try:
            outcome = backend.run_cell(cell, calibration_policy(), seed, after=time_the_rounds)
        except _RoundsFailed as failed:
            cause = failed.__cause__
            assert cause is not None  # always set: _RoundsFailed is only raised "from" the rounds' exception
            raise cause from None
        except Exception as exc:
            status, reason = backend.classify(exc)
            if status in ("unsupported", "oom"):
                pytest.skip(f"{status}: {reason}")
            if status in ("fallback", "wrong"):
                pytest.fail(f"{status}: {reason}", pytrace=False)
            raise
        benchmark.extra_info.update(placed_device=outcome.placed_device)
        median = _median_s(benchmark)
        if median:
            benchmark.extra_info.update(gflops=op.flops(case.size) / median / 1e9,
                                        gbps=op.bytes(case.size, ITEMSIZE[case.dtype]) / median / 1e9)
    finally:
        backend.release()


def _median_s(benchmark: Benchmark) -> float | None:
    """Median per-call seconds of the rounds just run, or None (benchmarks disabled)."""
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    median = getattr(stats, "median", None)
    return float(median) if median else None


# ---------------------------------------------------------------------------------------------------------
# machine_info


def devbench_machine_info() -> dict[str, Any]:
    """What devbench adds to pytest-benchmark's ``machine_info`` under the key ``devbench``.

    Only what identifies the machine and does not change from run to run (no load average, no free memory),
    so two runs on the same machine do not differ for no reason.
    """
    from devbench import __version__
    from devbench.machine import cpu_model

    info: dict[str, Any] = {"version": __version__, "cpu_model": cpu_model()}
    try:
        from devbench.devices import LOGICAL_CPUS_ENV, discover, tensorflow_fingerprint

        info["tensorflow"] = tensorflow_fingerprint()
        info["devices"] = [device.as_dict() for device in discover()]
        info["logical_cpus"] = os.environ.get(LOGICAL_CPUS_ENV) or None
    except ImportError as exc:  # TensorFlow missing or broken: say so, do not lose the benchmark run
        info["tensorflow"] = {"error": f"{type(exc).__name__}: {exc}"}
        info["devices"] = []
    except UsageError as exc:  # e.g. a bad DEVBENCH_LOGICAL_CPUS
        raise pytest.UsageError(str(exc)) from exc
    return info


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """pytest-benchmark hook: called when a run is saved (``--benchmark-autosave``, ``--benchmark-save``,
    ``--benchmark-json``) or compared (``--benchmark-compare``). TensorFlow is imported here, not before."""
    del config
    machine_info["devbench"] = devbench_machine_info()
