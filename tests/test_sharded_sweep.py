"""Beyond one machine, end to end with the real CLI and TensorFlow: a sweep split into three shards, run one
after another (as three nodes would), merged into one run whose cells are the unsharded plan's; then the
fleet table over two runs and every export. Two logical CPUs stand in for two devices.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from devbench.cli import main
from devbench.schema import IDENTITY
from devbench.spec import SweepSpec
from devbench.store import load_run

pytestmark = [pytest.mark.tf, pytest.mark.slow]

SWEEP = ["sweep", "--sizes", "64..512", "--ops", "matmul,add,conv2d", "--devices", "all", "--rounds", "2",
         "--max-cell-time", "0.04", "--no-calibrate", "--quiet"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("shards")
    paths = [root / f"shard-{k}" for k in range(3)]
    for k, path in enumerate(paths):
        assert main([*SWEEP, "--shard", f"{k}/3", "--out", str(path)]) == 0
    return paths


def test_three_shards_merge_into_the_unsharded_plan(shards: list[Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    metas = [json.loads((path / "meta.json").read_text()) for path in shards]
    assert [m["shard"]["index"] for m in metas] == [0, 1, 2]
    assert len({m["shard"]["spec_hash"] for m in metas}) == 1
    out = tmp_path / "merged"
    assert main(["merge", *map(str, shards), "--out", str(out)]) == 0
    merged = load_run(out)
    spec = SweepSpec.from_dict(merged.meta["spec"])
    keys = sorted(merged.results[list(IDENTITY)].itertuples(index=False, name=None))
    assert keys == sorted(cell.key() for cell in spec.cells())
    assert merged.meta["status"] == "complete"
    assert (merged.results["n_rounds"] == 2).all()
    capsys.readouterr()
    assert main(["crossover", str(out), "--format", "json"]) == 0
    crossings = json.loads(capsys.readouterr().out)
    assert {row["op"] for row in crossings} == {"matmul", "add", "conv2d"}
    assert main(["report", str(out), "--html"]) == 0
    assert (out / "report.md").is_file()
    assert (out / "report.html").is_file()


def test_a_missing_shard_is_named_by_index(shards: list[Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["merge", str(shards[0]), str(shards[2]), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "missing shard 1/3" in err
    assert err.count("\n") == 1


def test_fleet_and_exports_of_real_runs(shards: list[Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "merged"
    assert main(["merge", *map(str, shards), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["fleet", str(out), str(out), "--label", "here", "--label", "again", "--format", "csv",
                 "--chart", str(tmp_path / "fleet.png")]) == 0
    table = capsys.readouterr().out
    assert "here" in table
    assert "again" in table
    assert (tmp_path / "fleet.png").is_file()
    for fmt in ("pytest-benchmark", "bmf", "github-action-benchmark"):
        target = tmp_path / f"{fmt}.json"
        assert main(["export", str(out), "--format", fmt, "--out", str(target)]) == 0
        assert json.loads(target.read_text())
    bmf = json.loads((tmp_path / "bmf.json").read_text())
    ok = merged_ok(out)
    assert len(bmf) == ok
    assert "matmul/float32/eager/CPU:0/64" in bmf


def merged_ok(run_dir: Path) -> int:
    results = pd.read_parquet(run_dir / "results.parquet")
    return int((results["status"] == "ok").sum())


def test_an_impossible_shard_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "--shard", "3/3", "--ops", "add", "--sizes", "16"]) == 2
    assert "3/3" in capsys.readouterr().err
