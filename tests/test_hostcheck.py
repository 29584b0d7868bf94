"""The host check (devbench.hostcheck) over fake /sys trees and a fake psutil, the per-visit CPU frequency
through the runner, its pooling, storage and report, and one real sweep for the structure."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from devbench import hostcheck
from devbench.hostcheck import HostProbe, check_host, cpu_mhz, host_facts, visit_clock
from devbench.prepare import RunSettings, prepare_machine
from devbench.runner import run_visits
from devbench.schema import HOST_CLOCK_COLUMNS, RESULT_COLUMNS, VisitRecord
from devbench.spec import SweepSpec
from devbench.store import Run, load_run, read_cell_log, tables_from_log, validate_record
from devbench.visits import LoggedVisit, cell_row

from .cli_helpers import run_cli
from .test_runner import FakeBackend

CPU = Path("sys/devices/system/cpu")


def fake_sys(root: Path, cores: Mapping[int, tuple[str, int, int]], *, no_turbo: str | None = None,
             boost: str | None = None, cpuinfo_flags: str | None = None) -> Path:
    """A /sys (and /proc/cpuinfo) tree under ``root``: per core (governor, current kHz, max kHz)."""
    (root / CPU).mkdir(parents=True)
    for core, (governor, cur, top) in cores.items():
        freq = root / CPU / f"cpu{core}" / "cpufreq"
        freq.mkdir(parents=True)
        (freq / "scaling_governor").write_text(governor + "\n")
        (freq / "scaling_cur_freq").write_text(f"{cur}\n")
        (freq / "cpuinfo_max_freq").write_text(f"{top}\n")
    if no_turbo is not None:
        (root / CPU / "intel_pstate").mkdir()
        (root / CPU / "intel_pstate" / "no_turbo").write_text(no_turbo + "\n")
    if boost is not None:
        (root / CPU / "cpufreq").mkdir(exist_ok=True)
        (root / CPU / "cpufreq" / "boost").write_text(boost + "\n")
    if cpuinfo_flags is not None:
        (root / "proc").mkdir()
        (root / "proc" / "cpuinfo").write_text(f"processor\t: 0\ncpu MHz\t\t: 2596.130\nflags\t\t: {cpuinfo_flags}\n")
    return root


@dataclass
class Freq:
    current: float
    min: float = 0.0
    max: float = 0.0


@dataclass
class Times:
    user: float
    system: float = 0.0


@dataclass
class Proc:
    info: dict[str, Any]


@dataclass
class FakePsutil:
    """psutil's ``cpu_freq``, ``getloadavg`` and ``process_iter``: each listing of processes is the next of
    ``listings`` (pid -> (name, CPU seconds, affinity))."""

    freqs: list[Freq] = field(default_factory=lambda: [Freq(2000.0)])
    load: tuple[float, float, float] = (0.1, 0.2, 0.3)
    listings: list[dict[int, tuple[str, float, list[int]]]] = field(default_factory=lambda: [{}, {}])
    fail: str = ""

    def cpu_freq(self, percpu: bool = False) -> list[Freq]:
        if self.fail == "freq":
            raise NotImplementedError("can't find current frequency file")
        return self.freqs

    def getloadavg(self) -> tuple[float, float, float]:
        return self.load

    def process_iter(self, attrs: Sequence[str]) -> Iterator[Proc]:
        if self.fail == "processes":
            raise PermissionError("no /proc")
        listing = self.listings.pop(0) if len(self.listings) > 1 else self.listings[0]
        for pid, (name, seconds, affinity) in listing.items():
            yield Proc({"pid": pid, "name": name, "cpu_times": Times(seconds), "cpu_affinity": affinity})


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def probe(root: Path, psutil: FakePsutil, cores: Sequence[int] = (0, 1), pid: int = 1) -> dict[str, Any]:
    clock = FakeClock()
    return check_host(root=root, psutil=psutil, cores=cores, pid=pid, clock=clock, sleep=clock.sleep)


# ---------------------------------------------------------------------------------------------------------
# The check


def test_a_badly_set_host_gets_one_warning_per_problem(tmp_path: Path) -> None:
    root = fake_sys(tmp_path, {0: ("performance", 3_500_000, 3_500_000), 1: ("powersave", 1_200_000, 3_500_000)},
                    no_turbo="0")
    psutil = FakePsutil(load=(3.5, 2.0, 1.0), listings=[
        {1: ("devbench", 0.0, [0, 1]), 7: ("stress", 10.0, [1]), 8: ("idle", 5.0, [0, 1]),
         9: ("elsewhere", 0.0, [4])},
        {1: ("devbench", 9.0, [0, 1]), 7: ("stress", 10.2, [1]), 8: ("idle", 5.0, [0, 1]),
         9: ("elsewhere", 0.2, [4])},
    ])
    check = probe(root, psutil)
    assert check["cores"] == [0, 1]
    assert check["governor"] == {"value": {"0": "performance", "1": "powersave"}}
    assert check["turbo"]["value"] is True
    assert check["frequency"]["value"]["1"] == {"current_mhz": 1200.0, "max_mhz": 3500.0}
    assert check["load"] == {"value": [3.5, 2.0, 1.0]}
    # over the 0.2 s window: stress used 0.2 s of one core; this process (pid 1) and one pinned to core 4 are
    # not counted
    assert check["processes"]["value"] == [{"pid": 7, "name": "stress", "cpu_pct": 100.0}]
    assert check["processes"]["window_s"] == pytest.approx(hostcheck.MIN_WINDOW_S)
    warnings = check["warnings"]
    assert len(warnings) == 5
    assert "governor powersave on core 1, not performance" in warnings[0]
    assert warnings[1].startswith("turbo/boost is on")
    assert "intel_pstate/no_turbo = 0" in warnings[1]
    assert "core 1 at 1200 of 3500 MHz" in warnings[2]
    assert warnings[3].startswith("load average 3.5 (1 min) on 2 core(s)")
    assert "stress (pid 7, 100 %)" in warnings[4]


def test_a_quiet_host_gets_no_warning(tmp_path: Path) -> None:
    root = fake_sys(tmp_path, {0: ("performance", 3_400_000, 3_500_000)}, no_turbo="1")
    check = probe(root, FakePsutil(listings=[{5: ("cron", 1.0, [0])}, {5: ("cron", 1.01, [0])}]), cores=[0])
    assert check["turbo"] == {"value": False, "source": "/sys/devices/system/cpu/intel_pstate/no_turbo = 1"}
    assert check["processes"]["value"] == []  # 5 % of a core is not busy
    assert check["processes"]["others_total_pct"] == pytest.approx(5.0)
    assert check["warnings"] == []
    facts = dict(host_facts(check))
    assert facts["CPU governor"] == "core 0 performance"
    assert facts["turbo/boost"].startswith("off")
    assert facts["CPU frequency"].startswith("core 0 3400 of max 3500 MHz")
    assert "none busy" in facts["other processes"]


def test_cpufreq_boost_is_read_where_intel_pstate_is_absent(tmp_path: Path) -> None:
    root = fake_sys(tmp_path, {0: ("schedutil", 3_000_000, 3_000_000)}, boost="1")
    check = probe(root, FakePsutil(), cores=[0])
    assert check["turbo"] == {"value": True, "source": "/sys/devices/system/cpu/cpufreq/boost = 1"}
    assert [w.split(" ")[0] for w in check["warnings"]] == ["CPU", "turbo/boost"]  # schedutil; boost on


def test_a_vm_without_cpufreq_says_why_nothing_is_readable(tmp_path: Path) -> None:
    """This VM's case: /sys/devices/system/cpu without any cpuN/cpufreq, and /proc/cpuinfo without aperfmperf,
    whose 'cpu MHz' is then a boot-time number: the frequency is not readable, and no warning guesses."""
    root = fake_sys(tmp_path, {}, cpuinfo_flags="fpu sse2 hypervisor")
    check = probe(root, FakePsutil(freqs=[Freq(2596.13), Freq(2596.13)]))
    assert "no cpufreq in /sys" in check["governor"]["unreadable"]
    assert "intel_pstate/no_turbo nor" in check["turbo"]["unreadable"]
    assert "aperfmperf" in check["frequency"]["unreadable"]
    assert "2596" in check["frequency"]["unreadable"]
    assert check["warnings"] == [  # one line, however many readings are hidden, for the same cause
        "CPU clock state not readable here (governor, turbo/boost, frequency): " + check["governor"]["unreadable"]
        + "; nothing checks that the clock stayed fixed"]
    facts = dict(host_facts(check))
    assert facts["CPU governor"].startswith("not readable here: no cpufreq in /sys")
    assert math.isnan(cpu_mhz([0, 1], root=root, psutil=FakePsutil(freqs=[Freq(2596.13)])))


def test_the_per_visit_sample_is_the_highest_current_frequency_of_the_cores_in_use(tmp_path: Path) -> None:
    root = fake_sys(tmp_path, {0: ("performance", 2_000_000, 3_500_000), 1: ("performance", 3_000_000, 3_500_000),
                               2: ("performance", 900_000, 3_500_000)})
    assert cpu_mhz([0, 2], root=root, psutil=FakePsutil()) == pytest.approx(2000.0)  # idle core 2 does not count
    assert cpu_mhz([2], root=root, psutil=FakePsutil()) == pytest.approx(900.0)  # core 1 is not in use


def test_psutil_frequency_counts_where_it_is_live(tmp_path: Path) -> None:
    live = fake_sys(tmp_path / "live", {}, cpuinfo_flags="fpu aperfmperf")
    psutil = FakePsutil(freqs=[Freq(1800.0, max=3600.0), Freq(2200.0, max=3600.0)])
    check = probe(live, psutil)
    assert check["frequency"]["source"] == "psutil.cpu_freq(percpu=True)"
    assert check["frequency"]["value"]["0"] == {"current_mhz": 1800.0, "max_mhz": 3600.0}
    assert cpu_mhz([0, 1], root=live, psutil=psutil) == pytest.approx(2200.0)
    # no /sys at all (not Linux): psutil asks the OS, and its numbers are used
    elsewhere = probe(tmp_path / "nowhere", FakePsutil(freqs=[Freq(2400.0)]), cores=[0])
    assert "not Linux" in elsewhere["governor"]["unreadable"]
    assert elsewhere["frequency"]["value"] == {"0": {"current_mhz": 2400.0, "max_mhz": None}}


def test_failing_psutil_readings_are_unreadable_not_errors(tmp_path: Path) -> None:
    root = fake_sys(tmp_path, {}, cpuinfo_flags="fpu")
    check = probe(root, FakePsutil(fail="freq"))
    assert "NotImplementedError" in check["frequency"]["unreadable"]
    no_processes = probe(tmp_path, FakePsutil(fail="processes"))
    assert "cannot list processes (PermissionError" in no_processes["processes"]["unreadable"]
    assert dict(host_facts(no_processes))["other processes"].startswith("not readable here")


def test_the_window_spans_what_happened_since_the_start(tmp_path: Path) -> None:
    """The probe's window starts when it is made (a sweep's device initialisation lies in it): it sleeps only
    the rest of MIN_WINDOW_S, and not at all after a long initialisation."""
    for spent, slept in ((0.05, [pytest.approx(hostcheck.MIN_WINDOW_S - 0.05)]), (3.0, [])):
        clock = FakeClock()
        started = HostProbe(root=tmp_path, psutil=FakePsutil(), cores=[0], clock=clock, sleep=clock.sleep)
        clock.now += spent
        check = started.finish()
        assert clock.slept == slept
        assert check["processes"]["window_s"] == pytest.approx(max(spent, hostcheck.MIN_WINDOW_S))


# ---------------------------------------------------------------------------------------------------------
# Per visit


def test_visit_clock_flags_a_move_over_ten_per_cent_only_when_both_ends_are_known() -> None:
    assert visit_clock(2000.0, 2300.0).cpu_freq_moved  # +15 %
    assert visit_clock(2000.0, 1700.0).cpu_freq_moved  # -15 %
    assert not visit_clock(2000.0, 2100.0).cpu_freq_moved  # +5 %
    assert not visit_clock(math.nan, 2300.0).cpu_freq_moved
    assert not visit_clock(math.nan, math.nan).cpu_freq_moved


SPEC = SweepSpec(ops=("matmul",), sizes=(64,), devices=("CPU:0",), rounds=3)


def clock_of(values: Sequence[float]) -> Any:
    readings = iter(values)
    return lambda: next(readings)


def test_the_runner_samples_the_clock_around_each_visit_and_the_row_pools_them() -> None:
    # visits 1 and 3 steady, visit 2 moves 15 %
    results = run_visits(SPEC.visits(), FakeBackend(), "run", SPEC.policy.per_visit(3), 0,
                         cpu_clock=clock_of([2000.0, 2010.0, 2000.0, 2300.0, 2300.0, 2290.0]))
    records = [r.record for r in results]
    assert [(r.cpu_mhz_start, r.cpu_mhz_end, r.cpu_freq_moved) for r in records] == [
        (2000.0, 2010.0, False), (2000.0, 2300.0, True), (2300.0, 2290.0, False)]
    row = cell_row([LoggedVisit(r.record, r.samples, r.round) for r in results], 3)
    assert (row.cpu_mhz_start, row.cpu_mhz_end, row.cpu_freq_moved, row.cpu_freq_moved_visits) == (
        2000.0, 2290.0, True, 1)


def test_an_unreadable_clock_is_nan_and_flags_nothing() -> None:
    results = run_visits(SPEC.visits(), FakeBackend(), "run", SPEC.policy.per_visit(3), 0,
                         cpu_clock=lambda: math.nan)
    row = cell_row([LoggedVisit(r.record, r.samples, r.round) for r in results], 3)
    assert math.isnan(row.cpu_mhz_start)
    assert math.isnan(row.cpu_mhz_end)
    assert not row.cpu_freq_moved
    assert row.cpu_freq_moved_visits == 0


def test_old_lines_and_tables_without_the_columns_still_read(tmp_path: Path) -> None:
    record = VisitRecord(run_id="r", op="add", size=64, dtype="float32", device="CPU:0", mode="eager",
                         sync="scalar", status="ok", median_s=1e-5, q1_s=1e-5, q3_s=1e-5).as_dict()
    for name in HOST_CLOCK_COLUMNS:
        record.pop(name, None)
    checked = validate_record(record)
    assert math.isnan(checked["cpu_mhz_start"])
    assert checked["cpu_freq_moved"] is False
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    (run_dir / "meta.json").write_text(json.dumps({"schema_version": 2, "run_id": "old"}))
    (run_dir / "cells.jsonl").write_text(json.dumps({"round": 1, "record": record, "samples": [1e-5]}) + "\n")
    results, _ = tables_from_log(read_cell_log(run_dir))
    assert not results["cpu_freq_moved"].iloc[0]
    assert results["cpu_freq_moved_visits"].iloc[0] == 0
    # a results.parquet from before the columns (no cells.jsonl) loads with their defaults
    results.drop(columns=list(HOST_CLOCK_COLUMNS)).to_parquet(run_dir / "results.parquet", index=False)
    (run_dir / "cells.jsonl").unlink()
    loaded = load_run(run_dir).results
    assert list(loaded.columns) == [*RESULT_COLUMNS, "shape"]  # the shape column is derived on reading
    assert math.isnan(loaded["cpu_mhz_start"].iloc[0])


# ---------------------------------------------------------------------------------------------------------
# The sweep and the reports


def test_prepare_checks_the_host_only_where_it_fingerprints(tmp_path: Path) -> None:
    root = fake_sys(tmp_path, {0: ("powersave", 800_000, 3_000_000)}, no_turbo="1")
    made: list[HostProbe] = []

    def fake_probe() -> HostProbe:
        clock = FakeClock()
        made.append(HostProbe(root=root, psutil=FakePsutil(), cores=[0], clock=clock, sleep=clock.sleep))
        return made[-1]

    settings = RunSettings(replace(SPEC, devices=("numpy:CPU",)))  # no framework to start
    prepared = prepare_machine(settings, backend=FakeBackend(), memory_guard=lambda cell: None,
                               host_probe=fake_probe)
    assert prepared.host_check is not None
    assert prepared.meta_fields()["host_check"] is prepared.host_check
    assert len(prepared.host_warnings()) == 2  # governor and frequency below max
    worker = prepare_machine(settings, backend=FakeBackend(), memory_guard=lambda cell: None, fingerprint=False,
                             host_probe=fake_probe)
    assert worker.host_check is None
    assert "host_check" not in worker.meta_fields()
    assert len(made) == 1


def test_a_sweep_stores_its_check_and_a_resume_its_own(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real check of this machine through the sweep's own process (structure only), its warnings on
    stderr whatever ``warn`` a resume is given."""
    from devbench.sweep import execute, resume

    spec = replace(SPEC, devices=("numpy:CPU",), rounds=1)
    run = execute(spec, tmp_path / "run", backend=FakeBackend(), guard=lambda cell: None, calibrate=False)
    first = run.meta["host_check"]
    assert {"cores", "governor", "turbo", "frequency", "load", "processes", "warnings"} <= set(first)
    seen: list[str] = []
    resumed = resume(tmp_path / "run", backend=FakeBackend(), guard=lambda cell: None, warn=seen.append)
    [entry] = resumed.meta["resumed"]
    assert set(entry["host_check"]) == set(first)
    assert entry["host_check"]["at"] >= first["at"]
    assert seen == []
    err = capsys.readouterr().err
    assert all(f"devbench: warning: host: {w}" in err for w in entry["host_check"]["warnings"])


