"""report.html and the compare page, read as files (no browser): offline, escaped, plain tables, small.

The runs are synthetic with known answers: CPU:0 takes 1e-12·n³ s per call and GPU:0 1e-6·n s, so GPU:0 is
faster above n = 1000 exactly. ``tests/test_browser.py`` opens the same pages in Chromium.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from devbench.compare import Comparison, compare_runs
from devbench.errors import UsageError
from devbench.html_report import charts as ch
from devbench.html_report import render_compare_html, render_html_report, write_compare_html, write_html_report
from devbench.plots.common import device_colours
from devbench.schema import SAMPLE_COLUMNS, SCHEMA_VERSION
from devbench.store import Run, load_any
from tests.synthetic import MACHINE, frame, from_model, grid, row, run

DEFAULT_OPS = ("matmul", "conv2d", "add", "reduce_sum", "softmax_xent_grad", "dense_step")

HOSTILE_REASON = '<script>alert("reason")</script><img src=x onerror="window.__pwned=1">'
HOSTILE_DEVICE = 'GPU:1<img src=y onerror="window.__pwned=2">'

CALIBRATION = {
    "devices": {
        "CPU:0": {"peak_flops": {"float32": 1e11}, "peak_source": {"float32": "numpy_gemm"}, "bandwidth": 2e10,
                  "bandwidth_source": "numpy_copyto", "ridge": {"float32": 5.0}},
        "GPU:0": {"peak_flops": {"float32": 5e13}, "peak_source": {"float32": "tf_gemm"}, "bandwidth": 1e12,
                  "bandwidth_source": "tf_deepcopy", "ridge": {"float32": 50.0}},
    }
}
"""Ceilings of a made-up machine: 100 GFLOP/s and 20 GB/s on the host, 50 TFLOP/s and 1 TB/s on GPU:0."""

CROSSOVER_SENTENCE = "GPU:0 faster above n≈1000 (range 512–1024)"
"""What the crossover table says for the models above (±1 % CIs: every size is decisive, so the range is the
grid sizes around the crossing)."""


def sweep_results(ops: tuple[str, ...] = DEFAULT_OPS, sizes: list[int] | None = None, *,
                  hostile: bool = True) -> pd.DataFrame:
    """Every op on CPU:0 and GPU:0 at ``sizes`` (default 64..4096 doubling); GPU:0 at 2048 noisy; with
    ``hostile``, a skipped cell whose reason is markup and an ok cell on a device whose name is."""
    sizes = sizes or grid(64, 4096)
    parts = [from_model({"CPU:0": lambda n: 1e-12 * n**3, "GPU:0": lambda n: 1e-6 * n}, sizes, op=op) for op in ops]
    results = pd.concat(parts, ignore_index=True)
    results.loc[(results["device"] == "GPU:0") & (results["size"] == 2048), ["rel_iqr", "noisy"]] = (0.25, True)
    if hostile:
        extra = frame([row(8192, "GPU:0", 1.0, op=ops[0], status="skipped", reason=HOSTILE_REASON),
                       row(64, HOSTILE_DEVICE, 1e-3, op="hostile_op")])
        results = pd.concat([results, extra], ignore_index=True)
    return results


def sweep_run(**kw: object) -> Run:
    meta = {"run_id": "synthetic-sweep", "command": "devbench sweep --sizes 64..4096", "machine": MACHINE,
            "schema_version": 1, "calibration": CALIBRATION}
    return run(sweep_results(**kw), meta=meta)  # type: ignore[arg-type]


def with_samples(results: pd.DataFrame, seed: int, scale: dict[str, float] | None = None) -> Run:
    """A Run whose cells have 20 raw samples each, ±1 % around the median times ``scale[op]``."""
    scale = scale or {}
    rng = np.random.default_rng(seed)
    results = results.copy()
    factor = results["op"].map(lambda op: scale.get(str(op), 1.0)).astype(float)
    for col in ("median_s", "q1_s", "q3_s", "ci_low_s", "ci_high_s"):
        results[col] = results[col] * factor
    rows = []
    for r in results.to_dict(orient="records"):
        for i, value in enumerate(r["median_s"] * (1 + 0.01 * rng.standard_normal(20))):
            rows.append({"run_id": "synthetic", **{k: r[k] for k in ("op", "size", "dtype", "device", "mode", "sync")},
                         "round": i % 5 + 1, "sample": i // 5, "number": 10, "per_call_s": float(value)})
    meta = {"run_id": f"run-{seed}", "machine": MACHINE, "schema_version": SCHEMA_VERSION}
    return Run(path=None, meta=meta, results=results, samples=pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS)))


def comparison() -> Comparison:
    """matmul 30 % slower in NEW, add 20 % faster, reduce_sum unchanged."""
    results = sweep_results(("matmul", "add", "reduce_sum"), [64, 256, 1024], hostile=False)
    base = with_samples(results, seed=1)
    new = with_samples(results, seed=2, scale={"matmul": 1.3, "add": 0.8})
    return compare_runs(base, new, n_boot=300)


class Parsed(HTMLParser):
    """Tags with their attributes, and the rows of every table as cell texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.tables: list[dict[str, object]] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._caption: list[str] | None = None
        self._in_script = False
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag == "table":
            self.tables.append({"caption": "", "rows": [], "attrs": dict(self.tags[-1][1])})
        elif tag == "caption":
            self._caption = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "script":
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "caption" and self._caption is not None:
            self.tables[-1]["caption"] = "".join(self._caption)
            self._caption = None
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            rows = self.tables[-1]["rows"]
            assert isinstance(rows, list)
            rows.append(self._row)
            self._row = None
        elif tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            return
        self.text.append(data)
        for sink in (self._cell, self._caption):
            if sink is not None:
                sink.append(data)

    def table(self, caption_start: str) -> list[list[str]]:
        found = [t for t in self.tables if str(t["caption"]).startswith(caption_start)]
        assert len(found) == 1, [t["caption"] for t in self.tables]
        rows = found[0]["rows"]
        assert isinstance(rows, list)
        return rows


