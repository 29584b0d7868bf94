"""Energy per op, where the machine exposes an energy counter: NVML's total-energy counter on NVIDIA GPUs and
RAPL through Linux powercap on the host CPU; "not available here: why" everywhere else.

**Meters.** :class:`NvmlMeter` reads ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded,
Volta and later) and samples ``nvmlDeviceGetPowerUsage`` (mW); the module is injectable (``nvml=``, as in
devbench.telemetry), so tests pass a fake. :class:`RaplMeter` sums the package zones
``/sys/class/powercap/intel-rapl:N/energy_uj`` (AMD's RAPL appears there too on recent kernels; the subzones
``intel-rapl:N:M`` are inside their package and not added again), each unwrapped at its
``max_energy_range_uj``; the root is injectable, so tests build a fake tree. A meter knows how often its
counter moves (:attr:`Meter.update_interval_s`: RAPL about 1 ms; NVML's energy counter is taken as 100 ms,
conservatively).

**Protocol** (:meth:`EnergyProbe.measure`, called by the one ``run_cell`` right after ``timer.measure``,
never inside the timed blocks). The op runs back to back in :data:`BLOCKS` blocks, each long enough for the
counter (at least :data:`UPDATES_PER_BLOCK` updates and :data:`MIN_BLOCK_S`, the blocks together capped by
the visit's budget); the counter is read around each block. Idle power (no work, the same length) is
measured once per meter per run (in the sweep's own process, kept in meta.json ``energy`` for a resume and
the workers) and subtracted, so ``joules_per_call`` is what the op adds over an idle machine. Each block is
cut into :data:`WINDOWS` windows, synchronised at each cut, and checked: NVML's power samples at the cuts,
integrated, against the counter; for RAPL (which has no separate power reading) the power of the block's
first half against its second. A median difference over the blocks above :data:`DISAGREE_REL` is flagged
(``energy_disagrees``, and ``energy_reason`` says by how much): the median, because NVML's power reading
averages over up to a second on recent GPUs, so the first block's samples lag the work. The interval is a t
interval over the blocks of a visit, and over the rounds for a cell of three or more rounds
(devbench.visits.pooled_energy).

**Energy crossovers** (:func:`energy_crossover_frame`) reuse devbench.crossover on the joules (the cells' own
intervals stand in for the paired rounds): "the GPU costs fewer joules above n≈…", decisive only where the
intervals separate.
"""

from __future__ import annotations

import importlib
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from devbench.errors import UsageError
from devbench.frameworks import is_host
from devbench.schema import EnergyColumns

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BLOCKS",
    "DISAGREE_REL",
    "ENERGY_SETTINGS",
    "EnergyProbe",
    "Meter",
    "NvmlMeter",
    "RaplMeter",
    "energy_crossover_frame",
    "energy_crossover_rows",
    "energy_facts",
    "energy_sentence",
    "energy_table_rows",
    "interval_over",
    "nvml_meter",
    "probe_for",
    "rapl_meter",
]

ENERGY_SETTINGS = ("auto", "off")
"""``--energy``: ``auto`` measures every device that has a meter here; ``off`` measures nothing, costs nothing."""

POWERCAP = Path("/sys/class/powercap")
NVML_UPDATE_S = 0.1
"""NVML's energy counter is read as if it moved every 100 ms (drivers differ; being conservative costs only a
longer block)."""
RAPL_UPDATE_S = 0.001
BLOCKS = 3
"""Blocks per visit: the interval of a visit is a t interval over them."""
UPDATES_PER_BLOCK = 10
"""A block spans at least this many counter updates (the counter's step is then at most ~10 % of it)..."""
MIN_BLOCK_S = 0.2
"""... and at least this many seconds."""
MIN_UPDATES_PER_BLOCK = 2
"""Below this many updates a block says nothing: the visit's energy is not measured (the reason says why)."""
WINDOWS = 4
"""Windows per block, cut by a sync: NVML's power is sampled at each cut; RAPL's halves are compared."""
DISAGREE_REL = 0.2
"""Counter and check (integrated power, or the other half) further apart than this are flagged."""
CONFIDENCE = 0.95
_EPS = 1e-9
"""Slack for comparing seconds that are sums and quotients of floats (0.6 / 3 < 0.2)."""


def _unavailable(why: str) -> str:
    return f"not available here: {why}"


