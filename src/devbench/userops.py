"""Your own ops: from a Python file (``--op-file``), from an installed package (entry points ``devbench.ops``),
and :func:`op`, the helper that builds one from a numpy reference and plain framework functions.

**An op file** is a Python file anywhere (not in the package), loaded with importlib under a private module
name. It exposes its ops one of two ways: a module-level ``OPS = [...]`` (a list or tuple of
:class:`~devbench.ops.OpDef` / :class:`~devbench.ops.ShapedOp`, e.g. made by :func:`op`) when it wants to
choose, else every ``OpDef``/``ShapedOp`` bound to a public module-level name, in the order they are defined.
Each is registered with :func:`devbench.ops.register` under its own name, for any subset of frameworks (a
framework without a version of the op gives ``unsupported`` cells).

**An entry point** of the group ``devbench.ops`` (``[project.entry-points."devbench.ops"]``) names a module
(its ops found as in a file), an op, a list of ops, or a callable returning either. Installed packages' ops
are loaded by every ``sweep`` and ``ops`` command; one that fails to load is a warning, not an error, so a
broken package does not stop sweeps of other ops.

**Bad input** is one line and exit 2, never a traceback (:class:`~devbench.errors.UsageError`): a missing file,
a syntax error (its line), an exception while importing (the file's line), no ops, a field missing or of the
wrong type (each op's callables are tried at n = :data:`devbench.ops.CHECK_SIZE` when it is loaded), a name
taken by a built-in. An op whose result disagrees with its numpy reference is caught once the frameworks are
up, before anything is measured: :func:`check_against_numpy`, run by :func:`devbench.prepare.prepare_machine`.

**Reproducibility.** A run records where its user ops came from in ``meta.json["user_ops"]`` (a file's absolute
path and sha256; an entry point's name and its distribution's version), and every process that adds visits to
it (``--resume``, the ``--processes`` workers, ``refine``) loads them again from there
(:func:`load_recorded`, called by :func:`devbench.prepare.spec_from_meta`). A file that is missing or changed
since is an error, not a warning: its ops' names are the identity of the run's cells, so new cells of a
changed op would join the old ones in one curve and the crossover would mix two ops.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np

from devbench.errors import UsageError, first_line
from devbench.ops import (
    CHECK_SIZE,
    OPS,
    SHAPED,
    Expression,
    HostInputs,
    OpDef,
    Shape,
    ShapedOp,
    leaves_of,
    register,
)
from devbench.spec import Cell, SweepSpec
from devbench.variants import parse_op_name

__all__ = ["ENTRY_POINT_GROUP", "OPS_ATTRIBUTE", "UserOp", "check_against_numpy", "describe", "load_entry_points",
           "load_op_file", "load_recorded", "load_sources", "op", "records_for", "user_op_names"]

ENTRY_POINT_GROUP = "devbench.ops"
OPS_ATTRIBUTE = "OPS"
"""The module-level name an op file lists its ops under (optional: without it, every op at module level)."""

UserOp = OpDef | ShapedOp

BALANCE_FLOP_PER_BYTE = 10.0
"""Arithmetic intensity above which :func:`op` calls an op compute-bound when ``bound`` is not given: about the
ridge point of a server CPU (peak FLOP/s over memory bandwidth); a GPU's is higher, so this errs towards
``compute`` there. Judged at n = 1024 in float32 on the op's square curve."""

_MODULE_PREFIX = "devbench_user_ops"

# What this process has loaded: a source's key ("file:/abs/path", "entry_point:name") -> its record for meta.json.
_LOADED: dict[str, dict[str, Any]] = {}
_WARNED: set[str] = set()
"""Entry points that failed to load in this process: warned about once."""


# ---------------------------------------------------------------------------------------------------------
# The helper


