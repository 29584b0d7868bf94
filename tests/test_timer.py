"""The timing protocol, driven by a simulated device and an exact fake clock."""

from __future__ import annotations

import math

import pytest

from devbench.spec import TimingPolicy
from devbench.timer import MAX_CALIBRATION_BLOCKS, SYNC_OVERHEAD_FACTOR, StoppingRule, measure, python_loop
from tests.fakes import FakeDevice

POLICY = TimingPolicy(max_cell_time=10.0, min_samples=5, max_samples=50, target_rel_iqr=0.05,
                      warmup_time=0.1, min_warmup_calls=2, min_block_time=0.01)


def test_async_device_hides_all_launches_but_the_first_of_a_block() -> None:
    dev = FakeDevice(1e-4, launch=1e-6, asynchronous=True)
    m = measure(dev.call, dev.sync, POLICY, clock=dev.clock)
    assert m.samples == pytest.approx([1e-4 + 1e-6 / m.number] * len(m.samples))
    assert m.stop_reason == "converged"
    assert len(m.samples) == POLICY.min_samples


def test_sync_device_pays_every_launch() -> None:
    dev = FakeDevice(1e-4, launch=1e-6, asynchronous=False)
    m = measure(dev.call, dev.sync, POLICY, clock=dev.clock)
    assert m.samples == pytest.approx([1e-4 + 1e-6] * len(m.samples))


def test_cold_call_is_timed_apart_from_the_samples() -> None:
    dev = FakeDevice([0.5, *[1e-3] * 99])  # the first call pays initialisation
    m = measure(dev.call, dev.sync, POLICY, clock=dev.clock)
    assert m.cold_s == pytest.approx(0.5)
    assert max(m.samples) == pytest.approx(1e-3)


def test_number_is_calibrated_from_the_block_target() -> None:
    dev = FakeDevice(1e-4)
    m = measure(dev.call, dev.sync, POLICY, clock=dev.clock)
    assert m.number == math.ceil(POLICY.min_block_time / 1e-4)


def test_expensive_sync_lengthens_the_block_to_keep_it_under_one_percent() -> None:
    dev = FakeDevice(1e-4, sync_cost=1e-3)
    m = measure(dev.call, dev.sync, POLICY, clock=dev.clock)
    assert m.sync_overhead_s == pytest.approx(1e-3)
    block = m.number * 1e-4
    assert block >= SYNC_OVERHEAD_FACTOR * 1e-3 * (1 - 1e-9)
    assert m.sync_overhead_s / block <= 0.01 + 1e-12


def test_sync_is_called_once_per_block() -> None:
    dev = FakeDevice(1e-4)
    m = measure(dev.call, dev.sync, POLICY, clock=dev.clock)
    sync_probes = 5
    assert dev.syncs == 1 + m.warmup_calls + sync_probes + len(m.samples)
    assert dev.calls == 1 + m.warmup_calls + m.number * len(m.samples)


def test_warmup_is_time_based_with_a_minimum_of_calls() -> None:
    short = FakeDevice(0.01)
    assert measure(short.call, short.sync, POLICY, clock=short.clock).warmup_calls == 10
    long = FakeDevice(1.0)
    assert measure(long.call, long.sync, POLICY, clock=long.clock).warmup_calls == POLICY.min_warmup_calls


def test_budget_cuts_a_slow_cell_short_but_keeps_one_sample() -> None:
    dev = FakeDevice(0.5)
    policy = TimingPolicy(max_cell_time=2.0, min_samples=5)
    m = measure(dev.call, dev.sync, policy, clock=dev.clock)
    assert m.stop_reason == "budget"
    assert m.number == 1
    assert len(m.samples) == 2  # warm-up 2 x 0.5 s, then samples while a block still fits
    very_slow = FakeDevice(5.0)
    m = measure(very_slow.call, very_slow.sync, policy, clock=very_slow.clock)
    assert (m.warmup_calls, len(m.samples), m.stop_reason) == (1, 1, "budget")


def test_noisy_cell_runs_to_max_samples() -> None:
    dev = FakeDevice([1e-3, 2e-3, 4e-3])
    policy = TimingPolicy(max_cell_time=100.0, min_samples=5, max_samples=12, min_block_time=1e-3)
    m = measure(dev.call, dev.sync, policy, clock=dev.clock)
    assert m.number == 1
    assert (len(m.samples), m.stop_reason) == (12, "max_samples")


def test_unsynchronized_timing_measures_only_the_launch_and_drains_at_the_end() -> None:
    dev = FakeDevice(1e-2, launch=1e-5)
    m = measure(dev.call, dev.no_sync, POLICY, clock=dev.clock, drain=dev.drain)
    assert m.samples == pytest.approx([1e-5] * len(m.samples))
    assert dev.drains == 1
    assert dev.now >= dev.busy_until  # nothing left queued for the next cell


def test_check_sees_the_cold_output_and_can_fail_the_cell() -> None:
    dev = FakeDevice(1e-3)
    seen: list[int] = []

    def check(output: int) -> None:
        seen.append(output)
        raise RuntimeError("wrong device")

    with pytest.raises(RuntimeError, match="wrong device"):
        measure(dev.call, dev.sync, POLICY, clock=dev.clock, check=check)
    assert seen == [1]
    assert dev.calls == 1