def parse(text: str) -> Parsed:
    parsed = Parsed()
    parsed.feed(text)
    return parsed


@pytest.fixture(scope="module")
def report_text() -> str:
    return render_html_report(sweep_run())


@pytest.fixture(scope="module")
def compare_text() -> str:
    return render_compare_html(comparison())


def test_the_crossover_section_says_what_decisive_means_as_report_md_does(report_text: str) -> None:
    """One explanation (crossover.CROSSOVER_EXPLANATION) for both reports; its Markdown emphasis is <em> here."""
    assert "holds at every size of the curve at once" in report_text
    assert "A crossing is <em>decisive</em> between two consecutive sizes" in report_text
    assert "<em>within noise</em>" in report_text
    assert "confidence intervals of the medians" not in report_text


def test_pages_load_nothing_from_the_network(report_text: str, compare_text: str) -> None:
    from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

    bundle = get_plotlyjs()
    for text in (report_text, compare_text):
        parsed = parse(text)
        scripts = [attrs for tag, attrs in parsed.tags if tag == "script"]
        assert scripts
        assert not any("src" in attrs for attrs in scripts)  # every script is inline
        for tag, attrs in parsed.tags:
            for name in ("src", "href", "action", "poster", "data", "srcset"):
                value = attrs.get(name, "")
                assert not value or value.startswith(("#", "data:")), (tag, name, value)
        assert text.count(bundle) == 1  # the bundle once per page, never a CDN


def test_hostile_text_from_results_is_escaped(report_text: str) -> None:
    # Neither payload survives as markup anywhere: not in tables, not in the figures' JSON.
    assert "<script>alert(" not in report_text
    assert "<img src=" not in report_text
    assert "&lt;script&gt;alert(&quot;reason&quot;)&lt;/script&gt;" in report_text  # the warnings table
    parsed = parse(report_text)
    skipped = parsed.table("Skipped")
    assert [r for r in skipped if r[-1] == HOSTILE_REASON]  # shown as the text it is
    assert HOSTILE_DEVICE in " ".join(parsed.text)