def op(
    name: str,
    *,
    inputs: Callable[[Any], Sequence[Sequence[int]]],
    numpy: Callable[..., Any],
    flops: Callable[[Any], float],
    dims: Sequence[str] | None = None,
    tf: Callable[..., Any] | None = None,
    jax: Callable[..., Any] | None = None,
    torch: Callable[..., Any] | None = None,
    outputs: Callable[[Any], Sequence[Sequence[int]]] | None = None,
    bytes: Callable[[Any, int], float] | None = None,
    working_set: Callable[[Any, int], float] | None = None,
    bound: Literal["memory", "compute"] | None = None,
    square: Callable[[int], Shape] | None = None,
    means: str = "",
    summary: str = "",
    flops_formula: str = "",
    int32: bool = False,
) -> UserOp:
    """An op from a numpy reference and plain framework functions.

    Without ``dims`` the op has one size n and every callable below takes n (an :class:`OpDef`); with ``dims``
    (``("batch", "seq", "d")``) they take the shape, a mapping of dimension to int (a :class:`ShapedOp`: its
    square curve, swept by ``--sizes``, is ``square(n)`` if given, else every dimension n).

    - ``inputs(shape)``: the shapes of the op's input arrays; filled with seeded uniform values in [-1, 1]
      (small integers for int32), the same numbers for every framework.
    - ``numpy(*arrays)``: the reference, and the ``numpy:CPU`` baseline; must work in any float dtype (it is run
      in float64 as the reference). Returns one array or a tuple of them.
    - ``tf`` / ``jax`` / ``torch``: ``fn(*arrays)`` of the framework's arrays, returning what ``numpy`` returns.
      Give any subset; the others' cells are ``unsupported``. A ``jax`` function must be pure (it is jitted in
      the ``jit`` mode). Import the framework inside the function (or at the top of the file, at the price of
      ``devbench ops --op-file`` importing it too).
    - ``flops(shape)``: FLOPs per call. Required: it is what GFLOP/s and the time guard's predictions (a larger
      size's call time scaled by the FLOPs ratio) are made of, and nothing can derive it from code.
    - ``bytes(shape, itemsize)``: default, every input's and output's elements once (the minimum traffic, as the
      built-ins count); output shapes from ``outputs(shape)``, default one output shaped like the first input.
    - ``working_set(shape, itemsize)``: bytes held at once, for the memory guard; default ``bytes`` (inputs and
      outputs). Give it where temporaries are larger (attention's seq×seq scores).
    - ``bound``: default from the arithmetic intensity (:data:`BALANCE_FLOP_PER_BYTE`).
    - ``int32``: whether the op has an int32 version (default False: float dtypes only).
    """
    if not isinstance(name, str):
        raise UsageError(f"op name {name!r} is not a string")
    required: tuple[tuple[str, object], ...] = (("inputs", inputs), ("numpy", numpy), ("flops", flops))
    optional: tuple[tuple[str, object], ...] = (
        ("tf", tf), ("jax", jax), ("torch", torch), ("outputs", outputs), ("bytes", bytes),
        ("working_set", working_set), ("square", square))
    for field, value in required:
        if not callable(value):
            raise UsageError(f"op {name!r}: {field} must be a function, not {type(value).__name__}")
    for field, value in optional:
        if value is not None and not callable(value):
            raise UsageError(f"op {name!r}: {field} must be a function or None, not {type(value).__name__}")
    shaped = dims is not None
    if shaped and (isinstance(dims, str) or not isinstance(dims, Sequence)):
        raise UsageError(f"op {name!r}: dims must be a tuple of dimension names, not {dims!r}")
    if square is not None and not shaped:
        raise UsageError(f"op {name!r}: square maps n to a shape, so it needs dims")

    def arrays_of(shape: Any) -> list[tuple[int, ...]]:
        return [tuple(int(d) for d in s) for s in inputs(shape)]

    def input_data(shape: Any, dtype: str, rng: np.random.Generator) -> HostInputs:
        if dtype == "int32":
            return HostInputs(tuple(rng.integers(-3, 4, size=s).astype(np.float64) for s in arrays_of(shape)))
        return HostInputs(tuple(rng.uniform(-1.0, 1.0, size=s) for s in arrays_of(shape)))

    def derived_bytes(shape: Any, itemsize: int) -> float:
        ins = arrays_of(shape)
        outs = [tuple(int(d) for d in s) for s in outputs(shape)] if outputs is not None else ins[:1]
        return float(sum(math.prod(s) for s in (*ins, *outs))) * itemsize

    moved = bytes if bytes is not None else derived_bytes
    held = working_set if working_set is not None else moved
    common: dict[str, Any] = {
        "name": name,
        "summary": summary or f"{name} (user op)",
        "flops": flops,
        "flops_formula": flops_formula or "given",
        "bytes": moved,
        "working_set": held,
        "bound": bound or "compute",
        "inputs": input_data,
        "numpy": numpy,
        "tf": _tf_expression(tf) if tf is not None else None,
        "jax": _jax_expression(jax) if jax is not None else None,
        "torch": _torch_expression(torch) if torch is not None else None,
        "needs_float": "" if int32 else f"op {name!r} (made without int32=True)",
    }
    made: UserOp
    if shaped:
        assert dims is not None
        made = ShapedOp(dims=tuple(dims), shape_means=means, square_shape=square, **common)
    else:
        made = OpDef(n_means=means or "n (user op)", **common)
    if bound is None:
        square_op = made.square() if isinstance(made, ShapedOp) else made
        try:
            intensity = square_op.flops(1024) / max(square_op.bytes(1024, 4), 1.0)
        except Exception:
            intensity = math.inf
        made = replace(made, bound="compute" if intensity >= BALANCE_FLOP_PER_BYTE else "memory")
    return made


