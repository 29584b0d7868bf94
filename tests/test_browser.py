"""report.html and the compare page in a real browser: headless Chromium driven by Selenium.

The system's Chromium and chromedriver are used (Debian packages ``chromium chromium-driver``; ``.ci/run``
installs them). Both paths are given to Selenium, so Selenium Manager never runs and nothing downloads a
browser. Without them every test here skips with the reason.

What is checked, on synthetic runs with known answers (GPU:0 faster above n = 1000): no console errors; no
request but the page itself; every chart drawn with the expected traces and points (from the page's
``gd.data`` and from the SVG); hovering a known point shows its numbers; a legend click hides a device;
the page's text holds the crossover sentence; hostile text in the results stays text; the print view (no
navigation, folded tables open, charts at paper width); the tables without JavaScript; the compare page's
filter hides rows; a CPU-only run and a run directory written through the store render, and a CPU-only run
with the numpy baseline has a filled overview heatmap. A screenshot of
each page is saved (path printed; ``DEVBENCH_ARTIFACTS`` chooses the folder, else pytest's tmp path).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from devbench.formatting import format_time
from tests.test_html_report import (
    CROSSOVER_SENTENCE,
    HOSTILE_DEVICE,
    HOSTILE_REASON,
    comparison,
    sweep_results,
    sweep_run,
)

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
OPS = ("matmul", "add")
SIZES = [64, 128, 256, 512, 1024, 2048, 4096]
WAIT_S = 30.0
"""Upper bound for the page to draw its charts; the tests wait for conditions, never for fixed times."""


def _missing() -> str:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not (p.is_file() and os.access(p, os.X_OK))]
    if missing:
        return f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (pip install '.[test]')"
    return ""


pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(_missing()), reason=_missing() or "browser present")]


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1800", "--disable-extensions", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from devbench.html_report import write_compare_html, write_html_report

    folder = tmp_path_factory.mktemp("html")
    return {
        "report": write_html_report(sweep_run(ops=OPS), folder / "run"),
        "compare": write_compare_html(comparison(), folder / "compare.html"),
    }


def artifact_dir(tmp_path: Path) -> Path:
    chosen = os.environ.get("DEVBENCH_ARTIFACTS")
    folder = Path(chosen) / "browser" if chosen else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def logs(driver: WebDriver, kind: str) -> list[dict[str, Any]]:
    """The entries of a Chrome log ("browser": the console, "performance": DevTools events) since last read."""
    entries: list[dict[str, Any]] = driver.get_log(kind)  # type: ignore[no-untyped-call]
    return entries


def console_errors(driver: WebDriver) -> list[dict[str, Any]]:
    return [e for e in logs(driver, "browser") if e["level"] in ("SEVERE", "ERROR")]


def drain_logs(driver: WebDriver) -> None:
    for kind in ("browser", "performance"):
        logs(driver, kind)


def open_page(driver: WebDriver, path: Path, charts: int) -> None:
    """Load ``path`` and wait until ``charts`` Plotly charts are drawn."""
    from selenium.webdriver.support.ui import WebDriverWait

    drain_logs(driver)
    driver.get(path.as_uri())
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg').length > 0 && "
                                   "document.querySelectorAll('.js-plotly-plot').length") == charts)


def traces(driver: WebDriver) -> list[dict[str, Any]]:
    """Per drawn chart: its id and per trace role, device, name, visibility and number of points."""
    script = """
    return Array.from(document.querySelectorAll('.js-plotly-plot')).map(function (gd) {
      return {id: gd.id, title: gd.layout.title.text, points: gd.querySelectorAll('.scatterlayer .point').length,
              cells: gd.querySelectorAll('.heatmaplayer image').length,
              traces: gd.data.map(function (t) {
                return {role: t.meta.role, device: t.meta.device || '', name: t.name || '',
                        visible: t.visible === undefined ? true : t.visible,
                        n: t.type === 'heatmap' ? [].concat.apply([], t.z).length : t.x.length};
              })};
    });"""
    result: list[dict[str, Any]] = driver.execute_script(script)
    return result


REPORT_CHARTS = 1 + 2 * (len(OPS) + 1)  # overview; crossover and throughput per op and for the hostile op


def chart(driver: WebDriver, title_start: str) -> dict[str, Any]:
    found = [c for c in traces(driver) if c["title"].startswith(title_start)]
    assert len(found) == 1, [c["title"] for c in traces(driver)]
    return found[0]


def test_report_loads_offline_without_console_errors(browser: WebDriver, pages: dict[str, Path]) -> None:
    open_page(browser, pages["report"], REPORT_CHARTS)
    assert console_errors(browser) == []
    requests = []
    for entry in logs(browser, "performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requests.append(message["params"]["request"]["url"])
    assert pages["report"].as_uri() in requests  # the log does see requests...
    assert [u for u in requests if u != pages["report"].as_uri() and not u.startswith("data:")] == []  # ...no other
    assert browser.execute_script("return window.__pwned === undefined")  # hostile markup never ran


def test_every_chart_is_drawn_with_its_traces_and_points(browser: WebDriver, pages: dict[str, Path]) -> None:
    open_page(browser, pages["report"], REPORT_CHARTS)
    drawn = traces(browser)
    assert len(drawn) == REPORT_CHARTS
    overview = drawn[0]
    assert [t["role"] for t in overview["traces"]] == ["overview"]
    assert overview["traces"][0]["n"] == (len(OPS) + 1) * len(SIZES)  # rows × columns (blank cells included)
    for op in OPS:
        crossover = chart(browser, f"{op} · float32 · eager: median")
        roles = [(t["role"], t["device"], t["n"]) for t in crossover["traces"]]
        assert roles == [("band", "CPU:0", 2 * len(SIZES)), ("median", "CPU:0", len(SIZES)),
                         ("band", "GPU:0", 2 * len(SIZES)), ("median", "GPU:0", len(SIZES)),
                         ("speedup", "GPU:0", len(SIZES))]
        assert crossover["points"] == 3 * len(SIZES)  # markers actually in the SVG: two medians, one speed-up
        throughput = chart(browser, f"{op} · float32 · eager: throughput")
        # the synthetic CPU:0 outruns its calibration (2 TFLOP/s against 100 GFLOP/s; 12e12/n B/s against 20 GB/s)
        assert [(t["role"], t["device"]) for t in throughput["traces"]] == [
            ("throughput", "CPU:0"), ("throughput", "GPU:0"), ("above_peak", "CPU:0"), ("ceiling", "CPU:0"),
            ("ceiling", "GPU:0")]
        above = {"matmul": len(SIZES), "add": sum(12e12 / n > 2e10 for n in SIZES)}[op]
        assert throughput["points"] == 2 * len(SIZES) + above  # each above-peak point marked once more
    hostile = chart(browser, "hostile_op · float32 · eager: median")
    assert [t["name"] for t in hostile["traces"] if t["role"] == "median"] == [HOSTILE_DEVICE.replace("<", "&lt;")
                                                                             .replace(">", "&gt;")]
    legend = browser.execute_script(f"return document.getElementById('{hostile['id']}')"
                                    ".querySelector('.legend').textContent")
    assert HOSTILE_DEVICE in legend  # drawn as the text it is


def test_hovering_a_point_shows_its_numbers(browser: WebDriver, pages: dict[str, Path]) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, pages["report"], REPORT_CHARTS)
    target = chart(browser, "matmul · float32 · eager: median")
    curve = next(i for i, t in enumerate(target["traces"]) if t["role"] == "median" and t["device"] == "GPU:0")
    point = SIZES.index(1024)
    browser.execute_script(
        "var gd = document.getElementById(arguments[0]); gd.scrollIntoView();"
        "Plotly.Fx.hover(gd, [{curveNumber: arguments[1], pointNumber: arguments[2]}]);",
        target["id"], curve, point)
    label: str = WebDriverWait(browser, WAIT_S).until(
        lambda d: d.execute_script(
            "var h = document.getElementById(arguments[0]).querySelector('.hoverlayer .hovertext');"
            "return h ? h.textContent : '';", target["id"]))
    results = sweep_results(OPS)
    cell = results[(results["op"] == "matmul") & (results["device"] == "GPU:0") & (results["size"] == 1024)].iloc[0]
    assert "GPU:0 · n=1024" in label
    assert f"median {format_time(cell['median_s'])} per call" in label
    assert f"95 % CI {format_time(cell['ci_low_s'])} – {format_time(cell['ci_high_s'])}" in label
    assert f"samples {cell['n_samples']}" in label
    assert "status ok" in label
    assert "flags: none" in label


def test_clicking_a_device_in_the_legend_hides_its_traces(browser: WebDriver, pages: dict[str, Path]) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, pages["report"], REPORT_CHARTS)
    target = chart(browser, "matmul · float32 · eager: median")
    div = browser.find_element(By.ID, target["id"])
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", div)
    items = div.find_elements(By.CSS_SELECTOR, ".legend .traces")
    gpu = next(item for item in items if item.text.strip() == "GPU:0")
    ActionChains(browser).move_to_element(gpu.find_element(By.CSS_SELECTOR, ".legendtoggle")).click().perform()

    def visibility(d: WebDriver) -> list[tuple[str, str, Any]] | Literal[False]:
        now = [(t["role"], t["device"], t["visible"]) for t in chart(d, "matmul · float32 · eager: median")["traces"]]
        return now if any(v == "legendonly" for _, _, v in now) else False

    after: list[tuple[str, str, Any]] = WebDriverWait(browser, WAIT_S).until(visibility)
    assert {(role, v) for role, device, v in after if device == "GPU:0"} == {
        ("band", "legendonly"), ("median", "legendonly"), ("speedup", "legendonly")}
    assert all(v is True for _, device, v in after if device == "CPU:0")


def test_page_text_holds_the_crossover_sentence_and_a_screenshot_is_saved(
    browser: WebDriver, pages: dict[str, Path], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    open_page(browser, pages["report"], REPORT_CHARTS)
    text = browser.find_element(By.TAG_NAME, "body").text
    assert CROSSOVER_SENTENCE in text
    assert "GPU:0 faster than CPU:0 above n≈1000 (range 512–1024)" in text  # the sentence above each chart
    assert HOSTILE_REASON in text  # the skipped cell's reason, as text
    shot = artifact_dir(tmp_path) / "report.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot of report.html: {shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_print_view_hides_navigation_opens_tables_and_fits_charts_to_paper(
    browser: WebDriver, pages: dict[str, Path]
) -> None:
    from selenium.webdriver.common.by import By

    open_page(browser, pages["report"], REPORT_CHARTS)
    assert not any(d.get_attribute("open") for d in browser.find_elements(By.TAG_NAME, "details"))
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        # Emulating print media fires no beforeprint, so fire it as the print dialog would.
        browser.execute_script("window.dispatchEvent(new Event('beforeprint'));")
        assert browser.execute_script("return getComputedStyle(document.querySelector('nav')).display") == "none"
        assert all(d.get_attribute("open") is not None for d in browser.find_elements(By.TAG_NAME, "details"))
        widths = browser.execute_script(
            "return Array.from(document.querySelectorAll('.js-plotly-plot')).map(function (gd) {"
            " return gd._fullLayout.width; });")
        assert len(widths) == REPORT_CHARTS
        assert max(widths) <= 680  # the page's PRINT_WIDTH_PX: A4 less its margins
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})


def test_tables_are_readable_without_javascript(browser: WebDriver, pages: dict[str, Path]) -> None:
    from selenium.webdriver.common.by import By

    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        browser.get(pages["report"].as_uri())
        text = browser.find_element(By.TAG_NAME, "body").text
        assert browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot") == []  # no chart was drawn...
        assert "The charts need JavaScript; the tables hold the same numbers." in text  # ...and the page says so
        assert CROSSOVER_SENTENCE in text
        assert "Calibrated ceilings per device and dtype" in text
    finally:
        browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})


def test_compare_page_filters_rows(browser: WebDriver, pages: dict[str, Path], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, pages["compare"], 1)
    assert console_errors(browser) == []
    ratio_chart = traces(browser)[0]
    assert {t["role"] for t in ratio_chart["traces"]} == {"ratio"}
    assert sum(t["n"] for t in ratio_chart["traces"]) == 18  # 3 ops × 3 sizes × 2 devices

    def shown(d: WebDriver) -> list[str]:
        rows = d.find_elements(By.CSS_SELECTOR, "#compare-cells tbody tr")
        return [r.text for r in rows if r.is_displayed()]

    assert len(shown(browser)) == 18
    box = browser.find_element(By.ID, "cell-filter")
    box.send_keys("matmul GPU:0")
    WebDriverWait(browser, WAIT_S).until(lambda d: len(shown(d)) == 3)
    assert all(row.startswith("matmul") and "GPU:0" in row for row in shown(browser))
    assert browser.find_element(By.ID, "cell-filter-count").text == "3 of 18 cells shown"
    box.clear()
    box.send_keys("faster")
    WebDriverWait(browser, WAIT_S).until(lambda d: len(shown(d)) == 6)
    assert all(row.startswith("add") for row in shown(browser))
    shot = artifact_dir(tmp_path) / "compare.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot of the compare page: {shot}")


def test_a_cpu_only_sweep_renders_without_speed_ups(browser: WebDriver, tmp_path: Path) -> None:
    """What a default sweep on a machine without a GPU gives: one device, so no crossover and no speed-up."""
    from devbench.html_report import write_html_report
    from tests.synthetic import from_model, run

    results = from_model({"CPU:0": lambda n: 1e-12 * n**3}, SIZES)
    path = write_html_report(run(results), tmp_path)
    open_page(browser, path, 3)  # overview, crossover, throughput
    assert console_errors(browser) == []
    crossover = chart(browser, "matmul · float32 · eager: median")
    assert [(t["role"], t["device"], t["n"]) for t in crossover["traces"]] == [
        ("band", "CPU:0", 2 * len(SIZES)), ("median", "CPU:0", len(SIZES))]
    assert crossover["points"] == len(SIZES)


def test_a_cpu_only_default_sweep_shows_a_filled_overview(browser: WebDriver, tmp_path: Path) -> None:
    """The default sweep without a GPU (CPU:0 and the numpy baseline): the overview heatmap is the first chart a
    newcomer sees, so every cell must be coloured and name its winner, never blank."""
    from devbench.html_report import write_html_report
    from tests.synthetic import from_model, run

    results = from_model({"CPU:0": lambda n: 1e-12 * n**3, "numpy:CPU": lambda n: 2e-12 * n**3 + 1e-7}, SIZES)
    path = write_html_report(run(results), tmp_path)
    open_page(browser, path, 3)  # overview, crossover, throughput
    assert console_errors(browser) == []
    overview = browser.execute_script(
        "var gd = document.querySelector('.js-plotly-plot'); var t = gd.data[0];"
        "return {role: t.meta.role, z: [].concat.apply([], t.z), text: [].concat.apply([], t.text),"
        "        cells: gd.querySelectorAll('.heatmaplayer image').length, title: gd.layout.title.text};")
    assert overview["role"] == "overview"
    assert len(overview["z"]) == len(SIZES)
    assert all(z is not None for z in overview["z"]), overview["z"]  # every cell coloured
    assert all(z < 0 for z in overview["z"])  # CPU:0 faster everywhere here: red
    assert all(text.startswith("CPU:0<br>") for text in overview["text"]), overview["text"]
    assert overview["cells"] == 1  # the heatmap image is drawn
    assert "fastest other device" in overview["title"]
    shot = artifact_dir(tmp_path) / "cpu-only-overview.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot of a CPU-only report: {shot}")


def test_a_run_directory_written_by_the_store_renders(browser: WebDriver, tmp_path: Path) -> None:
    """A run on disk (cells.jsonl, tables, meta.json with this host's fingerprint) read back by load_run."""
    from devbench import store
    from devbench.html_report import write_html_report
    from devbench.machine import fingerprint
    from devbench.schema import visit_record

    run_dir = tmp_path / "run"
    store.prepare_run_dir(run_dir)
    store.write_json(run_dir / store.META, store.new_meta({"ops": ["add"]}, fingerprint(), "tiny", ["sweep"]))
    log = store.CellLog(run_dir)
    results = sweep_results(("add",), [64, 128, 256], hostile=False)
    for r in results.to_dict(orient="records"):
        record = visit_record({str(k): v for k, v in r.items()})
        log.append(record, [record.median_s * f for f in (0.99, 1.0, 1.01, 1.0, 0.995)])
    store.finalize(run_dir)
    path = write_html_report(store.load_run(run_dir), run_dir)
    shutil.copy(path, artifact_dir(tmp_path) / "tiny-run.html")
    open_page(browser, path, 3)  # overview, crossover, throughput
    assert console_errors(browser) == []
    crossover = chart(browser, "add · float32 · eager: median")
    assert [t["n"] for t in crossover["traces"] if t["role"] == "median"] == [3, 3]


def test_the_history_page_draws_each_series_and_filters_the_steps(browser: WebDriver, tmp_path: Path) -> None:
    import numpy as np
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from devbench.history import build_history
    from devbench.html_report.history_page import write_history_html
    from devbench.simulation.history import SETTINGS, synthetic_runs

    quiet = SETTINGS["quiet (1 % per run, 3 rounds)"][0]
    runs = synthetic_runs(np.random.default_rng(5), runs=6, step_at=3, step=2.0, noise=quiet, rounds=3)
    history = build_history(runs)
    assert len(history.steps) >= 1  # the page below has a step to show
    series = history.cells.groupby(["op", "dtype", "mode", "device"]).ngroups
    path = write_history_html(history, tmp_path / "history.html")
    open_page(browser, path, series)
    assert console_errors(browser) == []
    drawn = browser.execute_script("""
    return Array.from(document.querySelectorAll('.js-plotly-plot')).map(function (gd) {
      return {points: gd.data.map(function (t) { return t.x.length; }),
              steps: (gd.layout.shapes || []).length};
    });""")
    assert all(points == [6] * len(points) for points in (c["points"] for c in drawn))  # one point per run
    assert sum(c["steps"] for c in drawn) >= 1  # the step is marked on its chart

    def shown(d: WebDriver) -> list[str]:
        return [r.text for r in d.find_elements(By.CSS_SELECTOR, "#compare-cells tbody tr") if r.is_displayed()]

    every = len(shown(browser))
    assert every == len(history.cells)
    browser.find_element(By.ID, "cell-filter").send_keys("step")
    WebDriverWait(browser, WAIT_S).until(lambda d: 0 < len(shown(d)) < every)
    assert all(row.endswith("step") for row in shown(browser))
