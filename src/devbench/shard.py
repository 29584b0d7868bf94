"""Splitting one sweep across machines: which cells shard K of N measures.

A sweep too long for one box is split across identical machines by the scheduler people already run (Slurm job
arrays, Kubernetes Indexed Jobs); each machine measures one shard, one cell at a time as always, and
``devbench merge`` joins the shards into one run. Every shard computes the split on its own, with no
coordination, so the split must come out the same everywhere:

- **Deterministic from the spec and N alone.** :func:`assign` sees the spec, the shard count and a cost model
  that depends on nothing else (:func:`nominal_estimate`: the op's FLOPs at a nominal rate, not this machine's
  speed, which differs between nodes and between runs). A retried shard (same index) repeats exactly the same
  cells, so ``devbench sweep --resume`` works per shard.
- **Curves stay whole.** The unit of work is a crossover curve: every size and device of one (op, dtype, mode,
  sync). A crossover is found by comparing devices along sizes, so a curve split across machines would compare
  two machines; whole curves also keep the time guard's predictions (from the largest size measured so far in
  a series) and ``--refine`` working inside each shard.
- **Balanced by predicted cost.** Longest-processing-time first: curves in decreasing predicted cost (ties by
  the curve's key, text), each to the shard with the least predicted cost so far (ties to the lowest index).
  LPT is within 4/3 of the best possible makespan, and needs no search.

Shards are numbered from **0**: ``--shard 0/3``, ``1/3``, ``2/3``. Kubernetes' ``JOB_COMPLETION_INDEX`` is
0-based and can be passed as it is; Slurm array IDs start wherever ``--array`` says, so
:func:`shard_from_env` subtracts ``SLURM_ARRAY_TASK_MIN`` and any array works.

Nothing here imports TensorFlow or pandas.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from devbench.errors import UsageError
from devbench.spec import Cell, SweepSpec, TimingPolicy

SHARD_COUNT_ENV = "DEVBENCH_SHARD_COUNT"
"""Environment variable with the number of shards under Kubernetes, which exports each pod's
``JOB_COMPLETION_INDEX`` but not the Job's ``completions``: set it to ``completions`` in the pod template."""

NOMINAL_FLOPS_PER_S = 1e11
"""FLOP/s the split assumes for every device (100 GFLOP/s, between a laptop CPU and a GPU). Only the ranking
of cells by cost matters for balancing, and that comes from the FLOPs; the absolute rate only decides how
quickly large cells outweigh the fixed per-cell budget."""

CurveKey = tuple[str, str, str, str]
"""(op, dtype, mode, sync): one crossover curve, all its sizes and devices."""

Estimate = Callable[[Cell], float]
"""Predicted wall seconds of one cell."""