def _tf_expression(fn: Callable[..., Any]) -> Callable[[Any, tuple[Any, ...]], Expression]:
    def expression(tf_module: Any, params: tuple[Any, ...]) -> Expression:
        return Expression(fn if not params else lambda *args: fn(*args, *params))

    return expression


def _jax_expression(fn: Callable[..., Any]) -> Callable[[Any], Callable[..., Any]]:
    def expression(jax_module: Any) -> Callable[..., Any]:
        return fn  # params, if any, arrive as trailing arguments already: pure as the user's function is

    return expression


_torch_expression = _tf_expression


# ---------------------------------------------------------------------------------------------------------
# Checking an op as it is loaded


def _square_of(candidate: UserOp) -> OpDef:
    return candidate.square() if isinstance(candidate, ShapedOp) else candidate


def _check_fields(candidate: UserOp, where: str) -> None:
    """UsageError for a field of the wrong type or a callable that fails at n = CHECK_SIZE (float64)."""
    label = f"{where}: op {getattr(candidate, 'name', '?')!r}"
    name = candidate.name
    if not isinstance(name, str) or "[" in name:
        raise UsageError(f"{label}: its name must be a plain op name (letters, digits, _ . -), without brackets")
    parse_op_name(name)
    for f in fields(candidate):
        value = getattr(candidate, f.name)
        if f.name in ("flops", "bytes", "working_set", "inputs", "numpy") and not callable(value):
            raise UsageError(f"{label}: {f.name} must be a function, not {type(value).__name__}")
        if f.name in ("tf", "jax", "torch", "square_shape") and value is not None and not callable(value):
            raise UsageError(f"{label}: {f.name} must be a function or None, not {type(value).__name__}")
        if f.name in ("summary", "flops_formula", "n_means", "needs_float", "shape_means") and not isinstance(
                value, str):
            raise UsageError(f"{label}: {f.name} must be a string, not {type(value).__name__}")
    if candidate.bound not in ("memory", "compute"):
        raise UsageError(f"{label}: bound {candidate.bound!r} is not 'memory' or 'compute'")
    if isinstance(candidate, ShapedOp):
        dims = candidate.dims
        if (not isinstance(dims, tuple) or not dims or len(set(dims)) != len(dims)
                or not all(isinstance(d, str) and d.isidentifier() and d != "cache" for d in dims)):
            raise UsageError(f"{label}: dims {dims!r} must be a non-empty tuple of distinct names (not 'cache')")
    square = _square_of(candidate)
    n = CHECK_SIZE
    for what, call in (("flops", lambda: square.flops(n)), ("bytes", lambda: square.bytes(n, 8)),
                       ("working_set", lambda: square.working_set(n, 8))):
        value = _try(label, f"{what}({n})", call)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value) \
                or value < 0 or (what == "flops" and value == 0):
            allowed = "a positive number" if what == "flops" else "a number >= 0"
            raise UsageError(f"{label}: {what}({n}) gave {value!r}, not {allowed}")
    data = _try(label, f"inputs({n})", lambda: square.inputs(n, "float64", np.random.default_rng(0)))
    if not isinstance(data, HostInputs) or not all(isinstance(a, np.ndarray) for a in (*data.args, *data.params)):
        raise UsageError(f"{label}: inputs({n}) gave {type(data).__name__}, not HostInputs of numpy arrays")
    _try(label, f"numpy(...) at n={n}", lambda: leaves_of(square.numpy(*data.args, *data.params)))


