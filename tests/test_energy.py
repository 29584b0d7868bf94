"""Energy per op (devbench.energy) with fake meters only: a fake NVML module whose energy counter advances at a
known wattage over idle, and a fake powercap tree that wraps around; a real numpy sweep on this machine, whose
counters cannot be read, records why."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from devbench import energy
from devbench.backends.numpy import NumpyBackend
from devbench.energy import BLOCKS, DISAGREE_REL, EnergyProbe, probe_for, rapl_meter
from devbench.runner import run_cell
from devbench.schema import EnergyColumns
from devbench.spec import NUMPY_DEVICE, Cell, TimingPolicy
from devbench.visits import pooled_energy


@dataclass
class FakeHost:
    """A machine on a fake clock: ``idle_w`` always, ``active_w`` more while an op runs (``t_call`` s a call).

    Writes its energy to a powercap zone (``zone``, wrapping at ``range_uj``) and answers NVML's calls."""

    idle_w: float
    active_w: float
    t_call: float
    now: float = 0.0
    joules: float = 0.0
    last_w: float = 0.0
    power_scale: float = 1.0
    """What NVML's power reading reports of the true power (1: the truth)."""
    ramp: float = 0.0
    """Active power grows by this fraction per second of work (a warming chip: the two halves differ)."""
    busy_s: float = 0.0
    noise_w: float = 0.0
    """Standard deviation of the active power of each call to ``block`` (drawn from ``rng``)."""
    idle_noise_w: float = 0.0
    """Standard deviation of the idle power of each ``sleep``."""
    rng: Any = None
    zone: Path | None = None
    range_uj: int = 0
    calls: list[int] = field(default_factory=list)

    def _advance(self, seconds: float, watts: float) -> None:
        self.now += seconds
        self.joules += watts * seconds
        self.last_w = watts
        if self.zone is not None:
            (self.zone / "energy_uj").write_text(str(round(self.joules * 1e6) % self.range_uj))

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        noise = self.rng.normal(0.0, self.idle_noise_w) if self.idle_noise_w else 0.0
        self._advance(seconds, self.idle_w + noise)

    def block(self, k: int) -> str:
        self.calls.append(k)
        seconds = k * self.t_call
        noise = self.rng.normal(0.0, self.noise_w) if self.noise_w else 0.0
        self._advance(seconds, self.idle_w + self.active_w * (1.0 + self.ramp * self.busy_s) + noise)
        self.busy_s += seconds
        return "output"

    # --- NVML ---
    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        return int(self.joules * 1000)  # mJ, an integer counter

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return int(self.last_w * self.power_scale * 1000)  # mW


def _nvml_probe(host: FakeHost) -> EnergyProbe:
    probe = probe_for(["torch:cuda:0"], "auto", nvml=host, nvml_index=lambda device: 0)
    assert probe is not None
    probe.clock, probe.sleep = host.clock, host.sleep
    return probe


def _sync(output: Any) -> None:
    assert output == "output"


def test_nvml_counter_fills_the_columns_with_idle_subtracted() -> None:
    host = FakeHost(idle_w=60.0, active_w=150.0, t_call=1e-3)
    probe = _nvml_probe(host)
    got = probe.measure("torch:cuda:0", host.block, _sync, [1e-3] * 5, budget_s=10.0)
    assert probe.idle_w == {"nvml:0": pytest.approx(60.0, rel=1e-3)}
    # 150 W for 1 ms over idle: 0.15 J a call (not the 0.21 J with idle left in).
    assert got.joules_per_call == pytest.approx(0.15, rel=0.01)
    assert got.joules_ci_low <= got.joules_per_call <= got.joules_ci_high
    assert got.joules_ci_high - got.joules_ci_low < 0.01  # the counter's 1 mJ step over ~1000 calls
    assert not got.energy_disagrees
    assert got.energy_reason == ""
    assert got.energy_check_rel < DISAGREE_REL
    # BLOCKS blocks, each >= 10 updates of the counter (1 s) cut into 4 windows.
    assert sum(host.calls) == BLOCKS * 1000
    assert len(host.calls) == BLOCKS * 4
    meta = probe.meta("auto")
    assert meta["meters"]["nvml:0"]["devices"] == ["torch:cuda:0"]
    assert meta["meters"]["nvml:0"]["idle_w"] == pytest.approx(60.0, rel=1e-3)


