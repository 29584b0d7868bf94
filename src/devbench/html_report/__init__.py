"""Interactive, self-contained HTML pages: ``report.html`` of a run and the compare page of two runs.

One file each, sent to a colleague as it is: it works offline and makes no network request. Data, styles and
scripts are embedded; the text that came from results files is escaped (``page`` explains how).

Why Plotly: it is well kept, its Python package ships the whole plotly.js bundle (no CDN, no download at
run time), its charts do what these pages need out of the box (log axes, hover labels, legend clicks that
hide a device, zoom, a PNG export button), and the figures can be read back in a browser test
(``gd.data``, ``Plotly.Fx.hover``). Vega-Lite through Altair would need three bundles (vega, vega-lite,
vega-embed) that Altair does not ship offline without the extra ``vl-convert`` package.

What it costs: the minified plotly.js bundle, inlined once per page, is about 4.8 MB (plotly 7.1 ships
plotly.js 4.1; ``len(plotly.offline.get_plotlyjs())`` gives the exact size). The figures themselves add little:
their shared layout template is written once per page, and a synthetic default sweep (6 ops × 7 sizes ×
2 devices) adds about 0.15 MB of data, tables included: 4.97 MB in all (``tests/test_html_report.py`` prints
the bytes). A page without a chart (a comparison with no cell compared) carries no bundle at all.

Public functions: :func:`write_html_report` (``RUN_DIR/report.html``) and :func:`write_compare_html`; the
``render_*`` twins return the text.
"""

from __future__ import annotations

from devbench.html_report.compare_page import render_compare_html, sorted_by_change, write_compare_html
from devbench.html_report.run_page import REPORT_HTML, render_html_report, write_html_report

__all__ = [
    "REPORT_HTML",
    "render_compare_html",
    "render_html_report",
    "sorted_by_change",
    "write_compare_html",
    "write_html_report",
]