def _try(label: str, what: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{label}: {what} raised {_exception_line(exc)}") from None


def _exception_line(exc: BaseException) -> str:
    message = first_line(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# ---------------------------------------------------------------------------------------------------------
# Loading


def _ops_of_module(module: ModuleType, where: str) -> list[UserOp]:
    """The ops a module exposes: its ``OPS`` list if it has one, else every op at a public module-level name."""
    builtin = {id(o) for o in (*OPS.values(), *SHAPED.values())}
    listed = getattr(module, OPS_ATTRIBUTE, None)
    if listed is not None:
        if isinstance(listed, (OpDef, ShapedOp)):
            listed = [listed]
        if not isinstance(listed, (list, tuple)) or not all(isinstance(o, (OpDef, ShapedOp)) for o in listed):
            raise UsageError(f"{where}: {OPS_ATTRIBUTE} must be a list of ops (OpDef, ShapedOp, or made by "
                             f"devbench.userops.op), not {type(listed).__name__}")
        found = list(listed)
    else:
        found = [value for key, value in vars(module).items()
                 if not key.startswith("_") and isinstance(value, (OpDef, ShapedOp)) and id(value) not in builtin]
    unique = list({id(o): o for o in found}.values())
    if not unique:
        raise UsageError(f"{where} defines no ops: list them in {OPS_ATTRIBUTE} = [...] or define them at module "
                         "level (devbench.userops.op(...), OpDef or ShapedOp)")
    return unique


def _ops_of_object(value: Any, where: str) -> list[UserOp]:
    """An entry point's object: a module, an op, a list of ops, or a callable returning one of those."""
    if isinstance(value, ModuleType):
        return _ops_of_module(value, where)
    if callable(value) and not isinstance(value, (OpDef, ShapedOp)):
        value = _try(where, "calling it", value)
    if isinstance(value, (OpDef, ShapedOp)):
        return [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(o, (OpDef, ShapedOp)) for o in value):
        return list(value)
    raise UsageError(f"{where} is a {type(value).__name__}, not a module, an op, a list of ops or a function "
                     "returning them")


def _register_all(ops: Sequence[UserOp], where: str) -> list[str]:
    """Check every op, then register them all (none if one is bad); returns their names."""
    names = [o.name for o in ops]
    for candidate in ops:
        _check_fields(candidate, where)
        if candidate.name in OPS or candidate.name in SHAPED:
            owner = next((r for r in _LOADED.values() if candidate.name in r["ops"]), None)
            taken = f"already defined by {owner.get('file') or owner.get('value')}" if owner else "a built-in op"
            raise UsageError(f"{where}: op {candidate.name!r} is {taken}; give it another name")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise UsageError(f"{where}: op {duplicated[0]!r} is defined twice")
    for candidate in ops:
        register(candidate)
    return names


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_op_file(path: str | Path) -> list[str]:
    """Load the ops of the file at ``path`` into the registry; returns their names. Loading a file this process
    already loaded (same content) does nothing more; UsageError (one line) for any bad file."""
    given = Path(path)
    where = f"op file {str(given)!r}"
    resolved = given.expanduser().resolve()
    if not resolved.is_file():
        raise UsageError(f"{where} does not exist (or is not a file)")
    digest = _sha256(resolved)
    key = f"file:{resolved}"
    known = _LOADED.get(key)
    if known is not None:
        if known["sha256"] != digest:
            raise UsageError(f"{where} changed after this process loaded it; run again")
        return list(known["ops"])
    source = resolved.read_bytes()
    try:
        code = compile(source, str(resolved), "exec")
    except SyntaxError as exc:
        raise UsageError(f"{where}: syntax error at line {exc.lineno}: {exc.msg}") from None
    except ValueError as exc:  # null bytes
        raise UsageError(f"{where} is not Python source ({exc})") from None
    module_name = f"{_MODULE_PREFIX}.{resolved.stem.replace('-', '_')}_{digest[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up while it runs
    try:
        exec(code, module.__dict__)
    except UsageError as exc:  # devbench.userops.op's own check, raised while the file ran
        del sys.modules[module_name]
        raise UsageError(f"{where}{_line_in(exc, resolved)}: {exc}") from None
    except Exception as exc:
        del sys.modules[module_name]
        raise UsageError(f"{where}{_line_in(exc, resolved)}: importing it raised {_exception_line(exc)}") from None
    names = _register_all(_ops_of_module(module, where), where)
    _LOADED[key] = {"file": str(resolved), "sha256": digest, "ops": names}
    return names


def _line_in(exc: BaseException, path: Path) -> str:
    """`` line N``: the last line of ``path`` in the exception's traceback ('' when it never reached the file)."""
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == str(path)]
    return f" line {lines[-1]}" if lines else ""


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return list(entry_points(group=ENTRY_POINT_GROUP))


def _distribution(entry: Any) -> tuple[str, str]:
    dist = getattr(entry, "dist", None)
    if dist is None:
        return "", ""
    return str(dist.metadata["Name"] or dist.name), str(dist.version)


def _load_entry_point(entry: Any) -> list[str]:
    key = f"entry_point:{entry.name}"
    if key in _LOADED:
        return list(_LOADED[key]["ops"])
    distribution, version = _distribution(entry)
    where = f"entry point {entry.name!r} ({entry.value}) of {ENTRY_POINT_GROUP}" + (
        f" from {distribution} {version}" if distribution else "")
    value = _try(where, "loading it", entry.load)
    names = _register_all(_ops_of_object(value, where), where)
    _LOADED[key] = {"entry_point": entry.name, "value": entry.value, "distribution": distribution,
                    "version": version, "ops": names}
    return names


def load_entry_points(warn: Callable[[str], None] | None = None) -> list[str]:
    """Load every installed package's ops (entry points of :data:`ENTRY_POINT_GROUP`); returns their names.

    One that fails is reported through ``warn`` and skipped (a broken package must not stop sweeps of other
    ops); without ``warn`` it raises the UsageError."""
    names: list[str] = []
    for entry in _entry_points():
        if warn is not None and entry.name in _WARNED:
            continue
        try:
            names += _load_entry_point(entry)
        except UsageError as exc:
            if warn is None:
                raise
            _WARNED.add(entry.name)
            warn(f"devbench: warning: {exc}; its ops are not available")
    return names


def _warn_on_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def load_sources(files: Iterable[str | Path] = ()) -> list[str]:
    """What ``sweep`` and ``ops`` load before looking an op up: installed packages' ops (a broken one is a
    warning), then each ``--op-file`` (a bad one is a UsageError). Returns the files' op names, in order."""
    load_entry_points(warn=_warn_on_stderr)
    names: list[str] = []
    for path in files:
        names += load_op_file(path)
    return list(dict.fromkeys(names))


def user_op_names() -> set[str]:
    """The names of every user op loaded in this process."""
    return {name for record in _LOADED.values() for name in record["ops"]}


def records_for(op_names: Iterable[str]) -> list[dict[str, Any]]:
    """``meta.json["user_ops"]``: the sources (file: absolute path + sha256; entry point: name, distribution and
    version) of the user ops among ``op_names`` (a run's ops, any variant of them), in load order."""
    bases = {parse_op_name(name).base for name in op_names}
    return [dict(record) for record in _LOADED.values() if bases & set(record["ops"])]


def load_recorded(records: Any, where: str, cannot: str) -> None:
    """Load again the user ops a run recorded (``meta.json["user_ops"]``, :func:`records_for`), for a process
    that adds visits to it. UsageError when a file is missing or changed, or an entry point is gone or its
    distribution's version differs: cells of a different op would join the run's curves (module docstring)."""
    if records is None:
        return
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise UsageError(f"{where}: user_ops is not a list of sources; {cannot}")
    for record in records:
        if "file" in record:
            path = Path(str(record["file"]))
            if not path.is_file():
                raise UsageError(f"{where}: the run's op file {str(path)!r} is missing; restore it (sha256 "
                                 f"{str(record.get('sha256'))[:12]}…); {cannot}")
            digest = _sha256(path)
            if digest != record.get("sha256"):
                raise UsageError(f"{where}: the run's op file {str(path)!r} changed since the run was made (sha256 "
                                 f"{str(record.get('sha256'))[:12]}… then, {digest[:12]}… now): new cells would be "
                                 f"of another op under the same name; restore it or sweep a new run; {cannot}")
            names = load_op_file(path)
        elif "entry_point" in record:
            name = str(record["entry_point"])
            entry = next((e for e in _entry_points() if e.name == name), None)
            if entry is None:
                raise UsageError(f"{where}: the run's ops came from entry point {name!r} of "
                                 f"{record.get('distribution') or 'a package'}, which is not installed here; "
                                 f"{cannot}")
            distribution, version = _distribution(entry)
            if version != record.get("version"):
                raise UsageError(f"{where}: the run's ops came from {distribution or name} "
                                 f"{record.get('version')}, installed here is {version}; {cannot}")
            names = _load_entry_point(entry)
        else:
            raise UsageError(f"{where}: a user_ops entry names neither a file nor an entry point; {cannot}")
        missing = [n for n in record.get("ops", []) if n not in names]
        if missing:
            raise UsageError(f"{where}: op {missing[0]!r} is no longer defined by its source; {cannot}")


# ---------------------------------------------------------------------------------------------------------
# Listing and checking


def describe(name: str) -> dict[str, str]:
    """What ``devbench ops`` shows of an op beyond OpDef's fields: its dimensions and its frameworks."""
    from devbench.frameworks import FRAMEWORKS, NUMPY_DEVICE, framework_for

    definition = OPS[name]
    shaped = SHAPED.get(name)
    dims = ",".join(shaped.dims) if shaped is not None else "n"
    baseline = framework_for(NUMPY_DEVICE).key  # every op has its numpy version, the baseline
    frameworks = [key for key in FRAMEWORKS if key != baseline and getattr(definition, key, None) is not None]
    return {"dims": dims, "frameworks": ", ".join([*frameworks, baseline])}


def check_against_numpy(spec: SweepSpec, backend: Any) -> None:
    """Run each user op among the sweep's ops at n = CHECK_SIZE on the host device of each framework of its
    devices, in each of its dtypes and modes the op has, against its numpy float64 reference (with the sweep's
    seed), before anything is measured.

    A result off the reference (the backends' own check, :meth:`FrameworkBackend.check_correctness`, whose
    verdict the cells then reuse) or an exception is a UsageError naming the op, the framework and the error;
    ``unsupported`` (no version, a dtype or mode the framework lacks) is not. A backend that cannot route by
    device (a test's fake) checks nothing."""
    from devbench.backends.base import CellFailure, require_mode
    from devbench.frameworks import framework_for

    mine = [name for name in spec.ops if parse_op_name(name).base in user_op_names()]
    backend_for = getattr(backend, "backend_for_device", None)
    if not mine or not callable(backend_for):
        return
    hosts = list(dict.fromkeys(framework_for(d).host for d in spec.devices if framework_for(d).host))
    from devbench.ops import UnsupportedCombination, op_named

    for name in mine:
        definition = op_named(name)
        for host in hosts:
            framework = framework_for(host)
            runner = backend_for(host)
            check = getattr(runner, "check_correctness", None)
            if not callable(check):
                continue
            for dtype in (d for d in spec.dtypes if d in definition.dtypes):
                for mode in spec.modes:
                    cell = Cell(size=CHECK_SIZE, op=name, dtype=dtype, device=host, mode=mode)
                    try:
                        require_mode(framework, mode)
                        if framework.key in ("tf", "jax", "torch"):
                            definition.expression(framework.key)
                        check(cell, spec.seed)
                    except UnsupportedCombination:
                        continue
                    except CellFailure as failure:
                        if failure.status != "wrong":
                            continue
                        raise UsageError(f"op {name!r} on {framework.label} ({host}, {dtype}, {mode}) disagrees "
                                         f"with its numpy reference: {failure.reason}") from None
                    except Exception as exc:
                        status, reason = runner.classify(exc)
                        if status in ("unsupported", "fallback", "oom"):
                            continue
                        raise UsageError(f"op {name!r} fails on {framework.label} ({host}, {dtype}, {mode}): "
                                         f"{reason}") from None