def test_idle_is_measured_once_per_meter_and_taken_from_the_run_when_known() -> None:
    host = FakeHost(idle_w=60.0, active_w=150.0, t_call=1e-3)
    probe = _nvml_probe(host)
    probe.prepare()
    slept = host.now
    probe.measure("torch:cuda:0", host.block, _sync, [1e-3], budget_s=10.0)
    assert host.now - slept == pytest.approx(BLOCKS * 1.0)  # the blocks only: idle was not measured again
    resumed = probe_for(["torch:cuda:0"], "auto", nvml=host, nvml_index=lambda device: 0, idle_w={"nvml:0": 55.0})
    assert resumed is not None
    resumed.prepare()
    assert resumed.idle_w == {"nvml:0": 55.0}
    assert energy.idle_from_meta({"energy": resumed.meta("auto")}) == {"nvml:0": 55.0}


def _coverage(visits: int, *, noise_w: float, idle_noise_w: float, seed: int) -> float:
    """The share of ``visits`` fake visits whose interval holds the true 0.15 J a call."""
    import numpy as np

    rng = np.random.default_rng(seed)
    held = 0
    for _ in range(visits):
        host = FakeHost(idle_w=60.0, active_w=150.0, t_call=1e-3, noise_w=noise_w, idle_noise_w=idle_noise_w,
                        rng=rng)
        got = _nvml_probe(host).measure("torch:cuda:0", host.block, _sync, [1e-3], budget_s=10.0)
        held += got.joules_ci_low <= 0.15 <= got.joules_ci_high
    return held / visits


def test_the_interval_over_blocks_covers_the_true_joules() -> None:
    """Seeded fake visits (3 blocks of 1 s, active power drawn per window with sd 20 W; counter in whole mJ):
    the t interval over the blocks holds the true joules in 95 % of 400 visits (95.3 % over seeds 1-3, 1200
    visits). Idle power that wanders as much (sd 20 W per 1 s idle window) is an error shared by the blocks,
    which their interval cannot see: 80.5 % (80.8 % over seeds 1-3); with sd 2 W, 94 %. Said in the README."""
    assert _coverage(400, noise_w=20.0, idle_noise_w=0.0, seed=1) == pytest.approx(0.95)
    assert _coverage(400, noise_w=20.0, idle_noise_w=20.0, seed=1) == pytest.approx(0.805)


def test_a_counter_that_disagrees_with_integrated_power_is_flagged() -> None:
    host = FakeHost(idle_w=60.0, active_w=150.0, t_call=1e-3, power_scale=0.5)
    got = _nvml_probe(host).measure("torch:cuda:0", host.block, _sync, [1e-3], budget_s=10.0)
    assert got.energy_disagrees
    assert got.energy_check_rel == pytest.approx(0.5, abs=0.07)
    assert "integrated power samples disagree by" in got.energy_reason
    assert got.joules_per_call == pytest.approx(0.15, rel=0.01)  # the counter's figure is kept, flagged


def _powercap(root: Path, range_uj: int) -> Path:
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("0\n")
    (zone / "max_energy_range_uj").write_text(f"{range_uj}\n")
    core = root / "intel-rapl:0:0"  # a subzone: inside its package, never added again
    core.mkdir()
    (core / "energy_uj").write_text("123\n")
    return zone


def test_rapl_through_powercap_handles_wrap_around(tmp_path: Path) -> None:
    range_uj = 5_000_000  # 5 J: the blocks below wrap it seven times
    host = FakeHost(idle_w=10.0, active_w=40.0, t_call=1e-3, zone=_powercap(tmp_path, range_uj), range_uj=range_uj)
    probe = probe_for([NUMPY_DEVICE, "CPU:0"], "auto", powercap=tmp_path)
    assert probe is not None
    assert probe.unavailable == {}
    probe.clock, probe.sleep = host.clock, host.sleep
    assert probe.meter_for("CPU:0") is probe.meter_for(NUMPY_DEVICE)  # one package meter for the host
    got = probe.measure("CPU:0", host.block, _sync, [1e-3], budget_s=10.0)
    assert host.joules > 3 * range_uj * 1e-6
    assert probe.idle_w["rapl:package-0"] == pytest.approx(10.0, rel=1e-4)
    assert got.joules_per_call == pytest.approx(0.04, rel=1e-3)  # 40 W over idle for 1 ms
    assert not got.energy_disagrees
    assert got.energy_check_rel < 1e-3
    meter = rapl_meter(tmp_path)
    assert not isinstance(meter, str)
    assert meter.update_interval_s == pytest.approx(1e-3)


