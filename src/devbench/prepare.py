"""One preparation of the machine before a run's visits: :func:`prepare_machine`, the same for a new sweep, a
``--resume``, a worker process of ``--processes`` and ``devbench refine``.

Why one. A sweep, its resume, its workers and a refine of it all add visits to one run, and its cells are
only comparable if every process that measured them was set up alike. Each used to prepare itself: the sweep
inline, the workers by a partial copy, and refine not at all (no device initialisation, no TF32, no time
guard, no cell budget), the same drift devbench.session ended for the writing side. Now each calls
:func:`prepare_machine` and measures through the :class:`Prepared` it returns. In order, and why:

1. **Framework start-up and device initialisation** (devbench.backends.initialise): each device's first op,
   timed before anything else touches it, so that no cell's ``cold_s`` pays it (``meta.json["init"]``).
2. **TF32** as the run says (``--tf32``, then the run's ``tf32_setting``; devbench.tf32), before the first
   measured op: TensorFlow reads its flag when it builds a kernel. Then each of the user's ops (op files,
   packages: devbench.userops) is checked against its numpy reference on each framework's host device, so
   that a wrong op is one error line before anything is measured, not a column of ``wrong`` rows.
3. **Discovery and fingerprint**: the run's devices must exist here (a UsageError otherwise, not a column of
   error rows), and the fingerprint lists the devices of every framework the run uses.
   With them, the **host check** (devbench.hostcheck: governor, turbo, CPU frequency, load, other busy
   processes, measured over a window that spans steps 1-3): ``meta.json["host_check"]``, its warnings printed
   by the caller; a worker skips it with the fingerprint (its parent checked the host).
4. **Guards**: the memory guard (free memory, asked as each cell comes), then the time guard
   (``--max-call-time``; made before anything is imported by :func:`time_guard_for`, because the plan line
   and the progress estimate use it, and taught the run's log).
5. **The per-visit timing policy and the cell budget**: :meth:`Prepared.measure` is the one call that makes
   visits (devbench.runner.run_visits) with them and the run's seed.
6. **Energy meters** (``--energy``; devbench.energy): each device's counter, and the idle power of each,
   measured once per run by the sweep's own process (a resume and the workers read it from meta.json).

A run's settings (spec, ``--max-call-time``, ``--tf32``, ``--energy``) come from the command line once, and from
meta.json ever after (:class:`RunSettings`), so a resume, a worker and a refine read the same values the same way; the
user's ops a run measures are loaded again from the sources it recorded (``user_ops``: op files by path and
sha256, packages by version) before its spec is read (:func:`devbench.userops.load_recorded`).
Calibration is not here: it is measured once per run by the sweep's own process (devbench.sweep.run_plan) and
kept in meta.json, where a resume and a refine find it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devbench.backends.base import Backend
from devbench.energy import EnergyProbe, check_setting, idle_from_meta, probe_for
from devbench.errors import UsageError, choose
from devbench.guards import DEFAULT_MAX_CALL_TIME, Guard, MemoryGuard, TimeGuard, combine
from devbench.hostcheck import HostProbe
from devbench.runner import CellResult, run_visits
from devbench.schema import VisitRecord
from devbench.spec import DTYPES, MODES, SYNC_MODES, Cell, SweepSpec, TimingPolicy, Visit
from devbench.store import META
from devbench.tf32 import SETTINGS as TF32_SETTINGS
from devbench.tf32 import apply_tf32, frameworks_of

__all__ = ["Prepared", "RunSettings", "machine_changes", "prepare_machine", "spec_from_meta", "time_guard_for"]


def time_guard_for(spec: SweepSpec, max_call_time: float) -> TimeGuard:
    """The time guard of a run: it predicts single calls against ``max_call_time``, and estimates a visit
    with the run's per-visit policy (for the plan line and the progress ETA)."""
    return TimeGuard(max_call_time, spec.policy.per_visit(spec.rounds))


# ---------------------------------------------------------------------------------------------------------
# A run's settings, read back from its meta.json


