"""The prepared real-GPU check: devbench's GPU path (sync, placement, first-call init, crossovers, peak,
telemetry) measured on a machine with one NVIDIA GPU, PyTorch and JAX, and judged line by line.

Run it as ``bench/gpu_check.sh [--cpu-only]`` (plain checkout, ``PYTHONPATH=src``, no network, no TensorFlow
needed). It sweeps ``torch:cpu, torch:cuda:0, jax:cpu:0, jax:gpu:0`` over matmul, add and conv2d at 64..8192
in float32 and bfloat16, then prints one line per check: ``PASS`` / ``FAIL`` / ``not run`` and the figure.
``--cpu-only`` runs the same sweep and checks on the CPU devices that are importable (torch:cpu, jax:cpu:0;
with neither, TensorFlow's CPU:0 and the numpy baseline), and the GPU lines say ``not run``.

Time budget (one H200, 16 cores), about 4 minutes for the sweep and under 6 in all:

- imports and CUDA/XLA start-up of both frameworks in the sweep process: ~20 s;
- calibration (peak GEMM rate per device and dtype, copy bandwidth): ~30-60 s;
- 4 devices × 3 ops × 8 sizes × 2 dtypes = 192 cells, each ``--max-cell-time 0.6`` s of warm-up and samples
  shared by its ``--rounds 3`` visits (3 rounds: the fewest that give each cell an interval), plus its cold
  call and checks: at most ~150 s. ``--max-call-time 0.25`` s skips the CPU cells whose single call would
  take longer (predicted from the smaller sizes): the CPU/GPU crossovers lie far below those sizes.
- the sweep is stopped (its measured cells kept) at :data:`SWEEP_TIMEOUT_S`; the ``--sync none`` sweep of one
  cell per GPU, the CUDA-event measurement and the crossover table take ~40 s more.

Exit status: 0 every check that ran passed; 1 a check failed; 2 the sweep could not run (the line says why);
3 no GPU (without ``--cpu-only``: nothing was run).

Everything lands in ``$OUT`` if set, else in ``results/gpu-check-<UTC time>/``: ``run/`` (the sweep's run
directory, with its report.md and plots), ``nosync/`` (the ``--sync none`` run), ``checks.txt`` (the lines),
``checks.json`` and ``gpu_check.log`` (everything printed, with the sweeps' own output).

The checks are pure functions of a results table, a meta dict, a crossover table and figures measured here,
so that ``tests/test_gpu_check.py`` tests them on synthetic results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import pandas as pd

PASS, FAIL, NOT_RUN = "PASS", "FAIL", "not run"

GPU_DEVICES = ("torch:cuda:0", "jax:gpu:0")
CPU_DEVICES = ("torch:cpu", "jax:cpu:0")
FALLBACK_CPU_DEVICES = ("CPU:0", "numpy:CPU")
"""With neither PyTorch nor JAX importable: TensorFlow's CPU and the numpy baseline (if TF is there)."""
CPU_OF = {"torch:cuda:0": "torch:cpu", "jax:gpu:0": "jax:cpu:0"}
"""Each GPU's CPU of the same framework: the pair whose crossover answers "is the GPU worth it"."""

OPS = ("matmul", "add", "conv2d")
SIZES = "64..8192"
DTYPES = ("float32", "bfloat16")
ROUNDS = 3
MAX_CELL_TIME_S = 0.6
MAX_CALL_TIME_S = 0.25
SWEEP_TIMEOUT_S = 270.0
"""The main sweep is asked to stop (SIGTERM: it saves what it measured) after this many seconds."""
SMALL_SWEEP_TIMEOUT_S = 90.0

SYNC_NEEDED_RATIO = 5.0
"""The synchronised per-call time of a large GPU matmul must be at least this many times the unsynchronised
one for "sync is needed" to pass: without sync a call returns once the kernel is queued (microseconds), while
an 8192² matmul takes milliseconds."""
EVENTS_TOLERANCE = 0.10
"""devbench's synchronised per-call time and the CUDA-event time may differ by this fraction of the latter."""
INIT_RATIO = 10.0
"""The first call on a GPU (context creation, kernel loading) must take at least this many times a warm call."""
EVENT_SIZES = (4096, 8192)
"""The "large GPU matmuls" the CUDA-event check measures (those the sweep measured, at each dtype)."""
MAX_PCT_OF_PEAK = 110.0
"""Above this the calibrated peak is too low to trust (a little over 100 % is timing noise of the probe)."""
TELEMETRY_FIELDS = ("sm_clock_mhz", "mem_clock_mhz", "temperature_c", "power_w", "throttle_reasons")