def test_rapl_halves_that_disagree_are_flagged(tmp_path: Path) -> None:
    range_uj = 2**40
    host = FakeHost(idle_w=10.0, active_w=40.0, t_call=1e-3, ramp=10.0, zone=_powercap(tmp_path, range_uj),
                    range_uj=range_uj)
    probe = probe_for(["CPU:0"], "auto", powercap=tmp_path)
    assert probe is not None
    probe.clock, probe.sleep = host.clock, host.sleep
    got = probe.measure("CPU:0", host.block, _sync, [1e-3], budget_s=10.0)
    assert got.energy_disagrees
    assert "other half-block disagree" in got.energy_reason


def test_a_budget_too_short_for_the_counter_measures_nothing_and_says_why() -> None:
    host = FakeHost(idle_w=60.0, active_w=150.0, t_call=1e-3)
    got = _nvml_probe(host).measure("torch:cuda:0", host.block, _sync, [1e-3], budget_s=0.3)
    assert math.isnan(got.joules_per_call)
    assert host.calls == []
    assert got.energy_reason.startswith("not measured: the visit's budget of 0.3 s")
    # A budget that fits three shorter blocks (each >= 2 updates) is used, capped: 3 blocks of 0.2 s.
    got = _nvml_probe(host).measure("torch:cuda:0", host.block, _sync, [1e-3], budget_s=0.6)
    assert sum(host.calls) == 3 * 200
    assert got.joules_per_call == pytest.approx(0.15, rel=0.03)


def test_without_counters_each_device_says_why(tmp_path: Path) -> None:
    class NoDriver:
        def nvmlInit(self) -> None:
            raise RuntimeError("NVML Shared Library Not Found")

    probe = probe_for(["CPU:0", "GPU:0", "jax:tpu:0"], "auto", powercap=tmp_path / "absent", nvml=NoDriver(),
                      nvml_index=lambda device: 0 if device == "GPU:0" else None)
    assert probe is not None
    assert probe.meters == {}
    assert probe.reason_for("CPU:0") == (f"not available here: {tmp_path / 'absent'} does not exist (no powercap "
                                         "driver in this kernel, or a VM that hides RAPL): no CPU energy counter")
    assert "NVML cannot open GPU 0 (RuntimeError: NVML Shared Library Not Found)" in probe.reason_for("GPU:0")
    assert "jax:tpu:0 is not an NVIDIA GPU" in probe.reason_for("jax:tpu:0")
    assert probe.measure("CPU:0", lambda k: None, _sync, [1e-3], 1.0).energy_reason == probe.reason_for("CPU:0")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "intel-rapl-mmio:0").mkdir()
    assert rapl_meter(tmp_path / "empty") == (f"not available here: {tmp_path / 'empty'} has no RAPL package zone "
                                              "intel-rapl:N (it holds intel-rapl-mmio:0)")
    assert probe_for(["CPU:0"], "off") is None


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_counter_is_explained(tmp_path: Path) -> None:
    zone = _powercap(tmp_path, 2**32)
    (zone / "energy_uj").chmod(0)
    reason = rapl_meter(tmp_path)
    assert isinstance(reason, str)
    assert "energy_uj is not readable by this user (root only since Linux 5.10" in reason


