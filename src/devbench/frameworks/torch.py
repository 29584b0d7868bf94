"""PyTorch: ``torch:cpu``, ``torch:cuda:N`` (``torch:cuda`` means ``torch:cuda:0``), ``torch:mps``."""

from __future__ import annotations

import re
from typing import Any

from devbench.errors import UsageError
from devbench.frameworks.base import (
    FULL_SYNC,
    NO_SYNC,
    SCALAR_SYNC,
    SYNC_DEVICES,
    TRANSFER_SYNC,
    Device,
    Framework,
)

KEY = "torch"
_NAME = re.compile(r"^(cpu|cuda|mps)(?::(\d+))?$")
_KINDS = {"cpu": "CPU", "cuda": "GPU", "mps": "MPS"}

MODES = ("eager", "compile")
"""``eager`` op by op, ``compile`` (``torch.compile``)."""

SYNCS = {
    SCALAR_SYNC: "reads one element of the output back to the host (.item())",
    FULL_SYNC: "copies every output to the host",
    SYNC_DEVICES: "torch.cuda.synchronize() (torch.mps.synchronize()): waits for the device, copies nothing",
    NO_SYNC: "no wait: times how fast work is enqueued",
    TRANSFER_SYNC: "each call copies its inputs in and its result out",
}


def parse(text: str, written: str) -> Device:
    match = _NAME.match(text.lower())
    if not match or (match[1] in ("cpu", "mps") and int(match[2] or 0) != 0):
        raise UsageError(f"bad PyTorch device name {written!r}; write it like torch:cpu, torch:cuda:0 or torch:mps")
    if match[1] == "cuda":
        native = f"cuda:{int(match[2] or 0)}"
        return Device(f"{KEY}:{native}", KEY, "GPU", int(match[2] or 0), native)
    return Device(f"{KEY}:{match[1]}", KEY, _KINDS[match[1]], None, match[1])


def tf32_state(torch: Any) -> tuple[str, str, dict[str, Any]]:
    matmul = bool(torch.backends.cuda.matmul.allow_tf32)
    cudnn = bool(torch.backends.cudnn.allow_tf32)
    precision = str(torch.get_float32_matmul_precision())
    # set_float32_matmul_precision("high"/"medium") also lets matmuls use TF32, whatever allow_tf32 says.
    matmul_tf32 = matmul or precision != "highest"
    if matmul_tf32 and cudnn:
        state, why = "enabled", "float32 matmuls and convolutions may use TF32"
    elif not matmul_tf32 and not cudnn:
        state, why = "disabled", "float32 matmuls and convolutions run in full float32"
    else:
        state = "partial"
        why = ("convolutions (cuDNN) may use TF32, matmuls run in full float32" if cudnn
               else "matmuls may use TF32, convolutions (cuDNN) run in full float32")
    return state, why, {"matmul_allow_tf32": matmul, "cudnn_allow_tf32": cudnn,
                        "float32_matmul_precision": precision}


def tf32_apply(torch: Any, allow: bool) -> list[str]:
    precision = "high" if allow else "highest"
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow
    torch.set_float32_matmul_precision(precision)
    return [f"torch.backends.cuda.matmul.allow_tf32 = {allow}", f"torch.backends.cudnn.allow_tf32 = {allow}",
            f"torch.set_float32_matmul_precision({precision!r})"]


FRAMEWORK = Framework(
    key=KEY, label="PyTorch", module="torch", install='pip install "devbench[torch]"', grammar=parse,
    host="torch:cpu", backend="devbench.backends.torch:TorchBackend", modes=MODES, syncs=SYNCS,
    tf32_state=tf32_state, tf32_apply=tf32_apply,
)