def moved_run(tmp_path: Path) -> Run:
    from devbench.schema import results_frame

    row = {"run_id": "r", "op": "add", "size": 64, "dtype": "float32", "device": "CPU:0", "mode": "eager",
           "sync": "scalar", "status": "ok", "median_s": 1e-5, "n_rounds": 3, "cpu_mhz_start": 2000.0,
           "cpu_mhz_end": 2300.0, "cpu_freq_moved": True, "cpu_freq_moved_visits": 1}
    check = probe(fake_sys(tmp_path, {}, cpuinfo_flags="fpu"), FakePsutil(load=(4.0, 1.0, 1.0)))
    return Run(path=tmp_path, meta={"run_id": "r", "host_check": check}, results=results_frame([row]),
               samples=pd.DataFrame())


def test_both_reports_show_the_host_and_the_moved_cells(tmp_path: Path) -> None:
    from devbench.html_report.run_page import render_html_report
    from devbench.report import render_report

    run = moved_run(tmp_path)
    text = render_report(run, tmp_path)
    host = text.split("## Host", 1)[1].split("\n## ", 1)[0]
    assert "**CPU governor**: not readable here: no cpufreq in /sys" in host
    assert "- ⚠ load average 4 (1 min)" in host
    assert "moved by more than 10% within 1 visit(s) of 1 of 1 cell(s)" in host
    assert "### CPU frequency moved over 10% within a visit (1)" in text
    assert "moved in 1 of 3 visit(s); 2000 MHz at the first visit's start, 2300 MHz" in text
    html = render_html_report(run)
    assert 'id="host"' in html
    assert "no cpufreq in /sys" in html
    assert "load average 4 (1 min)" in html
    assert "CPU frequency moved over 10% within a visit (1)" in html