def test_a_real_visit_runs_the_energy_blocks_after_the_timed_ones() -> None:
    """The one run_cell measures energy right after timer.measure, on the cell's own op; the meter here is a
    constant 100 W on the real clock, so every joule is idle and the op adds none."""
    import time

    @dataclass
    class Constant:
        name: str = "fake"
        update_interval_s: float = 0.01
        resolution_j: float = 1e-9

        def energy_j(self) -> float:
            return 100.0 * time.perf_counter()

        def power_w(self) -> float | None:
            return 100.0

    probe = EnergyProbe({NUMPY_DEVICE: Constant()}, {})
    policy = TimingPolicy(max_cell_time=0.15, min_samples=3, max_samples=10, warmup_time=0.005, min_block_time=0.001)
    result = run_cell(NumpyBackend(), "t", Cell(size=64, op="matmul", dtype="float32", device=NUMPY_DEVICE),
                      policy, seed=0, energy=probe)
    record = result.record
    assert record.status == "ok", record.reason
    assert probe.idle_w["fake"] == pytest.approx(100.0, rel=1e-3)
    assert abs(record.joules_per_call) < 1e-3
    assert record.joules_ci_low <= record.joules_ci_high
    assert record.energy_check_rel < 0.01
    assert record.energy_reason == ""
    other = run_cell(NumpyBackend(), "t", Cell(size=64, op="add", dtype="float32", device=NUMPY_DEVICE),
                     policy, seed=0, energy=EnergyProbe({}, {NUMPY_DEVICE: "not available here: test"}))
    assert math.isnan(other.record.joules_per_call)
    assert other.record.energy_reason == "not available here: test"


def test_a_cells_energy_pools_its_rounds() -> None:
    def visit(j: float, low: float, high: float, check: float = 0.01) -> EnergyColumns:
        return EnergyColumns(joules_per_call=j, joules_ci_low=low, joules_ci_high=high, energy_check_rel=check)

    one = pooled_energy([visit(1.0, 0.9, 1.1)])
    assert (one.joules_per_call, one.joules_ci_low, one.joules_ci_high) == (1.0, 0.9, 1.1)
    two = pooled_energy([visit(1.0, 0.9, 1.1), visit(1.2, 1.15, 1.3, check=0.3)])
    assert two.joules_per_call == pytest.approx(1.1)
    assert (two.joules_ci_low, two.joules_ci_high) == (0.9, 1.3)
    assert two.energy_check_rel == 0.3
    three = pooled_energy([visit(1.0, 0.99, 1.01), visit(1.2, 1.19, 1.21), visit(1.1, 1.09, 1.11)])
    # The round is the unit: the spread between rounds, not the tight intervals within them (t_0.975,2 = 4.30).
    assert three.joules_per_call == pytest.approx(1.1)
    assert three.joules_ci_high - three.joules_ci_low == pytest.approx(2 * 4.303 * 0.1 / math.sqrt(3), rel=1e-3)
    none = pooled_energy([EnergyColumns(energy_reason="not available here: x")] * 2)
    assert math.isnan(none.joules_per_call)
    assert none.energy_reason == "not available here: x"


def _energy_rows(gpu_joules: list[float], cpu_joules: list[float], sizes: list[int], half: float = 0.02
                 ) -> pd.DataFrame:
    from devbench.schema import results_frame

    rows = []
    for device, joules in (("CPU:0", cpu_joules), ("GPU:0", gpu_joules)):
        for size, j in zip(sizes, joules, strict=True):
            rows.append({"run_id": "r", "op": "matmul", "size": size, "dtype": "float32", "device": device,
                         "mode": "eager", "sync": "scalar", "status": "ok", "median_s": 1e-3,
                         "joules_per_call": j, "joules_ci_low": j * (1 - half), "joules_ci_high": j * (1 + half)})
    return results_frame(rows)


def test_energy_crossover_is_decisive_only_where_the_intervals_separate() -> None:
    sizes = [128, 256, 512, 1024, 2048]
    cpu = [0.001 * (s / 128) ** 3 for s in sizes]
    gpu = [0.01 * (s / 128) ** 2 for s in sizes]  # ratio GPU/CPU 10, 5, 2.5, 1.25, 0.625: crosses near 1280
    frame = energy.energy_crossover_frame(_energy_rows(gpu, cpu, sizes))
    row = frame[frame["decisive"]].iloc[0]
    assert (row["cheaper_below"], row["cheaper_above"]) == ("CPU:0", "GPU:0")
    assert 1024 <= row["crossover_size"] <= 2048
    assert row["note"].startswith("GPU:0 costs fewer joules per call than CPU:0 above n≈")
    wide = energy.energy_crossover_frame(_energy_rows(gpu, cpu, sizes, half=0.9))
    assert not wide["decisive"].any()
    assert energy.energy_crossover_frame(_energy_rows(gpu, cpu, sizes).assign(joules_per_call=math.nan)).empty


