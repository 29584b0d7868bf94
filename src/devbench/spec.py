"""What was asked for: the size grammar, the sweep specification and its cells.

Nothing here imports TensorFlow. A ``SweepSpec`` is plain data that can be stored in meta.json and read back
(``to_dict``/``from_dict``) so that an interrupted sweep can be resumed with exactly the same plan.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from devbench import frameworks
from devbench.errors import UsageError

MAX_SIZES = 1000
"""More sizes than this in one sweep is almost certainly a typo (``1..100000:+1``)."""

DTYPES = ("float16", "bfloat16", "float32", "float64", "int32")
MODES = frameworks.MODES
"""How an op is dispatched: the modes of every framework, declared once in each one's module of
devbench.frameworks. ``eager``: op by op (every framework). TensorFlow: ``function`` (tf.function), ``xla``
(jit_compile=True). JAX: ``jit`` (``jax.jit``). PyTorch: ``compile`` (``torch.compile``). ``graph_loop``
(TensorFlow and JAX): one compiled call runs the op ``number`` times in a loop (``tf.while_loop``,
``jax.lax.fori_loop``), so per-call time excludes Python dispatch; eager minus graph_loop is the dispatch
overhead. A mode a framework does not have is an ``unsupported`` cell, not an error."""
SYNC_MODES = frameworks.SYNC_MODES
"""``transfer``: each call first copies the inputs from host memory to the device and afterwards copies its whole
result back (``.numpy()``): what a caller holding numpy data pays on every call."""
TRANSFER_SYNC = frameworks.TRANSFER_SYNC
NO_SYNC = frameworks.NO_SYNC
"""No wait: times how fast work is enqueued, not the work (an unsynchronized cell)."""

NUMPY_DEVICE = frameworks.NUMPY_DEVICE
"""The numpy baseline's pseudo-device (``--baseline numpy``): the same ops in plain numpy on the host."""

DEFAULT_ROUNDS = 5
"""Visits of every cell in a sweep (``--rounds``); see :meth:`SweepSpec.visits` and the README's "Rounds"."""

_NUMBER = r"(\d+(?:\.\d+)?)([kKmM]?)"
_SUFFIX = {"": 1, "k": 1024, "m": 1024 * 1024}
_RANGE = re.compile(rf"^{_NUMBER}\.\.{_NUMBER}(?::(x|\+)(\d+(?:\.\d+)?))?$")
_SINGLE = re.compile(rf"^{_NUMBER}$")

SIZE_GRAMMAR_HELP = (
    "sizes are N, N..M (doubling), N..M:xF (factor F>1), N..M:+S (step S>0) or comma lists of these; "
    "k and m suffixes mean 1024 and 1024²"
)


def _number(digits: str, suffix: str, text: str) -> int:
    value = float(digits) * _SUFFIX[suffix.lower()]
    if value != int(value):
        raise UsageError(f"size {text!r} is not a whole number; {SIZE_GRAMMAR_HELP}")
    if value <= 0:
        raise UsageError(f"size {text!r} must be positive; {SIZE_GRAMMAR_HELP}")
    return int(value)


def _expand_range(start: int, stop: int, op: str, step: float, text: str) -> list[int]:
    if stop < start:
        raise UsageError(f"size range {text!r} is reversed ({start} > {stop}); write it smallest first")
    if op == "x" and step <= 1:
        raise UsageError(f"size range {text!r} has factor {step:g}, which never advances; use a factor > 1")
    if op == "+" and step <= 0:
        raise UsageError(f"size range {text!r} has step {step:g}, which never advances; use a step > 0")
    if op == "+" and step != int(step):
        raise UsageError(f"size range {text!r} has a fractional step {step:g}; use a whole number")
    count = (
        (stop - start) / step + 1
        if op == "+"
        else math.log(stop / start) / math.log(step) + 1
    )
    if count > MAX_SIZES:
        raise UsageError(f"size range {text!r} expands to about {int(count)} sizes; at most {MAX_SIZES}")
    sizes: list[int] = []
    value = float(start)
    # A tiny tolerance keeps 64..8192:x2 from losing 8192 to floating-point round-off.
    while value <= stop * (1 + 1e-9):
        sizes.append(round(value))
        value = value + step if op == "+" else value * step
    return sizes


