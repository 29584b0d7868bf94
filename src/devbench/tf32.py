"""TF32: whether each framework may run float32 matmuls and convolutions in TensorFloat-32, and ``--tf32``.

On NVIDIA GPUs from Ampere on, a float32 matmul in TF32 keeps a 10-bit mantissa and runs several times faster:
two frameworks "both at float32" may not compute the same thing, so every run records the state of each
framework (:func:`tf32_state`, for meta.json), and ``--tf32 off`` forces full float32 in all three
(:func:`apply_tf32`). Defaults differ: TensorFlow and JAX allow TF32 out of the box, PyTorch allows it for
convolutions (cuDNN) but not for matmuls. On a CPU the setting changes nothing (CPUs have no TF32 units),
but it is still recorded, so that a run on a GPU can be read against it.

Frameworks are named ``tf``, ``torch``, ``jax`` (``numpy`` has no TF32 and is ignored). Only the frameworks
passed in are asked: importing TensorFlow costs seconds, so a sweep without TensorFlow devices must not pass
``tf`` (:func:`frameworks_of` names the frameworks of a sweep's devices).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any, Literal

from devbench.errors import UsageError

__all__ = ["FRAMEWORKS", "SETTINGS", "Setting", "apply_tf32", "describe", "frameworks_of", "tf32_state"]

Setting = Literal["on", "off", "default"]
SETTINGS: tuple[str, ...] = ("on", "off", "default")
"""``on``: allow TF32 everywhere; ``off``: full float32 everywhere; ``default``: leave each framework as it is."""

FRAMEWORKS: tuple[str, ...] = ("tf", "torch", "jax")

_JAX_FULL_FLOAT32 = frozenset({"highest", "float32", "F32_F32_F32", "F64_F64_F64", "TF32_TF32_F32_X3",
                               "BF16_BF16_F32_X6", "BF16_BF16_F32_X9"})
"""JAX matmul precisions that give (at least) float32 accuracy; every other one, None included, lets XLA use
TF32 (or bfloat16 passes) for float32 on a GPU that has them."""


def frameworks_of(devices: Iterable[str]) -> tuple[str, ...]:
    """The frameworks that run ``devices`` (devbench device names), in :data:`FRAMEWORKS` order:
    ``CPU:0``/``GPU:1``/``tf:GPU:0`` -> tf, ``torch:...`` -> torch, ``jax:...`` -> jax; numpy:CPU -> none."""
    found: set[str] = set()
    for device in devices:
        prefix, _, rest = device.partition(":")
        if prefix in ("torch", "jax", "tf"):
            found.add(prefix)
        elif prefix.isalpha() and prefix.isupper() and rest.isdigit():
            found.add("tf")
    return tuple(f for f in FRAMEWORKS if f in found)


def _check(frameworks: Iterable[str]) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(frameworks))
    unknown = [f for f in names if f not in (*FRAMEWORKS, "numpy")]
    if unknown:
        raise UsageError(f"unknown framework {unknown[0]!r} for TF32; known: {', '.join(FRAMEWORKS)}")
    return tuple(f for f in names if f != "numpy")


def _import(framework: str) -> Any | None:
    module = {"tf": "tensorflow", "torch": "torch", "jax": "jax"}[framework]
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _entry(state: str, why: str, **settings: Any) -> dict[str, Any]:
    return {"state": state, "why": why, "settings": settings}


def _tf_state(tf: Any) -> dict[str, Any]:
    enabled = bool(tf.config.experimental.tensor_float_32_execution_enabled())
    return _entry("enabled" if enabled else "disabled",
                  f"tf.config.experimental.tensor_float_32_execution_enabled() is {enabled}",
                  tensor_float_32_execution=enabled)


def _torch_state(torch: Any) -> dict[str, Any]:
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
    return _entry(state, why, matmul_allow_tf32=matmul, cudnn_allow_tf32=cudnn,
                  float32_matmul_precision=precision)


def _jax_state(jax: Any) -> dict[str, Any]:
    precision = jax.config.jax_default_matmul_precision
    if precision in _JAX_FULL_FLOAT32:
        return _entry("disabled", f"jax_default_matmul_precision is {precision!r}: full float32",
                      default_matmul_precision=precision)
    return _entry("enabled", f"jax_default_matmul_precision is {precision!r}: XLA may use TF32 on a GPU",
                  default_matmul_precision=precision)


_STATE = {"tf": _tf_state, "torch": _torch_state, "jax": _jax_state}


def tf32_state(frameworks: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per framework of ``frameworks``: ``{"state": "enabled" | "disabled" | "partial" | "unknown", "why": one
    line, "settings": the framework's own flags}``. ``partial`` (PyTorch only): TF32 for one of matmuls and
    convolutions. ``unknown``: not installed, or its flags could not be read (``why`` says which). A
    framework not listed is not imported."""
    out: dict[str, dict[str, Any]] = {}
    for framework in _check(frameworks):
        module = _import(framework)
        if module is None:
            out[framework] = _entry("unknown", f"{framework} is not installed")
            continue
        try:
            out[framework] = _STATE[framework](module)
        except Exception as exc:  # a framework version that moved its flags
            out[framework] = _entry("unknown", f"cannot read {framework}'s TF32 flags: {type(exc).__name__}: {exc}")
    return out