def spec_from_meta(meta: Mapping[str, Any], run_dir: Path, *, cannot: str = "the run cannot be resumed"
                   ) -> SweepSpec:
    """The sweep spec stored in a run's meta.json, validated like the command line validates it."""
    from devbench.devices import canonical
    from devbench.ops import op_named
    from devbench.userops import load_recorded

    where = f"{str(run_dir / META)!r}"
    raw = meta.get("spec")
    load_recorded(meta.get("user_ops"), where, cannot)  # the run's own ops (op files, packages), before its spec
    try:
        if not isinstance(raw, dict):
            raise TypeError(f"'spec' is {type(raw).__name__}, not an object")
        spec = SweepSpec.from_dict(raw)
        for op in spec.ops:
            op_named(op)
        for dtype in spec.dtypes:
            choose("dtype", dtype, DTYPES)
        for mode in spec.modes:
            choose("mode", mode, MODES)
        choose("sync mode", spec.sync, SYNC_MODES)
        for device in spec.devices:
            canonical(device)
        if not (spec.ops and spec.sizes and spec.dtypes and spec.devices and spec.modes):
            raise ValueError("an empty list of ops, sizes, dtypes, devices or modes")
        sizes = [size for op in spec.ops for size in spec.sizes_of(op)]
        if not all(sizes for _, sizes in spec.sizes_by_op) or any(size < 1 for size in sizes):
            raise ValueError(f"sizes must be positive, found {min(sizes, default=0)}")
        spec.policy.validate()
    except (UsageError, KeyError, TypeError, ValueError, AttributeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"{where} holds no valid sweep spec ({detail}); {cannot}") from None
    return spec


@dataclass(frozen=True)
class RunSettings:
    """What the preparation of a run's machine depends on: its spec, ``--max-call-time``, ``--tf32`` and
    ``--energy``.

    Given on the command line for a new run and stored in meta.json (``spec``, ``guards.max_call_time``,
    ``tf32_setting``, ``energy``); a resume, a worker and a refine read them back with :meth:`from_meta`."""

    spec: SweepSpec
    max_call_time: float = DEFAULT_MAX_CALL_TIME
    tf32: str = "default"
    energy: str = "auto"
    """``--energy`` (devbench.energy): ``auto`` measures where a meter exists, ``off`` nothing."""
    idle_w: Mapping[str, float] = field(default_factory=dict)
    """Idle power by meter, already measured for this run (meta.json ``energy``); empty for a new run."""

    def __post_init__(self) -> None:
        if self.tf32 not in TF32_SETTINGS:
            raise UsageError(f"--tf32 {self.tf32!r} is not one of {', '.join(TF32_SETTINGS)}")
        check_setting(self.energy)

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], run_dir: Path, *, cannot: str = "the run cannot be resumed"
                  ) -> RunSettings:
        """The settings a run was made with. Runs from before a setting was recorded get its default (a run
        without ``tf32_setting`` left each framework's own); a value that is there but invalid is a UsageError
        naming the file, the value and ``cannot`` (what it stops)."""
        where = f"{str(run_dir / META)!r}"
        spec = spec_from_meta(meta, run_dir, cannot=cannot)
        guards = meta.get("guards")
        value = guards.get("max_call_time", DEFAULT_MAX_CALL_TIME) if isinstance(guards, dict) else (
            DEFAULT_MAX_CALL_TIME)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            raise UsageError(f"{where}: guards.max_call_time {value!r} is not positive seconds; {cannot}")
        tf32 = meta.get("tf32_setting") or "default"
        if tf32 not in TF32_SETTINGS:
            raise UsageError(f"{where}: tf32_setting {tf32!r} is not one of {', '.join(TF32_SETTINGS)}; {cannot}")
        energy = meta.get("energy")
        setting = energy.get("setting") if isinstance(energy, dict) else "off"  # older runs measured none
        if setting not in ("auto", "off"):
            raise UsageError(f"{where}: energy.setting {setting!r} is not one of auto, off; {cannot}")
        return cls(spec=spec, max_call_time=float(value), tf32=str(tf32), energy=str(setting),
                   idle_w=idle_from_meta(meta))

    def time_guard(self) -> TimeGuard:
        return time_guard_for(self.spec, self.max_call_time)


