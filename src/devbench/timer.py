"""The timing protocol for one cell, with the clock and the sync injected.

A call to :func:`measure` does, in order (DESIGN.md, "Timing protocol"):

1. the **cold call**: the first call, synchronized, timed on its own (device init, kernel load, tracing);
2. ``check(output)`` on the cold call's result (placement and correctness; it raises to fail the cell);
3. **warm-up**: synchronized calls until ``warmup_time`` has passed and at least ``min_warmup_calls`` ran;
4. **calibration** of ``number``, the calls per timed block, so that one sync and two clock reads are at most
   1 % of a block (a block lasts at least ``max(min_block_time, 100 x sync cost)``);
5. **samples**: each is ``number`` back-to-back calls then one sync; per-call time = block / number;
6. **stop** when the stopping rule is satisfied, at ``max_samples``, or when the next block would overrun the
   cell's budget (at least one sample is always taken).

With ``sync`` a no-op (the guide's pitfall, sync mode ``none``) the timer still works, it just measures how
fast work is *enqueued*; ``drain`` is then called once, untimed, at the end so that the queued work does not
leak into the next cell's numbers.

Nothing here knows about TensorFlow: ``fn`` is any zero-argument callable and ``sync`` any function of its
output, which is what lets the tests drive the protocol with a fake clock that ticks exactly.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from devbench.spec import TimingPolicy
from devbench.stats import rel_iqr

T = TypeVar("T")
Clock = Callable[[], float]

SYNC_OVERHEAD_FACTOR = 100
"""A block lasts at least this many times the cost of one sync (so the sync is at most 1 % of it)."""

_ROUNDING = 1e-9
"""Relative slack in time comparisons, so that ten 0.01 s calls count as the 0.1 s they are."""


class StoppingRule:
    """Decides when a cell has enough samples: ``add`` each sample, ask ``is_finished``.

    Finished once it has ``min_samples`` and their relative IQR is within ``target_rel_iqr``, or once it has
    ``max_samples`` whatever the noise.
    """

    def __init__(self, min_samples: int, max_samples: int, target_rel_iqr: float) -> None:
        self.min_samples = min_samples
        self.max_samples = max_samples
        self.target_rel_iqr = target_rel_iqr
        self.samples: list[float] = []

    def add(self, sample: float) -> None:
        self.samples.append(sample)

    def converged(self) -> bool:
        return len(self.samples) >= self.min_samples and rel_iqr(self.samples) <= self.target_rel_iqr

    def is_finished(self) -> bool:
        return len(self.samples) >= self.max_samples or self.converged()


@dataclass
class Measurement(Generic[T]):
    """What was observed for one cell. Times in seconds; ``samples`` are per-call times."""

    cold_s: float
    samples: list[float]
    number: int
    warmup_calls: int
    sync_overhead_s: float
    stop_reason: str
    """``converged`` | ``max_samples`` | ``budget`` (cut short by the cell's time budget)."""
    output: T | None = field(default=None, repr=False)


def _time_sync(sync: Callable[[T], None], output: T, clock: Clock, repeats: int = 5) -> float:
    """Cost of one sync on work that has already finished: the fixed price every block pays once."""
    best = math.inf
    for _ in range(repeats):
        start = clock()
        sync(output)
        best = min(best, clock() - start)
    return best


def measure(
    fn: Callable[[], T],
    sync: Callable[[T], None],
    policy: TimingPolicy,
    *,
    clock: Clock = time.perf_counter,
    check: Callable[[T], None] | None = None,
    drain: Callable[[T], None] | None = None,
) -> Measurement[T]:
    """Run the timing protocol on ``fn`` (see the module docstring). Exceptions from ``fn`` propagate."""
    start = clock()
    output = fn()
    sync(output)
    cold_s = clock() - start
    if check is not None:
        check(output)

    # The budget covers warm-up and samples; the cold call and checks are reported, not budgeted.
    budget_start = clock()

    def remaining() -> float:
        return policy.max_cell_time - (clock() - budget_start)

    warmup_times: list[float] = []
    warmup_start = clock()
    while True:
        t0 = clock()
        output = fn()
        sync(output)
        call_s = clock() - t0
        warmup_times.append(call_s)
        warmup_calls = len(warmup_times)
        warmed = (warmup_calls >= policy.min_warmup_calls
                  and clock() - warmup_start >= policy.warmup_time * (1 - _ROUNDING))
        if warmed or remaining() < call_s:
            break

    sync_overhead_s = _time_sync(sync, output, clock)
    block_target = max(policy.min_block_time, SYNC_OVERHEAD_FACTOR * sync_overhead_s)
    # Each warm-up call paid one sync; a block pays one sync for ``number`` calls, so take it out.
    typical_call = statistics.median(warmup_times)
    per_call = max(typical_call - sync_overhead_s, 0.01 * typical_call, 1e-9)
    number = max(1, min(policy.max_number, math.ceil(block_target / per_call * (1 - _ROUNDING))))

    rule = StoppingRule(policy.min_samples, policy.max_samples, policy.target_rel_iqr)
    stop_reason = "budget"
    while True:
        t0 = clock()
        for _ in range(number):
            output = fn()
        sync(output)
        block_s = clock() - t0
        rule.add(block_s / number)
        if rule.converged():
            stop_reason = "converged"
            break
        if rule.is_finished():
            stop_reason = "max_samples"
            break
        if remaining() < block_s:
            break
    if drain is not None:
        drain(output)
    return Measurement(
        cold_s=cold_s,
        samples=rule.samples,
        number=number,
        warmup_calls=warmup_calls,
        sync_overhead_s=sync_overhead_s,
        stop_reason=stop_reason,
        output=output,
    )