def test_tables_are_plain_html_with_captions(report_text: str) -> None:
    parsed = parse(report_text)
    crossover = parsed.table("Crossover per")
    assert crossover[0][:6] == ["op dtype mode", "pair (a vs b)", "crossover", "range", "faster below", "faster above"]
    matmul = next(r for r in crossover if r[0] == "matmul float32 eager")
    assert matmul[1:6] == ["CPU:0 vs GPU:0", "n≈1000", "512–1024", "CPU:0", "GPU:0"]
    assert CROSSOVER_SENTENCE in matmul[-1]
    fastest = parsed.table("Fastest device")
    assert len(fastest) == 1 + len(DEFAULT_OPS) * 7 + 1  # header, 6 ops × 7 sizes, the hostile op's one cell
    largest = next(r for r in fastest if r[:2] == ["matmul float32 eager", "4096"])
    assert largest[2] == "GPU:0"
    numbers = [t for t in parsed.tables if str(t["caption"]).startswith("Median time per call")]
    assert len(numbers) == len(DEFAULT_OPS) + 1  # one per chart section
    assert "th" in {tag for tag, _ in parsed.tags}
    assert all(attrs.get("scope") == "col" for tag, attrs in parsed.tags if tag == "th")
    machine = dict((r[0], r[1]) for r in parsed.table("Machine fingerprint")[1:])
    assert machine["cpu.model"] == "Synthetic CPU 9000"
    assert machine["devices[1].details.device_name"] == "Synthetic GPU X1"
    ceilings = parsed.table("Calibrated ceilings")
    assert ceilings[0] == ["device", "dtype", "peak GFLOP/s", "from", "bandwidth GB/s", "from", "ridge FLOP/byte",
                           "run's best GFLOP/s", "from", "run's best GB/s", "from"]
    gpu = next(r for r in ceilings if r[:2] == ["GPU:0", "float32"])
    assert gpu[:7] == ["GPU:0", "float32", "50000.0", "calibration GEMM tf_gemm", "1000.0",
                       "calibration copy tf_deepcopy", "50"]
    assert gpu[8].startswith("sweep: matmul n=4096 on GPU:0")
    # a device the probes did not measure: no ceiling, and why
    assert any(r[3].startswith("not calibrated: the calibration did not probe GPU:1") for r in ceilings)
    behind = next(t for t in parsed.tables if str(t["caption"]).startswith("Median time per call"))["rows"]
    assert isinstance(behind, list)
    assert {"% of calibrated peak", "% of the run's best"} <= set(behind[0])


def test_charts_are_labelled_and_the_page_prints(report_text: str) -> None:
    parsed = parse(report_text)
    plots = [attrs for tag, attrs in parsed.tags if tag == "div" and "plot" in attrs.get("class", "").split()]
    # the overview, then a crossover and a throughput chart per op (the hostile op included)
    assert len(plots) == 1 + 2 * (len(DEFAULT_OPS) + 1)
    assert all(p["role"] == "img" and p["aria-label"] for p in plots)
    assert "@media print" in report_text
    assert '<html lang="en">' in report_text
    assert any(tag == "nav" and attrs.get("aria-label") == "Contents" for tag, attrs in parsed.tags)


def test_report_size_for_a_default_sweep(tmp_path: Path) -> None:
    from plotly.offline import get_plotlyjs

    path = write_html_report(sweep_run(hostile=False), tmp_path)
    assert path == tmp_path / "report.html"
    size = path.stat().st_size
    bundle = len(get_plotlyjs().encode("utf-8"))
    print(f"report.html for 6 ops × 7 sizes × 2 devices: {size} bytes = {bundle} plotly.js + {size - bundle} page")
    assert size < 10 * 2**20  # the bound for a default sweep
    assert size - bundle < 600_000  # the figures and tables themselves stay small


