"""An op's name in a run: the base op plus what varies it — a shape with one swept axis, the cache state.

A cell is identified by ``(op, size, dtype, device, mode, sync)`` (:data:`devbench.schema.IDENTITY`), and every
table, chart, crossover and comparison groups cells into curves by ``(op, dtype, mode, …)`` over ``size``. A
shaped or cache-cold cell therefore carries what makes it different *in its op name*, so that each curve is
exactly "one op, everything fixed except the swept size", named as such everywhere without one more key in
every grouping:

- ``matmul``: the built-in square op; ``size`` is n (every dimension of the op is n).
- ``matmul[m=*,k=256,n=256]``: the shaped op with ``m`` swept (``size`` is m) and ``k``, ``n`` held fixed.
- ``add[cache=cold]``: the square op with its inputs evicted from the caches before every timed call.
- ``matmul[m=*,k=256,n=256,cache=cold]``: both.

The grammar lives here and only here (:func:`parse_op_name`, :attr:`Variant.name`); the op a name stands for is
resolved by :func:`devbench.ops.op_named`. Nothing here imports a framework or the op registry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from devbench.errors import UsageError

CACHE_STATES = ("warm", "cold")
"""``warm``: inputs stay where the previous call left them (in cache when they fit; the default, as before).
``cold``: a buffer larger than the last-level cache is written between calls, outside the timed region."""

DEFAULT_CACHE = "warm"
SWEPT = "*"
"""The value that marks the swept dimension in a name: ``m=*`` means the cell's ``size`` is m."""

_BASE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_DIM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

NAME_GRAMMAR_HELP = (
    "an op name is OP or OP[dim=*,dim=N,...,cache=warm|cold] with exactly one dimension swept (=*) "
    "when dimensions are given"
)


@dataclass(frozen=True)
class Variant:
    """What an op name says: the base op, its dimensions (``None`` marks the swept one) and the cache state."""

    base: str
    dims: tuple[tuple[str, int | None], ...] = ()
    cache: str = DEFAULT_CACHE

    @property
    def name(self) -> str:
        """The canonical op name (the inverse of :func:`parse_op_name`)."""
        params = [f"{dim}={SWEPT if value is None else value}" for dim, value in self.dims]
        if self.cache != DEFAULT_CACHE:
            params.append(f"cache={self.cache}")
        return f"{self.base}[{','.join(params)}]" if params else self.base

    @property
    def shaped(self) -> bool:
        return bool(self.dims)

    @property
    def axis(self) -> str | None:
        """The swept dimension (the cell's ``size``), or None for a square op (``size`` is every dimension)."""
        return next((dim for dim, value in self.dims if value is None), None)

    @property
    def fixed(self) -> dict[str, int]:
        """The dimensions held fixed, in the name's order."""
        return {dim: value for dim, value in self.dims if value is not None}

    def shape_at(self, size: int) -> dict[str, int]:
        """Every dimension at this cell's size (the swept one is ``size``); empty for a square op."""
        return {dim: size if value is None else value for dim, value in self.dims}

    def shape_text(self, size: int) -> str:
        """``m=512,k=256,n=256`` for a shaped cell; ``""`` for a square one."""
        return ",".join(f"{dim}={value}" for dim, value in self.shape_at(size).items())

    @property
    def curve_label(self) -> str:
        """What is held fixed along this op's curve, for titles: ``m swept; k=256, n=256`` (or ``""``)."""
        if not self.dims:
            return ""
        fixed = ", ".join(f"{dim}={value}" for dim, value in self.fixed.items())
        return f"{self.axis} swept" + (f"; {fixed}" if fixed else "")

    def with_cache(self, cache: str) -> Variant:
        return Variant(self.base, self.dims, check_cache(cache))

    def without_cache(self) -> Variant:
        return Variant(self.base, self.dims)


def check_cache(cache: str) -> str:
    if cache not in CACHE_STATES:
        raise UsageError(f"cache state {cache!r} is not one of {', '.join(CACHE_STATES)}")
    return cache


def _bad(name: str, why: str) -> UsageError:
    return UsageError(f"bad op name {name!r}: {why}; {NAME_GRAMMAR_HELP}")


def parse_op_name(name: str) -> Variant:
    """Split an op name into its :class:`Variant` (a plain name is a square, warm op).

    >>> parse_op_name("matmul[m=*,k=256,n=256]").shape_at(512)
    {'m': 512, 'k': 256, 'n': 256}
    >>> parse_op_name("add[cache=cold]").cache
    'cold'
    """
    text = name.strip()
    base, bracket, rest = text.partition("[")
    if not _BASE.match(base):
        raise _bad(name, f"{base!r} is not an op name (letters, digits, _ . -)")
    if not bracket:
        return Variant(base)
    if not rest.endswith("]") or "[" in rest[:-1] or "]" in rest[:-1]:
        raise _bad(name, "brackets do not match")
    dims: list[tuple[str, int | None]] = []
    cache = DEFAULT_CACHE
    seen: set[str] = set()
    for item in rest[:-1].split(","):
        key, eq, value = (part.strip() for part in item.partition("="))
        if not eq or not key or not value:
            raise _bad(name, f"{item.strip()!r} is not key=value")
        if key in seen:
            raise _bad(name, f"{key!r} is given twice")
        seen.add(key)
        if key == "cache":
            if value not in CACHE_STATES:
                raise _bad(name, f"cache={value} is not one of {', '.join(CACHE_STATES)}")
            cache = value
            continue
        if not _DIM.match(key):
            raise _bad(name, f"{key!r} is not a dimension name (a letter, then letters, digits, _)")
        if value == SWEPT:
            dims.append((key, None))
        elif value.isdigit() and int(value) > 0:
            dims.append((key, int(value)))
        else:
            raise _bad(name, f"{key}={value} is neither {SWEPT} nor a positive whole number")
    if dims and sum(value is None for _, value in dims) != 1:
        raise _bad(name, "exactly one dimension must be swept (=*)")
    variant = Variant(base, tuple(dims), cache)
    if variant.name != text.replace(" ", ""):
        # One spelling per op, or the same cells would land in two curves (cache=warm is the plain name).
        raise _bad(name, f"write it as {variant.name!r}")
    return variant


def shaped_name(base: str, dims: Mapping[str, int | None], cache: str = DEFAULT_CACHE) -> str:
    """The op name of ``base`` with these dimensions (``None`` the swept one) and cache state."""
    return Variant(base, tuple(dims.items()), check_cache(cache)).name


def base_of(name: str) -> str:
    """The base op of a name (``matmul[m=*,k=256,n=256]`` -> ``matmul``), without validating the rest."""
    return name.partition("[")[0].strip()

