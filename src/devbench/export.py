"""A run in the formats of the dashboards people already use.

- ``pytest-benchmark``: a saved-run JSON file that ``pytest-benchmark compare FILE`` loads and tabulates (and
  ``pytest --benchmark-compare=FILE`` compares against). Statistics are computed by pytest-benchmark's own
  ``Stats`` from devbench's raw samples (per-call seconds, one per timed block), so every column means what it
  means there; ``iterations`` is devbench's ``number`` (calls per block). Cells without raw samples (a bare
  results table) are left out: pytest-benchmark's statistics need them.
- ``bmf``: Bencher Metric Format, ``{name: {"latency": {...}, "throughput": {...}}}``. ``latency`` is the median
  per-call time in nanoseconds (Bencher's latency unit) with ``lower_value``/``upper_value`` the 95 % interval
  of the median (``ci_low_s``/``ci_high_s``); ``throughput`` is FLOP/s (Bencher's "operations / second", the
  operations being floating-point ones) where the op's FLOPs are known, its bounds from the same interval.
- ``github-action-benchmark``: its ``customSmallerIsBetter`` input, a list of ``{name, unit, value, range,
  extra}``; ``unit`` is ``ns`` (one the action converts between), ``value`` the median per call, ``range``
  ``± half the interval's width``, ``extra`` the interval itself, samples and the device that ran it.

**Names.** Every format names a benchmark ``op/dtype/mode/device/n`` (``matmul/float32/eager/GPU:0/1024``):
stable across runs and machines, so a dashboard's history follows one cell. Timings with sync ``transfer``
carry the mode ``eager+transfer`` (as in every devbench table); the sync method is otherwise not part of the
name. To tell machines apart, use the dashboard's own notion of it (Bencher's testbed, one
github-action-benchmark ``name`` per machine, one pytest-benchmark file per machine).

**Only ``ok`` cells are exported** (``analysis.ok_cells``: status ok, a finite positive median, one row per
name); skipped, unsupported or failed cells have no time to chart.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any, cast

from devbench.errors import UsageError, choose
from devbench.formatting import json_safe
from devbench.schema import IDENTITY
from devbench.selection import ok_cells, split_mode
from devbench.store import Run

EXPORT_FORMATS: tuple[str, ...] = ("pytest-benchmark", "bmf", "github-action-benchmark")

NS_PER_S = 1e9


def benchmark_name(row: Mapping[str, Any]) -> str:
    """``op/dtype/mode/device/n`` for a row of ``analysis.ok_cells`` (its mode already ``…+transfer``)."""
    return f"{row['op']}/{row['dtype']}/{row['mode']}/{row['device']}/{int(row['size'])}"


def _rows(run: Run) -> list[dict[str, Any]]:
    cells = ok_cells(run.results)
    if cells.empty:
        where = str(run.path) if run.path is not None else "the run"
        raise UsageError(f"{where} has no ok cells to export (only cells measured ok are exported)")
    return [{str(k): v for k, v in row.items()} for row in cells.to_dict(orient="records")]


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _metric(value: float, low: float | None, high: float | None) -> dict[str, float]:
    metric = {"value": value}
    if low is not None and high is not None:
        metric.update(lower_value=low, upper_value=high)
    return metric


def to_bmf(run: Run) -> dict[str, dict[str, dict[str, float]]]:
    """Bencher Metric Format (see the module docstring)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for row in _rows(run):
        median = float(row["median_s"])
        low, high = _finite(row["ci_low_s"]), _finite(row["ci_high_s"])
        measures = {"latency": _metric(median * NS_PER_S, None if low is None else low * NS_PER_S,
                                       None if high is None else high * NS_PER_S)}
        flops = _finite(row["flops"])
        if flops is not None and flops > 0:
            # a slower bound on time is a lower bound on throughput
            measures["throughput"] = _metric(flops / median, None if high is None else flops / high,
                                             None if low is None or low <= 0 else flops / low)
        out[benchmark_name(row)] = measures
    return out


def to_github_action_benchmark(run: Run) -> list[dict[str, Any]]:
    """github-action-benchmark's ``customSmallerIsBetter`` entries (see the module docstring)."""
    entries = []
    for row in _rows(run):
        median_ns = float(row["median_s"]) * NS_PER_S
        low, high = _finite(row["ci_low_s"]), _finite(row["ci_high_s"])
        entry: dict[str, Any] = {"name": benchmark_name(row), "unit": "ns", "value": median_ns}
        extra = [f"samples: {int(row['n_samples'])}", f"calls per sample: {int(row['number'])}",
                 f"placed on: {row['placed_device'] or row['device']}", f"sync: {row['sync']}"]
        if low is not None and high is not None:
            entry["range"] = f"± {(high - low) * NS_PER_S / 2:.4g}"
            extra.insert(0, f"95% CI of the median: {low * NS_PER_S:.4g}..{high * NS_PER_S:.4g} ns")
        entry["extra"] = "\n".join(extra)
        entries.append(entry)
    return entries


