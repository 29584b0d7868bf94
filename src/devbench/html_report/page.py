"""The HTML page kit shared by the run report and the compare page: escaping, plain tables, the page frame
(stylesheet with a print view, the small scripts), and embedding Plotly figures with no network access.

Every string that came from a results file is untrusted (a ``reason`` is free text from a file anyone can
write). It reaches the page through exactly one of three doors, each with its own escaping:

- HTML text and attributes: :func:`esc` (``html.escape``);
- strings Plotly draws as SVG text (trace names, hover labels, titles, annotations): :func:`plotly_text`,
  because Plotly parses a subset of HTML in them (``<b>``, ``<a href>``…) and decodes only a few entities;
- figure JSON inside ``<script type="application/json">``: :func:`script_json`, which writes ``<``, ``>``
  and ``&`` as ``\\u003c`` etc., so no string can close the script element.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import plotly.graph_objects as go  # type: ignore[import-untyped]

PLOT_CONFIG: dict[str, Any] = {"responsive": True, "displaylogo": False, "scrollZoom": False}
"""Plotly.newPlot's config for every chart: resize with the window, no Plotly logo in the mode bar."""


def esc(value: object) -> str:
    """Text for HTML content or a double-quoted attribute."""
    return html.escape(str(value), quote=True)


def plotly_text(value: object) -> str:
    """Text for a string Plotly renders: ``&``, ``<`` and ``>`` as the entities Plotly decodes back to text.

    Quotes stay as they are: Plotly does not decode ``&quot;`` and they are harmless in SVG text.
    """
    return html.escape(str(value), quote=False)


def script_json(data: object) -> str:
    """JSON that is safe inside a ``<script>`` element whatever its strings hold."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def table(
    caption: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    table_id: str = "",
    row_classes: Sequence[str] | None = None,
) -> str:
    """A plain HTML table (readable without JavaScript and by screen readers); every cell is escaped.

    ``row_classes`` (one per row, may be empty strings) are CSS classes such as a verdict, already safe.
    """
    ident = f' id="{esc(table_id)}"' if table_id else ""
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in headers)
    body = []
    for i, row in enumerate(rows):
        css = row_classes[i] if row_classes is not None and i < len(row_classes) else ""
        cls = f' class="{esc(css)}"' if css else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
    return (
        f"<table{ident}><caption>{esc(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def facts(items: Iterable[tuple[str, str]]) -> str:
    """A definition list of label/value pairs, leaving out values nobody recorded."""
    parts = [f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items if v and v not in ("?", "None")]
    return f"<dl class=\"facts\">{''.join(parts)}</dl>" if parts else ""


@dataclass
class Charts:
    """Numbers the figures of one page, so every chart div and its data block get a unique id."""

    count: int = 0
    template: dict[str, Any] = field(default_factory=dict)
    """The Plotly layout template, taken out of each figure and written once per page (it is ~8 kB of JSON
    per figure otherwise)."""

    def embed(self, fig: go.Figure, label: str, caption: str = "") -> str:
        """A ``<figure>`` holding the chart's div, its data as JSON, and a caption.

        ``label`` becomes the div's ``aria-label`` (role ``img``): what the chart shows, for screen readers
        and as a tooltip. The page's loader script (``LOADER``) draws every chart from its data block.
        """
        self.count += 1
        ident = f"chart-{self.count}"
        spec = fig.to_plotly_json()
        layout = dict(spec.get("layout", {}))
        template = layout.pop("template", None)
        if template and not self.template:
            self.template = _plain(template)
        data = {"data": _plain(spec.get("data", [])), "layout": _plain(layout)}
        figcaption = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
        return (
            f'<figure class="chart"><div id="{ident}" class="plot" role="img" aria-label="{esc(label)}" '
            f'title="{esc(label)}"></div>'
            f'<script type="application/json" class="chart-data" data-target="{ident}">{script_json(data)}'
            f"</script>{figcaption}</figure>"
        )


def _plain(value: Any) -> Any:
    """Plotly's JSON-able structure (numpy arrays and scalars inside) as plain JSON values."""
    import plotly.utils  # type: ignore[import-untyped]

    text = json.dumps(value, cls=plotly.utils.PlotlyJSONEncoder)
    return json.loads(text)


