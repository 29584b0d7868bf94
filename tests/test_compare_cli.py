"""``devbench compare`` as a user calls it: one run per side, several runs per side (``--``), bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devbench.cli import main
from devbench.cli.results import SIDES, split_sides
from devbench.errors import UsageError
from tests.test_cli_results import make_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {
        "a1": make_run(root / "a1", rounds=3, drift=0.02, seed=1),
        "a2": make_run(root / "a2", rounds=3, drift=0.02, seed=2),
        "b1": make_run(root / "b1", rounds=3, drift=0.02, seed=3),
        "b2": make_run(root / "b2", rounds=3, drift=0.02, seed=4),
        "slow": make_run(root / "slow", slowdown=1.5, rounds=3, drift=0.02, seed=5),
    }


def test_several_runs_per_side_separated_by_double_dash(runs: dict[str, Path],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    a1, a2, b1, b2 = (str(runs[k]) for k in ("a1", "a2", "b1", "b2"))
    assert main(["compare", a1, a2, "--", b1, b2, "--fail-on-regression", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["base_runs"] == [a1, a2]
    assert data["new_runs"] == [b1, b2]
    assert data["summary"]["regression"] is False
    # Options may come first too.
    assert main(["compare", "--format", "table", a1, a2, "--", b1]) == 0
    out = capsys.readouterr().out
    assert f"base (2 runs): {a1}, {a2}" in out
    assert f"new:  {b1}" in out


def test_two_runs_without_double_dash_still_compare(runs: dict[str, Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(runs["a1"]), str(runs["slow"]), "--fail-on-regression"]) == 1
    assert "gate failed" in capsys.readouterr().err


@pytest.mark.parametrize(("tokens", "message"), [
    (["{a1}"], "compare got 1 run(s) without '--'; allowed: BASE NEW"),
    (["{a1}", "{a2}", "{b1}"], "compare got 3 run(s) without '--'"),
    (["{a1}", "--"], "compare got no new run after '--'"),
    (["{a1}", "--", "--format", "csv"], "compare got no new run after '--'"),
    (["--", "{b1}"], "compare got no base run before '--'"),
    (["{a1}", "--", "{b1}", "--", "{b2}"], "compare got '--' twice"),
    (["{a1}", "--", "{b1}", "{missing}"], "{missing}"),
])
def test_bad_sides_are_one_clear_line_and_exit_2(runs: dict[str, Path], tmp_path: Path, tokens: list[str],
                                                  message: str, capsys: pytest.CaptureFixture[str]) -> None:
    names = {k: str(v) for k, v in runs.items()} | {"missing": str(tmp_path / "nope")}
    assert main(["compare", *(t.format(**names) for t in tokens)]) == 2
    err = capsys.readouterr().err.strip()
    assert message.format(**names) in err
    assert len(err.splitlines()) == 1


def test_split_sides() -> None:
    a, b, c = Path("a"), Path("b"), Path("c")
    assert split_sides([a, b]) == ([a], [b])
    assert split_sides([a, b, SIDES, c]) == ([a, b], [c])
    with pytest.raises(UsageError, match="no new run"):
        split_sides([a, SIDES])
