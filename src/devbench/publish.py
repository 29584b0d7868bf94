"""What a finished run gets written beside its tables: charts in plots/, report.md and report.html.

Used at the end of every sweep and refine, and by ``devbench plot`` / ``devbench report``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from devbench.store import Run


@dataclass(frozen=True)
class Published:
    charts: list[Path]
    """The PNG charts, in plots/."""
    report: Path
    """report.md (embeds the charts)."""
    html: Path | None
    """report.html: the self-contained interactive report (None when not asked for)."""


def output_dir(source: Path) -> Path:
    """Where outputs of ``source`` go by default: the run directory itself, or a bare table's folder."""
    return source if source.is_dir() else source.parent


def publish(run: Run, run_dir: Path, *, html: bool = True) -> Published:
    """Charts into ``run_dir/plots``, the report that embeds them, and (``html``) report.html."""
    from devbench import plots, report
    from devbench.analysis import crossover_frame

    charts = plots.write_charts(run, run_dir / plots.PLOTS_DIR)
    markdown = report.write_report(run, run_dir, charts)
    page = None
    if html:
        from devbench.html_report import write_html_report

        page = write_html_report(run, run_dir, crossovers=crossover_frame(run.results, run.samples))
    return Published(charts=charts, report=markdown, html=page)
