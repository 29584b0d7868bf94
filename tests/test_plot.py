"""Charts: structure checked on the matplotlib Figure objects; files written with stable names."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from devbench.plots import (
    cold_warm_figure,
    crossover_figure,
    is_memory_bound,
    overview_figure,
    throughput_figure,
    write_charts,
)
from devbench.plots.common import NOISY_LABEL, UNSYNC_LABEL, device_colours, slug
from tests.synthetic import MACHINE, frame, from_medians, from_model, grid, row, run

KEY = ("matmul", "float32", "eager")


def two_devices(**kw: object) -> pd.DataFrame:
    """CPU 1e-12·n³ s vs GPU 1e-6·n s: GPU:0 faster above n = 1000 exactly."""
    return from_model({"CPU:0": lambda n: 1e-12 * n**3, "GPU:0": lambda n: 1e-6 * n}, grid(64, 4096), **kw)


def lines(ax: Axes, prefix: str) -> list[Line2D]:
    return [line for line in ax.get_lines() if str(line.get_gid() or "").startswith(prefix)]


def xs(line: Line2D) -> list[float]:
    return [float(v) for v in np.asarray(line.get_xdata(), dtype=float)]


def ys(line: Line2D) -> list[float]:
    return [float(v) for v in np.asarray(line.get_ydata(), dtype=float)]


def legend_texts(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def texts(ax: Axes, gid: str) -> list[str]:
    return [t.get_text() for t in ax.texts if t.get_gid() == gid]


def title(fig: Figure) -> str:
    return fig.get_suptitle()


# ---------------------------------------------------------------------------------------------------------
# crossover chart


def test_crossover_chart_structure() -> None:
    fig = crossover_figure(two_devices(), KEY, machine="Test CPU · TF 9.9")
    top, bottom = fig.axes
    assert (top.get_xscale(), top.get_yscale()) == ("log", "log")
    assert top.get_ylabel() == "median time per call (s)"
    assert bottom.get_xlabel() == "size n (matrix side)"
    assert bottom.get_ylabel() == "speed-up over CPU:0 (×)"
    assert bottom.get_yscale() == "log"
    assert [line.get_label() for line in lines(top, "median:")] == ["CPU:0", "GPU:0"]
    assert xs(lines(top, "median:")[1]) == grid(64, 4096)
    assert len(top.collections) >= 2  # an IQR band per device
    crossovers = lines(top, "crossover") + lines(bottom, "crossover")
    assert len(crossovers) == 2
    assert all(xs(line)[0] == pytest.approx(1000.0) for line in crossovers)
    assert "GPU:0 faster above n≈1000 (range 512–1024), decisive" in legend_texts(top)
    assert all(line.get_linestyle() == "-" for line in crossovers)  # decisive: solid
    parity = lines(bottom, "parity")
    assert len(parity) == 1
    assert ys(parity[0]) == [1.0, 1.0]
    speedup = lines(bottom, "speedup:GPU:0")[0]
    assert ys(speedup)[-1] == pytest.approx(1e-6 * 4096**2)
    assert "Test CPU · TF 9.9" in title(fig)
    assert "UNSYNCHRONIZED" not in title(fig)


def test_a_crossing_within_noise_is_dashed_and_says_so() -> None:
    from tests.test_crossover import IDENTICAL, Drifting

    results, samples = Drifting(IDENTICAL, seed=3).measure(grid(64, 4096))
    top, bottom = crossover_figure(results, ("matmul", "float32", "eager"), samples=samples).axes
    drawn = lines(top, "crossover") + lines(bottom, "crossover")
    assert drawn
    assert all(line.get_linestyle() == "--" for line in drawn)
    labels = [text for text in legend_texts(top) if " above n≈" in text]
    assert labels
    assert all(text.endswith(", within noise") for text in labels)


def test_the_interactive_chart_draws_decisive_solid_and_within_noise_dashed() -> None:
    from devbench.analysis import crossover_frame
    from devbench.html_report import charts
    from tests.test_crossover import CROSSING, IDENTICAL, Drifting

    for models, dash, word in ((CROSSING, "solid", ", decisive"), (IDENTICAL, "dash", ", within noise")):
        results, samples = Drifting(models, seed=3).measure(grid(64, 4096))
        frame_ = crossover_frame(results, samples)
        fig = charts.crossover_chart(results, KEY, frame_, device_colours(list(models)))
        vlines = [shape for shape in fig.layout.shapes if shape.type == "line" and shape.x0 == shape.x1]
        assert vlines
        assert {shape.line.dash for shape in vlines} == {dash}
        labels = [str(a.text) for a in fig.layout.annotations if " above n≈" in str(a.text)]
        assert labels
        assert all(text.endswith(word) for text in labels)


def test_two_crossings_draw_two_lines_per_panel() -> None:
    sizes = grid(64, 4096)
    gpu = {n: 1e-3 / 2.0**k for n, k in zip(sizes, [-2, -1, 1, 2, 1, -1, -2], strict=True)}
    fig = crossover_figure(from_medians({"CPU:0": dict.fromkeys(sizes, 1e-3), "GPU:0": gpu}), KEY)
    top, bottom = fig.axes
    assert len(lines(top, "crossover")) == 2
    assert len(lines(bottom, "crossover")) == 2
    labels = legend_texts(top)
    assert any(text.startswith("GPU:0 faster above n≈181") for text in labels)
    assert any(text.startswith("CPU:0 faster above n≈1448") for text in labels)


def test_single_device_chart_has_no_crossover_and_says_so() -> None:
    fig = crossover_figure(from_model({"CPU:0": lambda n: 1e-12 * n**3}, grid(64, 512)), KEY)
    top, bottom = fig.axes
    assert lines(top, "crossover") == []
    assert len(lines(top, "median:")) == 1
    assert any("no accelerator measured" in text for text in texts(top, "note") + texts(bottom, "note"))


def test_non_ok_cells_are_never_plotted() -> None:
    results = pd.concat(
        [
            two_devices(),
            frame(
                [
                    row(8192, "GPU:0", 1.0, status="oom", reason="OOM"),
                    row(8192, "CPU:0", 1.0, status="skipped", reason="time guard"),
                ]
            ),
        ]
    )
    results.loc[results["status"] != "ok", "median_s"] = 5.0  # a number must not make a failed cell drawable
    top, _ = crossover_figure(results, KEY).axes
    for line in lines(top, "median:"):
        assert 8192 not in xs(line)


def test_noisy_and_unsynchronized_cells_are_marked() -> None:
    noisy = two_devices()
    noisy.loc[(noisy["device"] == "GPU:0") & (noisy["size"] == 256), "rel_iqr"] = 0.3
    top, _ = crossover_figure(noisy, KEY).axes
    assert len(lines(top, "noisy")) == 1
    assert NOISY_LABEL in legend_texts(top)

    fig = crossover_figure(two_devices(sync="none"), KEY)
    top, _ = fig.axes
    assert title(fig).splitlines()[0].endswith("UNSYNCHRONIZED")
    assert UNSYNC_LABEL in legend_texts(top)
    assert all(line.get_linestyle() == "--" for line in lines(top, "median:"))


def test_a_device_timed_with_and_without_sync_shows_both_lines() -> None:
    results = pd.concat([two_devices(), from_medians({"CPU:0": dict.fromkeys(grid(64, 4096), 1e-6)}, sync="none")])
    top, _ = crossover_figure(results, KEY).axes
    labels = [line.get_label() for line in lines(top, "median:")]
    assert labels == ["CPU:0 (sync=none)", "CPU:0 (sync=scalar)", "GPU:0"]
    # The crossover still comes from the synchronized cells.
    assert xs(lines(top, "crossover")[0])[0] == pytest.approx(1000.0)


def test_three_devices_name_both_sides_of_each_crossover() -> None:
    results = from_model(
        {"CPU:0": lambda n: 1e-12 * n**3, "GPU:0": lambda n: 1e-6 * n, "GPU:1": lambda n: 2e-6 * n}, grid(64, 4096)
    )
    top, bottom = crossover_figure(results, KEY).axes
    labels = legend_texts(top)
    assert any(text.startswith("GPU:0 faster than CPU:0 above n≈1000") for text in labels)
    assert len(lines(bottom, "speedup:")) == 2


# ---------------------------------------------------------------------------------------------------------
# throughput, overview, cold vs warm


def test_throughput_uses_gflops_for_matmul_and_gbps_for_add() -> None:
    fig = throughput_figure(two_devices(), KEY)
    assert fig is not None
    (ax,) = fig.axes
    assert ax.get_ylabel() == "throughput (GFLOP/s, from median time)"
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert len(lines(ax, "throughput:")) == 2
    gflops = ys(lines(ax, "throughput:CPU:0")[0])[0]
    assert gflops == pytest.approx(2 * 64**3 / (1e-12 * 64**3) / 1e9)

    add = throughput_figure(two_devices(op="add"), ("add", "float32", "eager"))
    assert add is not None
    assert add.axes[0].get_ylabel() == "throughput (GB/s, from median time)"


def test_throughput_is_skipped_without_work_counts() -> None:
    assert throughput_figure(two_devices(flops=math.nan, bytes=math.nan), KEY) is None


def test_memory_bound_by_name_then_by_intensity() -> None:
    tiny = pd.Series([2.0])
    assert is_memory_bound("reduce_sum", pd.Series([1e12]), tiny)
    assert not is_memory_bound("matmul", pd.Series([1.0]), pd.Series([100.0]))
    assert is_memory_bound("my_op", pd.Series([1.0, 2.0]), pd.Series([4.0, 4.0]))
    assert not is_memory_bound("my_op", pd.Series([100.0]), pd.Series([4.0]))
    assert not is_memory_bound("my_op", pd.Series([math.nan]), pd.Series([math.nan]))


def test_overview_labels_each_cell_with_the_winner() -> None:
    results = pd.concat([two_devices(), two_devices(op="add")])
    fig = overview_figure(results, machine="m")
    ax = fig.axes[0]
    labels = texts(ax, "cell-label")
    assert len(labels) == 2 * 7
    assert labels[0] == "CPU:0\n244×"  # add, n=64: CPU:0 wins, by 64e-6 s / 64**3e-12 s over GPU:0
    assert labels[-1].startswith("GPU:0\n")  # matmul, n=4096
    assert [t.get_text() for t in ax.get_yticklabels()] == ["add float32", "matmul float32"]
    assert ax.get_xlabel() == "size n (matrix side)"
    assert "CPU:0" in fig.axes[1].get_ylabel()  # the colour bar
    norm = ax.images[0].norm
    assert (norm.vmin, norm.vmax) == pytest.approx((0.01, 100.0))  # log scale centred at 1×


def test_overview_flags_noisy_and_unsynchronized_cells() -> None:
    results = two_devices(sync="none")
    results.loc[results["size"] == 64, "rel_iqr"] = 0.5
    fig = overview_figure(results)
    labels = texts(fig.axes[0], "cell-label")
    assert labels[0].startswith("CPU:0*!\n")
    assert "UNSYNCHRONIZED" in title(fig)


def overview_cells(fig: Figure) -> tuple[list[str], np.ndarray]:
    """The cell labels and the colour values (speed-ups, NaN where grey) of an overview figure."""
    colours = fig.axes[0].images[0].get_array()
    assert colours is not None
    return texts(fig.axes[0], "cell-label"), np.ma.filled(colours.astype(float), np.nan).ravel()


def test_overview_of_a_cpu_only_run_is_filled_with_the_fastest_device() -> None:
    """The default run without a GPU (CPU:0 and numpy:CPU): every cell names the faster device and its speed-up
    over the slower one, coloured by numpy:CPU's speed-up over CPU:0 (blue where numpy wins, red where CPU:0
    does), never grey."""
    results = from_medians({"CPU:0": {64: 2e-6, 4096: 1e-3}, "numpy:CPU": {64: 1e-6, 4096: 4e-3}})
    fig = overview_figure(results)
    labels, colours = overview_cells(fig)
    assert labels == ["numpy:CPU\n2×", "CPU:0\n4×"]
    assert colours == pytest.approx([2.0, 0.25])
    assert "fastest other device vs CPU:0" in fig.axes[1].get_ylabel()
    footnote = fig.get_supxlabel()
    assert footnote.startswith("no accelerator measured: colour = fastest other device vs CPU:0")


def test_overview_of_every_framework_cpu_colours_the_fastest_other_cpu() -> None:
    results = from_medians({"CPU:0": {64: 3e-6}, "jax:cpu:0": {64: 2e-6}, "torch:cpu": {64: 1e-6},
                            "numpy:CPU": {64: 6e-6}})
    labels, colours = overview_cells(overview_figure(results))
    assert labels == ["torch:cpu\n3×"]
    assert colours == pytest.approx([3.0])


@pytest.mark.parametrize("gpu", ["jax:gpu:0", "torch:cuda:0", "GPU:0"])
def test_overview_colours_every_framework_gpu_as_the_accelerator(gpu: str) -> None:
    """A GPU machine running JAX or PyTorch: the colour is the GPU's speed-up over CPU:0, not numpy:CPU's (which
    is faster than CPU:0 here but is the host)."""
    results = from_medians({"CPU:0": {64: 4e-6, 4096: 1e-2}, "numpy:CPU": {64: 2e-6, 4096: 1e-2}, gpu: {64: 8e-6,
                                                                                                        4096: 1e-4}})
    fig = overview_figure(results)
    labels, colours = overview_cells(fig)
    assert labels == ["numpy:CPU\n2×", f"{gpu}\n100×"]
    assert colours == pytest.approx([0.5, 100.0])
    assert "best accelerator vs CPU:0" in fig.axes[1].get_ylabel()


def test_overview_picks_the_best_of_a_jax_and_a_torch_gpu() -> None:
    results = from_medians({"CPU:0": {4096: 1e-2}, "jax:gpu:0": {4096: 2e-4}, "torch:cuda:0": {4096: 1e-4}})
    labels, colours = overview_cells(overview_figure(results))
    assert labels == ["torch:cuda:0\n100×"]
    assert colours == pytest.approx([100.0])


def html_overview(results: pd.DataFrame) -> tuple[list[float | None], list[str], str]:
    """What report.html's overview chart gets: its colour values (log10 speed-ups, None where blank), its cell
    texts and its colour bar title."""
    from devbench.analysis import winners
    from devbench.html_report.charts import overview_chart

    fig = overview_chart(winners(results))
    assert fig is not None
    heatmap = fig.data[0]
    z = [v for row_ in heatmap.z for v in row_]
    text = [t for row_ in heatmap.text for t in row_]
    return z, text, str(heatmap.colorbar.title.text)


def test_html_overview_of_a_cpu_only_run_is_filled() -> None:
    results = from_medians({"CPU:0": {64: 2e-6, 4096: 1e-3}, "numpy:CPU": {64: 1e-6, 4096: 4e-3}})
    z, text, bar = html_overview(results)
    assert z == pytest.approx([math.log10(2.0), math.log10(0.25)])
    assert text == ["numpy:CPU<br>2×", "CPU:0<br>4×"]
    assert bar.startswith("fastest other device")


@pytest.mark.parametrize("gpu", ["jax:gpu:0", "torch:cuda:0"])
def test_html_overview_colours_a_jax_or_torch_gpu(gpu: str) -> None:
    results = from_medians({"CPU:0": {64: 4e-6, 4096: 1e-2}, "numpy:CPU": {64: 2e-6, 4096: 1e-2},
                            gpu: {64: 8e-6, 4096: 1e-4}})
    z, text, bar = html_overview(results)
    assert z == pytest.approx([math.log10(0.5), 2.0])
    assert text == ["numpy:CPU<br>2×", f"{gpu}<br>100×"]
    assert bar.startswith("best accelerator")


def test_cold_vs_warm_has_the_parity_line_and_ratios() -> None:
    fig = cold_warm_figure(two_devices())
    assert fig is not None
    scatter, ratio = fig.axes
    assert len(lines(scatter, "parity")) == 1
    assert len(lines(scatter, "cold:")) == 2
    assert scatter.get_xlabel() == "warm: median time per call (s)"
    assert scatter.get_ylabel() == "cold: first call (s)"
    assert (scatter.get_xscale(), scatter.get_yscale()) == ("log", "log")
    assert ys(lines(ratio, "ratio:CPU:0")[0]) == pytest.approx([20.0] * 7)


def test_cold_vs_warm_is_skipped_without_cold_times() -> None:
    assert cold_warm_figure(two_devices(cold_factor=math.nan)) is None


# ---------------------------------------------------------------------------------------------------------
# files


def test_write_charts_writes_stable_pngs(tmp_path: Path) -> None:
    results = pd.concat([two_devices(), frame([row(64, "GPU:0", 1.0, op="add", status="error", reason="x")])])
    paths = write_charts(run(results), tmp_path / "plots")
    names = [p.name for p in paths]
    assert names == [
        "crossover-matmul-float32-eager.png",
        "throughput-matmul-float32-eager.png",
        "overview.png",
        "cold-vs-warm.png",
    ]  # 'add' has no ok cell, so it gets no chart of its own
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(names)  # no temp files left


def test_write_charts_of_a_run_without_ok_cells_writes_nothing(tmp_path: Path) -> None:
    results = frame([row(64, "CPU:0", 1.0, status="error", reason="boom")])
    assert write_charts(run(results), tmp_path) == []


def test_bare_table_titles_say_the_machine_is_unknown() -> None:
    from devbench.plots import figures

    charts = dict(figures(run(two_devices(), meta={})))
    assert "machine unknown" in title(charts["overview"])
    with_machine = dict(figures(run(two_devices(), meta={"machine": MACHINE})))
    assert "Synthetic GPU X1" in title(with_machine["overview"])
    assert "TF 2.99.0" in title(with_machine["overview"])


def test_slug() -> None:
    assert slug("crossover", "matmul", "float32", "eager") == "crossover-matmul-float32-eager"
    assert slug("crossover", "my op/x", "float32", "tf.function") == "crossover-my_op_x-float32-tf.function"


def test_crowded_size_labels_are_thinned_but_every_size_keeps_a_tick() -> None:
    from devbench.plots.common import spaced_labels

    assert spaced_labels([32, 64, 128, 256]) == ["32", "64", "128", "256"]
    labels = spaced_labels([32, 45, 54, 59, 61, 64, 76, 128, 256])
    assert len(labels) == 9
    assert labels[0] == "32"
    assert labels[-1] == "256"
    assert "" in labels
    assert labels[3:5].count("") >= 1  # 59 and 61 cannot both be labelled


def test_throughput_chart_draws_calibrated_ceilings_once_per_host() -> None:
    calibration = {"devices": {"CPU:0": {"peak_flops": {"float32": 2.0e11}, "bandwidth": 2.5e10},
                               "GPU:0": {"peak_flops": {"float32": 5.0e13}, "bandwidth": 3.0e12}}}
    results = two_devices()
    fig = throughput_figure(results, KEY, calibration=calibration)
    assert fig is not None
    ceilings = {line.get_gid(): np.asarray(line.get_ydata())[0] for line in fig.axes[0].lines
                if str(line.get_gid()).startswith("ceiling:")}
    # The ceilings are the calibration's (what pct_of_peak is measured against), whatever the cells did.
    assert ceilings == {"ceiling:CPU:0": pytest.approx(200.0), "ceiling:GPU:0": pytest.approx(50000.0)}
    cpu = results[(results["device"] == "CPU:0") & (results["status"] == "ok")]
    cpu_rates = cpu["flops"] / cpu["median_s"] / 1e9
    assert cpu_rates.max() > 200.0  # this table's CPU:0 outran its calibration: those points are ringed
    rings = [c for c in fig.axes[0].collections if str(c.get_gid()) == "above_peak:CPU:0"]
    assert len(rings) == 1
    assert sorted(np.asarray(rings[0].get_offsets())[:, 1]) == pytest.approx(sorted(cpu_rates[cpu_rates > 200.0]))
    assert not [c for c in fig.axes[0].collections if str(c.get_gid()) == "above_peak:GPU:0"]
    note = [t for t in fig.axes[0].texts if t.get_gid() == "above_peak_note"]
    assert len(note) == 1
    assert "above the calibrated ceiling: the calibration is the thing to fix" in note[0].get_text()
    adds = two_devices(op="add")
    memory = throughput_figure(adds, ("add", "float32", "eager"), calibration=calibration)
    assert memory is not None
    assert {line.get_gid(): np.asarray(line.get_ydata())[0] for line in memory.axes[0].lines
            if str(line.get_gid()).startswith("ceiling:")}["ceiling:CPU:0"] == pytest.approx(25.0)
    bare = throughput_figure(two_devices(), KEY)
    assert bare is not None
    assert not [line for line in bare.axes[0].lines if str(line.get_gid()).startswith("ceiling:")]
    assert not [t for t in bare.axes[0].texts if t.get_gid() == "above_peak_note"]