def parse_sizes(text: str) -> tuple[int, ...]:
    """Parse the size grammar into sorted, de-duplicated matrix sizes.

    >>> parse_sizes("64..512")
    (64, 128, 256, 512)
    >>> parse_sizes("1k,100..300:+100,64")
    (64, 100, 200, 300, 1024)
    """
    if not text or not text.strip():
        raise UsageError(f"empty size list; {SIZE_GRAMMAR_HELP}")
    sizes: set[int] = set()
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            raise UsageError(f"empty item in size list {text!r}; {SIZE_GRAMMAR_HELP}")
        if match := _SINGLE.match(part):
            sizes.add(_number(match[1], match[2], part))
        elif match := _RANGE.match(part):
            start = _number(match[1], match[2], part)
            stop = _number(match[3], match[4], part)
            op = match[5] or "x"
            step = float(match[6]) if match[6] else 2.0
            sizes.update(_expand_range(start, stop, op, step, part))
        else:
            raise UsageError(f"bad size {part!r}; {SIZE_GRAMMAR_HELP}")
        if len(sizes) > MAX_SIZES:
            raise UsageError(f"size list {text!r} has more than {MAX_SIZES} sizes")
    return tuple(sorted(sizes))


@dataclass(frozen=True)
class TimingPolicy:
    """How long and how hard to measure one cell. All times in seconds."""

    max_cell_time: float = 2.0
    """Budget for one cell's warm-up and samples (the cold call and checks are not counted)."""
    min_samples: int = 5
    max_samples: int = 50
    target_rel_iqr: float = 0.05
    """Stop early once the IQR of the samples is within this fraction of their median."""
    warmup_time: float = 0.1
    min_warmup_calls: int = 2
    first_call_warms: bool = False
    """The first call is not cold (a later visit of a cell): it counts as a warm-up call."""
    min_block_time: float = 0.01
    """A sample's block of ``number`` calls lasts at least this long (and at least 100x the sync cost)."""
    max_number: int = 10_000

    def per_visit(self, rounds: int) -> TimingPolicy:
        """The policy of one of ``rounds`` visits to a cell: the cell's time budget, its warm-up and its sample
        counts are shared by its visits (at least 2 samples a visit, so each round has a spread of its own)."""
        if rounds <= 1:
            return self
        return replace(
            self,
            max_cell_time=self.max_cell_time / rounds,
            warmup_time=self.warmup_time / rounds,
            min_samples=max(2, math.ceil(self.min_samples / rounds)),
            max_samples=max(2, math.ceil(self.max_samples / rounds)),
        )

    def later_visit(self) -> TimingPolicy:
        """The policy of a cell's second and later visits: the op already ran in this process, so the first call
        warms up (one warm-up call is enough) instead of being a cold call on its own. What makes rounds
        affordable for slow cells: a visit of a 1 s call costs two calls, not four."""
        return replace(self, min_warmup_calls=1, first_call_warms=True)

    def validate(self) -> TimingPolicy:
        if not self.max_cell_time > 0:
            raise UsageError(f"--max-cell-time must be positive seconds, got {self.max_cell_time!r}")
        if self.min_samples < 1:
            raise UsageError(f"--min-samples must be at least 1, got {self.min_samples!r}")
        if self.max_samples < self.min_samples:
            raise UsageError(
                f"max samples ({self.max_samples}) must be at least min samples ({self.min_samples})"
            )
        if not 0 < self.target_rel_iqr < 1:
            raise UsageError(f"target relative IQR must be in (0, 1), got {self.target_rel_iqr!r}")
        return self


@dataclass(frozen=True, order=True)
class Cell:
    """One measurement asked for: an op at a size and dtype, on a device, in a mode, with a sync method.

    Field order is the sweep's order: smallest sizes first, so that a sweep cut short has the cheap cells.
    """

    size: int
    op: str
    dtype: str
    device: str
    mode: str = "eager"
    sync: str = "scalar"

    def key(self) -> tuple[str, int, str, str, str, str]:
        """Identity of a cell in result files (the columns ``op, size, dtype, device, mode, sync``)."""
        return (self.op, self.size, self.dtype, self.device, self.mode, self.sync)

    def label(self) -> str:
        return f"{self.op}[{self.size}, {self.dtype}, {self.device}, {self.mode}]"


@dataclass(frozen=True)
class Visit:
    """One visit to a cell: round ``round`` (1-based) of the sweep's ``rounds``."""

    cell: Cell
    round: int

    def key(self) -> tuple[tuple[str, int, str, str, str, str], int]:
        return (self.cell.key(), self.round)


def interleaved_visits(cells: list[Cell], rounds: int) -> list[Visit]:
    """``rounds`` visits of every cell of ``cells`` (in their order), in the order they are made.

    Round after round, each round visits every cell once, in the given order (a sweep's: sizes ascending, so
    the guards learn from the smaller sizes first). Cells that differ only in device (one op, size, dtype,
    mode and sync; the numpy baseline joins its first mode's) are visited back to back, in an order that
    rotates from round to round: whatever the machine drifts by between rounds hits every device alike, and
    the devices' ratio within a round is free of it.
    """
    groups: dict[tuple[Any, ...], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.size, cell.op, cell.dtype, cell.mode, cell.sync), []).append(cell)
    plan: list[Visit] = []
    for round_ in range(1, rounds + 1):
        for group in groups.values():
            shift = (round_ - 1) % len(group)
            plan.extend(Visit(cell, round_) for cell in group[shift:] + group[:shift])
    return plan