@dataclass(frozen=True)
class Check:
    """One printed line: ``verdict`` (PASS / FAIL / not run), what was checked, and the figure behind it."""

    name: str
    verdict: str
    figure: str

    def line(self) -> str:
        return f"{self.verdict:<7} {self.name}: {self.figure}"


def _not_run(name: str, why: str) -> Check:
    return Check(name, NOT_RUN, why)


def _fmt_s(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "nan"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _ok(results: pd.DataFrame) -> pd.DataFrame:
    ok: pd.DataFrame = results[results["status"] == "ok"]
    return ok


def _largest_ok(results: pd.DataFrame, device: str, op: str, dtype: str) -> pd.Series[Any] | None:
    """The ok row of the largest size of (device, op, dtype), or None."""
    rows = _ok(results)
    rows = rows[(rows["device"] == device) & (rows["op"] == op) & (rows["dtype"] == dtype)]
    if rows.empty:
        return None
    row: pd.Series[Any] = rows.sort_values("size").iloc[-1]
    return row


# ---------------------------------------------------------------------------------------------------------
# The checks (pure)


def check_sync_needed(synced: pd.DataFrame, unsynced: pd.DataFrame, gpus: Sequence[str]) -> Check:
    """Per GPU: the synchronised (``synced``, the main run) over the unsynchronised (``unsynced``, sync none)
    median per-call time of float32 matmul at the largest size both measured; PASS when every ratio is at
    least :data:`SYNC_NEEDED_RATIO`."""
    name = "sync is needed (sync none vs scalar, large GPU matmul)"
    if not gpus:
        return _not_run(name, "no GPU")
    parts, passed = [], True
    for device in gpus:
        a = _ok(synced)
        b = _ok(unsynced)
        a = a[(a["device"] == device) & (a["op"] == "matmul") & (a["dtype"] == "float32") & (a["sync"] != "none")]
        b = b[(b["device"] == device) & (b["op"] == "matmul") & (b["dtype"] == "float32") & (b["sync"] == "none")]
        shared = sorted(set(a["size"]) & set(b["size"]))
        if not shared:
            parts.append(f"{device}: no size measured both ways")
            passed = False
            continue
        n = shared[-1]
        t_sync = float(a[a["size"] == n]["median_s"].iloc[0])
        t_none = float(b[b["size"] == n]["median_s"].iloc[0])
        ratio = t_sync / t_none if t_none > 0 else math.inf
        passed = passed and ratio >= SYNC_NEEDED_RATIO
        parts.append(f"{device} n={n}: synced {_fmt_s(t_sync)} / unsynced {_fmt_s(t_none)} = {ratio:.3g}x")
    return Check(name, PASS if passed else FAIL, "; ".join(parts) + f" (need >= {SYNC_NEEDED_RATIO:g}x)")


def check_events_agree(results: pd.DataFrame, events: Mapping[tuple[int, str], float],
                       device: str = "torch:cuda:0") -> Check:
    """devbench's median per-call time of ``device`` matmul against ``events`` ((size, dtype) -> seconds per
    call from CUDA events); PASS when every pair differs by at most :data:`EVENTS_TOLERANCE` of the event
    time. Sizes devbench did not measure ok count as FAIL (nothing to compare is not agreement)."""
    name = f"devbench vs CUDA events ({device} matmul)"
    if not events:
        return _not_run(name, "no CUDA-event measurement")
    ok = _ok(results)
    ok = ok[(ok["device"] == device) & (ok["op"] == "matmul")]
    parts, passed = [], True
    for (size, dtype), t_events in sorted(events.items()):
        row = ok[(ok["size"] == size) & (ok["dtype"] == dtype)]
        if row.empty:
            parts.append(f"n={size} {dtype}: devbench has no ok cell")
            passed = False
            continue
        t_devbench = float(row["median_s"].iloc[0])
        diff = abs(t_devbench - t_events) / t_events
        passed = passed and diff <= EVENTS_TOLERANCE
        parts.append(f"n={size} {dtype}: devbench {_fmt_s(t_devbench)}, events {_fmt_s(t_events)} ({diff:.1%} apart)")
    return Check(name, PASS if passed else FAIL, "; ".join(parts) + f" (allowed ±{EVENTS_TOLERANCE:.0%})")


def is_gpu_placement(placed: str) -> bool:
    """Whether a row's ``placed_device`` (``cuda:0``, ``gpu:0``, ``CudaDevice(id=0)``, TF's ``.../GPU:0``) names
    a GPU."""
    text = placed.lower()
    return bool(text) and ("cuda" in text or "gpu" in text) and "cpu" not in text


def check_placement(results: pd.DataFrame, gpus: Sequence[str]) -> Check:
    """Every measured cell of every GPU device ran on a GPU: each ok row's ``placed_device`` names a GPU, no row
    is ``fallback``, and each GPU device has at least one ok row."""
    name = "every GPU cell ran on the GPU (placed_device)"
    if not gpus:
        return _not_run(name, "no GPU")
    parts, passed = [], True
    for device in gpus:
        rows = results[results["device"] == device]
        ok = rows[rows["status"] == "ok"]
        off = ok[~ok["placed_device"].astype(str).map(is_gpu_placement)]
        fallback = rows[rows["status"] == "fallback"]
        if ok.empty:
            parts.append(f"{device}: no ok cell")
            passed = False
        elif not off.empty or not fallback.empty:
            bad = off if not off.empty else fallback
            first = bad.iloc[0]
            parts.append(f"{device}: {len(off) + len(fallback)} of {len(rows)} cells off the GPU, e.g. "
                         f"{first['op']} n={first['size']} on {first['placed_device'] or '?'}")
            passed = False
        else:
            places = ", ".join(sorted(set(ok["placed_device"].astype(str))))
            parts.append(f"{device}: {len(ok)}/{len(ok)} ok cells on {places}")
    return Check(name, PASS if passed else FAIL, "; ".join(parts))


def check_init(results: pd.DataFrame, meta: Mapping[str, Any], gpus: Sequence[str]) -> Check:
    """The first call on each GPU is far slower than warm calls: ``meta["init_s"][device]`` (seconds of the
    device's first call, where the run records it) or else the ``cold_s`` of the device's smallest ok cell,
    over that smallest cell's warm median; PASS when every ratio is at least :data:`INIT_RATIO`."""
    name = "first call on each GPU (init) far slower than warm"
    if not gpus:
        return _not_run(name, "no GPU")
    init_by_device = meta.get("init_s") if isinstance(meta.get("init_s"), Mapping) else {}
    parts, passed = [], True
    for device in gpus:
        ok = _ok(results)
        ok = ok[ok["device"] == device].sort_values(["size", "op", "dtype"])
        if ok.empty:
            parts.append(f"{device}: no ok cell")
            passed = False
            continue
        first = ok.iloc[0]
        warm = float(first["median_s"])
        recorded = init_by_device.get(device) if init_by_device else None
        init, source = ((float(recorded), "meta init_s") if isinstance(recorded, (int, float))
                        else (float(first["cold_s"]), f"cold_s of {first['op']} n={first['size']}"))
        ratio = init / warm if warm > 0 and math.isfinite(init) else math.nan
        passed = passed and ratio >= INIT_RATIO
        parts.append(f"{device}: {_fmt_s(init)} ({source}) vs warm {_fmt_s(warm)} = {ratio:.3g}x")
    return Check(name, PASS if passed else FAIL, "; ".join(parts) + f" (need >= {INIT_RATIO:g}x)")


def _crossover_figure(row: Mapping[str, Any], overtaker: str) -> tuple[str, bool]:
    """(text, usable) for one crossover row of a pair where ``overtaker`` is the device expected to win above."""
    def number(key: str) -> float:
        value = row.get(key)
        return float(value) if isinstance(value, (int, float)) else math.nan

    size, low, high = number("crossover_size"), number("low"), number("high")
    if math.isfinite(size):
        span = f" [{low:.0f}, {high:.0f}]" if math.isfinite(low) and math.isfinite(high) else ""
        who = "overtakes" if row.get("faster_above") == overtaker else "falls behind"
        flag = " uncertain" if row.get("uncertain") else ""
        return f"{overtaker} {who} at n≈{size:.0f}{span}{flag}", True
    faster = row.get("faster_above") or row.get("faster_below")
    if faster:
        return f"{faster} faster throughout", True
    return str(row.get("note") or "too few ok cells"), False


def check_crossovers(crossovers: pd.DataFrame, results: pd.DataFrame, pairs: Sequence[tuple[str, str]],
                     name: str) -> list[Check]:
    """One line per op: for each (slower-at-small-n, expected overtaker) pair of ``pairs`` and each dtype,
    where the second device overtakes the first, with the range from the rounds' intervals (``low``/``high``
    of ``devbench crossover --format json``). PASS when every pair and dtype has an answer (a crossover, or one
    device faster throughout); FAIL when a pair has too few ok cells to say. A dtype that one device of the pair
    does not support for the op (no ok row, some ``unsupported``; the others skipped by a guard) is named, not
    failed."""
    if not pairs:
        return [_not_run(name, "no GPU")]
    unsupported = {
        (str(op), str(device), str(dtype)) for (op, device, dtype), rows in results.groupby(["op", "device", "dtype"])
        if not (rows["status"] == "ok").any() and (rows["status"] == "unsupported").any()
    }
    checks = []
    for op in sorted(set(crossovers["op"])) if not crossovers.empty else []:
        parts, passed = [], True
        for a, b in pairs:
            rows = crossovers[(crossovers["op"] == op)
                              & (((crossovers["device_a"] == a) & (crossovers["device_b"] == b))
                                 | ((crossovers["device_a"] == b) & (crossovers["device_b"] == a)))]
            for dtype, group in rows.groupby("dtype", sort=True):
                lacking = [d for d in (a, b) if (op, d, str(dtype)) in unsupported]
                if lacking:
                    parts.append(f"{b} vs {a} {dtype}: {', '.join(lacking)} unsupported")
                    continue
                texts = []
                for row in group.to_dict(orient="records"):
                    text, usable = _crossover_figure(row, b)
                    texts.append(text)
                    passed = passed and usable
                parts.append(f"{b} vs {a} {dtype}: " + "; ".join(texts))
        if parts:
            checks.append(Check(f"{name} ({op})", PASS if passed else FAIL, " | ".join(parts)))
    return checks or [Check(name, FAIL, "no crossover rows for these pairs")]


def check_pct_of_peak(results: pd.DataFrame, gpus: Sequence[str]) -> list[Check]:
    """Per GPU and dtype, the largest ok matmul's ``pct_of_peak``: PASS when in (0, :data:`MAX_PCT_OF_PEAK`];
    ``not run`` with "no calibration" when the run has no calibration for it (NaN)."""
    name = "GPU matmul % of calibrated peak"
    if not gpus:
        return [_not_run(name, "no GPU")]
    checks = []
    for device in gpus:
        for dtype in sorted(set(results[results["device"] == device]["dtype"])):
            row = _largest_ok(results, device, "matmul", dtype)
            label = f"{name} ({device} {dtype})"
            if row is None:
                checks.append(Check(label, FAIL, "no ok matmul cell"))
                continue
            pct = float(row["pct_of_peak"])
            if not math.isfinite(pct):
                checks.append(_not_run(label, f"no calibration (n={row['size']}: {row['gflops']:.4g} GFLOP/s)"))
                continue
            verdict = PASS if 0 < pct <= MAX_PCT_OF_PEAK else FAIL
            checks.append(Check(label, verdict, f"n={row['size']}: {pct:.1f} % ({row['gflops']:.4g} GFLOP/s)"))
    return checks


def check_telemetry(fingerprint: Mapping[str, Any], snapshots: Sequence[Mapping[str, Any]],
                    results: pd.DataFrame, gpus: Sequence[str]) -> Check:
    """The telemetry is filled: NVML's fingerprint names the GPU, every snapshot taken here has
    :data:`TELEMETRY_FIELDS`, and, where the run's results carry telemetry columns (those of
    :data:`devbench.telemetry.TELEMETRY_COLUMNS`), the GPU cells have them filled."""
    name = "telemetry fields filled (NVML)"
    if not gpus:
        return _not_run(name, "no GPU")
    if not fingerprint.get("available"):
        return _not_run(name, str(fingerprint.get("reason", "NVML not available")))
    from devbench.telemetry import TELEMETRY_COLUMNS

    gpu_names = ", ".join(str(g.get("name")) for g in fingerprint.get("gpus", []))
    missing = sorted({f for snap in snapshots for f in TELEMETRY_FIELDS if snap.get(f) is None}
                     | ({"snapshot"} if not snapshots else set()))
    parts = [f"{gpu_names}, driver {fingerprint.get('driver_version')}, CUDA {fingerprint.get('cuda_version')}"]
    if snapshots:
        last = snapshots[-1]
        parts.append(f"SM {last.get('sm_clock_mhz')} MHz, {last.get('temperature_c')} °C, "
                     f"{last.get('power_w')} W, reasons {last.get('throttle_reasons')}")
    passed = not missing
    if missing:
        parts.append("missing: " + ", ".join(missing))
    columns = [c for c in TELEMETRY_COLUMNS if c in results.columns]
    if not columns:
        parts.append("run: no telemetry columns (not wired into the sweep yet)")
    else:
        cells = _ok(results)
        cells = cells[cells["device"].isin(list(gpus))]
        numeric = [c for c in columns if results[c].dtype.kind == "f"]
        empty = int(cells[numeric].isna().any(axis=1).sum()) if numeric else 0
        throttled = int(cells["throttled"].sum()) if "throttled" in cells.columns else 0
        parts.append(f"run: {len(cells) - empty}/{len(cells)} GPU cells with telemetry, {throttled} throttled")
        passed = passed and empty == 0 and not cells.empty
    return Check(name, PASS if passed else FAIL, "; ".join(parts))


# ---------------------------------------------------------------------------------------------------------
# Devices, sweeps and the independent measurement (impure)

_PROBE = r"""
import importlib, importlib.util, json
out = {}
def route(device):
    try:
        from devbench.backends import target_for
        module = target_for(device).partition(":")[0]
        return importlib.util.find_spec(module) is not None
    except Exception:
        return False
try:
    import torch
    out["torch:cpu"] = route("torch:cpu")
    out["torch:cuda:0"] = bool(torch.cuda.is_available()) and route("torch:cuda:0")
    out["cuda_name"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
except Exception as exc:
    out["torch_error"] = f"{type(exc).__name__}: {exc}"
try:
    import jax
    out["jax:cpu:0"] = route("jax:cpu:0")
    try:
        out["jax:gpu:0"] = bool(jax.devices("gpu")) and route("jax:gpu:0")
    except RuntimeError:
        out["jax:gpu:0"] = False
except Exception as exc:
    out["jax_error"] = f"{type(exc).__name__}: {exc}"
out["tf"] = importlib.util.find_spec("tensorflow") is not None
print(json.dumps(out))
"""


def probe_devices(python: str, env: Mapping[str, str]) -> dict[str, Any]:
    """Which devices this machine has and devbench can run, asked in a child process: a JAX client created here
    would hold most of the GPU's memory for the rest of the check."""
    proc = subprocess.run([python, "-c", _PROBE], env=dict(env), capture_output=True, text=True, timeout=120,
                          check=False)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["probe failed"])[-1]}
    answer: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return answer