# ---------------------------------------------------------------------------------------------------------
# Meters


class Meter(Protocol):
    """A cumulative energy counter: ``energy_j()`` joules since the meter was opened (monotone: wrap-around
    handled), ``power_w()`` an instantaneous power reading or None where the meter has none."""

    @property
    def name(self) -> str: ...
    @property
    def update_interval_s(self) -> float: ...
    @property
    def resolution_j(self) -> float: ...

    def energy_j(self) -> float: ...

    def power_w(self) -> float | None: ...


@dataclass
class RaplMeter:
    """The host's package energy from powercap: the sum over ``zones`` (``intel-rapl:N`` directories), each
    unwrapped at its ``max_energy_range_uj``."""

    zones: list[Path]
    update_interval_s: float = RAPL_UPDATE_S
    resolution_j: float = 1e-6
    _last: list[int] = field(default_factory=list)
    _total_uj: int = 0

    @property
    def name(self) -> str:
        return "rapl:" + "+".join(_zone_name(z) for z in self.zones)

    def _raw(self) -> list[int]:
        return [int((z / "energy_uj").read_text().strip()) for z in self.zones]

    def energy_j(self) -> float:
        raw = self._raw()
        if not self._last:
            self._last = raw
        for i, (before, now) in enumerate(zip(self._last, raw, strict=True)):
            if now >= before:
                self._total_uj += now - before
            else:  # the counter wrapped at max_energy_range_uj (at most once between two reads)
                self._total_uj += now + _max_range(self.zones[i]) - before
        self._last = raw
        return self._total_uj * 1e-6

    def power_w(self) -> float | None:
        return None


def _zone_name(zone: Path) -> str:
    try:
        return (zone / "name").read_text().strip() or zone.name
    except OSError:
        return zone.name


def _max_range(zone: Path) -> int:
    return int((zone / "max_energy_range_uj").read_text().strip())


def rapl_meter(root: Path = POWERCAP) -> RaplMeter | str:
    """The host's RAPL meter under ``root``, or why there is none (the reason names the path and the problem)."""
    if not root.exists():
        return _unavailable(f"{root} does not exist (no powercap driver in this kernel, or a VM that hides "
                            "RAPL): no CPU energy counter")
    zones = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
    if not zones:
        present = ", ".join(sorted(p.name for p in root.iterdir())) or "nothing"
        return _unavailable(f"{root} has no RAPL package zone intel-rapl:N (it holds {present})")
    for zone in zones:
        for name in ("energy_uj", "max_energy_range_uj"):
            try:
                int((zone / name).read_text().strip())
            except PermissionError:
                return _unavailable(f"{zone / name} is not readable by this user (root only since Linux 5.10; "
                                    "run as root or grant read access)")
            except (OSError, ValueError) as exc:
                return _unavailable(f"{zone / name} cannot be read ({type(exc).__name__}: {exc})")
    return RaplMeter(zones)


@dataclass
class NvmlMeter:
    """One NVIDIA GPU's total-energy counter (mJ) and power reading (mW) through NVML."""

    nvml: Any
    handle: Any
    index: int
    update_interval_s: float = NVML_UPDATE_S
    resolution_j: float = 1e-3

    @property
    def name(self) -> str:
        return f"nvml:{self.index}"

    def energy_j(self) -> float:
        return float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)) * 1e-3

    def power_w(self) -> float | None:
        try:
            return float(self.nvml.nvmlDeviceGetPowerUsage(self.handle)) * 1e-3
        except Exception:  # a GPU without a power reading: the block is not checked, not lost
            return None


def nvml_meter(index: int, nvml: Any | None = None) -> NvmlMeter | str:
    """NVML GPU ``index``'s energy meter, or why there is none (``nvml``: the pynvml module, None the real one)."""
    if nvml is None:
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            return _unavailable("NVML's energy counter needs the nvidia-ml-py package "
                                "(pip install 'devbench[gpu-telemetry]')")
    try:
        nvml.nvmlInit()
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
    except Exception as exc:
        return _unavailable(f"NVML cannot open GPU {index} ({type(exc).__name__}: {exc})")
    try:
        nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception as exc:  # NVMLError_NotSupported before Volta
        return _unavailable(f"GPU {index} has no total-energy counter "
                            f"(nvmlDeviceGetTotalEnergyConsumption: {type(exc).__name__}: {exc})")
    return NvmlMeter(nvml, handle, index)