def _apply_tf(tf: Any, allow: bool) -> list[str]:
    tf.config.experimental.enable_tensor_float_32_execution(allow)
    return [f"tf.config.experimental.enable_tensor_float_32_execution({allow})"]


def _apply_torch(torch: Any, allow: bool) -> list[str]:
    precision = "high" if allow else "highest"
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow
    torch.set_float32_matmul_precision(precision)
    return [f"torch.backends.cuda.matmul.allow_tf32 = {allow}", f"torch.backends.cudnn.allow_tf32 = {allow}",
            f"torch.set_float32_matmul_precision({precision!r})"]


def _apply_jax(jax: Any, allow: bool) -> list[str]:
    precision = "tensorfloat32" if allow else "highest"
    jax.config.update("jax_default_matmul_precision", precision)
    return [f"jax.config.update('jax_default_matmul_precision', {precision!r})"]


_APPLY = {"tf": _apply_tf, "torch": _apply_torch, "jax": _apply_jax}


def apply_tf32(setting: Setting | str, frameworks: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Set TF32 in each framework of ``frameworks`` (``--tf32``) and say what was done, for meta.json.

    Per framework: ``{"applied": "on" | "off" | "default" | "not applied", "calls": the settings made, "why":
    one line, "state": :func:`tf32_state` afterwards}``. ``default`` makes no call (each framework keeps its
    own default). ``not applied``: the framework is not installed or refused (``why`` says which). Call it
    before the first op runs: TensorFlow reads its flag when it builds a kernel. A bad ``setting`` is a
    UsageError naming the allowed ones.
    """
    if setting not in SETTINGS:
        raise UsageError(f"--tf32 {setting!r} is not one of {', '.join(SETTINGS)}")
    out: dict[str, dict[str, Any]] = {}
    for framework in _check(frameworks):
        module = _import(framework)
        if module is None:
            out[framework] = {"applied": "not applied", "calls": [], "why": f"{framework} is not installed",
                              "state": _entry("unknown", f"{framework} is not installed")}
            continue
        calls: list[str] = []
        applied, why = str(setting), "framework default kept" if setting == "default" else "set"
        if setting != "default":
            try:
                calls = _APPLY[framework](module, setting == "on")
            except Exception as exc:
                applied, why = "not applied", f"{type(exc).__name__}: {exc}"
        out[framework] = {"applied": applied, "calls": calls, "why": why,
                          "state": tf32_state([framework])[framework]}
    return out


def describe(applied: dict[str, dict[str, Any]], setting: str = "default") -> str:
    """One line for the report and the terminal, from :func:`apply_tf32`'s answer (meta.json ``tf32``), e.g.
    ``TF32 (--tf32 off): tf disabled, jax disabled, torch not applied (torch is not installed)``."""
    parts = []
    for framework, entry in applied.items():
        if entry.get("applied") == "not applied":
            parts.append(f"{framework} not applied ({entry.get('why', '')})")
        else:
            parts.append(f"{framework} {entry.get('state', {}).get('state', 'unknown')}")
    return f"TF32 (--tf32 {setting}): " + (", ".join(parts) if parts else "no framework with TF32 in this run")