_SHARD = re.compile(r"^\s*(-?\d+)\s*/\s*(-?\d+)\s*$")
_SHARD_HELP = "give K/N with N >= 1 shards and 0 <= K < N (shards are numbered from 0)"


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` (0-based) of ``count`` shards."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UsageError(f"impossible shard {self.index}/{self.count}; {_SHARD_HELP}")

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        """``"1/3"`` -> ShardSpec(1, 3); anything else is a UsageError naming the value."""
        match = _SHARD.match(text)
        if match is None:
            raise UsageError(f"bad shard {text!r}; {_SHARD_HELP}")
        index, count = int(match[1]), int(match[2])
        if count < 1 or not 0 <= index < count:
            raise UsageError(f"impossible shard {text!r}; {_SHARD_HELP}")
        return cls(index, count)

    def label(self) -> str:
        return f"{self.index}/{self.count}"


def _env_int(environ: Mapping[str, str], name: str) -> int:
    raw = environ[name]
    try:
        return int(raw.strip())
    except ValueError:
        raise UsageError(f"environment variable {name}={raw!r} is not a whole number") from None


def shard_from_env(environ: Mapping[str, str], count: int | None = None) -> ShardSpec | None:
    """The shard the scheduler gave this process, or None when not run as part of an array or indexed job.

    Slurm job arrays: ``SLURM_ARRAY_TASK_ID`` with ``SLURM_ARRAY_TASK_MIN``, ``SLURM_ARRAY_TASK_COUNT`` and
    ``SLURM_ARRAY_TASK_STEP`` (``--array=1-5``, ``--array=0-8:2`` both work); the shard is the task's position
    in the array. An array with gaps (``--array=1,4,9``) cannot be mapped to positions and is refused.

    Kubernetes Indexed Jobs: ``JOB_COMPLETION_INDEX`` (0-based) with the count from ``count`` (the CLI's
    ``--shard-count``) or else the environment variable :data:`SHARD_COUNT_ENV`, because Kubernetes does not
    export the Job's ``completions``. Slurm wins when both are present. ``count`` is ignored under Slurm, which
    knows its array size.
    """
    if "SLURM_ARRAY_TASK_ID" in environ:
        task = _env_int(environ, "SLURM_ARRAY_TASK_ID")
        missing = [name for name in ("SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT") if name not in environ]
        if missing:
            raise UsageError(f"SLURM_ARRAY_TASK_ID is set but {', '.join(missing)} is not; "
                             "run under a Slurm job array (sbatch --array) or pass --shard K/N")
        low = _env_int(environ, "SLURM_ARRAY_TASK_MIN")
        total = _env_int(environ, "SLURM_ARRAY_TASK_COUNT")
        step = _env_int(environ, "SLURM_ARRAY_TASK_STEP") if "SLURM_ARRAY_TASK_STEP" in environ else 1
        high = _env_int(environ, "SLURM_ARRAY_TASK_MAX") if "SLURM_ARRAY_TASK_MAX" in environ else None
        if step < 1 or (high is not None and (high - low) != step * (total - 1)):
            raise UsageError(
                f"Slurm array {low}-{high}:{step} with {total} tasks has gaps; use a contiguous array "
                "(sbatch --array=0-N) or pass --shard K/N")
        offset, rest = divmod(task - low, step)
        if rest or not 0 <= offset < total:
            raise UsageError(f"SLURM_ARRAY_TASK_ID={task} is not in the array {low}..{low + step * (total - 1)}"
                             f" (step {step}); pass --shard K/N")
        return ShardSpec(offset, total)
    if "JOB_COMPLETION_INDEX" in environ:
        index = _env_int(environ, "JOB_COMPLETION_INDEX")
        if count is None:
            if SHARD_COUNT_ENV not in environ:
                raise UsageError(
                    f"JOB_COMPLETION_INDEX={index} is set but the shard count is not: set {SHARD_COUNT_ENV} to "
                    "the Job's completions (Kubernetes does not export it) or pass --shard-count N")
            count = _env_int(environ, SHARD_COUNT_ENV)
        if count < 1 or not 0 <= index < count:
            raise UsageError(f"impossible shard {index}/{count} from JOB_COMPLETION_INDEX and the shard count; "
                             f"{_SHARD_HELP}")
        return ShardSpec(index, count)
    return None


def _canonical(data: Mapping[str, Any]) -> dict[str, Any]:
    """The spec dict with every timing-policy number of a float field as a float, so that ``2`` and ``2.0``
    (an option typed as a whole number, a meta.json written by hand) hash alike."""
    out = dict(data)
    policy = dict(out.get("policy") or {})
    floats = {f.name for f in fields(TimingPolicy) if f.type in ("float", float)}
    out["policy"] = {k: float(v) if k in floats and isinstance(v, (int, float)) else v for k, v in policy.items()}
    return out


def canonical_spec_json(spec: SweepSpec) -> str:
    """The spec as compact JSON with sorted keys: the same text on every machine and Python version."""
    return json.dumps(_canonical(spec.to_dict()), sort_keys=True, separators=(",", ":"), allow_nan=False)


def spec_hash(spec: SweepSpec) -> str:
    """A stable identity of the sweep: the first 16 hex digits of the SHA-256 of :func:`canonical_spec_json`.

    Python's ``hash()`` is salted per process; this is the same everywhere. Everything in the spec counts,
    the timing policy and seed included, since shards measured under different policies do not belong in one
    run.
    """
    return hashlib.sha256(canonical_spec_json(spec).encode("utf-8")).hexdigest()[:16]


def spec_hash_of(spec_dict: Mapping[str, Any], *, ignore_devices: bool = False) -> str:
    """:func:`spec_hash` of a spec as stored in meta.json; a spec that cannot be read is a UsageError.

    ``ignore_devices`` hashes the spec with its device list left out: the same sweep on machines with other
    devices (``--devices all`` records what each machine has)."""
    try:
        spec = SweepSpec.from_dict(dict(spec_dict))
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"the stored spec cannot be read ({type(exc).__name__}: {exc})") from None
    return spec_hash(replace(spec, devices=()) if ignore_devices else spec)


@dataclass(frozen=True)
class Curve:
    """One crossover curve: all cells of one (op, dtype, mode, sync), in the sweep's order, and their
    predicted cost in seconds."""

    key: CurveKey
    cells: tuple[Cell, ...]
    cost_s: float

    def label(self) -> str:
        return "/".join(self.key)


def curve_key(cell: Cell) -> CurveKey:
    return (cell.op, cell.dtype, cell.mode, cell.sync)


def nominal_estimate(spec: SweepSpec) -> Estimate:
    """Predicted seconds per cell from the time guard's own cell model (``TimeGuard.estimate_cell_seconds``),
    with every single call predicted as the op's FLOPs at :data:`NOMINAL_FLOPS_PER_S`.

    Depends on the spec alone, so every shard predicts the same costs. No cell is predicted as skipped (the
    call limit is infinite here): whether the time guard skips a large cell depends on the machine.
    """
    from devbench.guards import TimeGuard, series_of
    from devbench.ops import known_op, op_named
    from devbench.schema import VisitRecord

    guard = TimeGuard(max_call_time=math.inf, policy=spec.policy)
    for cell in spec.cells():
        op = op_named(cell.op) if known_op(cell.op) else None
        if op is None or series_of(cell) in guard.reference:
            continue
        # One nominal observation per series at n=1; the guard scales it by the FLOPs ratio to any size.
        guard.observe(VisitRecord(run_id="nominal", op=cell.op, size=1, dtype=cell.dtype, device=cell.device,
                                  mode=cell.mode, sync=cell.sync, status="ok",
                                  median_s=op.flops(1) / NOMINAL_FLOPS_PER_S))
    return guard.estimate_cell_seconds


def curves(spec: SweepSpec, estimate: Estimate | None = None) -> list[Curve]:
    """The spec's crossover curves, sorted by key, each with its predicted cost (``estimate``, default
    :func:`nominal_estimate`)."""
    cost = estimate if estimate is not None else nominal_estimate(spec)
    grouped: dict[CurveKey, list[Cell]] = {}
    for cell in spec.cells():
        grouped.setdefault(curve_key(cell), []).append(cell)
    return [Curve(key, tuple(cells), float(sum(cost(c) for c in cells))) for key, cells in sorted(grouped.items())]


def assign(spec: SweepSpec, count: int, estimate: Estimate | None = None) -> list[list[Curve]]:
    """The curves of each of ``count`` shards (list index = shard index), balanced by predicted cost with
    longest-processing-time first. Deterministic: the same spec, count and estimate give the same split.

    More shards than curves would leave a shard with nothing to do (and a run directory with no cells to
    merge): a UsageError naming how many curves there are.
    """
    if count < 1:
        raise UsageError(f"shard count {count} is impossible; {_SHARD_HELP}")
    plan = curves(spec, estimate)
    if count > len(plan):
        raise UsageError(f"{count} shards for a sweep of {len(plan)} crossover curve"
                         f"{'s' if len(plan) != 1 else ''} (op × dtype × mode × sync); use at most {len(plan)} "
                         "shards, since a curve is never split")
    shards: list[list[Curve]] = [[] for _ in range(count)]
    load = [0.0] * count
    for curve in sorted(plan, key=lambda c: (-c.cost_s, c.key)):
        target = min(range(count), key=lambda i: (load[i], i))
        shards[target].append(curve)
        load[target] += curve.cost_s
    return shards


def shard_cells(spec: SweepSpec, shard: ShardSpec, estimate: Estimate | None = None) -> list[Cell]:
    """The cells shard ``shard`` measures, in the sweep's order (smallest sizes first, as an unsharded sweep)."""
    mine = {curve.key for curve in assign(spec, shard.count, estimate)[shard.index]}
    return [cell for cell in spec.cells() if curve_key(cell) in mine]


def shard_meta(spec: SweepSpec, shard: ShardSpec, estimate: Estimate | None = None) -> dict[str, Any]:
    """What meta.json records under ``"shard"``: the spec hash, index, count, and what the shard holds (its
    cell count and curves, ``op/dtype/mode/sync``), so that ``devbench merge`` can check the shards belong
    together and name the missing ones."""
    mine = assign(spec, shard.count, estimate)[shard.index]
    return {
        "spec_hash": spec_hash(spec),
        "index": shard.index,
        "count": shard.count,
        "n_cells": sum(len(curve.cells) for curve in mine),
        "curves": [curve.label() for curve in sorted(mine, key=lambda c: c.key)],
    }


def shard_of_meta(meta: Mapping[str, Any]) -> ShardSpec | None:
    """The shard a run's meta.json records (None for an unsharded run); a malformed entry is a UsageError."""
    entry = meta.get("shard")
    if entry is None:
        return None
    if not isinstance(entry, Mapping):
        raise UsageError("meta.json field 'shard' is not an object")
    index, count = entry.get("index"), entry.get("count")
    if not isinstance(index, int) or not isinstance(count, int) or isinstance(index, bool) \
            or isinstance(count, bool):
        raise UsageError(f"meta.json field 'shard' has index {index!r} and count {count!r}; whole numbers needed")
    return ShardSpec(index, count)