def test_crossover_figure_traces_and_hover() -> None:
    results = sweep_results(("matmul",), hostile=False)
    from devbench.analysis import crossover_frame

    colours = device_colours(["CPU:0", "GPU:0"])
    fig = ch.crossover_chart(results, ("matmul", "float32", "eager"), crossover_frame(results), colours)
    roles = [(t.meta["role"], t.meta["device"]) for t in fig.data]
    assert roles == [("band", "CPU:0"), ("median", "CPU:0"), ("band", "GPU:0"), ("median", "GPU:0"),
                     ("speedup", "GPU:0")]
    gpu = fig.data[3]
    assert list(gpu.x) == grid(64, 4096)
    label = gpu.hovertext[list(gpu.x).index(1024)]
    assert "<b>GPU:0</b> · n=1024" in label
    assert "median 1.02 ms per call" in label  # 1e-6 s × 1024
    assert "95 % CI 1.01 ms – 1.03 ms" in label
    assert "samples 20" in label
    assert "flags: none" in label
    noisy = gpu.hovertext[list(gpu.x).index(2048)]
    assert "flags: noisy" in noisy
    crossover_lines = [s["x0"] for s in fig.layout.shapes if s["type"] == "line" and s["x0"] == s["x1"]]
    assert crossover_lines == [pytest.approx(1000.0)] * 2  # one per panel


def test_rounds_and_throttled_show_when_the_columns_exist() -> None:
    results = sweep_results(("add",), [64, 128], hostile=False).assign(n_rounds=3, throttled=False)
    results.loc[0, "throttled"] = True
    text = render_html_report(run(results))
    assert "samples 20 · rounds 3" in text
    assert "flags: throttled" in text
    assert "Throttled cells (the clock dropped while measuring) (1)" in text


def test_throughput_ceilings_come_from_the_calibration() -> None:
    results = sweep_results(("matmul",), hostile=False)
    fig = ch.throughput_chart(results, ("matmul", "float32", "eager"), device_colours(["CPU:0", "GPU:0"]),
                              memory_bound=False, calibration=CALIBRATION)
    assert fig is not None
    ceilings = {t.meta["device"]: t.y[0] for t in fig.data if t.meta["role"] == "ceiling"}
    assert ceilings == {"CPU:0": pytest.approx(100.0), "GPU:0": pytest.approx(50_000.0)}  # GFLOP/s
    gpu = next(t for t in fig.data if t.meta == {"role": "throughput", "device": "GPU:0", "sync": "scalar"})
    assert gpu.y[-1] == pytest.approx(2 * 4096**3 / (1e-6 * 4096) / 1e9)
    assert "% of the calibrated peak" in gpu.hovertext[-1]
    # this synthetic CPU:0 runs at 2000 GFLOP/s, 20 × its calibration: every point marked, none moved
    (above,) = [t for t in fig.data if t.meta["role"] == "above_peak"]
    assert above.meta["device"] == "CPU:0"
    assert list(above.y) == pytest.approx([2000.0] * 7)


def test_throughput_points_above_the_calibrated_ceiling_are_marked_not_clipped() -> None:
    results = sweep_results(("matmul",), hostile=False)
    low = {"devices": {**CALIBRATION["devices"], "GPU:0": {**CALIBRATION["devices"]["GPU:0"],
                                                           "peak_flops": {"float32": 2e13}}}}
    fig = ch.throughput_chart(results, ("matmul", "float32", "eager"), device_colours(["CPU:0", "GPU:0"]),
                              memory_bound=False, calibration=low)
    assert fig is not None
    gpu = next(t for t in fig.data if t.meta == {"role": "throughput", "device": "GPU:0", "sync": "scalar"})
    (above,) = [t for t in fig.data if t.meta == {"role": "above_peak", "device": "GPU:0"}]
    assert list(above.y) == [y for y in gpu.y if y > 20_000.0]  # the very points, at their own height
    assert "above the calibrated ceiling: the calibration is the thing to fix" in above.name
    assert "flags: above the calibrated ceiling" in above.hovertext[-1]
    from devbench.ceilings import with_pct_columns

    text = render_html_report(run(with_pct_columns(results, low), meta={"calibration": low}))
    assert "Above the calibrated ceiling (" in text