def test_stopping_rule_on_plain_lists() -> None:
    rule = StoppingRule(min_samples=3, max_samples=6, target_rel_iqr=0.05)
    for value in (1.0, 1.0):
        rule.add(value)
        assert not rule.is_finished()
    rule.add(1.0)
    assert rule.converged()
    assert rule.is_finished()

    noisy = StoppingRule(min_samples=3, max_samples=6, target_rel_iqr=0.05)
    for value in (1.0, 2.0, 3.0, 1.0, 2.0):
        noisy.add(value)
        assert not noisy.is_finished()
    noisy.add(3.0)
    assert noisy.is_finished()
    assert not noisy.converged()


def test_a_block_callable_replaces_the_python_loop() -> None:
    dev = FakeDevice(1e-4, launch=1e-6, asynchronous=False)
    blocks: list[int] = []

    def block(number: int) -> int:
        blocks.append(number)
        return dev.loop(number)

    m = measure(dev.call, dev.sync, POLICY, clock=dev.clock, block=block)
    assert blocks == [m.number] * len(m.samples)  # the warm-up estimate was right: no block was discarded
    assert m.calibration_blocks == 1
    assert m.output == dev.calls
    # one launch per block, not one per call
    assert m.samples == pytest.approx([1e-4 + 1e-6 / m.number] * len(m.samples))


def test_a_block_cheaper_per_call_than_one_call_is_recalibrated() -> None:
    """A graph loop: each warm-up call pays a 100 µs launch, a block pays it once. The estimate from the warm-up
    (110 µs per call) gives blocks ten times too short; the first block shows it and ``number`` is scaled up."""
    dev = FakeDevice(1e-5, launch=1e-4, asynchronous=False)
    m = measure(dev.call, dev.sync, POLICY, clock=dev.clock, block=dev.loop)
    assert m.calibration_blocks == 2
    assert m.number * 1e-5 + 1e-4 >= POLICY.min_block_time
    assert m.samples == pytest.approx([1e-5 + 1e-4 / m.number] * len(m.samples))
    assert m.number > math.ceil(POLICY.min_block_time / (1e-5 + 1e-4))
    # the discarded calibration block is not a sample; every call is accounted for
    assert dev.calls == 1 + m.warmup_calls + 91 + m.number * len(m.samples)


def test_recalibration_stops_at_max_number() -> None:
    dev = FakeDevice(0.0, launch=1e-4, asynchronous=False)  # work is free: no number reaches the target
    policy = TimingPolicy(max_cell_time=10.0, min_samples=3, max_number=1000)
    m = measure(dev.call, dev.sync, policy, clock=dev.clock, block=dev.loop)
    assert m.number == 1000
    assert m.calibration_blocks <= MAX_CALIBRATION_BLOCKS
    assert len(m.samples) >= 1


def test_default_block_runs_fn_number_times() -> None:
    calls: list[int] = []

    def fn() -> int:
        calls.append(len(calls))
        return len(calls)

    assert python_loop(fn)(3) == 3
    assert calls == [0, 1, 2]


def test_a_block_far_over_the_target_is_recalibrated_down() -> None:
    """The sync probes hit a busy moment (2 ms each, while a sync after real work is free), so calls look free
    and ``number`` is estimated at its maximum: the first block lasts 5x the target. It is discarded and
    ``number`` scaled down to about the target."""
    dev = FakeDevice(1e-4, asynchronous=False)
    calls_at_last_sync = [-1]

    def sync(output: int) -> None:
        dev.sync(output)
        if dev.calls == calls_at_last_sync[0]:
            dev.now += 2e-3  # a probe on finished work: slow
        calls_at_last_sync[0] = dev.calls

    policy = TimingPolicy(max_cell_time=100.0, min_samples=3, max_number=10_000)
    m = measure(dev.call, sync, policy, clock=dev.clock)
    target = SYNC_OVERHEAD_FACTOR * 2e-3
    assert m.calibration_blocks == 2
    assert target <= m.number * 1e-4 <= 1.2 * target
    assert m.samples == pytest.approx([1e-4] * len(m.samples))


def test_a_later_visit_counts_its_first_call_as_warm_up() -> None:
    """A cell's second and later visits find the op warm: the first call is the warm-up, so a visit of a slow
    op costs its first call and one block, not a cold call, two warm-up calls and a block."""
    from devbench.spec import TimingPolicy

    slow = TimingPolicy(max_cell_time=10.0, min_samples=1, max_samples=1, warmup_time=0.0)
    first = FakeDevice(1.0, asynchronous=False)
    measure(first.call, first.sync, slow, clock=first.clock)
    later = FakeDevice(1.0, asynchronous=False)
    measurement = measure(later.call, later.sync, slow.later_visit(), clock=later.clock)
    assert later.calls == 2  # the first call (warm-up) and one block of one call
    assert first.calls == 4  # cold call, two warm-up calls, one block
    assert measurement.warmup_calls == 1
    assert measurement.samples == [1.0]


def test_a_later_visit_of_an_op_slower_than_its_budget_is_its_one_warm_call() -> None:
    from devbench.spec import TimingPolicy

    visit = TimingPolicy(max_cell_time=0.4, min_samples=2, max_samples=10).later_visit()
    device = FakeDevice(1.0, asynchronous=False)
    measurement = measure(device.call, device.sync, visit, clock=device.clock)
    assert device.calls == 1
    assert measurement.samples == [1.0]
    assert measurement.stop_reason == "budget"
    quick = FakeDevice(0.001, asynchronous=False)
    assert len(measure(quick.call, quick.sync, visit, clock=quick.clock).samples) >= 2  # fast ops: as before
