"""What a finished run gets written beside its tables: charts in plots/ and report.md.

Used at the end of every sweep and refine, and by ``devbench plot`` / ``devbench report``.
"""

from __future__ import annotations

from pathlib import Path

from devbench.store import Run


def output_dir(source: Path) -> Path:
    """Where outputs of ``source`` go by default: the run directory itself, or a bare table's folder."""
    return source if source.is_dir() else source.parent


def publish(run: Run, run_dir: Path) -> tuple[list[Path], Path]:
    """Charts into ``run_dir/plots``, then the report that embeds them. Returns (chart paths, report path)."""
    from devbench import plots, report

    charts = plots.write_charts(run, run_dir / plots.PLOTS_DIR)
    return charts, report.write_report(run, run_dir, charts)
