"""Merging shards into one run, refusing what does not belong together, and the Hive-partitioned dataset.

Shard runs are written here as a sharded sweep writes them — cells.jsonl through ``CellLog``, records from the
runner's own ``measured_record``, meta.json with the ``shard`` entry, final tables by ``finalize`` — with
per-call samples from a cost model and a fixed seed per cell, so a cell has the same samples whichever shard
(or unsharded run) measured it.
"""

from __future__ import annotations

import copy
import json
import math
import shlex
import subprocess
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from devbench.analysis import crossover_frame
from devbench.errors import UsageError
from devbench.formatting import utc_now
from devbench.merge import merge_runs, partition_value, write_merged, write_partitioned
from devbench.ops import OPS
from devbench.runner import measured_record
from devbench.schema import IDENTITY, SCHEMA_VERSION
from devbench.shard import ShardSpec, shard_cells, shard_meta, spec_hash
from devbench.spec import Cell, SweepSpec
from devbench.store import CellLog, Run, finalize, load_run, new_meta, write_json
from devbench.timer import Measurement

MACHINE: dict[str, Any] = {
    "hostname": "node-a",
    "cpu": {"model": "Synthetic CPU 9000", "logical_cores": 8, "arch": "x86_64"},
    "os": {"system": "Linux", "release": "6.1"},
    "python": {"version": "3.12.0", "implementation": "CPython"},
    "packages": {"devbench": "0.1.0"},
    "tensorflow": {"version": "2.99.0"},
    "devices": [{"name": "CPU:0", "kind": "CPU"}, {"name": "CPU:1", "kind": "CPU"}],
}

TINY = SweepSpec(ops=("matmul", "add", "conv2d"), sizes=(64, 128, 256, 512), devices=("CPU:0", "CPU:1"))


def model_seconds(cell: Cell) -> float:
    """CPU:1 pays a fixed 40 µs more per call but runs the work twice as fast: every curve crosses near
    n = 180 (the work grows as n³ for matmul, n² otherwise, 100 µs at n = 200)."""
    work = 1e-4 * (cell.size / 200) ** (3 if cell.op == "matmul" else 2)
    return work / 2 + 4e-5 if cell.device == "CPU:1" else work + 1e-6


@dataclass
class _Outcome:
    measurement: Measurement[Any]
    placed_device: str
    flops: float
    bytes: float
    traces: int = 0
    note: str = ""


def cell_samples(cell: Cell, model: Callable[[Cell], float], n: int = 9, round_: int = 1) -> list[float]:
    rng = np.random.default_rng(zlib.crc32(repr((cell.key(), round_)).encode()))
    return [float(v) for v in model(cell) * (1 + 0.01 * rng.standard_normal(n))]


def write_run(run_dir: Path, spec: SweepSpec, shard: ShardSpec | None = None, *,
              machine: Mapping[str, Any] = MACHINE, model: Callable[[Cell], float] = model_seconds,
              status: str = "complete", skip: Callable[[Cell], bool] = lambda cell: False) -> Path:
    """Write a (shard) run directory as the sweep does; ``skip`` leaves cells out (an interrupted shard)."""
    run_dir.mkdir(parents=True)
    run_id = run_dir.name
    cells = list(spec.cells()) if shard is None else shard_cells(spec, shard)
    meta = new_meta(spec.to_dict(), dict(machine), run_id, ["sweep", "--out", str(run_dir)])
    if shard is not None:
        meta["shard"] = shard_meta(spec, shard)
    write_json(run_dir / "meta.json", meta)
    log = CellLog(run_dir)
    for round_ in range(1, spec.rounds + 1):  # every visit, as a sweep logs them
        for cell in cells:
            if skip(cell):
                continue
            samples = cell_samples(cell, model, round_=round_)
            measurement: Measurement[Any] = Measurement(cold_s=10 * samples[0], samples=samples, number=4,
                                                        warmup_calls=2, sync_overhead_s=0.0,
                                                        stop_reason="converged")
            op = OPS[cell.op]
            outcome = _Outcome(measurement, cell.device, op.flops(cell.size), op.bytes(cell.size, 4))
            log.append(measured_record(run_id, cell, outcome), samples, round_)
    finalize(run_dir, meta)
    write_json(run_dir / "meta.json", {**meta, "status": status, "finished_at": utc_now()})
    return run_dir


