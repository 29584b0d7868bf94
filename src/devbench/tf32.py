"""TF32: whether each framework may run float32 matmuls and convolutions in TensorFloat-32, and ``--tf32``.

On NVIDIA GPUs from Ampere on, a float32 matmul in TF32 keeps a 10-bit mantissa and runs several times faster:
two frameworks "both at float32" may not compute the same thing, so every run records the state of each
framework (:func:`tf32_state`, for meta.json), and ``--tf32 off`` forces full float32 in all three
(:func:`apply_tf32`). Defaults differ: TensorFlow and JAX allow TF32 out of the box, PyTorch allows it for
convolutions (cuDNN) but not for matmuls. On a CPU the setting changes nothing (CPUs have no TF32 units),
but it is still recorded, so that a run on a GPU can be read against it.

Frameworks are named ``tf``, ``torch``, ``jax`` (``numpy`` has no TF32 and is ignored); each one's knobs are in
its module of :mod:`devbench.frameworks`. Only the frameworks
passed in are asked: importing TensorFlow costs seconds, so a sweep without TensorFlow devices must not pass
``tf`` (:func:`frameworks_of` names the frameworks of a sweep's devices).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any, Literal

from devbench.errors import UsageError
from devbench.frameworks import FRAMEWORKS as _REGISTRY
from devbench.frameworks import frameworks_of

__all__ = ["FRAMEWORKS", "SETTINGS", "Setting", "apply_tf32", "describe", "frameworks_of", "tf32_state"]

Setting = Literal["on", "off", "default"]
SETTINGS: tuple[str, ...] = ("on", "off", "default")
"""``on``: allow TF32 everywhere; ``off``: full float32 everywhere; ``default``: leave each framework as it is."""

FRAMEWORKS: tuple[str, ...] = tuple(key for key, f in _REGISTRY.items() if f.tf32_state is not None)
"""The frameworks with TF32 knobs (each framework's module in devbench.frameworks reads and sets its own)."""


def _check(frameworks: Iterable[str]) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(frameworks))
    unknown = [f for f in names if f not in _REGISTRY]
    if unknown:
        raise UsageError(f"unknown framework {unknown[0]!r} for TF32; known: {', '.join(FRAMEWORKS)}")
    return tuple(f for f in names if _REGISTRY[f].tf32_state is not None)


def _import(framework: str) -> Any | None:
    try:
        return importlib.import_module(_REGISTRY[framework].module)
    except ImportError:
        return None


def _entry(state: str, why: str, **settings: Any) -> dict[str, Any]:
    return {"state": state, "why": why, "settings": settings}


def _state(framework: str, module: Any) -> dict[str, Any]:
    read = _REGISTRY[framework].tf32_state
    assert read is not None  # _check keeps the frameworks that have one
    state, why, settings = read(module)
    return _entry(state, why, **settings)


def _apply(framework: str, module: Any, allow: bool) -> list[str]:
    apply = _REGISTRY[framework].tf32_apply
    return apply(module, allow) if apply is not None else []


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
            out[framework] = _state(framework, module)
        except Exception as exc:  # a framework version that moved its flags
            out[framework] = _entry("unknown", f"cannot read {framework}'s TF32 flags: {type(exc).__name__}: {exc}")
    return out


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
                calls = _apply(framework, module, setting == "on")
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
