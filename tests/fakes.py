"""A simulated device with an exact clock, for testing the timing protocol without TensorFlow or noise."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import cycle


class FakeDevice:
    """Each call enqueues ``cost`` seconds of work after ``launch`` seconds of host time; ``sync`` waits for the
    queue to drain, then pays ``sync_cost``. With ``asynchronous=False`` every call also waits (like CPU eager).

    ``costs`` may be a sequence, cycled through call by call, to make noisy timings.
    """

    def __init__(self, cost: float | list[float], *, launch: float = 0.0, sync_cost: float = 0.0,
                 asynchronous: bool = True) -> None:
        self._costs: Iterator[float] = cycle(cost if isinstance(cost, list) else [cost])
        self.launch = launch
        self.sync_cost = sync_cost
        self.asynchronous = asynchronous
        self.now = 0.0
        self.busy_until = 0.0
        self.calls = 0
        self.syncs = 0
        self.drains = 0

    def clock(self) -> float:
        return self.now

    def call(self) -> int:
        self.now += self.launch
        self.busy_until = max(self.now, self.busy_until) + next(self._costs)
        self.calls += 1
        if not self.asynchronous:
            self.now = self.busy_until
        return self.calls

    def loop(self, number: int) -> int:
        """A block run as one launch (a graph loop): ``launch`` paid once, then ``number`` calls of work."""
        self.now += self.launch
        for _ in range(number):
            self.busy_until = max(self.now, self.busy_until) + next(self._costs)
        self.calls += number
        if not self.asynchronous:
            self.now = self.busy_until
        return self.calls

    def sync(self, output: int) -> None:
        del output
        self.syncs += 1
        self.now = max(self.now, self.busy_until) + self.sync_cost

    def no_sync(self, output: int) -> None:
        del output

    def drain(self, output: int) -> None:
        del output
        self.drains += 1
        self.now = max(self.now, self.busy_until)