def write_shards(root: Path, spec: SweepSpec, count: int, **kw: Any) -> list[Path]:
    return [write_run(root / f"shard-{i}", spec, ShardSpec(i, count), **kw) for i in range(count)]


def _comparable(results: pd.DataFrame) -> pd.DataFrame:
    out: pd.DataFrame = results.drop(columns=["run_id", "finished_at"]).sort_values(list(IDENTITY))
    out = out.reset_index(drop=True)
    return out


# --- merging -----------------------------------------------------------------------------------------------


def test_three_shards_merge_into_the_unsharded_run(tmp_path: Path) -> None:
    shards = [load_run(p) for p in write_shards(tmp_path, TINY, 3)]
    merged_dir = write_merged(merge_runs(shards, run_id="merged", argv=["merge", "..."]), tmp_path / "merged")
    merged = load_run(merged_dir)
    whole = load_run(write_run(tmp_path / "whole", TINY))

    assert sorted(merged.results[list(IDENTITY)].itertuples(index=False, name=None)) == sorted(
        c.key() for c in TINY.cells())
    pd.testing.assert_frame_equal(_comparable(merged.results), _comparable(whole.results))
    assert set(merged.results["run_id"]) == {"merged"}
    assert len(merged.samples) == len(whole.samples)
    merged_cross = crossover_frame(merged.results).drop(columns="note")
    whole_cross = crossover_frame(whole.results).drop(columns="note")
    pd.testing.assert_frame_equal(merged_cross, whole_cross)
    assert merged_cross["crossover_size"].notna().all()

    meta = merged.meta
    assert meta["status"] == "complete"
    assert meta["missing_cells"] == 0
    assert meta["sharded"] == {"spec_hash": spec_hash(TINY), "count": 3, "fleet": False}
    assert [s["index"] for s in meta["shards"]] == [0, 1, 2]
    assert all(s["machine"] == MACHINE for s in meta["shards"])
    assert sum(s["n_cells"] for s in meta["shards"]) == TINY.n_cells()
    assert "shard" not in meta
    # the tables on disk are the ones a sweep writes
    assert (merged_dir / "results.parquet").is_file()
    assert (merged_dir / "samples.parquet").is_file()
    assert len(pd.read_csv(merged_dir / "results.csv")) == TINY.n_cells()


def test_merge_order_of_arguments_does_not_matter(tmp_path: Path) -> None:
    shards = [load_run(p) for p in write_shards(tmp_path, TINY, 3)]
    forward = merge_runs(shards, run_id="m")
    backward = merge_runs(shards[::-1], run_id="m")
    pd.testing.assert_frame_equal(forward.results, backward.results)


def test_missing_shards_are_named_by_index(tmp_path: Path) -> None:
    shards = [load_run(p) for p in write_shards(tmp_path, TINY, 3)]
    with pytest.raises(UsageError, match=r"missing shard 1/3 \(given: 0, 2\)"):
        merge_runs([shards[0], shards[2]])


def test_duplicate_shards_are_named_by_index_and_run(tmp_path: Path) -> None:
    paths = write_shards(tmp_path, TINY, 2)
    again = write_run(tmp_path / "retry-0", TINY, ShardSpec(0, 2))
    with pytest.raises(UsageError, match="shard 0/2 given 2 times") as info:
        merge_runs([load_run(p) for p in [*paths, again]])
    assert "retry-0" in str(info.value)


def test_two_whole_runs_are_duplicates_of_shard_zero(tmp_path: Path) -> None:
    runs = [load_run(write_run(tmp_path / name, TINY)) for name in ("a", "b")]
    with pytest.raises(UsageError, match=r"shard 0/1 given 2 times .*count as 0/1"):
        merge_runs(runs)


def test_shards_of_different_specs_are_refused(tmp_path: Path) -> None:
    other = SweepSpec(ops=TINY.ops, sizes=(64, 128), devices=TINY.devices)
    a = write_run(tmp_path / "a", TINY, ShardSpec(0, 2))
    b = write_run(tmp_path / "b", other, ShardSpec(1, 2))
    with pytest.raises(UsageError, match="different sweeps") as info:
        merge_runs([load_run(a), load_run(b)])
    assert spec_hash(TINY) in str(info.value)
    assert spec_hash(other) in str(info.value)


