"""What a finished run gets written beside its tables: charts in plots/ and report.md.

Used at the end of every sweep and refine, and by ``devbench plot`` / ``devbench report``.
"""

from __future__ import annotations

from pathlib import Path

from devbench.store import Run

PLOTS = "plots"
REPORT = "report.md"


def output_dir(source: Path) -> Path:
    """Where outputs of ``source`` go by default: the run directory itself, or a bare table's folder."""
    return source if source.is_dir() else source.parent


def write_charts(run: Run, run_dir: Path) -> list[Path]:
    from devbench import plot

    return plot.write_charts(run, run_dir / PLOTS)


def write_report(run: Run, run_dir: Path, charts: list[Path] | None = None) -> Path:
    from devbench import report

    return report.write_report(run, run_dir, charts)


def publish(run: Run, run_dir: Path) -> tuple[list[Path], Path]:
    """Charts, then the report that embeds them. Returns (chart paths, report path)."""
    charts = write_charts(run, run_dir)
    return charts, write_report(run, run_dir, charts)
