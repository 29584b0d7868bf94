"""Run the devbench CLI in a subprocess, as a user types it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import devbench

SRC = str(Path(devbench.__file__).resolve().parent.parent)


def run_cli(*args: str, timeout: float = 180, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
                "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-m", "devbench", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd, check=False)
