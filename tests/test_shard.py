"""Sharding a sweep: parsing K/N, the scheduler's environment, the spec hash, and the split itself."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from devbench.errors import UsageError
from devbench.shard import (
    SHARD_COUNT_ENV,
    ShardSpec,
    assign,
    curve_key,
    curves,
    nominal_estimate,
    shard_cells,
    shard_from_env,
    shard_meta,
    shard_of_meta,
    spec_hash,
    spec_hash_of,
)
from devbench.spec import Cell, SweepSpec, TimingPolicy, parse_sizes

SPEC = SweepSpec(ops=("matmul", "add", "conv2d", "reduce_sum"), sizes=parse_sizes("64..4096"),
                 dtypes=("float32", "float16"), devices=("CPU:0", "GPU:0"), modes=("eager", "function"))


# --- K/N -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "index", "count"), [("0/1", 0, 1), ("2/3", 2, 3), (" 1 / 4 ", 1, 4)])
def test_parse_accepts_zero_based_shards(text: str, index: int, count: int) -> None:
    assert ShardSpec.parse(text) == ShardSpec(index, count)


@pytest.mark.parametrize("text", ["0/0", "5/3", "3/3", "a/b", "-1/3", "1/-3", "1", "", "1/3/5", "1.5/3"])
def test_parse_refuses_impossible_values_in_one_line(text: str) -> None:
    with pytest.raises(UsageError) as info:
        ShardSpec.parse(text)
    message = str(info.value)
    assert repr(text) in message
    assert "0 <= K < N" in message
    assert "\n" not in message


def test_constructor_refuses_impossible_values() -> None:
    with pytest.raises(UsageError, match="impossible shard 3/3"):
        ShardSpec(3, 3)


# --- the scheduler's environment ---------------------------------------------------------------------------


def test_no_scheduler_gives_none() -> None:
    assert shard_from_env({"SLURM_JOB_ID": "17", "HOME": "/root"}) is None


def test_slurm_array_position_from_min_and_count() -> None:
    env = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_MAX": "8",
           "SLURM_ARRAY_TASK_COUNT": "4"}
    assert shard_from_env(env) == ShardSpec(2, 4)


def test_slurm_array_with_a_step() -> None:
    env = {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "8",
           "SLURM_ARRAY_TASK_COUNT": "5", "SLURM_ARRAY_TASK_STEP": "2"}
    assert shard_from_env(env) == ShardSpec(2, 5)


def test_slurm_array_with_gaps_is_refused() -> None:
    env = {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "9",
           "SLURM_ARRAY_TASK_COUNT": "3"}
    with pytest.raises(UsageError, match="has gaps"):
        shard_from_env(env)


def test_slurm_without_min_or_count_is_refused() -> None:
    with pytest.raises(UsageError, match="SLURM_ARRAY_TASK_MIN"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "1"})


def test_kubernetes_index_with_count_from_env_or_argument() -> None:
    assert shard_from_env({"JOB_COMPLETION_INDEX": "2", SHARD_COUNT_ENV: "3"}) == ShardSpec(2, 3)
    assert shard_from_env({"JOB_COMPLETION_INDEX": "0"}, count=2) == ShardSpec(0, 2)
    # an explicit count (--shard-count) wins over the environment
    assert shard_from_env({"JOB_COMPLETION_INDEX": "3", SHARD_COUNT_ENV: "3"}, count=4) == ShardSpec(3, 4)


def test_kubernetes_without_count_says_which_variable_to_set() -> None:
    with pytest.raises(UsageError, match=SHARD_COUNT_ENV):
        shard_from_env({"JOB_COMPLETION_INDEX": "1"})


@pytest.mark.parametrize("env", [{"JOB_COMPLETION_INDEX": "3", SHARD_COUNT_ENV: "3"},
                                 {"JOB_COMPLETION_INDEX": "x", SHARD_COUNT_ENV: "3"},
                                 {"JOB_COMPLETION_INDEX": "0", SHARD_COUNT_ENV: "0"}])
def test_kubernetes_impossible_values_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(UsageError):
        shard_from_env(env)


def test_slurm_wins_over_kubernetes() -> None:
    env = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "2",
           "JOB_COMPLETION_INDEX": "0", SHARD_COUNT_ENV: "5"}
    assert shard_from_env(env) == ShardSpec(1, 2)


# --- the spec hash ----------------------------------------------------------------------------------------


def test_spec_hash_is_stable_across_processes_and_round_trips() -> None:
    here = spec_hash(SPEC)
    code = ("import json, sys; from devbench.spec import SweepSpec; from devbench.shard import spec_hash; "
            "print(spec_hash(SweepSpec.from_dict(json.loads(sys.argv[1]))))")
    there = subprocess.run([sys.executable, "-c", code, json.dumps(SPEC.to_dict())], check=True,
                           capture_output=True, text=True).stdout.strip()
    assert there == here
    assert spec_hash_of(json.loads(json.dumps(SPEC.to_dict()))) == here
    assert len(here) == 16


def test_spec_hash_changes_with_anything_that_changes_the_measurement() -> None:
    base = spec_hash(SPEC)
    changed = [
        SweepSpec(**{**SPEC.__dict__, "sizes": (64, 128)}),
        SweepSpec(**{**SPEC.__dict__, "seed": 1}),
        SweepSpec(**{**SPEC.__dict__, "policy": TimingPolicy(max_cell_time=1.0)}),
        SweepSpec(**{**SPEC.__dict__, "devices": ("CPU:0",)}),
    ]
    assert len({base, *(spec_hash(s) for s in changed)}) == 1 + len(changed)


def test_spec_hash_reads_whole_numbers_in_float_fields_as_floats() -> None:
    as_int = SPEC.to_dict()
    as_int["policy"] = {**as_int["policy"], "max_cell_time": 2}
    as_float = SPEC.to_dict()
    as_float["policy"] = {**as_float["policy"], "max_cell_time": 2.0}
    assert spec_hash_of(as_int) == spec_hash_of(as_float) == spec_hash(SPEC)


def test_spec_hash_can_leave_the_devices_out() -> None:
    other = SweepSpec(**{**SPEC.__dict__, "devices": ("CPU:0",)})
    assert spec_hash(other) != spec_hash(SPEC)
    assert spec_hash_of(other.to_dict(), ignore_devices=True) == spec_hash_of(SPEC.to_dict(), ignore_devices=True)


def test_unreadable_stored_spec_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="stored spec"):
        spec_hash_of({"sizes": [64]})


# --- the split ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 5, 16])
def test_shards_are_disjoint_and_cover_the_plan(count: int) -> None:
    plan = list(SPEC.cells())
    parts = [shard_cells(SPEC, ShardSpec(i, count)) for i in range(count)]
    keys = [cell.key() for part in parts for cell in part]
    assert len(keys) == len(set(keys)), "a cell is in two shards"
    assert sorted(keys) == sorted(cell.key() for cell in plan)
    assert all(part for part in parts), "a shard has nothing to do"


def test_shard_cells_keep_the_sweep_order() -> None:
    order = {cell.key(): i for i, cell in enumerate(SPEC.cells())}
    part = shard_cells(SPEC, ShardSpec(1, 3))
    assert [order[c.key()] for c in part] == sorted(order[c.key()] for c in part)


def test_a_curve_is_never_split() -> None:
    owner: dict[tuple[str, str, str, str], int] = {}
    for index in range(4):
        for cell in shard_cells(SPEC, ShardSpec(index, 4)):
            assert owner.setdefault(curve_key(cell), index) == index
    matmul = ("matmul", "float32", "eager", "scalar")
    cells = [c for c in shard_cells(SPEC, ShardSpec(owner[matmul], 4)) if curve_key(c) == matmul]
    assert {(c.size, c.device) for c in cells} == {(n, d) for n in SPEC.sizes for d in SPEC.devices}


def test_split_is_deterministic_and_a_retry_repeats_the_same_cells() -> None:
    first = [shard_cells(SPEC, ShardSpec(i, 3)) for i in range(3)]
    retry = shard_cells(SweepSpec.from_dict(json.loads(json.dumps(SPEC.to_dict()))), ShardSpec(2, 3))
    assert retry == first[2]
    code = ("import json, sys; from devbench.spec import SweepSpec; from devbench.shard import shard_cells, "
            "ShardSpec; s = SweepSpec.from_dict(json.loads(sys.argv[1])); "
            "print(json.dumps([c.key() for c in shard_cells(s, ShardSpec(1, 3))]))")
    other = subprocess.run([sys.executable, "-c", code, json.dumps(SPEC.to_dict())], check=True,
                           capture_output=True, text=True).stdout
    assert [tuple(k) for k in json.loads(other)] == [c.key() for c in first[1]]


def test_lpt_balances_a_skewed_plan() -> None:
    """One heavy curve (3 s per cell) and eleven light ones (1 s per cell): LPT keeps the heaviest shard within
    4/3 of the lower bound (total / N or the largest curve) and max/min within 4/3, where a round-robin over
    the curves does worse."""
    spec = SweepSpec(ops=("matmul", "add", "reduce_sum", "conv2d"), sizes=(64, 128, 256, 512),
                     dtypes=("float32", "float16", "float64"), devices=("CPU:0", "GPU:0"))

    def estimate(cell: Cell) -> float:
        return 3.0 if (cell.op, cell.dtype) == ("matmul", "float64") else 1.0

    shards = assign(spec, 3, estimate)
    loads = [sum(c.cost_s for c in shard) for shard in shards]
    plan = curves(spec, estimate)
    bound = max(sum(c.cost_s for c in plan) / 3, *(c.cost_s for c in plan))
    assert max(loads) <= 4 / 3 * bound
    assert max(loads) / min(loads) <= 4 / 3
    # a naive round-robin over the sorted curves would put the heavy curve with three others
    naive = [sum(c.cost_s for c in plan[i::3]) for i in range(3)]
    assert max(naive) / min(naive) > max(loads) / min(loads)


def test_nominal_estimate_grows_with_flops_and_depends_on_the_spec_only() -> None:
    estimate = nominal_estimate(SPEC)
    small, large = (Cell(size=n, op="matmul", dtype="float32", device="CPU:0") for n in (64, 4096))
    assert estimate(large) > estimate(small) > 0
    assert nominal_estimate(SPEC)(large) == estimate(large)


def test_more_shards_than_curves_is_refused() -> None:
    spec = SweepSpec(ops=("matmul",), sizes=(64, 128), devices=("CPU:0", "GPU:0"))
    with pytest.raises(UsageError, match=r"1 crossover curve .*at most 1"):
        assign(spec, 2)


def test_shard_meta_records_hash_index_count_and_contents() -> None:
    meta = shard_meta(SPEC, ShardSpec(1, 3))
    assert meta["spec_hash"] == spec_hash(SPEC)
    assert (meta["index"], meta["count"]) == (1, 3)
    assert meta["n_cells"] == len(shard_cells(SPEC, ShardSpec(1, 3)))
    assert shard_of_meta({"shard": meta}) == ShardSpec(1, 3)
    assert shard_of_meta({}) is None
    with pytest.raises(UsageError):
        shard_of_meta({"shard": {"index": "1", "count": 3}})
