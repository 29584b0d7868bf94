"""The host's CPU clocks: a check before a sweep and a frequency sample around every visit.

A CPU/host crossover moves with the clock the host cores ran at, and that clock depends on things no timing
loop controls: the cpufreq governor (``powersave`` and ``schedutil`` clock idle cores down), turbo/boost (the
clock then depends on temperature and on how many cores are busy), other processes on the same cores, and
load. pyperf's ``system check`` and Google Benchmark warn about these; devbench does too, once per sweep, in
the sweep's own process (devbench.prepare.prepare_machine, not in ``--processes`` workers):

- :class:`HostProbe` reads the governor, turbo/boost, the current and maximum frequency of each core this
  process may run on (``os.sched_getaffinity``), the load average, and which other processes used those cores
  over a short window (psutil). Every reading is ``{"value": ...}`` or ``{"unreadable": "why"}``: a VM often
  has no cpufreq in /sys at all, and the check says so rather than guessing.
- :func:`host_warnings` gives one line per problem; the sweep prints them on stderr and never fails for them.
  The whole check is ``meta.json["host_check"]`` (a resume records its own in its ``resumed`` entry) and the
  reports' "Host" section (:func:`host_facts`).
- :func:`cpu_mhz` samples the highest current frequency among the cores in use; devbench.runner takes it at each
  visit's start and end, outside the timed blocks, and :func:`visit_clock` flags a visit whose frequency moved
  by more than :data:`MOVED_REL`. A frequency that cannot be read live is NaN and flags nothing.

Everything reads through a root path (``root/sys/...``, ``root/proc/cpuinfo``) and a psutil-like object, so
tests use a fake /sys tree and a fake psutil and never depend on the machine they run on.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devbench.formatting import format_percent, utc_now
from devbench.schema import HostClock

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BELOW_MAX_REL", "BUSY_PCT", "MIN_WINDOW_S", "MOVED_REL", "NO_CHECK", "HostProbe", "check_host",
           "checks_of", "clock_summary", "cores_in_use", "cpu_mhz", "current_cpu_mhz", "host_facts", "host_warnings",
           "moved_detail", "visit_clock"]

MOVED_REL = 0.10
"""A visit whose CPU frequency at its end differs from its start by more than this (relative to the start) is
``cpu_freq_moved``."""
BELOW_MAX_REL = 0.90
"""A core clocked below this fraction of its maximum at the check is warned about."""
BUSY_PCT = 10.0
"""Another process that used at least this per cent of one core over the window is named as busy."""
MIN_WINDOW_S = 0.2
"""The shortest window over which other processes' CPU use is measured. The window runs from the probe's start
to its finish (a sweep's device initialisation and discovery lie in it), so it costs time only when those were
quicker than this."""
TOP_PROCESSES = 3
"""Busy processes named in the warning (all are in meta.json)."""

_CPU = Path("sys/devices/system/cpu")
_Reading = dict[str, Any]


def cores_in_use() -> list[int]:
    """The cores this process may run on (its affinity), or every core where affinity is not available."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _psutil(psutil: Any | None) -> Any:
    if psutil is not None:
        return psutil
    import psutil as real

    return real


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _no_cpufreq(root: Path, cores: Sequence[int]) -> str | None:
    """Why there is no cpufreq to read for ``cores`` under ``root`` (None when there is)."""
    if not (root / _CPU).is_dir():
        return f"no /{_CPU} (not Linux, or /sys is not mounted here)"
    if not any((root / _CPU / f"cpu{core}" / "cpufreq").is_dir() for core in cores):
        return (f"no cpufreq in /sys (/{_CPU}/cpu{cores[0] if cores else 0}/cpufreq is absent): the kernel has no "
                "frequency-scaling driver here, as in a VM or container whose hypervisor owns the clock")
    return None


def _governor(root: Path, cores: Sequence[int]) -> _Reading:
    why = _no_cpufreq(root, cores)
    if why is not None:
        return {"unreadable": why}
    value = {str(c): g for c in cores if (g := _read(root / _CPU / f"cpu{c}" / "cpufreq" / "scaling_governor"))}
    return {"value": value} if value else {"unreadable": "cpufreq has no scaling_governor for the cores in use"}


def _turbo(root: Path) -> _Reading:
    """Turbo/boost: intel_pstate's ``no_turbo`` (1 = off), else cpufreq's ``boost`` (1 = on; acpi-cpufreq,
    amd-pstate)."""
    no_turbo = _read(root / _CPU / "intel_pstate" / "no_turbo")
    if no_turbo in ("0", "1"):
        return {"value": no_turbo == "0", "source": f"/{_CPU}/intel_pstate/no_turbo = {no_turbo}"}
    boost = _read(root / _CPU / "cpufreq" / "boost")
    if boost in ("0", "1"):
        return {"value": boost == "1", "source": f"/{_CPU}/cpufreq/boost = {boost}"}
    return {"unreadable": f"neither /{_CPU}/intel_pstate/no_turbo nor /{_CPU}/cpufreq/boost exists"}


def _khz(path: Path) -> float | None:
    text = _read(path)
    try:
        value = float(text) / 1000.0 if text is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def _static_cpuinfo(root: Path) -> bool:
    """Whether /proc/cpuinfo's ``cpu MHz`` (psutil's source without cpufreq on Linux) is a fixed number: without
    the ``aperfmperf`` CPU flag the kernel reports the clock it calibrated at boot, not the live one."""
    text = _read(root / "proc" / "cpuinfo")
    if text is None:
        return False  # not Linux: psutil asks the OS itself
    flags = next((line.split() for line in text.splitlines() if line.startswith("flags")), [])
    return "aperfmperf" not in flags


def _frequency(root: Path, cores: Sequence[int], psutil: Any, *, with_max: bool = True) -> _Reading:
    """Current and maximum MHz per core in use: /sys cpufreq (``scaling_cur_freq``, ``cpuinfo_max_freq``; the
    maximum only ``with_max``), else psutil's ``cpu_freq(percpu=True)`` where its numbers are live."""
    if _no_cpufreq(root, cores) is None:
        per_core = {str(c): {"current_mhz": _khz(root / _CPU / f"cpu{c}" / "cpufreq" / "scaling_cur_freq"),
                             "max_mhz": _khz(root / _CPU / f"cpu{c}" / "cpufreq" / "cpuinfo_max_freq")
                             if with_max else None}
                    for c in cores}
        if any(v["current_mhz"] is not None for v in per_core.values()):
            return {"value": per_core, "source": f"/{_CPU}/cpu*/cpufreq"}
    try:
        freqs = list(psutil.cpu_freq(percpu=True) or [])
    except Exception as exc:  # psutil raises NotImplementedError or OSError where the OS hides it
        return {"unreadable": f"no cpufreq in /sys and psutil.cpu_freq failed ({type(exc).__name__}: {exc})"}
    if not freqs:
        return {"unreadable": "no cpufreq in /sys and psutil.cpu_freq reports nothing"}
    per_core = {}
    for c in cores:
        f = freqs[c] if c < len(freqs) else freqs[0]  # some systems report one entry for all cores
        per_core[str(c)] = {"current_mhz": float(f.current) if f.current > 0 else None,
                            "max_mhz": float(f.max) if f.max > 0 else None}
    if _static_cpuinfo(root):
        shown = ", ".join(f"{v['current_mhz']:.0f}" for v in per_core.values() if v["current_mhz"]) or "none"
        return {"unreadable": (f"{_no_cpufreq(root, cores) or 'cpufreq reports no current frequency'}; psutil's "
                               f"numbers ({shown} MHz) come from /proc/cpuinfo, which without the CPU's aperfmperf "
                               "flag (absent here) is the clock the kernel calibrated at boot, not the live one")}
    return {"value": per_core, "source": "psutil.cpu_freq(percpu=True)"}


def _load(psutil: Any) -> _Reading:
    try:
        one, five, fifteen = (float(x) for x in psutil.getloadavg())
    except Exception as exc:
        return {"unreadable": f"no load average ({type(exc).__name__}: {exc})"}
    return {"value": [round(one, 2), round(five, 2), round(fifteen, 2)]}


_ProcessTimes = dict[int, tuple[str, float]]


def _process_times(psutil: Any, cores: Sequence[int], own_pid: int) -> _ProcessTimes:
    """pid -> (name, user + system CPU seconds) of every other process that may run on ``cores``."""
    out: _ProcessTimes = {}
    for proc in psutil.process_iter(["pid", "name", "cpu_times", "cpu_affinity"]):
        info = proc.info
        times, affinity = info.get("cpu_times"), info.get("cpu_affinity")
        if info.get("pid") == own_pid or times is None:
            continue
        if affinity and not set(affinity) & set(cores):
            continue
        out[int(info["pid"])] = (str(info.get("name") or "?"), float(times.user) + float(times.system))
    return out


class HostProbe:
    """The host check, started now and finished by :meth:`finish`: other processes' CPU use is measured between
    the two (at least :data:`MIN_WINDOW_S`), everything else is read at the finish.

    ``root``: where /sys and /proc are (a fake tree in tests); ``psutil``: the psutil module or a fake with
    ``cpu_freq``, ``getloadavg`` and ``process_iter``; ``cores``: default :func:`cores_in_use`; ``clock`` and
    ``sleep`` time the window.
    """

    def __init__(self, *, root: Path = Path("/"), psutil: Any | None = None, cores: Sequence[int] | None = None,
                 pid: int | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.root = Path(root)
        self.cores = list(cores) if cores is not None else cores_in_use()
        self.pid = os.getpid() if pid is None else pid
        self.clock, self.sleep = clock, sleep
        self.psutil: Any | None = None
        self.started = clock()
        try:
            self.psutil = _psutil(psutil)
            self.before: _ProcessTimes | None = _process_times(self.psutil, self.cores, self.pid)
            self.why_not = ""
        except Exception as exc:  # no psutil, or a platform where it cannot list processes
            self.before, self.why_not = None, f"{type(exc).__name__}: {exc}"

    def _processes(self) -> _Reading:
        if self.before is None or self.psutil is None:
            return {"unreadable": f"cannot list processes ({self.why_not})"}
        waited = self.clock() - self.started
        if waited < MIN_WINDOW_S:
            self.sleep(MIN_WINDOW_S - waited)
        window = max(self.clock() - self.started, 1e-9)
        try:
            after = _process_times(self.psutil, self.cores, self.pid)
        except Exception as exc:
            return {"unreadable": f"cannot list processes ({type(exc).__name__}: {exc})"}
        used = [(round(100.0 * (t - self.before[pid][1]) / window, 1), pid, name)
                for pid, (name, t) in after.items() if pid in self.before]
        busy = [{"pid": pid, "name": name, "cpu_pct": pct} for pct, pid, name in sorted(used, reverse=True)
                if pct >= BUSY_PCT]
        return {"value": busy, "window_s": round(window, 3), "threshold_pct": BUSY_PCT,
                "others_total_pct": round(sum(max(pct, 0.0) for pct, _, _ in used), 1)}

    def finish(self) -> dict[str, Any]:
        """The check as stored in meta.json: ``at``, ``cores``, a reading per item, and ``warnings``."""
        psutil = self.psutil
        check: dict[str, Any] = {
            "at": utc_now(),
            "cores": self.cores,
            "processes": self._processes(),
            "governor": _governor(self.root, self.cores),
            "turbo": _turbo(self.root),
            "frequency": (_frequency(self.root, self.cores, psutil) if psutil is not None
                          else {"unreadable": f"psutil is not available ({self.why_not})"}),
            "load": _load(psutil) if psutil is not None else {"unreadable": "psutil is not available"},
        }
        check["warnings"] = host_warnings(check)
        return check


def check_host(**kwargs: Any) -> dict[str, Any]:
    """The host check in one call (:class:`HostProbe` started and finished; keyword arguments as its)."""
    return HostProbe(**kwargs).finish()


def _cores_text(cores: Sequence[str]) -> str:
    return f"core{'s' if len(cores) > 1 else ''} {', '.join(cores)}"


def host_warnings(check: Mapping[str, Any]) -> list[str]:
    """One line per problem the check found (as pyperf's ``system check``): a governor other than
    ``performance``, turbo/boost on, a core clocked below :data:`BELOW_MAX_REL` of its maximum, a load average
    at or above the number of cores in use, other busy processes; and the clock's state not readable (governor,
    turbo or frequency, with the first one's reason): then nothing says the clock was fixed, which a reader of
    the results should know as much as that it was not."""
    out: list[str] = []
    hidden = [(label, reading["unreadable"]) for label, reading in (
        (label, check.get(key) or {}) for key, label in (
            ("governor", "governor"), ("turbo", "turbo/boost"), ("frequency", "frequency")))
        if isinstance(reading, Mapping) and "unreadable" in reading]
    if hidden:
        out.append(f"CPU clock state not readable here ({', '.join(label for label, _ in hidden)}): {hidden[0][1]}; "
                   "nothing checks that the clock stayed fixed")
    governors = (check.get("governor") or {}).get("value") or {}
    slow = {g for g in governors.values() if g != "performance"}
    if slow:
        which = [c for c, g in governors.items() if g != "performance"]
        out.append(f"CPU governor {', '.join(sorted(slow))} on {_cores_text(which)}, not performance: the clock "
                   "follows the load, so short and idle-separated calls run slower (cpupower frequency-set -g "
                   "performance)")
    turbo = check.get("turbo") or {}
    if turbo.get("value") is True:
        out.append("turbo/boost is on: the clock depends on temperature and on how many cores are busy, so it "
                   f"varies across a sweep ({turbo.get('source', '')}; pyperf system tune turns it off)")
    freqs = (check.get("frequency") or {}).get("value") or {}
    below = [f"{c} at {v['current_mhz']:.0f} of {v['max_mhz']:.0f} MHz" for c, v in freqs.items()
             if v.get("current_mhz") and v.get("max_mhz") and v["current_mhz"] < BELOW_MAX_REL * v["max_mhz"]]
    if below:
        out.append(f"CPU frequency below {BELOW_MAX_REL:.0%} of its maximum: core {'; core '.join(below)}")
    load = (check.get("load") or {}).get("value")
    cores = check.get("cores") or []
    if load and cores and load[0] >= len(cores):
        out.append(f"load average {load[0]:g} (1 min) on {len(cores)} core(s) in use: other work is queued for "
                   "the cores the sweep runs on")
    processes = check.get("processes") or {}
    busy = processes.get("value") or []
    if busy:
        named = ", ".join(f"{p['name']} (pid {p['pid']}, {p['cpu_pct']:g} %)" for p in busy[:TOP_PROCESSES])
        more = f" and {len(busy) - TOP_PROCESSES} more" if len(busy) > TOP_PROCESSES else ""
        out.append(f"{len(busy)} other process(es) used the cores in use over {processes.get('window_s', 0):g} s: "
                   f"{named}{more} (per cent of one core)")
    return out


def host_facts(check: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, text) per reading of a stored check, for report.md and report.html: a value, or "not readable
    here: why"."""

    def text(key: str, show: Callable[[Any], str]) -> str:
        reading = check.get(key)
        reading = reading if isinstance(reading, Mapping) else {}
        if "value" not in reading:
            return f"not readable here: {reading.get('unreadable', 'not recorded')}"
        return show(reading)

    def frequency(r: Mapping[str, Any]) -> str:
        def mhz(v: Any) -> str:
            return f"{v:.0f}" if isinstance(v, (int, float)) else "?"

        cores = "; ".join(f"core {c} {mhz(v.get('current_mhz'))} of max {mhz(v.get('max_mhz'))} MHz"
                          for c, v in r["value"].items())
        return f"{cores} ({r.get('source', '')})"

    def processes(r: Mapping[str, Any]) -> str:
        busy = ", ".join(f"{p['name']} (pid {p['pid']}) {p['cpu_pct']:g} %" for p in r["value"]) or "none busy"
        return (f"{busy} over {r.get('window_s', 0):g} s (at least {r.get('threshold_pct', BUSY_PCT):g} % of one "
                f"core; all others together {r.get('others_total_pct', 0):g} %)")

    cores = check.get("cores") or []
    return [
        ("checked at", str(check.get("at", "?"))),
        ("cores in use", ", ".join(str(c) for c in cores) or "?"),
        ("CPU governor", text("governor", lambda r: ", ".join(f"core {c} {g}" for c, g in r["value"].items()))),
        ("turbo/boost", text("turbo", lambda r: f"{'on' if r['value'] else 'off'} ({r.get('source', '')})")),
        ("CPU frequency", text("frequency", frequency)),
        ("load average", text("load", lambda r: " / ".join(f"{x:g}" for x in r["value"]) + " (1, 5, 15 min)")),
        ("other processes", text("processes", processes)),
    ]


# ---------------------------------------------------------------------------------------------------------
# Per visit


def cpu_mhz(cores: Sequence[int] | None = None, *, root: Path = Path("/"), psutil: Any | None = None) -> float:
    """The highest current frequency (MHz) among ``cores`` (default: those in use) now; NaN where it cannot be
    read live (see :func:`_frequency`). The highest, not the mean: it is the clock of the core doing the work
    (the sampling thread runs, so at least one core is awake), and idle cores that fall asleep or wake up
    between two samples do not move it; a clock held down for heat or power, or a turbo that ends, does."""
    reading = _frequency(Path(root), list(cores) if cores is not None else cores_in_use(), _psutil(psutil),
                         with_max=False)
    values = [v["current_mhz"] for v in (reading.get("value") or {}).values() if v.get("current_mhz")]
    return max(values) if values else math.nan


@functools.lru_cache(maxsize=1)
def _live_source() -> bool:
    """Whether this machine's frequency can be read live at all (checked once per process: /sys does not
    grow a cpufreq driver during a sweep)."""
    try:
        return math.isfinite(cpu_mhz())
    except Exception:
        return False


def current_cpu_mhz() -> float:
    """:func:`cpu_mhz` of the cores in use, on the real machine; NaN at once where it cannot be read live.
    devbench.runner calls it at each visit's start and end (a sysfs read: microseconds)."""
    if not _live_source():
        return math.nan
    try:
        return cpu_mhz()
    except Exception:
        return math.nan


def visit_clock(start_mhz: float, end_mhz: float) -> HostClock:
    """A visit's CPU clock columns: its start and end frequency and ``cpu_freq_moved`` when both are known and
    differ by more than :data:`MOVED_REL` of the start."""
    known = all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in (start_mhz, end_mhz))
    moved = known and abs(end_mhz - start_mhz) > MOVED_REL * start_mhz
    return HostClock(cpu_mhz_start=float(start_mhz), cpu_mhz_end=float(end_mhz), cpu_freq_moved=bool(moved))


# ---------------------------------------------------------------------------------------------------------
# What the reports show (report.md and report.html render these, each in its own markup)


def checks_of(meta: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(title, check) for the run's host check and each resume's and refinement's, in order."""
    out: list[tuple[str, Mapping[str, Any]]] = []
    if isinstance(meta.get("host_check"), Mapping):
        out.append(("before the sweep", meta["host_check"]))
    for key, what in (("resumed", "before the resume at"), ("refinements", "before the refinement at")):
        out.extend((f"{what} {entry.get('at', '?')}", entry["host_check"]) for entry in meta.get(key) or []
                   if isinstance(entry, Mapping) and isinstance(entry.get("host_check"), Mapping))
    return out


NO_CHECK = ("No host check recorded: the run was made before devbench checked the host's clocks, or these "
            "results came from a bare table.")


def clock_summary(results: pd.DataFrame) -> str:
    """One sentence on the per-visit CPU frequency of the ok cells: how many visits and cells moved by more than
    :data:`MOVED_REL`, or that the frequency could not be read per visit."""
    if results.empty or not {"cpu_freq_moved", "cpu_mhz_start", "cpu_mhz_end"} <= set(results.columns):
        return "No per-visit CPU frequency in these results."
    ok = results[results["status"].astype(str) == "ok"]
    read = ok["cpu_mhz_start"].notna() & ok["cpu_mhz_end"].notna()
    if not read.any():
        return ("The CPU frequency could not be read live per visit (the host check says why): the columns "
                "cpu_mhz_start and cpu_mhz_end are empty and no visit is flagged.")
    moved = ok[ok["cpu_freq_moved"].astype(bool)]
    visits = int(moved["cpu_freq_moved_visits"].sum()) if "cpu_freq_moved_visits" in moved.columns else len(moved)
    if moved.empty:
        return (f"The CPU frequency was sampled at the start and end of every visit of {int(read.sum())} cell(s); "
                f"none moved by more than {format_percent(MOVED_REL)}.")
    return (f"The CPU frequency moved by more than {format_percent(MOVED_REL)} within {visits} visit(s) of "
            f"{len(moved)} of {int(read.sum())} cell(s) (listed under Warnings): their times mix clock speeds.")


def moved_detail(r: Mapping[str, Any]) -> str:
    """A moved cell's detail line for the reports' warning lists."""
    visits = r.get("cpu_freq_moved_visits")
    n = r.get("n_rounds")
    share = f"{visits} of {n} visit(s)" if isinstance(visits, (int, float)) and visits else "a visit"
    return (f"moved in {share}; {float(r['cpu_mhz_start']):.0f} MHz at the first visit's start, "
            f"{float(r['cpu_mhz_end']):.0f} MHz at the last visit's end")
