"""Every number devbench shows to a person, formatted in one place, and the text tables that hold them.

Tables (crossovers, winners, compare), charts, the Markdown report and the progress bar all call these, so a
time per call reads the same everywhere. Units: times and durations are seconds, rates are per second, sizes
are the matrix side n, ratios are plain ratios of times. A missing or non-finite value prints as ``MISSING``.
No heavy imports: rich is imported only by :func:`rich_table`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

MISSING = "–"
"""What a NaN, an infinity or an absent value prints as."""

_TIME_UNITS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"))


def format_time(seconds: float) -> str:
    """A time per call with an SI prefix, 3 significant digits: '812 ns', '12.3 µs', '4.56 ms', '1.23 s'."""
    if not math.isfinite(seconds):
        return MISSING
    seconds = float(f"{seconds:.3g}")  # round first: 999.6 µs is '1 ms', not '1e+03 µs'
    for scale, unit in _TIME_UNITS:
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_duration(seconds: float) -> str:
    """A wall-clock span (plans, ETAs, time limits): '0.25 s', '45 s', '2 min 10 s', '2 h 5 min'."""
    if not math.isfinite(seconds):
        return "unknown"
    if seconds < 10:
        return f"{seconds:.2g} s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def format_eta(seconds: float) -> str:
    """Time left for the progress bar: '~2 min 10 s'; ``MISSING`` while there is no estimate yet."""
    return MISSING if not math.isfinite(seconds) else "~" + format_duration(seconds)


def format_ratio(ratio: float) -> str:
    """A speed-up or slow-down: '0.42×', '1.18×', '23.6×', '1340×' (whole from 100 on, never an exponent)."""
    if not math.isfinite(ratio):
        return MISSING
    return f"{ratio:.0f}×" if abs(ratio) >= 100 else f"{ratio:.3g}×"


def format_ratio_interval(ratio: float, low: float, high: float) -> str:
    """A ratio close to 1 with its confidence interval, 3 decimals so ±1 % shows: '1.012× [1.004, 1.020]'."""
    if not math.isfinite(ratio):
        return MISSING
    text = f"{ratio:.3f}×"
    if math.isfinite(low) and math.isfinite(high):
        text += f" [{low:.3f}, {high:.3f}]"
    return text


def format_p_value(p: float) -> str:
    """A p-value: '0.031', '2.1e-05'."""
    if not math.isfinite(p):
        return MISSING
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def format_size(n: float) -> str:
    """A size n: whole numbers from 100 on, three significant digits below (interpolated crossovers)."""
    if not math.isfinite(n):
        return MISSING
    return f"{n:.0f}" if abs(n) >= 100 else f"{n:.3g}"


def format_size_interval(size: float, low: float, high: float, *, none: str = "none") -> str:
    """A crossover size with its bracket: '1000 [870, 1.15e+03]'; ``none`` when there is no crossover."""
    if not math.isfinite(size):
        return none
    if math.isfinite(low) and math.isfinite(high):
        return f"{size:.4g} [{low:.4g}, {high:.4g}]"
    return f"{size:.4g}"


def format_rate(per_second: float, unit: str) -> str:
    """A throughput in giga-units per second: ``format_rate(2.5e12, "FLOP")`` -> '2.5e+03 GFLOP/s'."""
    if not math.isfinite(per_second):
        return MISSING
    return f"{per_second / 1e9:.3g} G{unit}/s"


def format_percent(fraction: float) -> str:
    """A fraction as a whole percentage: 0.034 -> '3%'."""
    return MISSING if not math.isfinite(fraction) else f"{fraction:.0%}"


_BYTE_UNITS = (("B", 1), ("KiB", 2**10), ("MiB", 2**20), ("GiB", 2**30), ("TiB", 2**40))


def format_bytes(n_bytes: float) -> str:
    """A byte count in binary units, 3 digits: '800 B', '48 KiB', '12 MiB', '1.5 GiB' (never '1.02e+03 KiB')."""
    if not math.isfinite(n_bytes):
        return MISSING
    for i, (unit, scale) in enumerate(_BYTE_UNITS):
        value = float(f"{n_bytes / scale:.3g}")
        if abs(value) < 1000 or i == len(_BYTE_UNITS) - 1:
            return f"{value:.3g} {unit}"
    raise AssertionError("unreachable")


def format_gib(n_bytes: float) -> str:
    """Memory in GiB, one decimal: '15.6 GiB'."""
    return MISSING if not math.isfinite(n_bytes) else f"{n_bytes / 2**30:.1f} GiB"


def format_joules(joules: float) -> str:
    """Energy with an SI prefix, 3 significant digits: '812 nJ', '12.3 µJ', '4.56 mJ', '1.23 J' (devbench.energy;
    may be negative: an op within the idle power's noise)."""
    if not math.isfinite(joules):
        return MISSING
    for scale, unit in ((1.0, "J"), (1e-3, "mJ"), (1e-6, "µJ")):
        if abs(joules) >= scale:
            return f"{joules / scale:.3g} {unit}"
    return f"{joules / 1e-9:.3g} nJ"


# ---------------------------------------------------------------------------------------------------------
# Text tables


def rich_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[str]], width: int) -> str:
    """A plain (no colour) terminal table, ``width`` characters wide, as text. Cells are text, not rich markup:
    a shaped op's name (``matmul[m=*,k=256,n=64]``) would otherwise read as a style tag and vanish."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", show_lines=False)
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return render_rich(table, width)


def render_rich(renderable: object, width: int) -> str:
    """Any rich renderable printed without colour into a string ``width`` characters wide."""
    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False, soft_wrap=False).print(renderable)
    return buffer.getvalue()


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars made Python ones and NaN/inf made None: strict JSON, nothing lost."""
    import numpy as np  # lazy: ``devbench --help`` imports this module

    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


def json_text(data: Any) -> str:
    """Indented JSON with NaN and infinities written as null (:func:`json_safe`), newline-terminated."""
    return json.dumps(json_safe(data), indent=2, ensure_ascii=False) + "\n"


def csv_text(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV with a header line, ``\\n`` line ends."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return buffer.getvalue()


def utc_now() -> str:
    """Now, in UTC, as every file devbench writes stamps it (ISO 8601 to the second: 2026-12-06T21:30:00+00:00)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
