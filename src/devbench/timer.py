"""The timing protocol for one cell, with the clock and the sync injected.

A call to :func:`measure` does, in order (docs/architecture.md, "Timing protocol"):

1. the **cold call**: the first call, synchronized, timed on its own (device init, kernel load, tracing);
2. ``check(output)`` on the cold call's result (placement and correctness; it raises to fail the cell);
3. **warm-up**: synchronized calls until ``warmup_time`` has passed and at least ``min_warmup_calls`` ran;
4. **calibration** of ``number``, the calls per timed block, so that one sync and two clock reads are at most
   1 % of a block (a block lasts at least ``max(min_block_time, 100 x sync cost)``). ``number`` is first
   estimated from the warm-up calls, then checked on a real block: the first block becomes the first sample if
   it reached the target (and did not overshoot it several times), otherwise ``number`` is rescaled and the
   block is discarded (at most ``MAX_CALIBRATION_BLOCKS`` tries, never past the budget). The check matters
   when a block is cheaper per call than a single call, e.g. a graph loop that pays one launch per block but
   one launch per warm-up call;
5. **samples**: each is one ``block(number)`` (``number`` back-to-back calls) then one sync; per-call time =
   block / number;
6. **stop** when the stopping rule is satisfied, at ``max_samples``, or when the next block would overrun the
   cell's budget (at least one sample is always taken).

With ``flush`` (a cache-cold cell, :mod:`devbench.cache`) each sample is one call timed on its own, its inputs
evicted first: ``flush()`` (it returns once its buffer is written), then start, call, sync, stop. The flush is
never inside a timed region, and nothing is subtracted: ``number`` is 1, there is no calibration, and the cold
call is flushed too. Warm-up, the stopping rule and the budget (which the flushes spend) are as above. Right
after each flushed sample the same call is timed once more, unflushed (its inputs now cached where they fit):
``unflushed_samples``, the warm state in the very same single-call protocol and machine state, so that
flushed / unflushed is the cache's cost alone, free of what a block spreads (one sync, two clock reads) and of
what a long block catches on a busy machine (preemptions a single call mostly misses).

``block(number)`` runs the op ``number`` times and returns the last output. By default it is a plain Python
loop over ``fn``; a caller can pass one that costs less per call than calling ``fn`` (a loop over the
undecorated op, without ``fn``'s extra frame) or one that runs the whole block inside a compiled graph
(mode ``graph_loop``, where per-call time then excludes Python dispatch).

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
from typing import Any, Generic, TypeVar

from devbench.spec import TimingPolicy
from devbench.stats import rel_iqr

T = TypeVar("T")
Clock = Callable[[], float]

SYNC_OVERHEAD_FACTOR = 100
"""A block lasts at least this many times the cost of one sync (so the sync is at most 1 % of it)."""

_ROUNDING = 1e-9
"""Relative slack in time comparisons, so that ten 0.01 s calls count as the 0.1 s they are."""

CALIBRATION_SLACK = 0.1
"""The first block is accepted as a sample if it lasted at least (1 - this) x the block target; a shorter one
means the warm-up estimate of ``number`` was off (not just noise), so ``number`` is scaled up and it is redone."""

CALIBRATION_OVERSHOOT = 4.0
"""A first block of more than one call lasting over this many times the block target also means the estimate
was off (e.g. a sync probe slowed by another process made calls look free); ``number`` is scaled down."""

MAX_CALIBRATION_BLOCKS = 4
"""At most this many blocks are spent getting ``number`` right; the last one is kept whatever its length."""


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
    calibration_blocks: int = 1
    """Blocks run to settle ``number``: 1 when the warm-up estimate was right (that block is the first sample);
    each extra one was too short and discarded."""
    flush_bytes: int = 0
    """Bytes written to evict the caches before each timed call (a cache-cold cell); 0 for a warm one. The timer
    only calls the flush: its caller, who knows the buffer, sets this."""
    unflushed_samples: list[float] = field(default_factory=list)
    """A cache-cold cell's control: the call timed again right after each flushed sample, unflushed (empty for
    a warm cell). Not samples of the cell: the stopping rule never sees them."""


def python_loop(fn: Callable[..., T], *args: Any) -> Callable[[int], T]:
    """The one loop that calls an op ``number`` times: ``fn(*args)`` back to back; returns the last output.

    The timer's default block, and every backend's block outside a graph loop. ``args`` are passed straight to
    ``fn`` (not through a closure) so that each call costs one Python frame, the op's own.
    """

    def block(number: int) -> T:
        output = fn(*args)
        for _ in range(number - 1):
            output = fn(*args)
        return output

    return block


def _rescaled(number: int, block_s: float, block_target: float, max_number: int) -> int:
    """A new ``number`` after a block of ``number`` calls took ``block_s`` s (target ``block_target`` s).

    Aims 10 % over the target so that noise does not make the next try fall short again; stays in
    [1, max_number] and always changes ``number``.
    """
    if block_s <= 0:
        return max_number
    wanted = max(1, min(max_number, math.ceil(number * block_target / block_s * 1.1)))
    if wanted == number:
        return number + 1 if block_s < block_target else max(1, number - 1)
    return wanted


def _miscalibrated(number: int, block_s: float, block_target: float, max_number: int) -> bool:
    """Was this first block's ``number`` clearly wrong: too short for the target, or far over it?"""
    too_short = block_s < block_target * (1 - CALIBRATION_SLACK) and number < max_number
    too_long = block_s > block_target * CALIBRATION_OVERSHOOT and number > 1
    return too_short or too_long


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
    block: Callable[[int], T] | None = None,
    flush: Callable[[], None] | None = None,
) -> Measurement[T]:
    """Run the timing protocol on ``fn`` (see the module docstring). Exceptions from ``fn`` propagate.

    ``fn`` makes one call (cold call, warm-up); ``block(number)``, if given, makes a timed block of ``number``
    calls and returns the last output (default: a Python loop over ``fn``). ``flush``: evict the caches before
    every timed call, untimed (the cache-cold protocol of the module docstring).
    """
    run_block = block if block is not None else python_loop(fn)
    if flush is not None:
        flush()
    start = clock()
    output = fn()
    sync(output)
    cold_s = clock() - start
    if check is not None:
        check(output)
    if policy.first_call_warms and cold_s >= policy.max_cell_time:
        # A later visit of an op slower than the visit's whole budget: its warm first call is its one sample
        # (warming up again and then timing a block would spend several times the budget on every visit).
        if drain is not None:
            drain(output)
        return Measurement(cold_s=cold_s, samples=[cold_s], number=1, warmup_calls=0, sync_overhead_s=0.0,
                           stop_reason="budget", output=output, calibration_blocks=0)

    # The budget covers warm-up and samples; the cold call and checks are reported, not budgeted.
    budget_start = clock()

    def remaining() -> float:
        return policy.max_cell_time - (clock() - budget_start)

    # A later visit of a cell (policy.first_call_warms) finds kernels loaded and functions traced: its first
    # call is a warm-up call, not a cold one, and counts towards the warm-up.
    warmup_times: list[float] = [cold_s] if policy.first_call_warms else []
    warmup_start = start if policy.first_call_warms else budget_start

    def warmed() -> bool:
        return (len(warmup_times) >= policy.min_warmup_calls
                and clock() - warmup_start >= policy.warmup_time * (1 - _ROUNDING))

    while not warmed():
        t0 = clock()
        output = fn()
        sync(output)
        call_s = clock() - t0
        warmup_times.append(call_s)
        if remaining() < call_s:
            break
    warmup_calls = len(warmup_times)

    sync_overhead_s = _time_sync(sync, output, clock)
    block_target = max(policy.min_block_time, SYNC_OVERHEAD_FACTOR * sync_overhead_s)
    # Each warm-up call paid one sync; a block pays one sync for ``number`` calls, so take it out.
    typical_call = statistics.median(warmup_times)
    per_call = max(typical_call - sync_overhead_s, 0.01 * typical_call, 1e-9)
    number = max(1, min(policy.max_number, math.ceil(block_target / per_call * (1 - _ROUNDING))))
    if flush is not None:
        number = 1  # a flushed call is timed on its own: a block's later calls would find the inputs in cache

    rule = StoppingRule(policy.min_samples, policy.max_samples, policy.target_rel_iqr)
    stop_reason = "budget"
    calibration_blocks = 0
    calibrating = flush is None
    unflushed: list[float] = []
    while True:
        cycle_start = clock() if flush is not None else 0.0
        if flush is not None:
            flush()
        t0 = clock()
        output = run_block(number)
        sync(output)
        block_s = clock() - t0
        if flush is not None:
            t1 = clock()
            output = run_block(1)
            sync(output)
            unflushed.append(clock() - t1)
        # What the next sample will cost the budget: its flush and its unflushed twin too.
        cost_s = clock() - cycle_start if flush is not None else block_s
        if calibrating:
            calibration_blocks += 1
            if (_miscalibrated(number, block_s, block_target, policy.max_number)
                    and calibration_blocks < MAX_CALIBRATION_BLOCKS and remaining() >= block_s):
                number = _rescaled(number, block_s, block_target, policy.max_number)
                continue
            calibrating = False
        rule.add(block_s / number)
        if rule.converged():
            stop_reason = "converged"
            break
        if rule.is_finished():
            stop_reason = "max_samples"
            break
        if remaining() < cost_s:
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
        calibration_blocks=calibration_blocks,
        unflushed_samples=unflushed,
    )