def test_a_run_without_a_check_says_so(tmp_path: Path) -> None:
    from devbench.report import render_report

    run = moved_run(tmp_path)
    run.meta.pop("host_check")
    assert hostcheck.NO_CHECK in render_report(run, tmp_path)


@pytest.mark.slow
def test_a_real_sweep_records_and_reports_the_host_check(tmp_path: Path) -> None:
    """The real check on this machine, whatever its state: the structure, not the readings."""
    out = tmp_path / "run"
    done = run_cli("sweep", "--devices", "numpy:CPU", "--ops", "add", "--sizes", "64", "--rounds", "1",
                   "--max-cell-time", "0.2", "--no-calibrate", "--quiet", "--out", str(out))
    assert done.returncode == 0, done.stderr
    meta = json.loads((out / "meta.json").read_text())
    check = meta["host_check"]
    assert {"cores", "governor", "turbo", "frequency", "load", "processes", "warnings"} <= set(check)
    for name in ("governor", "turbo", "frequency", "load", "processes"):
        assert ("value" in check[name]) != ("unreadable" in check[name])
    for warning in check["warnings"]:
        assert f"devbench: warning: host: {warning}" in done.stderr
    assert "## Host" in (out / "report.md").read_text()
    assert 'id="host"' in (out / "report.html").read_text()
    results = pd.read_csv(out / "results.csv")
    assert set(HOST_CLOCK_COLUMNS) <= set(results.columns)