def test_bare_table_without_fingerprint_or_calibration_renders(tmp_path: Path) -> None:
    """A table from another tool, with only the required columns: no CI, no FLOPs, no machine."""
    table = tmp_path / "other-tool.csv"
    pd.DataFrame({"op": ["matmul"] * 4, "size": [64, 4096] * 2, "dtype": "float32",
                  "device": ["CPU:0", "CPU:0", "GPU:0", "GPU:0"], "median_s": [1e-6, 1e-1, 1e-4, 1e-2]}
                 ).to_csv(table, index=False)
    text = render_html_report(load_any(table))
    assert "No machine fingerprint" in text
    assert "Not calibrated" in text
    assert "GPU:0 faster than CPU:0 above n≈" in text  # the crossover, its range the measured bracket
    assert text.count('class="plot"') == 2  # overview and crossover; no FLOPs, so no throughput chart
    results = sweep_results(("matmul",), [64, 128], hostile=False)
    empty = render_html_report(Run(path=None, meta={}, results=results.iloc[0:0], samples=pd.DataFrame()))
    assert "No ok cells" in empty
    assert "<script>" not in empty  # no chart, so no bundle


def test_compare_page_is_sorted_by_change_and_filterable(compare_text: str, tmp_path: Path) -> None:
    parsed = parse(compare_text)
    rows = parsed.table("Ratio NEW/BASE")
    header, body = rows[0], rows[1:]
    ratio = [float(r[header.index("ratio")]) for r in body]
    assert ratio == sorted(ratio, reverse=True)
    verdicts = [r[header.index("verdict")] for r in body]
    ops = [r[0] for r in body]
    assert (set(ops[:6]), set(ops[-6:])) == ({"matmul"}, {"add"})
    assert (set(verdicts[:6]), set(verdicts[-6:])) == ({"slower"}, {"faster"})
    assert ratio[0] == pytest.approx(1.3, rel=0.03)
    assert ratio[-1] == pytest.approx(0.8, rel=0.03)
    row_classes = [attrs.get("class") for tag, attrs in parsed.tags if tag == "tr"][1:len(body) + 1]
    assert row_classes == verdicts
    assert any(tag == "input" and attrs.get("id") == "cell-filter" for tag, attrs in parsed.tags)
    assert any(tag == "label" and attrs.get("for") == "cell-filter" for tag, attrs in parsed.tags)
    path = write_compare_html(comparison(), tmp_path / "sub" / "compare.html")
    assert path.read_text(encoding="utf-8") == compare_text  # deterministic: fixed seeds


def test_compare_page_without_cells_has_no_bundle() -> None:
    results = sweep_results(("matmul",), [64], hostile=False)
    base = with_samples(results, seed=1)
    new = with_samples(results.assign(op="add"), seed=2)
    text = render_compare_html(compare_runs(base, new, n_boot=200))
    assert "No cell was measured ok in both runs." in text
    assert "<script>" not in text
    assert "Only in base (2)" in text
    assert "Only in new (2)" in text


def test_output_paths_in_the_way_are_usage_errors(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        write_html_report(sweep_run(ops=("add",), sizes=[64], hostile=False), a_file)
    results = sweep_results(("matmul",), [64], hostile=False)
    empty = compare_runs(with_samples(results, seed=1), with_samples(results.assign(op="add"), seed=2), n_boot=200)
    with pytest.raises(UsageError, match="is a directory"):
        write_compare_html(empty, tmp_path)
    with pytest.raises(UsageError, match="is a file"):
        write_compare_html(empty, a_file / "compare.html")
