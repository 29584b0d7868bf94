"""The PyTorch backend: a cell's op on a torch device (``torch:cpu``, ``torch:cuda:N``, ``torch:mps``).

Modes: ``eager`` (torch's own, op by op) and ``compile`` (``torch.compile`` of the whole op, ``dynamic=False``:
the cold call compiles it, which needs a C compiler for the CPU and may take seconds; a compilation that fails
makes the cell ``unsupported`` with the reason, and so does a process that has loaded TensorFlow, where
torch.compile's Triton import segfaults). ``graph_loop`` and TensorFlow's modes are ``unsupported``.

dtypes: all five where torch has the kernel (an int32 matmul on CUDA has none: ``unsupported`` with torch's
message); int32 gradients are ``unsupported`` as everywhere.

torch runs CPU ops synchronously and CUDA ops asynchronously on one stream per device, in order: reading one
element of the last output (``.item()``) waits for all queued work, like TF's ``.numpy()``.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from devbench.backends.base import (
    FIRST_OPS,
    Built,
    DeviceInit,
    Dispatch,
    FrameworkBackend,
    UnsupportedCombination,
    classify_common,
    error_reason,
    python_loop,
)
from devbench.cache import Flush, flush_bytes, gpu_l2
from devbench.devices import torch, torch_cuda_available, torch_device_name
from devbench.frameworks import parse
from devbench.frameworks.base import FULL_SYNC, NO_SYNC, SCALAR_SYNC, SYNC_DEVICES, TRANSFER_SYNC
from devbench.frameworks.torch import MODES
from devbench.ops import OpDef, leaves_of
from devbench.spec import Cell
from devbench.timer import Clock


def torch_device(name: str) -> Any:
    """``torch.device`` of canonical ``torch:cpu`` / ``torch:cuda:N`` / ``torch:mps``."""
    return torch().device(parse(name).native)


# ---------------------------------------------------------------------------------------------------------
# Building an op on the device


def to_device(array: np.ndarray, dtype: str, device: Any) -> Any:
    """A tensor of ``dtype`` on ``device`` from host data (copied in float32/float64/int32, cast on the device)."""
    module = torch()
    host_dtype = np.int32 if dtype == "int32" else (np.float64 if dtype == "float64" else np.float32)
    return module.from_numpy(np.ascontiguousarray(array.astype(host_dtype))).to(device).to(getattr(module, dtype))


def host_f64(tensor: Any) -> np.ndarray:
    out: np.ndarray = tensor.detach().to("cpu", dtype=torch().float64).numpy()
    return out


@dataclass
class BuiltOp:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    reference: Callable[[], list[np.ndarray]]
    state: Any = None


def build_torch(op: OpDef, n: int, dtype: str, seed: int, device: Any) -> BuiltOp:
    inputs = op.host_inputs(n, dtype, seed)
    args = tuple(to_device(a, dtype, device) for a in inputs.args)
    params = tuple(to_device(p, dtype, device) for p in inputs.params)
    expression = op.expression("torch")(torch(), params)

    def reference() -> list[np.ndarray]:
        return [np.asarray(o, dtype=np.float64) for o in leaves_of(op.numpy(*[host_f64(t) for t in (*args, *params)]))]

    return BuiltOp(fn=expression.fn, args=args, reference=reference, state=expression.state)


def leaves(output: Any) -> list[Any]:
    return list(output) if isinstance(output, (tuple, list)) else [output]


# ---------------------------------------------------------------------------------------------------------
# Sync


def sync_scalar(output: Any) -> None:
    """Read one element of the last output back (``.item()``); the device's stream order makes it wait for all."""
    leaves(output)[-1].reshape(-1)[0].item()


def sync_full(output: Any) -> None:
    """Copy every output to host memory (``.cpu()``; on the CPU it already is there, and ``.numpy()`` would add
    only a view, which bfloat16 does not have)."""
    for leaf in leaves(output):
        leaf.cpu()


def sync_devices(output: Any) -> None:
    """``torch.cuda.synchronize`` (``torch.mps.synchronize``) for the output's device; nothing on the CPU."""
    device = leaves(output)[-1].device
    if device.type == "cuda":
        torch().cuda.synchronize(device)
    elif device.type == "mps":
        torch().mps.synchronize()


def sync_none(output: Any) -> None:
    """No wait (on the CPU torch is synchronous, so this equals the others there)."""
    del output


def sync_transfer(output: Any) -> None:
    """Nothing left to wait for: with sync ``transfer`` every call copies its result to the host itself."""
    del output


SYNCS: dict[str, Callable[[Any], None]] = {
    SCALAR_SYNC: sync_scalar,
    FULL_SYNC: sync_full,
    SYNC_DEVICES: sync_devices,
    NO_SYNC: sync_none,
    TRANSFER_SYNC: sync_transfer,
}


# ---------------------------------------------------------------------------------------------------------
# Modes


COMPILE_NEXT_TO_TF = ("torch.compile is not run in a process that has loaded TensorFlow: its Triton import "
                      "crashes the process there (segmentation fault; both bundle LLVM). Sweep compile cells "
                      "with --devices naming torch devices only")


def refuse_compile_next_to_tf(mode: str) -> None:
    """UnsupportedCombination for a ``compile`` cell in a process that has loaded TensorFlow."""
    if mode == "compile" and "tensorflow" in sys.modules:
        raise UnsupportedCombination(COMPILE_NEXT_TO_TF)


def wrap_mode(fn: Callable[..., Any], mode: str) -> Callable[..., Any]:
    refuse_compile_next_to_tf(mode)
    if mode == "compile":
        compiled: Callable[..., Any] = torch().compile(fn, dynamic=False)
        return compiled
    return fn