def choose_devices(probe: Mapping[str, Any], cpu_only: bool) -> tuple[list[str], list[str], str]:
    """(cpu devices, gpu devices, note) to sweep, from :func:`probe_devices`' answer."""
    cpus = [d for d in CPU_DEVICES if probe.get(d)]
    gpus = [] if cpu_only else [d for d in GPU_DEVICES if probe.get(d)]
    note = ""
    if not cpus and not gpus:
        if probe.get("tf"):
            cpus, note = list(FALLBACK_CPU_DEVICES), "neither PyTorch nor JAX runs in devbench here: TF CPU:0 and numpy"
        else:
            cpus, note = ["numpy:CPU"], "neither PyTorch, JAX nor TensorFlow here: numpy only"
    return cpus, gpus, note


def missing_device_files(dev: Path = Path("/dev")) -> str | None:
    """Why there cannot be an NVIDIA GPU here, known without importing anything (Linux: the driver makes
    /dev/nvidia0, /dev/nvidia1, ...), or None where there may be one (or this is not Linux)."""
    if sys.platform.startswith("linux") and dev.is_dir() and not any(dev.glob("nvidia[0-9]*")):
        return f"no {dev}/nvidia[0-9]* device files (no NVIDIA driver or GPU)"
    return None


def no_gpu_reason(probe: Mapping[str, Any]) -> str | None:
    """Why there is no GPU to check (None when there is one)."""
    if any(probe.get(d) for d in GPU_DEVICES):
        return None
    why = [probe[k] for k in ("torch_error", "jax_error", "error") if probe.get(k)]
    if probe.get("cuda_name"):
        why.append(f"PyTorch sees {probe['cuda_name']} but devbench has no torch/JAX backend (merge them)")
    return "; ".join(why) or "neither torch.cuda nor jax.devices('gpu') finds a GPU"


