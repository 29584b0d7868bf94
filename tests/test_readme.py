"""The README is part of the product: its commands are what CI runs, its API is what the package exports."""

from __future__ import annotations

import re
from pathlib import Path

import devbench

ROOT = Path(__file__).resolve().parent.parent


def _code_lines(text: str) -> list[str]:
    return re.findall(r"^```\n(.+?)\n```$", text, flags=re.MULTILINE | re.DOTALL)


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = [block for block in _code_lines(readme) if block.startswith("python3 -m venv")]
    assert len(commands) == 2, "the README has exactly two fresh-machine commands"
    install_and_sweep, install_and_test = commands
    assert "devbench sweep" in install_and_sweep
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install_and_test in ci


def test_public_api_is_what_the_readme_shows() -> None:
    assert sorted(devbench.__all__) == sorted([
        "RESULT_COLUMNS", "SAMPLE_COLUMNS", "SCHEMA_VERSION", "Cell", "CellRow", "DevbenchError", "Measurement",
        "Run", "Summary", "SweepSpec", "TimingPolicy", "UsageError", "VisitRecord", "__version__", "execute",
        "load_run", "measure", "op", "parse_sizes", "summarize",
    ])
    for name in devbench.__all__:
        assert getattr(devbench, name) is not None
    readme = (ROOT / "README.md").read_text()
    for name in ("SweepSpec", "TimingPolicy", "execute", "load_run", "parse_sizes", "measure", "devbench.op"):
        assert name in readme


def test_readme_documents_every_result_column() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### Result columns", 1)[1].split("\n\n`samples.parquet`", 1)[0]
    documented = {name.strip() for group in re.findall(r"^\| `([^`]+)`", table, flags=re.MULTILINE)
                  for name in group.split(",")}
    missing = [c for c in devbench.RESULT_COLUMNS if c not in documented]
    assert not missing, f"README lacks result columns {missing}"
