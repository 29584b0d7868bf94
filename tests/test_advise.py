"""devbench advise: the fit a + b·n^p, the one-time costs, the advice by size, the break-even call count, its
statistical rates on seeded synthetic runs, the CLI, and where the advice shows (crossover chart, reports)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from devbench.advise import advise, break_even_calls, fitted_curves, one_time_costs, roles
from devbench.advise_fit import PowerLaw, choose_step, fit_power_law
from devbench.advise_render import advice_json, group_sentences, group_tables, summary_rows
from devbench.cli import main
from devbench.errors import UsageError
from devbench.simulation import Noise
from devbench.simulation import advise as sim
from devbench.store import Run, write_json, write_tables
from tests.synthetic import frame, row

KEY = ("matmul", "float32", "eager")


def simulated(seed: int = 0, rounds: int = 5, **kw: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    return sim.run_tables(np.random.default_rng(seed), sim.SIZES, rounds, sim.NOISE, **kw)


# ---------------------------------------------------------------------------------------------------------
# The fit


@pytest.mark.parametrize("truth", [PowerLaw(8e-6, 2e-11, 2.9), PowerLaw(0.0, 3e-12, 3.0), PowerLaw(60e-6, 4e-13, 2.7),
                                   PowerLaw(2e-3, 5e-9, 1.0)])
def test_the_fit_recovers_an_exact_power_law(truth: PowerLaw) -> None:
    sizes = [64, 128, 256, 512, 1024, 2048, 4096]
    fit = fit_power_law(sizes, truth.at(sizes))
    assert np.allclose(fit.at(sizes), truth.at(sizes), rtol=1e-3)
    assert fit.p == pytest.approx(truth.p, rel=0.02)
    assert fit.a >= 0
    assert fit.b >= 0


def test_the_fit_weighs_relative_errors_across_decades() -> None:
    """A 10 % error at the largest size must not buy a 2x error at the smallest: the fit is in log space."""
    sizes = np.array([64, 128, 256, 512, 1024, 2048, 4096])
    truth = PowerLaw(8e-6, 2e-11, 2.9).at(sizes)
    noisy = truth * np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.1])
    fit = fit_power_law(sizes, noisy)
    assert np.all(np.abs(np.log(fit.at(sizes) / noisy)) < 0.1)


def test_the_fit_needs_three_sizes() -> None:
    with pytest.raises(ValueError, match="3 distinct"):
        fit_power_law([64, 128], [1e-5, 2e-5])
    with pytest.raises(ValueError, match="positive finite times"):
        fit_power_law([64, 128, 256], [1e-5, 0.0, 2e-5])


# ---------------------------------------------------------------------------------------------------------
# Break-even and roles


def test_break_even_calls() -> None:
    assert break_even_calls(0.5, 1e-3, 0.5e-3, 2e-3) == (500.0, 250.0, 1000.0)
    never = break_even_calls(0.5, -1e-3, -2e-3, 1e-4)
    assert math.isinf(never[0])
    assert never[1] == 5000.0
    assert math.isinf(never[2])
    assert break_even_calls(-0.1, 1e-3, 0.5e-3, 2e-3) == (1.0, 1.0, 1.0)  # no extra cost: the first call
    point, low, high = break_even_calls(0.5, 1e-3, math.nan, math.nan)
    assert point == 500.0
    assert math.isnan(low)
    assert math.isnan(high)


@pytest.mark.parametrize(("devices", "baseline", "accelerators", "says"), [
    (["GPU:0", "CPU:0"], "CPU:0", ("GPU:0",), "GPU:0 is the accelerator, against the host baseline CPU:0"),
    (["numpy:CPU", "CPU:0"], "numpy:CPU", ("CPU:0",), "no accelerator in this run: CPU:0 plays"),
    (["CPU:1", "CPU:0"], "CPU:0", ("CPU:1",), "no accelerator in this run: CPU:1 plays"),
    (["jax:gpu:0", "numpy:CPU", "CPU:0"], "CPU:0", ("jax:gpu:0",), "jax:gpu:0 is the accelerator"),
])
def test_roles(devices: list[str], baseline: str, accelerators: tuple[str, ...], says: str) -> None:
    base, accel, sentence = roles(devices)
    assert (base, accel) == (baseline, accelerators)
    assert says in sentence


# ---------------------------------------------------------------------------------------------------------
# One-time costs


def _cells(device: str, sizes: list[int], t: float, **kw: Any) -> pd.DataFrame:
    return frame(row(n, device, t * n, **kw) for n in sizes)


def test_one_time_costs_sources() -> None:
    sizes = [64, 128, 256]
    meta = {"init": {"devices": {"GPU:0": {"init_s": 0.4}, "numpy:CPU": {"init_s": None, "what": "nothing"}}},
            "calibration": {"devices": {"GPU:0": {"bandwidth": 1e11}, "CPU:0": {"bandwidth": 2e10}}}}
    gpu = _cells("GPU:0", sizes, 1e-6, cold_factor=3.0)
    costs = one_time_costs("GPU:0", gpu, None, meta, "CPU:0")
    assert costs.init_s == 0.4
    assert costs.init_source == "meta.json init"
    assert np.allclose(costs.first_call_s, 2e-6 * np.array(sizes))  # cold = 3x the median: 2 medians extra
    assert "calibrated copy bandwidth (20 GB/s" in costs.transfer_source  # the slower of the two memories
    assert np.allclose(costs.transfer_s, 3 * 4 * np.array(sizes) ** 2 / 2e10)
    moved = _cells("GPU:0", sizes, 1.5e-6, mode="eager+transfer")
    measured = one_time_costs("GPU:0", gpu, moved, meta, "CPU:0")
    assert measured.transfer_source.startswith("measured")
    assert np.allclose(measured.transfer_s, 0.5e-6 * np.array(sizes))
    assert one_time_costs("GPU:0", gpu, None, {}, "CPU:0").transfer_source.startswith("not included")
    host = one_time_costs("numpy:CPU", _cells("numpy:CPU", sizes, 1e-6), None, meta, "numpy:CPU")
    assert host.init_s == 0.0
    assert host.init_source == "nothing to initialise"
    assert not host.transfer_s.any()
    assert host.transfer_source.startswith("none: a host device")
    assert one_time_costs("CPU:0", _cells("CPU:0", sizes, 1e-6), None, {}, "CPU:0").init_source.startswith(
        "not recorded")


# ---------------------------------------------------------------------------------------------------------
# Advice on a synthetic run with a known truth


def test_advice_on_a_simulated_run() -> None:
    results, samples = simulated()
    advice = advise(results, samples, sim.meta(), calls=1000)
    (group,) = advice.groups
    assert (group.baseline, group.accelerators) == ("CPU:0", ("GPU:0",))
    # Over 1000 calls the accelerator's 0.45 s of one-time cost outweighs what it saves at small sizes.
    assert group.ranges[0].device == "CPU:0"
    assert group.ranges[0].decisive
    assert group.ranges[-1].device == "GPU:0"
    assert group.ranges[-1].decisive
    at = {b.size: b for b in group.break_even}
    extra = sim.INIT["GPU:0"] + sim.FIRST_CALL["GPU:0"] - sim.INIT["CPU:0"] - sim.FIRST_CALL["CPU:0"]
    truth = extra / float(sim.TRUTH["CPU:0"].at(1024)[0] - sim.TRUTH["GPU:0"].at(1024)[0])  # about 43 calls
    assert 10 < at[1024].calls < 200
    assert at[1024].calls_low <= truth <= at[1024].calls_high
    assert at[4096].calls == 1.0  # 0.6 s saved per call: the first call repays 0.44 s of one-time cost
    assert math.isinf(at[64].calls)  # at n=64 the accelerator is slower per call
    within, judged = advice.agreement()
    assert judged == 14
    assert within >= 13
    # More calls spread the one-time cost thinner: the accelerator's range starts at a smaller size.
    many = advise(results, samples, sim.meta(), calls=10**7).groups[0]
    first_gpu = next(r.low for r in many.ranges if r.device == "GPU:0")
    assert first_gpu < next(r.low for r in group.ranges if r.device == "GPU:0")
    # Without samples (a bare table) the fit stands, with no interval and no within-noise judgement.
    bare = advise(results, None, sim.meta(), calls=1000).groups[0]
    assert all(f.reason.startswith("no samples") for f in bare.fits.values())
    assert all(not r.judged for r in bare.ranges)
    assert math.isnan(bare.break_even[-1].calls_low)


def test_rendering_says_what_was_found() -> None:
    results, samples = simulated()
    advice = advise(results, samples, sim.meta(), calls=1000)
    group = advice.groups[0]
    text = " ".join(group_sentences(group))
    assert "GPU:0 is the accelerator, against the host baseline CPU:0" in text
    assert "Moving to GPU:0 pays from" in text
    assert "n=4096" in text
    assert "from refitting each of 5 rounds" in text
    captions = [caption for caption, _, _ in group_tables(group)]
    assert captions[0].startswith("Fit t(n) = a + b·n^p")
    assert captions[-1].startswith("Break-even")
    (summary,) = summary_rows(advice)
    assert summary[0] == "matmul · float32 · eager"
    assert "GPU:0" in summary[1]
    assert summary[3] == "14 of 14"
    data = json.loads(json.dumps(advice_json(advice), default=str, allow_nan=True))
    assert data["groups"][0]["fits"]["GPU:0"]["cells"][0]["size"] == 64


def test_advice_refuses_bad_input() -> None:
    results, samples = simulated()
    with pytest.raises(UsageError, match="--calls 0 must be at least 1"):
        advise(results, samples, sim.meta(), calls=0)
    failed = results.assign(status="error")
    with pytest.raises(UsageError, match="no ok cells"):
        advise(failed, samples, sim.meta())


def test_a_device_with_too_few_sizes_is_named() -> None:
    results, samples = simulated()
    results = results[(results["device"] == "CPU:0") | (results["size"] <= 128)]
    group = advise(results, samples, sim.meta()).groups[0]
    assert list(group.fits) == ["CPU:0"]
    assert not group.ranges
    assert any("GPU:0: 2 ok size(s), too few" in n for n in group.notes)


# ---------------------------------------------------------------------------------------------------------
# Rates on seeded synthetic runs (fast versions of bench/statistical_rates.py advise)


def test_rates_when_the_truth_is_a_power_law() -> None:
    rates = sim.rates("64..4096", sim.SIZES, 5, trials=12, seed=0)
    assert rates.agreement >= 0.95  # the fit within the cells' 95 % intervals
    assert rates.curve_coverage >= 0.85  # nominal 95 %; 96.7 % over 100 runs (bench/statistical_rates.py advise)
    assert rates.break_even_coverage >= 0.8  # nominal 95 %
    assert rates.break_even_cases >= 60


def test_a_step_in_the_truth_is_followed_by_a_step_in_the_fit() -> None:
    quiet = Noise(within=0.02, per_cell=0.01, per_round=0.01, samples=5)
    stepped = sim.rates("64..4096", sim.SIZES, 5, trials=4, seed=1, noise=quiet, misspecified=True)
    assert stepped.agreement >= 0.95
    results, samples = sim.run_tables(np.random.default_rng(3), sim.SIZES, 5, quiet, step=sim.STEP)
    fits = advise(results, samples, sim.meta()).groups[0].fits
    assert fits["GPU:0"].fit.step_at == 1024
    assert not fits["CPU:0"].fit.has_step
    assert fits["GPU:0"].fit.c == pytest.approx(0.3, abs=0.2)
    assert all(f.step_at == 1024 for f in fits["GPU:0"].round_fits)  # the rounds keep the break


def test_choose_step() -> None:
    sizes = [64, 128, 256, 512, 1024, 2048, 4096]
    assert choose_step(sizes, PowerLaw(8e-6, 2e-11, 2.9, c=0.3, step_at=1024).at(sizes)) == 1024
    assert choose_step(sizes, PowerLaw(8e-6, 2e-11, 2.9).at(sizes)) is None
    assert choose_step(sizes[:5], PowerLaw(8e-6, 2e-11, 2.9, c=0.3, step_at=256).at(sizes[:5])) is None  # too few
    fit = fit_power_law(sizes, PowerLaw(60e-6, 4e-13, 2.7, c=0.5, step_at=512).at(sizes), step_at=512)
    assert fit.c == pytest.approx(0.5, rel=0.01)
    assert fit.p == pytest.approx(2.7, rel=0.01)


# ---------------------------------------------------------------------------------------------------------
# CLI, chart, reports


def write_run(path: Path) -> Path:
    results, samples = simulated()
    path.mkdir()
    write_json(path / "meta.json", {"schema_version": 2, "run_id": "sim", **sim.meta()})
    write_tables(path, results, samples)
    return path


def test_cli_advise_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_run(tmp_path / "run")
    assert main(["advise", str(path)]) == 0
    out = capsys.readouterr().out
    assert "matmul · float32 · eager (sync scalar)" in out
    assert "device to use over 1,000 calls" in out
    assert "Fit quality: the fit t(n) = a + b·n^p lies within the cell's 95 % interval" in out
    assert main(["advise", str(path), "--calls", "50", "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert md.startswith("## matmul · float32 · eager")
    assert "| n | device to use over 50 calls |" in md
    assert main(["advise", str(path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["calls"] == 1000
    assert data["groups"][0]["baseline"] == "CPU:0"


@pytest.mark.parametrize(("args", "message"), [
    (["--calls", "0"], "--calls '0' must be at least 1"),
    (["--calls", "many"], "--calls 'many' is not a whole number"),
    (["--format", "html"], "unknown format 'html'"),
])
def test_cli_advise_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                               message: str) -> None:
    path = write_run(tmp_path / "run")
    assert main(["advise", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_cli_advise_not_a_run_or_nothing_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["advise", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    results, _ = simulated()
    table = tmp_path / "failed.csv"
    results.assign(status="error").to_csv(table, index=False)
    assert main(["advise", str(table)]) == 2
    assert "no ok cells" in capsys.readouterr().err


def test_the_crossover_chart_shows_the_fit() -> None:
    from devbench.plots import crossover_figure

    results, samples = simulated()
    top, _ = crossover_figure(results, KEY, samples=samples).axes
    fits = {str(line.get_gid()): line for line in top.get_lines() if str(line.get_gid()).startswith("fit:")}
    assert set(fits) == {"fit:CPU:0", "fit:GPU:0"}
    curves = fitted_curves(results, samples, KEY)
    x = np.asarray(fits["fit:GPU:0"].get_xdata(), dtype=float)
    assert np.allclose(np.asarray(fits["fit:GPU:0"].get_ydata(), dtype=float), curves["GPU:0"].fit.at(x))
    legend = top.get_legend()
    assert legend is not None
    assert "fit t(n) = a + b·n^p (thin)" in [t.get_text() for t in legend.get_texts()]


def test_the_reports_hold_the_advice(tmp_path: Path) -> None:
    from devbench.html_report import render_html_report
    from devbench.report import render_report

    results, samples = simulated()
    run = Run(path=None, meta={"run_id": "sim", **sim.meta()}, results=results, samples=samples)
    md = render_report(run, tmp_path, charts=[])
    assert "## Placement advice" in md
    assert "| matmul · float32 · eager |" in md
    page = render_html_report(run)
    assert 'id="advice"' in page
    assert "Placement advice" in page
    assert "break-even" in page


def test_a_shaped_curve_names_its_swept_dimension_in_the_break_even() -> None:
    from devbench.advise import BreakEven
    from devbench.advise_render import break_even_sentence
    from devbench.shapes import axis_name

    never = BreakEven("CPU:0", 4096, 1e-3, 2e-3, 0.0, math.inf, math.nan, math.nan)
    sentence = break_even_sentence(never, "numpy:CPU", axis_name("matmul[m=*,k=1024,n=1024]"))
    assert "at m=4096 (the largest size both measured)" in sentence
    assert "at n=4096" in break_even_sentence(never, "numpy:CPU", axis_name("matmul"))