CSS = """
:root { --fg: #1b1b1b; --muted: #5a5a5a; --line: #d0d0d0; --head: #f2f2f2; --warn: #8a1c00; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0 auto; padding: 1rem 1.5rem 3rem; max-width: 1200px; }
h1 { font-size: 1.6rem; margin: .4rem 0; } h2 { margin-top: 2.2rem; border-bottom: 2px solid var(--line); }
h3 { margin-top: 1.6rem; }
.machine, .note, figcaption { color: var(--muted); }
nav ul { columns: 3 16rem; padding-left: 1.2rem; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .86rem; width: 100%; }
caption { text-align: left; font-weight: 600; padding: .3rem 0; }
th, td { border: 1px solid var(--line); padding: .2rem .45rem; text-align: left; vertical-align: top; }
thead th { background: var(--head); position: sticky; top: 0; }
td { font-variant-numeric: tabular-nums; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
pre { background: var(--head); padding: .5rem; overflow-x: auto; white-space: pre-wrap; }
figure.chart { margin: .6rem 0 1.2rem; } .plot { width: 100%; min-height: 320px; }
.crossover { font-weight: 600; }
.warn { color: var(--warn); }
tr.slower td { background: #fde7e4; } tr.faster td { background: #e3f1e6; } tr.uncertain td { color: var(--muted); }
label.filter { display: block; margin: .6rem 0; } label.filter input { font: inherit; width: 22rem; max-width: 100%; }
details > summary { cursor: pointer; color: var(--muted); }
@media print {
  @page { margin: 12mm; }
  body { max-width: none; padding: 0; font-size: 10pt; }
  nav, label.filter, .modebar-container, noscript { display: none !important; }
  h2, h3 { break-after: avoid; }
  figure.chart, table, tr { break-inside: avoid; }
  thead th { position: static; }
  a { color: inherit; text-decoration: none; }
}
"""

LOADER = """
(function () {
  var template = JSON.parse(document.getElementById('plotly-template').textContent);
  var config = JSON.parse(document.getElementById('plotly-config').textContent);
  document.querySelectorAll('script.chart-data').forEach(function (block) {
    var spec = JSON.parse(block.textContent);
    spec.layout.template = template;
    Plotly.newPlot(document.getElementById(block.dataset.target), spec.data, spec.layout, config);
  });
  // Printing: every folded table open, every chart as wide as the paper (its height kept), and back after.
  var PRINT_WIDTH_PX = 680;  // A4 less 12 mm margins at 96 px per inch, rounded down
  window.addEventListener('beforeprint', function () {
    document.querySelectorAll('details').forEach(function (d) { d.open = true; });
    document.querySelectorAll('.js-plotly-plot').forEach(function (gd) {
      Plotly.relayout(gd, {width: Math.min(PRINT_WIDTH_PX, gd.clientWidth || PRINT_WIDTH_PX)});
    });
  });
  window.addEventListener('afterprint', function () {
    document.querySelectorAll('.js-plotly-plot').forEach(function (gd) {
      Plotly.relayout(gd, {width: null, autosize: true});
    });
  });
})();
"""

FILTER = """
(function () {
  var input = document.getElementById('cell-filter');
  var rows = document.querySelectorAll('#compare-cells tbody tr');
  var count = document.getElementById('cell-filter-count');
  function apply() {
    var words = input.value.toLowerCase().split(/\\s+/).filter(Boolean);
    var shown = 0;
    rows.forEach(function (tr) {
      var text = tr.textContent.toLowerCase();
      var keep = words.every(function (w) { return text.indexOf(w) !== -1; });
      tr.hidden = !keep;
      if (keep) { shown += 1; }
    });
    count.textContent = shown + ' of ' + rows.length + ' cells shown';
  }
  input.addEventListener('input', apply);
  apply();
})();
"""


def page(title: str, body: str, charts: Charts, *, extra_script: str = "") -> str:
    """The whole document. Plotly's bundle is inlined once in the head when the page has a chart; nothing is
    fetched (the icon is an empty data: URL so the browser does not ask for /favicon.ico)."""
    head_script = ""
    tail_script = ""
    if charts.count:
        from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

        head_script = f"<script>{get_plotlyjs()}</script>"
        tail_script = (
            f'<script type="application/json" id="plotly-template">{script_json(charts.template)}</script>'
            f'<script type="application/json" id="plotly-config">{script_json(PLOT_CONFIG)}</script>'
            f"<script>{LOADER}</script>"
        )
    noscript = (
        "<noscript><p class=\"note\">The charts need JavaScript; the tables hold the same numbers.</p></noscript>"
        if charts.count
        else ""
    )
    extra = f"<script>{extra_script}</script>" if extra_script else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{CSS}</style>{head_script}</head>"
        f"<body>{noscript}{body}{tail_script}{extra}</body></html>\n"
    )
