"""The table printed at the end of a sweep: per op and size, the fastest device and its speed-up over CPU:0."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from devbench.progress import _format_time
from devbench.store import Run


def print_summary(run: Run, console: Console | None = None) -> None:
    console = console or Console()
    results = run.results
    ok = results[results["status"] == "ok"]
    table = Table(title="Fastest device per op and size (median time per call)")
    for column in ("op", "dtype", "mode", "n", "fastest", "time/call", "vs CPU:0", "flags"):
        table.add_column(column, justify="right" if column in ("n", "time/call", "vs CPU:0") else "left",
                         no_wrap=column in ("op", "fastest"))
    for (op, dtype, mode, size), group in ok.groupby(["op", "dtype", "mode", "size"], sort=False):
        best = group.loc[group["median_s"].idxmin()]
        cpu = group[group["device"] == "CPU:0"]
        speedup = float(cpu["median_s"].iloc[0] / best["median_s"]) if not cpu.empty else math.nan
        flags = ", ".join(f for f, on in (("noisy", bool(best["noisy"])),
                                          ("UNSYNCED", bool(best["unsynchronized"]))) if on)
        table.add_row(str(op), str(dtype), str(mode), str(size), str(best["device"]),
                      _format_time(float(best["median_s"])),
                      "—" if math.isnan(speedup) else f"{speedup:.2f}×", flags)
    console.print(table)
    failed = results[results["status"] != "ok"]
    if not failed.empty:
        counts = failed["status"].value_counts()
        console.print("Cells not measured: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
