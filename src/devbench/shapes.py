"""``--shape`` and ``--fuzz``: shapes with named dimensions, not only the square n.

``--shape 'm=64..4096,k=256,n=64'`` gives every dimension of a shaped op (:data:`devbench.ops.SHAPED`) its values
in the ``--sizes`` grammar (:func:`devbench.spec.parse_sizes`). The first dimension written with several values
is swept (the cells' ``size``); every other dimension with several values expands into one curve per value, each
its own op name (``matmul[m=*,k=256,n=64]``, :func:`devbench.variants.shaped_name`), so that every table, chart
and crossover keeps grouping curves by op name and finds crossovers along the swept dimension with the others
held fixed and named.

``--fuzz K`` reads the same text as bounds and draws K shapes log-uniformly inside them (seeded by ``--seed``),
each a cell of its own: the points of a map of where each device wins (:mod:`devbench.plots.winners`).

Nothing here imports a framework; the op registry is imported only where an op's dimensions are checked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np

from devbench.errors import UsageError
from devbench.spec import SIZE_GRAMMAR_HELP, parse_sizes
from devbench.variants import parse_op_name, shaped_name

SHAPE_GRAMMAR_HELP = (
    "a shape is dim=SIZES,dim=SIZES,... naming every dimension of the op once (e.g. 'm=64..4096,k=256,n=64'); "
    "the first dimension with several values is swept; " + SIZE_GRAMMAR_HELP
)

MAX_FUZZ = 10_000
"""More fuzzed shapes than this is a typo, not a benchmark."""


@dataclass(frozen=True)
class ShapeArg:
    """A parsed ``--shape``: every named dimension's values, in the order written."""

    dims: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dim for dim, _ in self.dims)

    @property
    def swept(self) -> str:
        """The swept dimension: the first written with several values (the first one when none has)."""
        return next((dim for dim, values in self.dims if len(values) > 1), self.dims[0][0])

    def values(self, dim: str) -> tuple[int, ...]:
        return dict(self.dims)[dim]

    def bounds(self, dim: str) -> tuple[int, int]:
        values = self.values(dim)
        return min(values), max(values)


def parse_shape(text: str) -> ShapeArg:
    """Parse ``--shape``. Each item ``dim=SIZES`` starts a dimension; the size grammar's own commas
    (``m=64,128,k=256``) continue the dimension before them.

    >>> parse_shape("m=64..256,k=32,n=8").dims
    (('m', (64, 128, 256)), ('k', (32,)), ('n', (8,)))
    >>> parse_shape("m=64,100,k=3").values("m")
    (64, 100)
    """
    if not text or not text.strip():
        raise UsageError(f"empty --shape; {SHAPE_GRAMMAR_HELP}")
    parts: list[tuple[str, list[str]]] = []
    for raw in text.split(","):
        item = raw.strip()
        if "=" in item:
            dim, _, value = (p.strip() for p in item.partition("="))
            if not dim.isidentifier() or dim == "cache":
                raise UsageError(f"--shape {text!r}: {dim!r} is not a dimension name; {SHAPE_GRAMMAR_HELP}")
            if any(dim == seen for seen, _ in parts):
                raise UsageError(f"--shape {text!r} gives {dim} twice; {SHAPE_GRAMMAR_HELP}")
            parts.append((dim, [value]))
        elif parts:
            parts[-1][1].append(item)
        else:
            raise UsageError(f"--shape {text!r} does not start with dim=SIZES; {SHAPE_GRAMMAR_HELP}")
    dims = []
    for dim, pieces in parts:
        try:
            dims.append((dim, parse_sizes(",".join(pieces))))
        except UsageError as exc:
            raise UsageError(f"--shape {dim}={','.join(pieces)}: {exc}") from None
    return ShapeArg(tuple(dims))


def _shaped_dims(op_name: str) -> tuple[str, ...]:
    """The dimensions of a shaped op, or a UsageError naming the op and which ops have dimensions."""
    from devbench.ops import SHAPED

    shaped = SHAPED.get(op_name)
    if shaped is None:
        known = ", ".join(f"{name} ({','.join(op.dims)})" for name, op in SHAPED.items()) or "none"
        raise UsageError(f"--shape needs ops with named dimensions; op {op_name!r} has none (ops with them: "
                         f"{known})")
    return shaped.dims


def check_dims(op_name: str, shape: ShapeArg) -> tuple[str, ...]:
    """The op's dimensions, checked to be exactly those ``shape`` names (in any order)."""
    dims = _shaped_dims(op_name)
    if set(dims) != set(shape.names):
        raise UsageError(f"--shape names {','.join(shape.names)} but op {op_name} has the dimensions "
                         f"{','.join(dims)}: give each of them once")
    return dims