def test_shards_with_different_counts_are_refused(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", TINY, ShardSpec(0, 2))
    b = write_run(tmp_path / "b", TINY, ShardSpec(1, 3))
    with pytest.raises(UsageError, match="disagree on the shard count"):
        merge_runs([load_run(a), load_run(b)])


def test_shards_from_different_machines_need_fleet(tmp_path: Path) -> None:
    gpu_box = copy.deepcopy(MACHINE)
    gpu_box["devices"].append({"name": "GPU:0", "kind": "GPU", "details": {"device_name": "H100"}})
    gpu_box["cpu"]["model"] = "Other CPU"
    a = write_run(tmp_path / "a", TINY, ShardSpec(0, 2))
    b = write_run(tmp_path / "b", TINY, ShardSpec(1, 2), machine=gpu_box)
    with pytest.raises(UsageError, match=r"machines that differ .*cpu.model .*--fleet"):
        merge_runs([load_run(a), load_run(b)])
    merged = merge_runs([load_run(a), load_run(b)], fleet=True)
    assert merged.meta["shards"][1]["machine"]["cpu"]["model"] == "Other CPU"
    assert merged.meta["sharded"]["fleet"] is True


def test_identical_nodes_with_their_own_hostnames_merge(tmp_path: Path) -> None:
    """The nodes of a Slurm array or an Indexed Job are identical machines with different names."""
    other_node = {**MACHINE, "hostname": "node-b"}
    a = write_run(tmp_path / "a", TINY, ShardSpec(0, 2))
    b = write_run(tmp_path / "b", TINY, ShardSpec(1, 2), machine=other_node)
    merged = merge_runs([load_run(a), load_run(b)])
    assert [s["machine"]["hostname"] for s in merged.meta["shards"]] == ["node-a", "node-b"]


def test_an_interrupted_shard_gives_an_interrupted_merge_that_can_be_resumed(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", TINY, ShardSpec(0, 2))
    b = write_run(tmp_path / "b", TINY, ShardSpec(1, 2), status="interrupted", skip=lambda c: c.size == 512)
    merged = merge_runs([load_run(a), load_run(b)])
    missing = TINY.n_cells() - len(merged.results)
    assert missing > 0
    assert merged.meta["status"] == "interrupted"
    assert merged.meta["missing_cells"] == missing


def test_refined_cells_outside_the_plan_do_not_hide_a_missing_one(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", TINY, ShardSpec(0, 2))
    b = write_run(tmp_path / "b", TINY, ShardSpec(1, 2), status="interrupted", skip=lambda c: c.size == 512)
    runs = [load_run(a), load_run(b)]
    refined = runs[0].results.assign(size=lambda f: f["size"] + 1)  # as many extra cells, at other sizes
    runs[0] = Run(path=runs[0].path, meta=runs[0].meta, results=pd.concat([runs[0].results, refined]),
                  samples=runs[0].samples)
    merged = merge_runs(runs)
    assert len(merged.results) > TINY.n_cells()
    assert merged.meta["missing_cells"] == len(shard_cells(TINY, ShardSpec(1, 2))) // len(TINY.sizes)
    assert merged.meta["status"] == "interrupted"


def test_a_cell_in_two_shards_is_refused(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", TINY, ShardSpec(0, 2))
    b = write_run(tmp_path / "b", TINY, ShardSpec(1, 2))
    runs = [load_run(a), load_run(b)]
    stray = runs[0].results.iloc[[0]]
    runs[1] = Run(path=runs[1].path, meta=runs[1].meta, results=pd.concat([runs[1].results, stray]),
                  samples=runs[1].samples)
    with pytest.raises(UsageError, match="in more than one shard"):
        merge_runs(runs)


def test_bare_tables_and_empty_input_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no runs"):
        merge_runs([])
    bare = Run(path=tmp_path / "t.csv", meta={}, results=pd.DataFrame(), samples=pd.DataFrame())
    with pytest.raises(UsageError, match="bare results table"):
        merge_runs([bare])


def test_write_merged_refuses_a_used_directory_and_leaves_nothing_behind(tmp_path: Path) -> None:
    merged = merge_runs([load_run(p) for p in write_shards(tmp_path / "s", TINY, 2)])
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        write_merged(merged, used)
    existing = write_merged(merged, tmp_path / "out")
    with pytest.raises(UsageError, match="already holds a run"):
        write_merged(merged, existing)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "s", "used"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert load_run(write_merged(merged, empty)).results.shape == load_run(existing).results.shape


# --- the partitioned dataset ----------------------------------------------------------------------------


def test_partition_values_are_safe() -> None:
    assert partition_value("AMD EPYC 7B13 (2 cores) · GPU: H100") == "AMD-EPYC-7B13-2-cores-GPU-H100"
    assert partition_value("a/b=c") == "a-b-c"
    assert partition_value("···") == "unknown"


def test_partitioned_dataset_reads_back_with_duckdb_grouped_by_machine(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    laptop = write_run(tmp_path / "runs" / "laptop-run", TINY)
    slow = write_run(tmp_path / "runs" / "slow-run", TINY, machine={**MACHINE, "hostname": "slowbox"},
                     model=lambda c: 3 * model_seconds(c))
    shard_paths = write_shards(tmp_path / "runs" / "sharded", TINY, 2)
    runs = [load_run(p) for p in (laptop, slow, *shard_paths)]
    labels = ["laptop", "slowbox", "cluster", "cluster"]
    out = tmp_path / "dataset"
    files = [part.cells_file for part in write_partitioned(runs, out, labels)]
    assert [f.relative_to(out).as_posix() for f in files] == [
        "machine=laptop/run=laptop-run/cells.parquet", "machine=slowbox/run=slow-run/cells.parquet",
        "machine=cluster/run=shard-0/cells.parquet", "machine=cluster/run=shard-1/cells.parquet"]

    glob = (out / "*" / "*" / "cells.parquet").as_posix()
    rows = duckdb.sql(
        f"SELECT machine, count(DISTINCT run) AS runs, count(*) AS cells, median(median_s) AS median_s "
        f"FROM read_parquet('{glob}', hive_partitioning = true) GROUP BY machine ORDER BY machine").fetchall()
    by_machine = {name: (n_runs, cells, median) for name, n_runs, cells, median in rows}
    assert set(by_machine) == {"cluster", "laptop", "slowbox"}
    assert by_machine["cluster"][:2] == (2, TINY.n_cells())  # the two shards together are one sweep
    assert by_machine["laptop"][:2] == (1, TINY.n_cells())
    assert by_machine["slowbox"][2] == pytest.approx(3 * by_machine["laptop"][2], rel=0.05)
    names = duckdb.sql(f"SELECT DISTINCT machine_name FROM read_parquet('{glob}', hive_partitioning = true) "
                       "ORDER BY 1").fetchall()
    assert [n for (n,) in names] == ["cluster", "laptop", "slowbox"]


def test_partitioned_names_machines_by_fingerprint_and_refuses_collisions(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path / "r1", TINY))
    parts = write_partitioned([run], tmp_path / "ds")
    assert parts[0].path.parent.name == "machine=Synthetic-CPU-9000-8-cores-TF-2.99.0"
    # The same run given twice is one run (idempotent); another run under the same id and machine is refused.
    assert [p.added for p in write_partitioned([run, run], tmp_path / "ds2")] == [True, False]
    other = load_run(write_run(tmp_path / "elsewhere" / "r1", TINY, model=lambda c: 2 * model_seconds(c)))
    with pytest.raises(UsageError, match="both land in"):
        write_partitioned([run, other], tmp_path / "ds4")
    with pytest.raises(UsageError, match="2 labels for 1 runs"):
        write_partitioned([run], tmp_path / "ds3", ["a", "b"])


def test_merged_meta_is_strict_json(tmp_path: Path) -> None:
    merged_dir = write_merged(merge_runs([load_run(p) for p in write_shards(tmp_path, TINY, 2)]),
                              tmp_path / "m")
    meta = json.loads((merged_dir / "meta.json").read_text(), parse_constant=lambda c: math.nan)
    assert meta["schema_version"] == SCHEMA_VERSION
    assert "NaN" not in (merged_dir / "meta.json").read_text()


# --- the worked examples -----------------------------------------------------------------------------------
#
# The Slurm and Kubernetes examples are run here as they run there (bash / sh, with the scheduler's
# environment variables simulated), against a stand-in `devbench` on PATH that implements the commands they
# use with this library: `sweep` plans the shard from the environment exactly as `devbench sweep` does and
# writes its cells with the model above (no TensorFlow); `merge` and `export` are the real functions;
# `report` is only recorded. Every call is logged, so the tests see what the examples ran.

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TINY_OPTS = "--sizes 64..512 --ops matmul,add,conv2d --devices all"
LOGICAL_CPUS = ("CPU:0", "CPU:1")
"""What ``--devices all`` means with DEVBENCH_LOGICAL_CPUS=2 and no GPU."""


def spec_from_options(options: Sequence[str]) -> SweepSpec:
    """The SweepSpec that ``devbench sweep OPTIONS`` plans, for the options the examples use."""
    from devbench.errors import choose_list
    from devbench.spec import DTYPES, MODES, parse_sizes

    values = dict(zip(options[::2], options[1::2], strict=True))
    unknown = set(values) - {"--sizes", "--ops", "--dtypes", "--devices", "--modes"}
    assert not unknown, f"the examples use options this stand-in does not know: {unknown}"
    devices = values.get("--devices", "CPU:0")
    return SweepSpec(
        ops=choose_list("op", values["--ops"], OPS),
        sizes=parse_sizes(values["--sizes"]),
        dtypes=choose_list("dtype", values.get("--dtypes", "float32"), DTYPES),
        devices=LOGICAL_CPUS if devices == "all" else tuple(devices.split(",")),
        modes=choose_list("mode", values.get("--modes", "eager"), MODES),
    )


def fake_devbench(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """The stand-in ``devbench`` (see above); returns the exit code the CLI would."""
    import sys

    from devbench.export import export
    from devbench.shard import shard_from_env

    with open(environ["FAKE_DEVBENCH_LOG"], "a") as log:
        log.write(json.dumps(list(argv)) + "\n")
    args = [a for a in argv if a != "--quiet"]
    try:
        if args[:2] == ["sweep", "--resume"]:
            return 0 if (Path(args[2]) / "meta.json").is_file() else 2
        if args[0] == "sweep":
            out = Path(args[args.index("--out") + 1])
            options = [a for i, a in enumerate(args[1:], 1) if a != "--out" and args[i - 1] != "--out"]
            spec = spec_from_options(options)
            shard = shard_from_env(environ)
            write_run(out, spec, shard)
            return 0
        if args[0] == "merge":
            out = Path(args[args.index("--out") + 1])
            sources = [Path(a) for a in args[1:args.index("--out")]]
            write_merged(merge_runs([load_run(p) for p in sources], run_id=out.name, argv=args), out)
            return 0
        if args[0] == "export":
            target = Path(args[args.index("--out") + 1])
            target.write_text(export(load_run(Path(args[1])), args[args.index("--format") + 1]))
            return 0
        if args[0] == "report":
            return 0 if (Path(args[1]) / "meta.json").is_file() else 2
    except UsageError as exc:
        print(f"devbench: error: {exc}", file=sys.stderr)
        return 2
    print(f"devbench: unknown command {args!r}", file=sys.stderr)
    return 2


def _install_fake(tmp_path: Path) -> dict[str, str]:
    import os
    import sys

    root = Path(__file__).resolve().parent.parent
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "devbench"
    fake.write_text(f"#!{sys.executable}\nimport os, sys\nsys.path[:0] = {[str(root / 'src'), str(root)]!r}\n"
                    "from tests.test_merge import fake_devbench\n"
                    "sys.exit(fake_devbench(sys.argv[1:], os.environ))\n")
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
            "FAKE_DEVBENCH_LOG": str(tmp_path / "calls.jsonl"), "DEVBENCH_RUNS": str(tmp_path / "runs")}


def _calls(env: Mapping[str, str]) -> list[list[str]]:
    path = Path(env["FAKE_DEVBENCH_LOG"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _run_script(interpreter: str, script: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([interpreter, "-c", script], env=dict(env), capture_output=True, text=True,
                          timeout=300, check=False)


def _sbatch_array(text: str) -> range:
    line = next(line for line in text.splitlines() if line.startswith("#SBATCH --array="))
    low, high = line.split("=", 1)[1].split("-")
    return range(int(low), int(high) + 1)


def _default_opts(text: str) -> list[str]:
    """The sweep options an example uses when SWEEP_OPTS is not set."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("SWEEP_OPTS=${SWEEP_OPTS:-"):
            return shlex.split(stripped.split(":-", 1)[1].rstrip("}").strip('"'))
        if stripped.startswith("value: \"--sizes"):
            return shlex.split(stripped.split(":", 1)[1].strip().strip('"'))
    raise AssertionError("no SWEEP_OPTS in the example")


def _shell_block(text: str, marker: str = "- |") -> str:
    """The literal block scalar after ``marker`` in a manifest (without a YAML parser: none is installed)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == marker)
    indent = len(lines[start]) - len(lines[start].lstrip()) + 2
    block = []
    for line in lines[start + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            break
        block.append(line[indent:])
    return "\n".join(block) + "\n"


def _manifest_env(text: str) -> dict[str, str]:
    """``- name: X`` / ``value: "Y"`` pairs of a container's env."""
    lines = [line.strip() for line in text.splitlines()]
    return {line.split(":", 1)[1].strip(): lines[i + 1].split(":", 1)[1].strip().strip('"')
            for i, line in enumerate(lines) if line.startswith("- name:") and lines[i + 1].startswith("value:")}


def _assert_union_is_plan(spec: SweepSpec, shards: Sequence[ShardSpec]) -> None:
    keys = [cell.key() for shard in shards for cell in shard_cells(spec, shard)]
    assert len(keys) == len(set(keys))
    assert sorted(keys) == sorted(cell.key() for cell in spec.cells())


def test_slurm_example_plans_the_default_sweep_from_the_array_variables() -> None:
    text = (EXAMPLES / "slurm" / "sweep_array.sbatch").read_text()
    tasks = _sbatch_array(text)
    spec = spec_from_options(_default_opts(text))
    from devbench.shard import shard_from_env

    shards = [shard_from_env({"SLURM_ARRAY_TASK_ID": str(t), "SLURM_ARRAY_TASK_MIN": str(tasks[0]),
                              "SLURM_ARRAY_TASK_MAX": str(tasks[-1]), "SLURM_ARRAY_TASK_COUNT": str(len(tasks))})
              for t in tasks]
    assert [s.index if s else None for s in shards] == list(range(len(tasks)))
    _assert_union_is_plan(spec, [s for s in shards if s is not None])
    assert "#SBATCH --exclusive" in text


def test_kubernetes_example_plans_the_default_sweep_from_the_completion_index() -> None:
    text = (EXAMPLES / "kubernetes" / "indexed-job.yaml").read_text()
    assert "completionMode: Indexed" in text
    assert "podAntiAffinity:" in text
    completions = int(next(line.split(":")[1] for line in text.splitlines() if line.strip().startswith("completions:")))
    env = _manifest_env(text)
    assert int(env["DEVBENCH_SHARD_COUNT"]) == completions, "DEVBENCH_SHARD_COUNT must equal completions"
    from devbench.shard import shard_from_env

    shards = [shard_from_env({"JOB_COMPLETION_INDEX": str(i), "DEVBENCH_SHARD_COUNT": env["DEVBENCH_SHARD_COUNT"]})
              for i in range(completions)]
    _assert_union_is_plan(spec_from_options(_default_opts(text)), [s for s in shards if s is not None])


@pytest.mark.slow
def test_slurm_example_runs_three_shards_then_merges_them(tmp_path: Path) -> None:
    env = {**_install_fake(tmp_path), "SWEEP_OPTS": TINY_OPTS}
    sweep = (EXAMPLES / "slurm" / "sweep_array.sbatch").read_text()
    merge = (EXAMPLES / "slurm" / "merge.sbatch").read_text()
    tasks = _sbatch_array(sweep)
    array = {"SLURM_ARRAY_JOB_ID": "4242", "SLURM_ARRAY_TASK_MIN": str(tasks[0]),
             "SLURM_ARRAY_TASK_MAX": str(tasks[-1]), "SLURM_ARRAY_TASK_COUNT": str(len(tasks))}
    for task in tasks:  # one after another, as three nodes would run them side by side
        done = _run_script("bash", sweep, {**env, **array, "SLURM_ARRAY_TASK_ID": str(task)})
        assert done.returncode == 0, done.stderr
    sweep_dir = tmp_path / "runs" / "sweep-4242"

    # the middle task is requeued: it resumes its own directory instead of starting over
    retry = _run_script("bash", sweep, {**env, **array, "SLURM_ARRAY_TASK_ID": str(tasks[1])})
    assert retry.returncode == 0, retry.stderr
    assert _calls(env)[-1] == ["sweep", "--resume", str(sweep_dir / f"shard-{tasks[1]}"), "--quiet"]

    done = _run_script("bash", merge, {**env, "SWEEP_JOB": "4242"})
    assert done.returncode == 0, done.stderr
    merged = load_run(sweep_dir / "merged")
    spec = spec_from_options(shlex.split(TINY_OPTS))
    assert sorted(merged.results[list(IDENTITY)].itertuples(index=False, name=None)) == sorted(
        c.key() for c in spec.cells())
    assert merged.meta["status"] == "complete"
    assert crossover_frame(merged.results)["crossover_size"].notna().all()
    assert json.loads((sweep_dir / "merged" / "bmf.json").read_text())
    assert [c[0] for c in _calls(env)] == ["sweep"] * (len(tasks) + 1) + ["merge", "report", "export"]


@pytest.mark.slow
def test_slurm_merge_names_a_missing_shard(tmp_path: Path) -> None:
    env = {**_install_fake(tmp_path), "SWEEP_OPTS": TINY_OPTS}
    sweep = (EXAMPLES / "slurm" / "sweep_array.sbatch").read_text()
    array = {"SLURM_ARRAY_JOB_ID": "7", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "2",
             "SLURM_ARRAY_TASK_COUNT": "3"}
    for task in (0, 2):
        assert _run_script("bash", sweep, {**env, **array, "SLURM_ARRAY_TASK_ID": str(task)}).returncode == 0
    done = _run_script("bash", (EXAMPLES / "slurm" / "merge.sbatch").read_text(), {**env, "SWEEP_JOB": "7"})
    assert done.returncode == 2
    assert "missing shard 1/3" in done.stderr
    assert not (tmp_path / "runs" / "sweep-7" / "merged").exists()


@pytest.mark.slow
def test_kubernetes_example_runs_each_index_then_merges(tmp_path: Path) -> None:
    manifest = (EXAMPLES / "kubernetes" / "indexed-job.yaml").read_text()
    env = {**_install_fake(tmp_path), "SWEEP_OPTS": TINY_OPTS,
           "DEVBENCH_SHARD_COUNT": _manifest_env(manifest)["DEVBENCH_SHARD_COUNT"]}
    pod = _shell_block(manifest)
    assert "devbench sweep $SWEEP_OPTS --out" in pod
    for index in range(int(env["DEVBENCH_SHARD_COUNT"])):
        done = _run_script("sh", pod, {**env, "JOB_COMPLETION_INDEX": str(index)})
        assert done.returncode == 0, done.stderr
    merge = _shell_block((EXAMPLES / "kubernetes" / "merge-job.yaml").read_text())
    done = _run_script("sh", merge, env)
    assert done.returncode == 0, done.stderr
    merged = load_run(tmp_path / "runs" / "devbench-sweep" / "merged")
    spec = spec_from_options(shlex.split(TINY_OPTS))
    assert len(merged.results) == spec.n_cells()
    assert [s["index"] for s in merged.meta["shards"]] == [0, 1, 2]


def test_fleet_shards_with_other_devices_merge_with_every_device_in_the_spec(tmp_path: Path) -> None:
    """``--devices all`` on a node with a GPU records another device list: the same sweep, with --fleet."""
    gpu_spec = SweepSpec(ops=TINY.ops, sizes=TINY.sizes, devices=("CPU:0", "GPU:0"))
    gpu_box = {**MACHINE, "devices": [{"name": "CPU:0", "kind": "CPU"}, {"name": "GPU:0", "kind": "GPU"}]}
    a = write_run(tmp_path / "a", TINY, ShardSpec(0, 2))
    b = write_run(tmp_path / "b", gpu_spec, ShardSpec(1, 2), machine=gpu_box,
                  model=lambda c: model_seconds(Cell(c.size, c.op, c.dtype, "CPU:0")))
    with pytest.raises(UsageError, match="different sweeps"):
        merge_runs([load_run(a), load_run(b)])
    merged = merge_runs([load_run(a), load_run(b)], fleet=True)
    assert merged.meta["spec"]["devices"] == ["CPU:0", "CPU:1", "GPU:0"]
    assert merged.meta["status"] == "interrupted"  # no machine measured every device of every curve
    assert merged.meta["missing_cells"] == 3 * len(TINY.ops) * len(TINY.sizes) - len(merged.results)
