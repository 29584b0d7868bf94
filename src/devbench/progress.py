"""The live progress display of a sweep (rich), on stderr so that stdout stays clean for tables.

The ETA is rich's, from cells done per second; cells grow with size and run smallest first, so it is
optimistic early on and tightens as the sweep goes.
"""

from __future__ import annotations

import math
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

if TYPE_CHECKING:
    from devbench.runner import CellResult
    from devbench.spec import Cell, SweepSpec


def _format_time(seconds: float) -> str:
    if math.isnan(seconds):
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


class SweepProgress:
    """Context manager with ``start(cell)`` and ``finish(result)`` callbacks for :func:`devbench.sweep.execute`."""

    def __init__(self, spec: SweepSpec, *, enabled: bool = True, console: Console | None = None,
                 total: int | None = -1) -> None:
        """``total`` cells (default: the spec's count; None for an open-ended run such as refining)."""
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.total = spec.n_cells() if total == -1 else total
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled,
        )
        self.task = self.progress.add_task("sweep", total=self.total)

    def __enter__(self) -> SweepProgress:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.stop()

    def start(self, cell: Cell) -> None:
        self.progress.update(self.task, description=cell.label())

    def finish(self, result: CellResult) -> None:
        record = result.record
        self.progress.advance(self.task)
        if not self.enabled:
            return
        label = f"{record.op}[{record.size}, {record.dtype}, {record.device}, {record.mode}]"
        if record.status == "ok":
            note = f" ({record.reason})" if record.reason else ""
            self.progress.console.print(
                f"  {label}: {_format_time(record.median_s)}/call, cold {_format_time(record.cold_s)}{note}",
                highlight=False,
            )
        else:
            self.progress.console.print(f"  {label}: [yellow]{record.status}[/]: {record.reason}",
                                        highlight=False)