@pytest.mark.slow
def test_a_real_sweep_here_records_why_no_energy_was_measured(tmp_path: Path) -> None:
    """This VM has no /sys/class/powercap and no NVIDIA GPU: the run says so once, in meta.json and the report."""
    from devbench.cli import main
    from devbench.report import render_report
    from devbench.store import load_run

    out = tmp_path / "run"
    assert main(["sweep", "--devices", "numpy:CPU", "--ops", "add", "--sizes", "16", "--rounds", "1",
                 "--no-calibrate", "--max-cell-time", "0.05", "--quiet", "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    expected = rapl_meter()
    assert meta["energy"]["setting"] == "auto"
    if isinstance(expected, str):
        assert meta["energy"]["unavailable"] == {NUMPY_DEVICE: expected}
        run = load_run(out)
        assert set(run.results["energy_reason"]) == {expected}
        assert expected in render_report(run, out)


def test_the_energy_flag_reaches_the_plan_and_a_bad_value_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from devbench.cli import build_parser, main

    args = build_parser().parse_args(["sweep", "--energy", "off"])
    assert args.energy == "off"
    assert build_parser().parse_args(["sweep"]).energy == "auto"
    assert main(["sweep", "--energy", "sometimes"]) == 2
    assert "argument --energy: invalid choice: 'sometimes'" in capsys.readouterr().err


def test_reports_show_the_meters_the_joules_and_the_energy_crossover() -> None:
    from devbench.html_report.run_page import render_html_report
    from devbench.report import render_report
    from devbench.store import Run

    sizes = [128, 256, 512, 1024, 2048]
    results = _energy_rows([0.01 * (s / 128) ** 2 for s in sizes], [0.001 * (s / 128) ** 3 for s in sizes], sizes)
    meta = {"run_id": "r", "energy": {"setting": "auto", "meters": {
        "nvml:0": {"update_interval_s": 0.1, "idle_w": 61.5, "devices": ["GPU:0"]},
        "rapl:package-0": {"update_interval_s": 0.001, "idle_w": 12.0, "devices": ["CPU:0"]}},
        "unavailable": {"jax:tpu:0": "not available here: jax:tpu:0 is not an NVIDIA GPU NVML can see"}}}
    run = Run(path=None, meta=meta, results=results, samples=pd.DataFrame())
    md = render_report(run, Path("."))
    html = render_html_report(run)
    for text in (md, html):
        assert "GPU:0: idle 61.5 W subtracted" in text
        assert "jax:tpu:0 is not an NVIDIA GPU NVML can see" in text
        assert "GPU:0 costs fewer joules per call than CPU:0 above n≈1" in text
        assert "4.1 J" in text  # CPU:0 at n=2048
    assert md.index("## Crossovers") < md.index("## Energy per call") < md.index("## Fastest device")
    assert "not measured (--energy off)" in render_report(Run(path=None, meta={"energy": {"setting": "off"}},
                                                                results=results.iloc[0:0],
                                                                samples=pd.DataFrame()), Path("."))


def test_the_setting_and_idle_power_come_back_from_meta_for_a_resume_and_the_workers(tmp_path: Path) -> None:
    from devbench.prepare import RunSettings
    from devbench.spec import SweepSpec

    spec = SweepSpec(ops=("add",), sizes=(16,), dtypes=("float32",), devices=(NUMPY_DEVICE,))
    meta: dict[str, Any] = {"spec": spec.to_dict(), "energy": {"setting": "auto", "meters": {
        "rapl:package-0": {"update_interval_s": 0.001, "idle_w": 12.5, "devices": [NUMPY_DEVICE]}}}}
    settings = RunSettings.from_meta(meta, tmp_path)
    assert settings.energy == "auto"
    assert dict(settings.idle_w) == {"rapl:package-0": 12.5}
    del meta["energy"]  # a run from before --energy resumes without it
    assert RunSettings.from_meta(meta, tmp_path).energy == "off"
    from devbench.errors import UsageError

    with pytest.raises(UsageError, match="--energy 'sometimes' is not one of auto, off"):
        RunSettings(spec=spec, energy="sometimes")
