"""The PyTorch backend for real on the CPU (``torch:cpu``): what is torch's own (nn.Linear's layout, its errors,
torch.compile and TensorFlow). The contract every backend keeps (correctness, placement, syncs, modes,
unsupported pairs) is tests/test_backends.py's, run against torch there too. Skipped where PyTorch is not
installed (CI: its wheel is over 500 MB)."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devbench import ops
from devbench.runner import run_cell
from devbench.schema import VisitRecord
from devbench.spec import Cell, TimingPolicy

pytest.importorskip("torch", reason="PyTorch is not installed (pip install 'devbench[torch]'); its tests run "
                    "where it is")

from devbench.backends.torch import (  # after the skip: the module needs torch
    COMPILE_NEXT_TO_TF,
    TorchBackend,
    build_torch,
    classify,
    torch_device,
)
from devbench.devices import torch

QUICK = TimingPolicy(max_cell_time=0.2, min_samples=3, max_samples=10, warmup_time=0.02, min_block_time=0.005)
DEVICE = "torch:cpu"
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def backend() -> TorchBackend:
    return TorchBackend()


def _record(backend: Any, cell: Cell, policy: TimingPolicy = QUICK) -> VisitRecord:
    return run_cell(backend, "test", cell, policy, seed=0).record


def _ok(backend: Any, cell: Cell, policy: TimingPolicy = QUICK) -> VisitRecord:
    record = _record(backend, cell, policy)
    assert record.status == "ok", record.reason
    return record


def _cell(op: str = "matmul", size: int = 32, dtype: str = "float32", **kw: str) -> Cell:
    return Cell(size=size, op=op, dtype=dtype, device=DEVICE, **kw)


def test_dense_step_is_an_nn_linear_holding_the_kernel_transposed() -> None:
    """torch's weight is (out, in): it must hold the Keras-layout kernel transposed, or x @ W would differ."""
    op = ops.OPS["dense_step"]
    built = build_torch(op, 8, "float64", 0, torch_device(DEVICE))
    layer = built.state
    assert isinstance(layer, torch().nn.Linear)
    kernel, bias = op.host_inputs(8, "float64", 0).params
    np.testing.assert_array_equal(layer.weight.detach().numpy().T, kernel)
    np.testing.assert_array_equal(layer.bias.detach().numpy(), bias)


def test_kernels_torch_lacks_and_cuda_oom_are_classified() -> None:
    assert classify(RuntimeError('"addmm_cuda" not implemented for \'Int\''))[0] == "unsupported"
    assert classify(torch().cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))[0] == "oom"
    assert classify(RuntimeError("something else"))[0] == "error"


COMPILE_ALONE = """
import sys
from devbench.backends.torch import TorchBackend
from devbench.runner import run_cell
from devbench.spec import Cell, TimingPolicy

policy = TimingPolicy(max_cell_time=0.2, min_samples=3, max_samples=10, warmup_time=0.02, min_block_time=0.005)
record = run_cell(TorchBackend(), "t", Cell(size=16, op="add", dtype="float32", device="torch:cpu", mode="compile"),
                  policy, seed=0).record
assert "tensorflow" not in sys.modules
print(record.status, record.placed_device, record.reason, sep="|")
"""


@pytest.mark.slow
def test_compile_mode_matches_numpy_and_runs() -> None:
    """torch.compile needs a C compiler on the CPU and takes seconds (a minute on 2 busy cores). It runs in a
    process of its own: where TensorFlow is loaded (this test session) it would segfault."""
    proc = subprocess.run([sys.executable, "-c", COMPILE_ALONE], capture_output=True, text=True, check=False,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert proc.returncode == 0, proc.stderr
    status, placed, reason = proc.stdout.strip().splitlines()[-1].split("|")
    if status == "unsupported":
        assert reason.startswith("torch.compile failed"), reason
        pytest.skip(f"torch.compile cannot compile here: {reason}")
    assert (status, placed) == ("ok", DEVICE), reason


def test_compile_next_to_tensorflow_is_unsupported_not_a_crash(monkeypatch: pytest.MonkeyPatch,
                                                              backend: TorchBackend) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    record = _record(backend, _cell("add", mode="compile"))
    assert record.status == "unsupported"
    assert record.reason == COMPILE_NEXT_TO_TF