def expand(ops: Sequence[str], shape: ShapeArg) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The op names (one per curve) and the sizes (the swept dimension's values) a ``--shape`` sweep measures.

    >>> expand(["matmul"], parse_shape("m=64..128,k=8,16,n=4"))
    (('matmul[m=*,k=8,n=4]', 'matmul[m=*,k=16,n=4]'), (64, 128))
    """
    swept = shape.swept
    others = [dim for dim in shape.names if dim != swept]
    names: list[str] = []
    for op in ops:
        dims = check_dims(op, shape)
        for combo in product(*(shape.values(dim) for dim in others)):
            fixed: dict[str, int | None] = {**dict(zip(others, combo, strict=True)), swept: None}
            names.append(shaped_name(op, {dim: fixed[dim] for dim in dims}))
    return tuple(dict.fromkeys(names)), shape.values(swept)


def fuzz_shapes(shape: ShapeArg, count: int, seed: int) -> list[dict[str, int]]:
    """``count`` distinct shapes drawn log-uniformly within ``shape``'s bounds (each dimension between its
    smallest and largest value; one value holds it fixed), rounded to whole numbers, in draw order. Seeded:
    the same bounds, count and seed give the same shapes. Fewer when the bounds hold fewer whole shapes."""
    if not 1 <= count <= MAX_FUZZ:
        raise UsageError(f"--fuzz {count} must be between 1 and {MAX_FUZZ}")
    rng = np.random.default_rng(seed)
    bounds = {dim: shape.bounds(dim) for dim in shape.names}
    room = math.prod(high - low + 1 for low, high in bounds.values())
    shapes: dict[tuple[int, ...], dict[str, int]] = {}
    for _ in range(50 * count):
        if len(shapes) >= min(count, room):
            break
        drawn = {dim: int(min(high, max(low, round(math.exp(rng.uniform(math.log(low), math.log(high)))))))
                 for dim, (low, high) in bounds.items()}
        shapes.setdefault(tuple(drawn.values()), drawn)
    return list(shapes.values())


def fuzz_points(ops: Sequence[str], shape: ShapeArg, count: int, seed: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The cells of ``--fuzz``: per op name (the swept dimension ``shape.swept``, the others fixed at the drawn
    values) the sizes it is measured at, for :attr:`devbench.spec.SweepSpec.sizes_by_op`."""
    swept = shape.swept
    points: dict[str, set[int]] = {}
    for op in ops:
        dims = check_dims(op, shape)
        for drawn in fuzz_shapes(shape, count, seed):
            name = shaped_name(op, {dim: None if dim == swept else drawn[dim] for dim in dims})
            points.setdefault(name, set()).add(drawn[swept])
    return tuple((name, tuple(sorted(sizes))) for name, sizes in points.items())


# ---------------------------------------------------------------------------------------------------------
# What a cell's op name says about its shape (for columns, tables and charts)


def shape_of(op: str, size: int) -> dict[str, int]:
    """Every dimension of a cell (``{}`` for a square op, or a name outside the grammar: a table from
    elsewhere)."""
    try:
        return parse_op_name(op).shape_at(int(size))
    except UsageError:
        return {}


def axis_name(op: str) -> str:
    """The name of what ``size`` measures along this op's curve: its swept dimension, or ``n`` (square)."""
    try:
        return parse_op_name(op).axis or "n"
    except UsageError:
        return "n"


def axis_label(op: str) -> str:
    """The x-axis label of a curve: ``m (k=256, n=64)`` for a shaped op, ``size n (matrix side)`` square."""
    try:
        variant = parse_op_name(op)
    except UsageError:
        variant = None
    if variant is None or variant.axis is None:
        return "size n (matrix side)"
    fixed = ", ".join(f"{dim}={value}" for dim, value in variant.fixed.items())
    return f"{variant.axis} ({fixed})" if fixed else variant.axis


def shape_columns(ops: Sequence[str], sizes: Sequence[int]) -> dict[str, list[object]]:
    """The ``shape`` column (``m=512,k=256,n=64``; ``""`` for square ops) and one ``dim_<d>`` column per
    dimension any op has (NaN where an op lacks it), for rows of these ops and sizes: the one rule, used where
    results tables are built (:func:`devbench.schema.results_frame`)."""
    parsed: dict[str, Mapping[str, int | None]] = {}
    for op in dict.fromkeys(ops):
        try:
            parsed[op] = dict(parse_op_name(op).dims)
        except UsageError:
            parsed[op] = {}
    names = list(dict.fromkeys(dim for dims in parsed.values() for dim in dims))
    texts: list[object] = []
    columns: dict[str, list[object]] = {f"dim_{dim}": [] for dim in names}
    for op, size in zip(ops, sizes, strict=True):
        dims = {dim: int(size) if value is None else value for dim, value in parsed[op].items()}
        texts.append(",".join(f"{dim}={value}" for dim, value in dims.items()))
        for dim in names:
            columns[f"dim_{dim}"].append(float(dims[dim]) if dim in dims else math.nan)
    return {"shape": texts, **columns}



def size_header(ops: Iterable[str]) -> str:
    """The header of a size column holding these ops' cells: their common axis (``n`` when all are square,
    ``m`` when all sweep m), else ``size``."""
    axes = {axis_name(str(op)) for op in ops}
    return axes.pop() if len(axes) == 1 else "size"