def make_dispatch(fn: Callable[..., Any], args: tuple[Any, ...], mode: str, sync: str, device: Any) -> Dispatch:
    """The callables the timer drives for ``fn(*args)`` in ``mode``. With sync ``transfer`` each call copies the
    inputs, kept in host memory, to the device (``.to(device)``) and every output back (``.cpu()``)."""
    wrapped = wrap_mode(fn, mode)
    if sync == TRANSFER_SYNC:
        hosts = tuple(arg.detach().cpu() for arg in args)

        def call_with_transfer() -> Any:
            output = wrapped(*[host.to(device) for host in hosts])
            for leaf in leaves(output):
                leaf.cpu()
            return output

        return Dispatch(call=call_with_transfer, block=python_loop(call_with_transfer))
    return Dispatch(call=lambda: wrapped(*args), block=python_loop(wrapped, *args))


# ---------------------------------------------------------------------------------------------------------
# Errors -> status

_UNSUPPORTED_HINTS = ("not implemented for", "not supported", "unsupported", "no kernel")


def classify(exc: BaseException) -> tuple[str, str]:
    """(status, reason): the shared rules, then CUDA out of memory, kernels torch lacks, and failed compiles."""
    common = classify_common(exc)
    if common is not None:
        return common
    module = torch()
    if isinstance(exc, module.cuda.OutOfMemoryError):
        return "oom", error_reason(exc)
    origin = type(exc).__module__
    if origin.startswith(("torch._dynamo", "torch._inductor")):
        return "unsupported", f"torch.compile failed: {error_reason(exc)}"
    if isinstance(exc, NotImplementedError) or any(hint in str(exc).lower() for hint in _UNSUPPORTED_HINTS):
        return "unsupported", error_reason(exc)
    return "error", error_reason(exc)


# ---------------------------------------------------------------------------------------------------------
# Device initialisation

FIRST_OP = "a 1-element float32 add on the device and its copy back to the host (.cpu())"


def initialise_device(device: str) -> DeviceInit:
    """Time the first op of this process on ``device`` (once; see :class:`devbench.backends.base.FirstOps`): on a
    GPU the CUDA context, the first kernel launch and allocator set-up, which no ``cold_s`` should carry."""
    def first_op() -> None:
        one = torch().ones(1, dtype=torch().float32, device=torch_device(device))
        (one + one).cpu()

    return FIRST_OPS.time("torch", device, first_op, FIRST_OP)


# ---------------------------------------------------------------------------------------------------------
# The backend: PyTorch's hooks for the one run_cell (devbench.backends.base.FrameworkBackend)


class TorchBackend(FrameworkBackend):
    """Runs cells on torch devices. Remembers which (op, dtype, device, mode) passed the numpy check."""

    FRAMEWORK = "torch"
    SYNCS = SYNCS

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self.torch = torch()
        self._compiled = False

    @staticmethod
    def initialise(device: str) -> DeviceInit:
        return initialise_device(device)

    def build(self, op: OpDef, n: int, dtype: str, seed: int, device: str) -> Built:
        built = build_torch(op, n, dtype, seed, torch_device(device))
        return Built(built.fn, built.args, built.reference, built.state)

    def dispatch(self, built: Built, mode: str, sync: str, device: str) -> Dispatch:
        return make_dispatch(built.fn, built.args, mode, sync, torch_device(device))

    def placed(self, output: Any) -> list[tuple[str, str]]:
        names = [torch_device_name(leaf.device) for leaf in leaves(output)]
        return [(name, name) for name in names]

    def host_leaves(self, output: Any) -> list[np.ndarray]:
        return [host_f64(leaf) for leaf in leaves(output)]

    def copier(self, device: str, elements: int) -> Callable[[], Any]:
        """``tensor.clone()``: a copy into a new buffer on the device."""
        x = self.torch.ones(elements, dtype=self.torch.float32, device=torch_device(device))
        clone: Callable[[], Any] = x.clone
        return clone

    def flusher(self, device: str) -> Flush:
        """On a CUDA GPU, ``zero_()`` of a device buffer of twice its L2 (``L2_cache_size``), then a synchronize:
        what nvbench and triton do; the host's flush for ``torch:cpu``; none for MPS (no L2 size to size it)."""
        where = torch_device(device)
        if where.type == "cpu":
            return super().flusher(device)
        if where.type != "cuda":
            raise UnsupportedCombination(f"cache-cold cells on {device}: no flush of its cache (only CUDA GPUs "
                                         "and the host have one)")
        cuda = self.torch.cuda
        index = where.index if where.index is not None else cuda.current_device()
        props = cuda.get_device_properties(index)
        cache = gpu_l2(getattr(props, "L2_cache_size", 0),
                       f"torch.cuda.get_device_properties({index}).L2_cache_size")
        buffer = self.torch.empty(flush_bytes(cache), dtype=self.torch.uint8, device=where)

        def write() -> None:
            buffer.zero_()
            cuda.synchronize(where)

        return Flush(write, int(buffer.numel()), cache)

    def begin(self, cell: Cell) -> None:
        refuse_compile_next_to_tf(cell.mode)
        self._compiled = cell.mode == "compile"

    @staticmethod
    def classify(exc: BaseException) -> tuple[str, str]:
        return classify(exc)

    def release(self) -> None:
        """Forget compiled graphs after a ``compile`` cell (dynamo caches them per code object and, past its
        cache limit, would silently run later sizes eagerly), and give cached CUDA memory back."""
        if self._compiled:
            self.torch._dynamo.reset()
            self._compiled = False
        gc.collect()
        if torch_cuda_available():
            self.torch.cuda.empty_cache()


__all__ = ["COMPILE_NEXT_TO_TF", "MODES", "SYNCS", "TorchBackend", "build_torch", "classify", "initialise_device",
           "make_dispatch", "torch_device"]