# ---------------------------------------------------------------------------------------------------------
# Intervals


def interval_over(values: Sequence[float], resolution: float = 0.0) -> tuple[float, float, float]:
    """(mean, low, high): the 95 % t interval of the mean of ``values`` (blocks, or rounds), its standard
    deviation floored at the rounding of ``resolution`` (a counter's step cannot give a zero-width interval);
    NaN bounds with fewer than two values."""
    from devbench.resampling import t_quantile

    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = math.fsum(values) / n
    if n < 2:
        return mean, math.nan, math.nan
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    var = max(var, resolution * resolution / 12.0)
    half = t_quantile(0.5 + CONFIDENCE / 2.0, n - 1.0) * math.sqrt(var / n)
    return mean, mean - half, mean + half


# ---------------------------------------------------------------------------------------------------------
# The probe


@dataclass
class _Block:
    joules_per_call: float
    check_rel: float
    """How far the check is from the counter (relative), NaN where nothing could be compared."""
    against: str = ""
    """What the counter was checked against."""


@dataclass
class EnergyProbe:
    """The meters of a run's devices, their idle power, and the measurement of a visit's energy."""

    meters: dict[str, Meter]
    """Device name -> its meter (the host's devices share one RAPL meter)."""
    unavailable: dict[str, str]
    """Device name -> why it has no meter."""
    idle_w: dict[str, float] = field(default_factory=dict)
    """Meter name -> idle power (W), measured once per run (:meth:`idle`)."""
    clock: Callable[[], float] = time.perf_counter
    sleep: Callable[[float], None] = time.sleep

    def meter_for(self, device: str) -> Meter | None:
        return self.meters.get(device)

    def reason_for(self, device: str) -> str:
        """Why ``device``'s energy is not measured ("" where it has a meter)."""
        return "" if device in self.meters else self.unavailable.get(
            device, _unavailable(f"no energy counter for {device}"))

    @staticmethod
    def block_target(meter: Meter) -> float:
        """How long a block (and each idle window) should last for ``meter``'s counter."""
        return max(MIN_BLOCK_S, UPDATES_PER_BLOCK * meter.update_interval_s)

    def idle(self, meter: Meter) -> float:
        """``meter``'s idle power (W): the counter over :data:`BLOCKS` windows of no work, each as long as a
        block; measured the first time it is asked for in the run and remembered."""
        if meter.name not in self.idle_w:
            window = self.block_target(meter)
            e0, t0 = meter.energy_j(), self.clock()
            e1 = e0
            for _ in range(BLOCKS):  # read after each window, so that a counter wraps at most once between reads
                self.sleep(window)
                e1 = meter.energy_j()
            t1 = self.clock()
            self.idle_w[meter.name] = (e1 - e0) / (t1 - t0) if t1 > t0 else math.nan
        return self.idle_w[meter.name]

    def prepare(self) -> None:
        """Measure the idle power of every meter that lacks it (once per run, before any cell)."""
        for meter in {m.name: m for m in self.meters.values()}.values():
            self.idle(meter)

    def _block(self, meter: Meter, run: Callable[[int], None], calls: int, idle_w: float) -> _Block:
        """One block of ``calls`` calls in up to :data:`WINDOWS` windows, the counter read at each cut."""
        windows = min(WINDOWS, calls)
        parts = [calls // windows + (1 if i < calls % windows else 0) for i in range(windows)]
        times, energies, powers = [self.clock()], [meter.energy_j()], [meter.power_w()]
        for part in parts:
            run(part)
            times.append(self.clock())
            energies.append(meter.energy_j())
            powers.append(meter.power_w())
        elapsed, used = times[-1] - times[0], energies[-1] - energies[0]
        per_call = (used - idle_w * elapsed) / calls
        check, against = math.nan, ""
        if all(p is not None for p in powers) and used > 0:
            samples = [float(p) for p in powers if p is not None]
            integrated = math.fsum((samples[i] + samples[i + 1]) / 2.0 * (times[i + 1] - times[i])
                                   for i in range(len(parts)))
            check = abs(integrated - used) / used
            against = "integrated power samples"
        elif len(parts) >= 2:  # RAPL: the first half's power against the second's
            mid = len(parts) // 2
            halves = [(energies[mid] - energies[0]) / (times[mid] - times[0]),
                      (energies[-1] - energies[mid]) / (times[-1] - times[mid])]
            if min(halves) > 0:
                check = abs(halves[0] - halves[1]) / (sum(halves) / 2.0)
                against = "its other half-block"
        return _Block(per_call, check, against)

    def measure(self, device: str, block: Callable[[int], Any], sync: Callable[[Any], None],
                samples: Sequence[float], budget_s: float) -> EnergyColumns:
        """The energy of one visit of a cell on ``device`` whose timed ``samples`` (per-call seconds) say how
        long a call takes (their median):
        :data:`BLOCKS` blocks of back-to-back calls (``block(k)``, then ``sync``), within ``budget_s`` seconds
        in all. The columns say why where nothing was measured."""
        meter = self.meter_for(device)
        if meter is None:
            return EnergyColumns(energy_reason=self.reason_for(device))
        per_call_s = statistics.median(samples) if samples else math.nan
        if not (math.isfinite(per_call_s) and per_call_s > 0):
            return EnergyColumns(energy_reason="not measured: the visit has no per-call time")
        shortest = MIN_UPDATES_PER_BLOCK * meter.update_interval_s
        block_s = max(min(self.block_target(meter), budget_s / BLOCKS), per_call_s)
        blocks = min(BLOCKS, int(budget_s / block_s * (1 + _EPS)))
        if block_s < shortest * (1 - _EPS) or blocks < 1:
            return EnergyColumns(energy_reason=(
                f"not measured: the visit's budget of {budget_s:.3g} s leaves no block of at least {shortest:.3g} s "
                f"({MIN_UPDATES_PER_BLOCK} updates of {meter.name}'s counter) for a call of {per_call_s:.3g} s"))
        idle_w = self.idle(meter)
        calls = max(1, round(block_s / per_call_s))

        def run(k: int) -> None:
            sync(block(k))

        measured = [self._block(meter, run, calls, idle_w) for _ in range(blocks)]
        mean, low, high = interval_over([b.joules_per_call for b in measured], meter.resolution_j / calls)
        # The median over the blocks: NVML's power reading is an average over up to a second on recent GPUs,
        # so the first block's samples lag behind the work; a real disagreement shows in every block.
        checked = [b for b in measured if math.isfinite(b.check_rel)]
        check_rel = statistics.median(b.check_rel for b in checked) if checked else math.nan
        disagrees = check_rel > DISAGREE_REL
        reason = ""
        if disagrees:
            reason = (f"{meter.name}'s counter and {checked[0].against} disagree by {check_rel:.0%} "
                      f"(over {DISAGREE_REL:.0%})")
        return EnergyColumns(joules_per_call=mean, joules_ci_low=low, joules_ci_high=high,
                             energy_check_rel=check_rel, energy_disagrees=disagrees, energy_reason=reason)

    def meta(self, setting: str) -> dict[str, Any]:
        """meta.json ``energy``: the setting, each meter (devices, update interval, idle power) and each device
        without one and why."""
        meters: dict[str, dict[str, Any]] = {}
        for device, meter in self.meters.items():
            idle = self.idle_w.get(meter.name)
            entry = meters.setdefault(meter.name, {
                "update_interval_s": meter.update_interval_s, "devices": [],
                "idle_w": idle if idle is not None and math.isfinite(idle) else None})
            entry["devices"].append(device)
        return {"setting": setting, "meters": meters, "unavailable": dict(self.unavailable)}


def check_setting(setting: str) -> str:
    if setting not in ENERGY_SETTINGS:
        raise UsageError(f"--energy {setting!r} is not one of {', '.join(ENERGY_SETTINGS)}")
    return setting


def probe_for(devices: Iterable[str], setting: str, *, idle_w: Mapping[str, float] | None = None,
              powercap: Path = POWERCAP, nvml: Any | None = None,
              nvml_index: Callable[[str], int | None] | None = None) -> EnergyProbe | None:
    """The energy probe of a run on ``devices`` (None with ``--energy off``: nothing is measured or opened).

    Host devices share the RAPL meter under ``powercap``; an NVIDIA GPU gets NVML's counter (``nvml``: the
    pynvml module, None the real one; ``nvml_index`` maps a device to its NVML index, default
    devbench.telemetry.nvml_index); any other device, and any device whose meter cannot be read, gets its
    reason. ``idle_w``: idle power already measured for this run (meta.json), by meter name.
    """
    if check_setting(setting) == "off":
        return None
    if nvml_index is None:
        from devbench.telemetry import nvml_index as index_of

        def nvml_index(device: str) -> int | None:
            return index_of(device, nvml=nvml)

    meters: dict[str, Meter] = {}
    unavailable: dict[str, str] = {}
    rapl: RaplMeter | str | None = None
    gpus: dict[int, NvmlMeter | str] = {}
    for device in dict.fromkeys(devices):
        found: Meter | str
        if is_host(device):
            rapl = rapl_meter(powercap) if rapl is None else rapl
            found = rapl
        else:
            index = nvml_index(device)
            if index is None:
                found = _unavailable(f"{device} is not an NVIDIA GPU NVML can see (energy counters: NVML on "
                                     "NVIDIA GPUs, RAPL on the host CPU)")
            else:
                found = gpus[index] if index in gpus else gpus.setdefault(index, nvml_meter(index, nvml))
        if isinstance(found, str):
            unavailable[device] = found
        else:
            meters[device] = found
    return EnergyProbe(meters, unavailable, dict(idle_w or {}))


def idle_from_meta(meta: Mapping[str, Any]) -> dict[str, float]:
    """The idle power by meter name that a run's meta.json ``energy`` holds (empty for older runs)."""
    energy = meta.get("energy")
    meters = energy.get("meters") if isinstance(energy, dict) else None
    out: dict[str, float] = {}
    for name, entry in (meters or {}).items():
        value = entry.get("idle_w") if isinstance(entry, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[str(name)] = float(value)
    return out


# ---------------------------------------------------------------------------------------------------------
# Energy crossovers


def energy_sentence(cheaper_above: str, than: str, size: float, low: float, high: float, *, decisive: bool) -> str:
    """'tf:GPU:0 costs fewer joules per call than CPU:0 above n≈724 (range 512–1024), decisive'."""
    from devbench.formatting import format_size

    text = f"{cheaper_above} costs fewer joules per call than {than} above n≈{format_size(size)}"
    if math.isfinite(low) and math.isfinite(high) and (low, high) != (size, size):
        text += f" (range {format_size(low)}–{format_size(high)})"
    return text + (", decisive" if decisive else ", within noise")


ENERGY_CROSSOVER_COLUMNS = ("op", "dtype", "mode", "device_a", "device_b", "crossover_size", "low", "high",
                            "cheaper_below", "cheaper_above", "decisive", "note")


def energy_crossover_frame(results: pd.DataFrame) -> pd.DataFrame:
    """Energy crossovers: devbench.crossover.crossover_frame run on ``joules_per_call`` with its interval
    (the cells' own intervals stand in for paired rounds; a size whose interval is missing or reaches 0 is
    left out, since a ratio needs positive joules). One row per crossing or per pair without one, with a
    note in words; empty where no cell has joules."""
    import numpy as np
    import pandas as pd

    from devbench.crossover import crossover_frame

    empty: pd.DataFrame = pd.DataFrame(columns=list(ENERGY_CROSSOVER_COLUMNS))
    if "joules_per_call" not in results.columns or results.empty:
        return empty
    j = pd.to_numeric(results["joules_per_call"], errors="coerce")
    lo = pd.to_numeric(results["joules_ci_low"], errors="coerce")
    keep = (results["status"].astype(str) == "ok") & np.isfinite(j) & (j > 0) & np.isfinite(lo) & (lo > 0)
    if not keep.any():
        return empty
    ident = ["run_id", "op", "size", "dtype", "device", "mode", "sync", "status"]
    frame = results.loc[keep, [c for c in ident if c in results.columns]].copy()
    frame["median_s"] = j[keep]
    frame["ci_low_s"] = lo[keep]
    frame["ci_high_s"] = pd.to_numeric(results.loc[keep, "joules_ci_high"], errors="coerce")
    crossings: pd.DataFrame = crossover_frame(frame)
    rows = []
    for r in crossings.to_dict("records"):
        size = float(r["crossover_size"])
        if math.isfinite(size):
            note = energy_sentence(str(r["faster_above"]), str(r["faster_below"]), size, float(r["low"]),
                                   float(r["high"]), decisive=bool(r["decisive"]))
        else:
            note = str(r["note"]).replace(" is faster throughout", " costs fewer joules throughout")
        rows.append({"op": r["op"], "dtype": r["dtype"], "mode": r["mode"], "device_a": r["device_a"],
                     "device_b": r["device_b"], "crossover_size": size, "low": r["low"], "high": r["high"],
                     "cheaper_below": r["faster_below"], "cheaper_above": r["faster_above"],
                     "decisive": bool(r["decisive"]), "note": note})
    out: pd.DataFrame = pd.DataFrame(rows, columns=list(ENERGY_CROSSOVER_COLUMNS))
    return out


# ---------------------------------------------------------------------------------------------------------
# What report.md and report.html show (one set of rules for both)

ENERGY_EXPLANATION = (
    "Joules per call: the energy counter (NVML on NVIDIA GPUs, RAPL on the CPU package) read around blocks of "
    "back-to-back calls run after the timed ones, the idle power of the same meter subtracted, so it is what a "
    "call adds over an idle machine; the interval is over the blocks of a visit, or over the rounds from three "
    "on. A RAPL figure is the whole package's: other processes on the host add to it. An energy crossing is "
    "decisive only where the two devices' intervals separate on both sides of it.")
ENERGY_HEADERS = ("op", "dtype", "mode", "device", "n", "joules per call", "95 % interval", "check")
ENERGY_CROSSOVER_HEADERS = ("op", "dtype", "mode", "devices", "energy crossover")


def energy_facts(meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, text) pairs saying what was measured with which meter, and why not elsewhere (meta.json
    ``energy``): each reason once, with the devices it applies to."""
    info = meta.get("energy")
    if not isinstance(info, dict):
        return [("energy", "not measured: a run from before devbench measured energy")]
    if info.get("setting") == "off":
        return [("energy", "not measured (--energy off)")]
    facts: list[tuple[str, str]] = []
    for name, entry in (info.get("meters") or {}).items():
        if not isinstance(entry, dict):
            continue
        idle = entry.get("idle_w")
        idle_text = f"idle {idle:.3g} W subtracted" if isinstance(idle, (int, float)) else "idle power unknown"
        facts.append((f"energy meter {name}", f"{', '.join(map(str, entry.get('devices') or []))}: {idle_text}, "
                      f"counter taken to update every {entry.get('update_interval_s')} s"))
    by_reason: dict[str, list[str]] = {}
    for device, reason in (info.get("unavailable") or {}).items():
        by_reason.setdefault(str(reason), []).append(str(device))
    facts.extend((f"energy on {', '.join(devices)}", reason) for reason, devices in by_reason.items())
    if info.get("reason"):
        facts.append(("energy", str(info["reason"])))
    return facts


def energy_table_rows(results: pd.DataFrame) -> list[list[str]]:
    """One row per ok cell with joules (:data:`ENERGY_HEADERS`); a disagreeing check is marked."""
    from devbench.formatting import MISSING, format_joules, format_percent

    if "joules_per_call" not in results.columns:
        return []
    rows = []
    measured = results[(results["status"].astype(str) == "ok") & results["joules_per_call"].notna()]
    for r in measured.sort_values(["op", "dtype", "mode", "device", "size"]).to_dict("records"):
        low, high = float(r["joules_ci_low"]), float(r["joules_ci_high"])
        interval = f"{format_joules(low)} – {format_joules(high)}" if math.isfinite(low) else MISSING
        check = format_percent(float(r["energy_check_rel"])) + (" disagrees" if r["energy_disagrees"] else "")
        rows.append([str(r["op"]), str(r["dtype"]), str(r["mode"]), str(r["device"]), str(r["size"]),
                     format_joules(float(r["joules_per_call"])), interval, check])
    return rows


def energy_crossover_rows(results: pd.DataFrame) -> list[list[str]]:
    """One row per energy crossing or pair (:data:`ENERGY_CROSSOVER_HEADERS`), its sentence as the last cell."""
    frame = energy_crossover_frame(results)
    return [[str(r["op"]), str(r["dtype"]), str(r["mode"]), f"{r['device_a']} vs {r['device_b']}", str(r["note"])]
            for r in frame.to_dict("records")]