class Tee:
    """Print to the terminal and to the log."""

    def __init__(self, log: TextIO) -> None:
        self.log = log

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.log.write(text + "\n")
        self.log.flush()


def run_devbench(python: str, args: Sequence[str], env: Mapping[str, str], timeout_s: float, say: Tee) -> int:
    """``python -m devbench ARGS``, its output into the log; past ``timeout_s`` it is sent SIGTERM, on which
    devbench saves what it measured, then killed if it has not stopped 60 s later."""
    say(f"$ devbench {' '.join(args)}")
    started = time.monotonic()
    proc = subprocess.Popen([python, "-m", "devbench", *args], env=dict(env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        say(f"(stopped after {timeout_s:.0f} s: what it measured is kept)")
    say.log.write(out)
    tail = [line for line in out.splitlines() if line.strip()][-3:]
    for line in tail:
        print("  " + line)
    say(f"(exit {proc.returncode} after {time.monotonic() - started:.0f} s)")
    return proc.returncode


def torch_tf32_settings(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    """PyTorch's TF32 flags as the run recorded them in meta ``tf32`` (:func:`devbench.tf32.apply_tf32`'s
    answer, or :func:`devbench.tf32.tf32_state`'s), or {} when the run did not record them."""
    tf32 = meta.get("tf32")
    entry = tf32.get("torch") if isinstance(tf32, Mapping) else None
    if not isinstance(entry, Mapping):
        return {}
    inner = entry.get("state")
    settings = inner.get("settings") if isinstance(inner, Mapping) else entry.get("settings")
    return settings if isinstance(settings, Mapping) else {}


def cuda_event_times(sizes: Iterable[int], dtypes: Iterable[str], meta: Mapping[str, Any],
                     repeats: int = 5) -> dict[tuple[int, str], float]:
    """Seconds per ``a @ b`` of n×n matrices on cuda:0, timed by CUDA events (median of ``repeats`` blocks of
    calls lasting ~50 ms each): the independent measurement. TF32 as the run recorded it for torch
    (meta ``tf32``), else PyTorch's default."""
    import importlib
    import statistics

    torch: Any = importlib.import_module("torch")  # untyped for mypy: torch is optional here

    settings = torch_tf32_settings(meta)
    if "matmul_allow_tf32" in settings:
        torch.backends.cuda.matmul.allow_tf32 = bool(settings["matmul_allow_tf32"])
        torch.set_float32_matmul_precision(str(settings.get("float32_matmul_precision", "highest")))
    out: dict[tuple[int, str], float] = {}
    generator = torch.Generator(device="cuda").manual_seed(0)
    for dtype in dtypes:
        for n in sizes:
            kind = getattr(torch, dtype)
            a = torch.randn(n, n, device="cuda", generator=generator).to(kind)
            b = torch.randn(n, n, device="cuda", generator=generator).to(kind)
            for _ in range(3):
                torch.matmul(a, b)
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            torch.matmul(a, b)
            end.record()
            end.synchronize()
            calls = max(1, min(1000, int(0.05 / max(start.elapsed_time(end) / 1e3, 1e-6))))
            blocks = []
            for _ in range(repeats):
                start.record()
                for _ in range(calls):
                    torch.matmul(a, b)
                end.record()
                end.synchronize()
                blocks.append(start.elapsed_time(end) / 1e3 / calls)
            out[(n, dtype)] = statistics.median(blocks)
            del a, b
    torch.cuda.empty_cache()
    return out


def telemetry_now(device: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(NVML fingerprint, [snapshot]) of ``device``'s GPU, taken by devbench's telemetry module."""
    from devbench import telemetry

    fingerprint = telemetry.gpu_fingerprint()
    index = telemetry.nvml_index(device)
    snapshots = [telemetry.snapshot(index)] if fingerprint.get("available") and index is not None else []
    return fingerprint, snapshots


def output_dir(env: Mapping[str, str]) -> Path:
    """``$OUT`` if set, else a new ``results/gpu-check-<UTC time>``."""
    if env.get("OUT"):
        return Path(env["OUT"])
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path("results") / f"gpu-check-{stamp}"


def sweep_args(devices: Sequence[str], out: Path, options: argparse.Namespace, *, calibrate: bool) -> list[str]:
    args = ["sweep", "--devices", ",".join(devices), "--ops", ",".join(OPS), "--sizes", options.sizes,
            "--dtypes", ",".join(DTYPES), "--rounds", str(options.rounds), "--max-cell-time",
            f"{options.max_cell_time:g}", "--max-call-time", f"{options.max_call_time:g}", "--out", str(out)]
    return args if calibrate else [*args, "--no-calibrate"]


def _has_cells(run_dir: Path) -> bool:
    log = run_dir / "cells.jsonl"
    return log.exists() and log.stat().st_size > 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-only", action="store_true", help="sweep and check the CPU devices only")
    parser.add_argument("--sizes", default=SIZES, help=f"sizes of the main sweep (default {SIZES})")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds of the main sweep (default {ROUNDS})")
    parser.add_argument("--max-cell-time", type=float, default=MAX_CELL_TIME_S)
    parser.add_argument("--max-call-time", type=float, default=MAX_CALL_TIME_S)
    options = parser.parse_args(argv)
    python = sys.executable
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    # JAX would otherwise take 75 % of the GPU's memory at start-up, leaving PyTorch (same process) and
    # devbench's memory guard (free memory) with the rest.
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

    reason = None if options.cpu_only else missing_device_files()
    probe = probe_devices(python, env) if reason is None else {}
    reason = reason or no_gpu_reason(probe)
    if reason is not None and not options.cpu_only:
        print(f"no GPU: {reason} (nothing run; bench/gpu_check.sh --cpu-only checks the CPU part)")
        return 3
    cpus, gpus, note = choose_devices(probe, options.cpu_only)

    base = output_dir(env)
    base.mkdir(parents=True, exist_ok=True)
    with open(base / "gpu_check.log", "w", encoding="utf-8") as log:
        say = Tee(log)
        say(f"gpu_check: cpu devices {', '.join(cpus)}; gpu devices {', '.join(gpus) or 'none'}"
            + (f" ({note})" if note else "") + f"; output {base}")
        checks = run_checks(python, env, base, cpus=cpus, gpus=gpus, options=options, say=say)
        say()
        lines = [c.line() for c in checks]
        for line in lines:
            say(line)
    (base / "checks.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (base / "checks.json").write_text(json.dumps([asdict(c) for c in checks], indent=2, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    if any(c.verdict == FAIL and c.name == "sweep" for c in checks):
        return 2
    return 1 if any(c.verdict == FAIL for c in checks) else 0


def run_checks(python: str, env: Mapping[str, str], base: Path, *, cpus: Sequence[str], gpus: Sequence[str],
               options: argparse.Namespace, say: Tee) -> list[Check]:
    """Run the sweeps and the independent measurements, then every check."""
    import pandas as pd

    from devbench.errors import UsageError
    from devbench.store import load_run

    run_dir = base / "run"
    devices = [*cpus, *gpus]
    started = time.monotonic()
    rc = run_devbench(python, sweep_args(devices, run_dir, options, calibrate=True), env, SWEEP_TIMEOUT_S, say)
    if rc != 0 and not _has_cells(run_dir):
        # Calibration is the one step that may need what the machine lacks; the sweep keeps its time budget.
        left = max(60.0, SWEEP_TIMEOUT_S - (time.monotonic() - started))
        say("the sweep measured nothing; once more without calibration")
        run_dir = base / "run-nocalibrate"
        rc = run_devbench(python, sweep_args(devices, run_dir, options, calibrate=False), env, left, say)
    try:
        run = load_run(run_dir)
    except UsageError as exc:
        return [Check("sweep", FAIL, f"exit {rc}, no readable run: {exc}")]
    results, meta = run.results, run.meta
    say(f"sweep: {len(results)} cells, {int((results['status'] == 'ok').sum())} ok (exit {rc})")

    unsynced = results.iloc[0:0]
    ok_rows = _ok(results)
    matmul_sizes = ok_rows[(ok_rows["op"] == "matmul") & (ok_rows["dtype"] == "float32")
                           & ok_rows["device"].isin(gpus)]["size"]
    if gpus and not matmul_sizes.empty:
        largest = int(matmul_sizes.max())
        nosync = base / "nosync"
        run_devbench(python, ["sweep", "--devices", ",".join(gpus), "--ops", "matmul", "--sizes", str(largest),
                              "--dtypes", "float32", "--sync", "none", "--rounds", "1", "--no-calibrate",
                              "--quiet", "--out", str(nosync)], env, SMALL_SWEEP_TIMEOUT_S, say)
        try:
            unsynced = load_run(nosync).results
        except UsageError as exc:
            say(f"no --sync none run: {exc}")

    events: dict[tuple[int, str], float] = {}
    fingerprint: dict[str, Any] = {}
    snapshots: list[dict[str, Any]] = []
    if "torch:cuda:0" in gpus:
        ok = _ok(results)
        measured = set(ok[(ok["device"] == "torch:cuda:0") & (ok["op"] == "matmul")]["size"])
        sizes = [n for n in EVENT_SIZES if n in measured]
        try:
            events = cuda_event_times(sizes, DTYPES, meta)
        except Exception as exc:
            say(f"CUDA-event measurement failed: {type(exc).__name__}: {exc}")
    if gpus:
        fingerprint, snapshots = telemetry_now(gpus[0])

    crossovers = pd.DataFrame(columns=["op", "dtype", "device_a", "device_b"])
    proc = subprocess.run([python, "-m", "devbench", "crossover", str(run_dir), "--format", "json"],
                          env=dict(env), capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode == 0:
        crossovers = pd.DataFrame(json.loads(proc.stdout)) if proc.stdout.strip() not in ("", "[]") else crossovers
    else:
        say(f"devbench crossover failed: {proc.stderr.strip()[-300:]}")

    gpu_pairs = [(CPU_OF[g], g) for g in gpus if CPU_OF[g] in cpus]
    cpu_pairs = [(cpus[i], cpus[j]) for i in range(len(cpus)) for j in range(i + 1, len(cpus))]
    checks = [
        check_sync_needed(results, unsynced, gpus),
        check_events_agree(results, events) if "torch:cuda:0" in gpus else _not_run(
            "devbench vs CUDA events (torch:cuda:0 matmul)", "no GPU" if not gpus else "no torch:cuda:0"),
        check_placement(results, gpus),
        check_init(results, meta, gpus),
        *check_crossovers(crossovers, results, gpu_pairs, "where the GPU overtakes the CPU"),
        *check_pct_of_peak(results, gpus),
        check_telemetry(fingerprint, snapshots, results, gpus),
    ]
    if cpu_pairs:
        checks.extend(check_crossovers(crossovers, results, cpu_pairs, "crossover between CPU devices"))
    return checks


if __name__ == "__main__":
    sys.exit(main())