@dataclass(frozen=True)
class SweepSpec:
    """A whole sweep: the cross product of ops × sizes × dtypes × devices × modes, and how to time it."""

    ops: tuple[str, ...]
    sizes: tuple[int, ...]
    dtypes: tuple[str, ...] = ("float32",)
    devices: tuple[str, ...] = ("CPU:0",)
    modes: tuple[str, ...] = ("eager",)
    sync: str = "scalar"
    seed: int = 0
    policy: TimingPolicy = field(default_factory=TimingPolicy)
    include_transfer: bool = False
    """Measure every cell twice: with ``sync`` (data resident on the device) and with sync ``transfer``."""
    rounds: int = DEFAULT_ROUNDS
    """How many times every cell is visited, interleaved with the others (see :meth:`visits`)."""
    sizes_by_op: tuple[tuple[str, tuple[int, ...]], ...] = ()
    """Ops measured at sizes of their own instead of ``sizes`` (``--fuzz``: each drawn shape is an op name with
    the sizes drawn for it, devbench.shapes.fuzz_points); ``sizes`` then holds every size of them all."""

    def sizes_of(self, op: str) -> tuple[int, ...]:
        """The sizes ``op`` is measured at: its own (:attr:`sizes_by_op`) or the sweep's."""
        return next((sizes for name, sizes in self.sizes_by_op if name == op), self.sizes)

    def syncs(self) -> tuple[str, ...]:
        """The sync modes every cell is measured with: ``sync``, plus ``transfer`` with ``include_transfer``."""
        if self.include_transfer and self.sync != TRANSFER_SYNC:
            return (self.sync, TRANSFER_SYNC)
        return (self.sync,)

    def planned_cell(self, cell: Cell) -> Cell:
        """The cell this sweep measures for ``cell``. The numpy baseline has no modes and no sync (numpy is
        synchronous and has no ``tf.function``): every mode and sync of it is one measurement, so it is
        measured once per (op, size, dtype), labelled with the sweep's first mode and its sync, and shown
        once. Every other cell is itself."""
        if cell.device != NUMPY_DEVICE:
            return cell
        return Cell(size=cell.size, op=cell.op, dtype=cell.dtype, device=cell.device, mode=self.modes[0],
                    sync=self.sync)

    def cells(self) -> Iterator[Cell]:
        cells = sorted({
            self.planned_cell(Cell(size=size, op=op, dtype=dtype, device=device, mode=mode, sync=sync))
            for op in self.ops
            for size in self.sizes_of(op)
            for dtype in self.dtypes
            for device in self.devices
            for mode in self.modes
            for sync in self.syncs()
        })
        # Smallest first; among equal sizes keep the user's op order, then devices side by side.
        order = {op: i for i, op in enumerate(self.ops)}
        sync_order = {sync: i for i, sync in enumerate(self.syncs())}
        yield from sorted(cells, key=lambda c: (c.size, order[c.op], c.dtype, c.mode, sync_order[c.sync], c.device))

    def n_cells(self) -> int:
        return sum(1 for _ in self.cells())

    def visits(self) -> list[Visit]:
        """Every visit of the sweep, in the order they are made: :func:`interleaved_visits` of its cells."""
        return interleaved_visits(list(self.cells()), self.rounds)

    def n_visits(self) -> int:
        return self.n_cells() * self.rounds

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.sizes_by_op:  # the meta.json of every sweep without --fuzz stays as before
            del data["sizes_by_op"]
        else:
            data["sizes_by_op"] = [[op, list(sizes)] for op, sizes in self.sizes_by_op]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSpec:
        defaults = cls(ops=(), sizes=())
        return cls(
            ops=tuple(str(op) for op in data["ops"]),
            sizes=tuple(int(size) for size in data["sizes"]),
            dtypes=tuple(str(d) for d in data.get("dtypes", defaults.dtypes)),
            devices=tuple(str(d) for d in data.get("devices", defaults.devices)),
            modes=tuple(str(m) for m in data.get("modes", defaults.modes)),
            sync=str(data.get("sync", defaults.sync)),
            seed=int(data.get("seed", defaults.seed)),
            policy=TimingPolicy(**data.get("policy", {})),
            include_transfer=bool(data.get("include_transfer", defaults.include_transfer)),
            rounds=int(data.get("rounds", 1)),  # runs from before rounds were visited once
            sizes_by_op=tuple((str(op), tuple(int(size) for size in sizes))
                              for op, sizes in data.get("sizes_by_op", ())),  # runs from before --fuzz: none
        )