def machine_changes(before: Mapping[str, Any], now: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{what: [before, now]}`` for every fingerprint item that makes cells measured before and after (a
    resume, a refine) incomparable (:data:`devbench.machine.INCOMPARABLE_FIELDS`)."""
    from devbench.machine import incomparable_changes

    return {d.field: [d.base, d.new] for d in incomparable_changes(before, now)}


# ---------------------------------------------------------------------------------------------------------
# The prepared machine


@dataclass
class Prepared:
    """A machine made ready for a run's visits by :func:`prepare_machine`."""

    spec: SweepSpec
    backend: Backend
    """The backend every visit runs on (each device's framework, or a test's fake)."""
    tf32_setting: str
    tf32: dict[str, dict[str, Any]]
    """What :func:`devbench.tf32.apply_tf32` did to each framework of the run's devices."""
    memory_guard: Guard
    time_guard: TimeGuard
    init: dict[str, Any] | None = None
    """Each device's initialisation (devbench.backends.initialise); None with an injected backend."""
    machine: dict[str, Any] | None = None
    """The machine fingerprint; None where it was not asked for (a worker: its parent's is the run's)."""
    gpu: dict[str, Any] | None = None
    """The GPUs as NVML sees them (devbench.telemetry.gpu_fingerprint), with the fingerprint."""
    host_check: dict[str, Any] | None = None
    """The host's clocks, load and busy processes (devbench.hostcheck), with the fingerprint."""
    energy: EnergyProbe | None = None
    """The energy meters and their idle power (devbench.energy); None with ``--energy off`` or a test's backend."""
    energy_meta: dict[str, Any] = field(default_factory=dict)
    """meta.json ``energy``: the setting, the meters, and why each device without one has none."""

    def host_warnings(self) -> list[str]:
        """One line per problem the host check found (none without a check)."""
        return list((self.host_check or {}).get("warnings") or [])

    @property
    def guard(self) -> Guard:
        """The guards in order: the memory guard objects first, then the time guard."""
        return combine(self.memory_guard, self.time_guard)

    @property
    def learners(self) -> list[Callable[[VisitRecord], None]]:
        """What learns from each finished visit (a session's ``learners``): the time guard, and the memory
        guard where it learns (a test's plain function does not)."""
        learners: list[Callable[[VisitRecord], None]] = [self.time_guard.observe]
        observe = getattr(self.memory_guard, "observe", None)
        if callable(observe):
            learners.append(observe)
        return learners

    def learn(self, records: Sequence[VisitRecord]) -> None:
        """Teach the guards the visits already in the run's log (a resume, a worker, a refine)."""
        learners = self.learners
        for record in records:
            for learn in learners:
                learn(record)

    @property
    def policy(self) -> TimingPolicy:
        """The policy of one visit: the run's, its budget shared by its ``rounds`` visits."""
        return self.spec.policy.per_visit(self.spec.rounds)

    @property
    def cell_budget(self) -> float | None:
        """A cell's whole budget, against which a first visit too slow to repeat is judged (None with one round:
        there is nothing to repeat)."""
        return self.spec.policy.max_cell_time if self.spec.rounds > 1 else None

    def meta_fields(self) -> dict[str, Any]:
        """The preparation's part of a new run's meta.json (what a resume, worker and refine read back)."""
        from devbench.cache import cache_meta
        from devbench.userops import records_for

        fields = {"guards": {"max_call_time": self.time_guard.max_call_time}, "tf32_setting": self.tf32_setting,
                  "tf32": self.tf32, "gpu": self.gpu, "init": self.init, "energy": self.energy_meta,
                  **({"host_check": self.host_check} if self.host_check is not None else {}),
                  **cache_meta(self.spec.ops)}
        user_ops = records_for(self.spec.ops)  # where the run's own ops came from, loaded again by spec_from_meta
        return {**fields, "user_ops": user_ops} if user_ops else fields

    def measure(self, visits: Sequence[Visit], run_id: str, *, on_result: Callable[[CellResult], None],
                on_start: Callable[[Cell], None] | None = None, done: Collection[tuple[Any, ...]] = (),
                settled: Collection[tuple[Any, ...]] = (), new_process: bool = False) -> list[CellResult]:
        """Make ``visits`` (those not ``done``, of cells not ``settled``) under the guards, the per-visit policy,
        the cell budget and the run's seed: the one call that makes visits, in the sweep's process, a worker
        (``new_process``) and a refine alike."""
        return run_visits(visits, self.backend, run_id, self.policy, self.spec.seed, on_result=on_result,
                          on_start=on_start, done=done, settled=settled, guard=self.guard,
                          cell_budget=self.cell_budget, new_process=new_process, energy=self.energy)


def prepare_machine(settings: RunSettings, *, time_guard: TimeGuard | None = None, backend: Backend | None = None,
                    memory_guard: Guard | None = None, fingerprint: bool = True,
                    host_probe: Callable[[], HostProbe] = HostProbe, energy: EnergyProbe | None = None
                    ) -> Prepared:
    """Prepare this process to measure the run ``settings`` describe, in the order of the module docstring.

    ``time_guard``: the run's (:func:`time_guard_for` of the settings; a plan passes the one its estimate
    uses), else a new one. ``backend``: None for the real ones (each device's framework is started and its
    devices initialised here); a test's fake is used as it is, with nothing initialised and a host-only
    fingerprint. ``memory_guard``: default :class:`devbench.guards.MemoryGuard`. ``fingerprint``: discover
    the devices, check the run's are here (UsageError) and fingerprint the machine; a worker process asks
    for False (its parent has done it for the run), so it does steps 1, 2, 4, 5 and 6 only. ``host_probe``
    starts the host check (a test passes one over a fake /sys and psutil). ``energy``: the
    probe to use (a test's fake meters); None opens the real meters, except with a test's backend, whose fake
    ``run_cell`` measures no energy.
    """
    spec = settings.spec
    probe = host_probe() if fingerprint else None  # its window spans the device initialisation
    init: dict[str, Any] | None = None
    if backend is None:
        from devbench.backends import default_backend, initialise

        backend = default_backend()
        init = initialise(spec.devices, backend)  # 1. before anything else touches a device
    tf32 = apply_tf32(settings.tf32, frameworks_of(spec.devices))  # 2. before the first measured op
    from devbench.userops import check_against_numpy

    # 2b. users' ops against their numpy references, on each framework's host device: a wrong op stops here
    check_against_numpy(spec, backend)
    machine: dict[str, Any] | None = None
    gpu: dict[str, Any] | None = None
    if fingerprint:  # 3.
        from devbench import telemetry
        from devbench.machine import fingerprint as machine_fingerprint

        if init is not None:
            from devbench.devices import discover, discover_frameworks, resolve, tensorflow_fingerprint

            infos = discover()
            resolve(",".join(spec.devices), [d.name for d in infos])  # a device that is not here: UsageError
            # The fingerprint lists the devices of every framework the run uses (a jax:gpu:0 run names its GPU).
            used = discover_frameworks(frameworks_of(spec.devices)).devices
            machine = machine_fingerprint(tensorflow_fingerprint(), [d.as_dict() for d in used or infos])
        else:
            machine = machine_fingerprint()
        gpu = telemetry.gpu_fingerprint()
    host_check = probe.finish() if probe is not None else None
    if time_guard is None:  # 4.
        time_guard = settings.time_guard()
    elif time_guard.max_call_time != settings.max_call_time:
        raise ValueError(f"the time guard's max_call_time {time_guard.max_call_time!r} is not the run's "
                         f"{settings.max_call_time!r}")
    if energy is None and init is not None:  # 6.
        energy = probe_for(spec.devices, settings.energy, idle_w=settings.idle_w)
    if energy is not None:
        energy.prepare()  # idle power, once per run: a resume and the workers find it in settings.idle_w
        energy_meta = energy.meta(settings.energy)
    else:
        energy_meta = {"setting": settings.energy, "meters": {}, "unavailable": {}}
        if settings.energy != "off":
            energy_meta["reason"] = "not measured: a backend given by the caller (a test's) measures no energy"
    return Prepared(spec=spec, backend=backend, tf32_setting=settings.tf32, tf32=tf32,
                    memory_guard=memory_guard if memory_guard is not None else MemoryGuard(),
                    time_guard=time_guard, init=init, machine=machine, gpu=gpu, host_check=host_check, energy=energy,
                    energy_meta=energy_meta)
