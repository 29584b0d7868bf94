"""The live progress display of a sweep (rich), on stderr so that stdout stays clean for tables.

Cells differ in cost by orders of magnitude (n=64 converges in a tenth of a second, n=8192 spends its whole
budget after a cold call of seconds), so an ETA from cells per second is useless. Given ``estimate`` (the
time guard's rough seconds per cell), the ETA is instead the estimated seconds of the cells left, scaled by
how long the finished cells really took against what was estimated for them: it starts as the plan's rough
figure and follows reality as cells finish. Without ``estimate`` it is rich's cells-per-second ETA.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from devbench.formatting import format_eta, format_time

if TYPE_CHECKING:
    from devbench.runner import CellResult
    from devbench.spec import Cell, Visit


class SweepProgress:
    """Context manager with ``start(cell)`` and ``finish(result)`` callbacks for :func:`devbench.sweep.execute`."""

    RECOMPUTE_EVERY_S = 2.0
    """The estimate of the cells left is recomputed in full at most this often (seconds); in between, each
    finished cell's own estimate is taken off it. Keeps a sweep of many thousand cells cheap to display."""

    def __init__(self, visits: Sequence[Visit] = (), *, total: int | None = None, enabled: bool = True,
                 console: Console | None = None, estimate: Callable[[Cell], float] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``visits``: the visits left to make; ``total`` visits in the run (done ones count as complete from
        the start; None for an open-ended run such as refining, which then shows no ETA).

        ``estimate`` gives a visit's rough seconds (for the ETA).
        """
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.total = total
        self.estimate = estimate if total is not None else None
        self.clock = clock
        self._left: dict[tuple[Any, ...], Cell] = (
            {visit.key(): visit.cell for visit in visits} if self.estimate else {}
        )
        self._spent = 0.0
        """Seconds the finished cells (since this display started) really took."""
        self._estimated = 0.0
        """Seconds estimated for those same cells when each started."""
        self._current: tuple[float, float] | None = None
        self._left_sum = math.nan
        self._left_sum_at = -math.inf
        eta_columns: list[Any] = (
            [TextColumn("ETA {task.fields[eta]}")] if self.estimate else [TextColumn("ETA"), TimeRemainingColumn()]
        )
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            *eta_columns,
            console=self.console,
            disable=not enabled,
        )
        completed = total - len(visits) if total is not None else 0
        self.task = self.progress.add_task("sweep", total=self.total, completed=completed, eta="—")
        if self.estimate:
            self.progress.update(self.task, eta=format_eta(self.eta_seconds()))

    def eta_seconds(self) -> float:
        """Seconds left: the cells left's estimates, times (real / estimated) seconds of the cells finished."""
        if self.estimate is None:
            return math.nan
        now = self.clock()
        if math.isnan(self._left_sum) or now - self._left_sum_at >= self.RECOMPUTE_EVERY_S:
            self._left_sum = sum(self.estimate(cell) for cell in self._left.values())
            self._left_sum_at = now
        ratio = self._spent / self._estimated if self._estimated > 0 else 1.0
        return max(self._left_sum, 0.0) * ratio

    def __enter__(self) -> SweepProgress:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.stop()

    def start(self, cell: Cell) -> None:
        self.progress.update(self.task, description=escape(cell.label()))  # a shaped op's name has [...]
        if self.estimate is not None:
            self._current = (self.clock(), self.estimate(cell))

    def finish(self, result: CellResult) -> None:
        record = result.record
        self.progress.advance(self.task)
        if self.estimate is not None:
            cell = self._left.pop((record.key(), result.round), None)
            if self._current is not None:
                started, estimated = self._current
                self._spent += self.clock() - started
                self._estimated += estimated
                if cell is not None:
                    self._left_sum -= estimated
                self._current = None
            self.progress.update(self.task, eta=format_eta(self.eta_seconds()))
        if not self.enabled:
            return
        label = escape(f"{record.op}[{record.size}, {record.dtype}, {record.device}, {record.mode}] round "
                       f"{result.round}")
        if record.status == "ok":
            note = f" ({record.reason})" if record.reason else ""
            self.progress.console.print(
                f"  {label}: {format_time(record.median_s)}/call, cold {format_time(record.cold_s)}{note}",
                highlight=False,
            )
        else:
            self.progress.console.print(f"  {label}: [yellow]{record.status}[/]: {record.reason}",
                                        highlight=False)