def _samples_by_cell(run: Run) -> dict[tuple[Any, ...], list[float]]:
    by_cell: dict[tuple[Any, ...], list[tuple[int, float]]] = {}
    for row in run.samples.to_dict(orient="records"):
        key = tuple(row[c] for c in IDENTITY)
        by_cell.setdefault(key, []).append((int(row["sample"]), float(row["per_call_s"])))
    return {key: [s for _, s in sorted(values)] for key, values in by_cell.items()}


def _machine_info(meta: Mapping[str, Any]) -> dict[str, Any]:
    """pytest-benchmark's ``machine_info`` keys from devbench's fingerprint (kept whole under ``devbench``)."""
    machine = meta.get("machine") or {}
    os_info, python, cpu = (machine.get(k) or {} for k in ("os", "python", "cpu"))
    return {
        "node": machine.get("hostname", ""),
        "processor": cpu.get("arch", ""),
        "machine": cpu.get("arch", ""),
        "python_implementation": python.get("implementation", ""),
        "python_version": python.get("version", ""),
        "release": os_info.get("release", ""),
        "system": os_info.get("system", ""),
        "cpu": {"brand_raw": cpu.get("model", ""), "count": cpu.get("logical_cores")},
        "devbench": machine,
    }


def to_pytest_benchmark(run: Run) -> dict[str, Any]:
    """A pytest-benchmark saved run (see the module docstring). Each benchmark's ``group`` is
    ``op dtype mode n=size``, so a table puts a cell's devices side by side; ``params`` hold op, size, dtype,
    device, mode and sync (``--group-by=param:device`` works); ``extra_info`` the FLOPs, bytes, cold call
    and interval."""
    import pytest_benchmark
    from pytest_benchmark.stats import Stats

    new_stats = cast(Callable[[], Any], Stats)  # pytest-benchmark's own statistics (its code is untyped)

    samples = _samples_by_cell(run)
    benchmarks = []
    for row in _rows(run):
        base_mode, _ = split_mode(str(row["mode"]))
        key = tuple(base_mode if c == "mode" else row[c] for c in IDENTITY)
        data = samples.get(key)
        if not data:
            continue
        stats = new_stats()
        for value in data:
            stats.update(value)
        values = stats.as_dict()
        values.update(data=data, iterations=int(row["number"]))
        name = benchmark_name(row)
        params = {"op": row["op"], "size": int(row["size"]), "dtype": row["dtype"], "device": row["device"],
                  "mode": row["mode"], "sync": row["sync"]}
        benchmarks.append({
            "group": f"{row['op']} {row['dtype']} {row['mode']} n={int(row['size'])}",
            "name": name,
            "fullname": name,
            "params": params,
            "param": "-".join(str(v) for v in params.values()),
            "extra_info": {k: row[k] for k in ("flops", "bytes", "gflops", "gbps", "cold_s", "ci_low_s",
                                               "ci_high_s", "placed_device", "noisy", "unsynchronized")},
            "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": int(row["n_samples"]),
                        "max_time": None, "min_time": None, "warmup": True},
            "stats": values,
        })
    if not benchmarks:
        raise UsageError("no ok cell of this run has raw samples (a bare results table has none); "
                         "pytest-benchmark needs them: export bmf or github-action-benchmark instead")
    meta = run.meta
    return {
        "machine_info": _machine_info(meta),
        "commit_info": {"id": None, "project": "devbench", "dirty": False, "branch": None},
        "benchmarks": benchmarks,
        "datetime": meta.get("finished_at") or meta.get("started_at") or "",
        "version": pytest_benchmark.__version__,
        "devbench": {"run_id": meta.get("run_id"), "command": meta.get("command"), "spec": meta.get("spec")},
    }


def export(run: Run, fmt: str) -> str:
    """The run in format ``fmt`` (``EXPORT_FORMATS``) as JSON text; an unknown format is a UsageError."""
    fmt = choose("export format", fmt, EXPORT_FORMATS)
    if fmt == "pytest-benchmark":
        data: Any = to_pytest_benchmark(run)
    elif fmt == "bmf":
        data = to_bmf(run)
    else:
        data = to_github_action_benchmark(run)
    return json.dumps(json_safe(data), indent=2, ensure_ascii=False) + "\n"
