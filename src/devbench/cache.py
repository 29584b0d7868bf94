"""Cache state (issue 18): how big the caches are, the host flush, and the warm/cache-cold pairs of a run.

A cell whose op name says ``cache=cold`` (:mod:`devbench.variants`, e.g. ``add[cache=cold]``) is timed with its
inputs evicted: before every timed call the timer (:func:`devbench.timer.measure`, ``flush=``) writes a buffer of
:data:`FLUSH_FACTOR` times the last-level cache, *outside* the timed region, and then times that one call on its
own; the same call is then timed again unflushed, the cell's own warm control. "Cache-cold" is not the first
call's ``cold_s`` (kernel loading, tracing): it is the steady state of an op whose inputs come from memory, the
state a call is in when other work ran in between (for a framework with a thread pool that also means idle
threads to wake, which the flushed call pays and its unflushed twin does not).

Sizes come from the machine: the host's LLC from sysfs (``/sys/devices/system/cpu/cpu0/cache/index*/``, the
highest level), else ``sysconf(SC_LEVEL3_CACHE_SIZE)``, else :data:`DEFAULT_LLC_BYTES` (its source says so);
a GPU's L2 from its framework where it says it (PyTorch), else :data:`DEFAULT_GPU_FLUSH_BYTES` (NVML has no L2
query). Every :class:`Flush` carries its byte count and where the size came from: a visit records the bytes
(``flush_bytes``), meta.json the host's LLC and its source (:func:`cache_meta`).

The host flush adds 1 to every byte of a numpy buffer (a read and a write of every cache line through the
caches); a fill would be a ``memset``, which for buffers this large may use non-temporal stores (recent glibc,
above about 3/4 of the LLC) that bypass the cache and so evict little. Only the calling thread's core runs it:
it evicts that core's private caches and the shared LLC, not other cores' private caches (an op that spreads
over threads may keep some of its inputs there).

Nothing here imports a framework; numpy and pandas only inside the functions that need them (``devbench
--help`` imports neither).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devbench.variants import CACHE_STATES, parse_op_name

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

SYS_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")
"""Where Linux describes cpu0's caches: one ``index*`` directory per cache, with ``level``, ``type``, ``size``."""

DEFAULT_LLC_BYTES = 64 * 2**20
"""The LLC size assumed where the machine says nothing (64 MiB: above most desktop and many server L3s)."""

DEFAULT_GPU_FLUSH_BYTES = 256 * 2**20
"""A GPU flush where the L2 size cannot be read (JAX, TensorFlow): 256 MiB, triton's ``do_bench`` buffer, over
twice the largest L2 of current GPUs (H100 50 MB, B200 126 MB)."""

FLUSH_FACTOR = 2
"""The flush buffer is this many times the cache it evicts, so that no line of the inputs survives whatever
the replacement policy."""


@dataclass(frozen=True)
class CacheSize:
    """A cache's size in bytes and where that number came from (a path, a sysconf name, or a default)."""

    bytes: int
    source: str


def parse_size(text: str) -> int:
    """sysfs's cache size text in bytes: ``32K``, ``1024K``, ``32M``, ``512``. ValueError for anything else."""
    text = text.strip().upper()
    factor = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    digits = text[:-1] if factor > 1 else text
    if not digits.isdigit():
        raise ValueError(f"not a cache size: {text!r}")
    return int(digits) * factor


def _from_sysfs(root: Path) -> CacheSize | None:
    """The highest-level data or unified cache under ``root`` (largest if several), or None."""
    best: tuple[int, int, Path] | None = None
    for index in sorted(root.glob("index*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip() if (index / "type").exists() else "Unified"
            size = parse_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind == "Instruction" or size <= 0:
            continue
        if best is None or (level, size) > best[:2]:
            best = (level, size, index)
    if best is None:
        return None
    level, size, index = best
    return CacheSize(size, f"{index} (L{level})")


def _from_sysconf(sysconf: Callable[[str], int]) -> CacheSize | None:
    try:
        size = int(sysconf("SC_LEVEL3_CACHE_SIZE"))
    except (ValueError, OSError):  # a name this libc does not know
        return None
    return CacheSize(size, "sysconf SC_LEVEL3_CACHE_SIZE") if size > 0 else None


def llc_size(root: Path = SYS_CACHE, sysconf: Callable[[str], int] | None = None) -> CacheSize:
    """The host's last-level cache: sysfs, else sysconf, else :data:`DEFAULT_LLC_BYTES` (see the module doc)."""
    found = _from_sysfs(root) or _from_sysconf(sysconf if sysconf is not None else os.sysconf)
    if found is not None:
        return found
    return CacheSize(DEFAULT_LLC_BYTES, f"default {DEFAULT_LLC_BYTES // 2**20} MiB (neither {root} nor sysconf "
                     "SC_LEVEL3_CACHE_SIZE says)")


@dataclass(frozen=True)
class Flush:
    """A call that evicts a device's caches (it returns once the buffer is written) and how it was sized."""

    write: Callable[[], None]
    bytes: int
    """The buffer written per flush: :data:`FLUSH_FACTOR` x ``cache.bytes``."""
    cache: CacheSize
    """The cache it evicts and where its size came from."""

    def __call__(self) -> None:
        self.write()


def flush_bytes(cache: CacheSize) -> int:
    return FLUSH_FACTOR * cache.bytes


def gpu_l2(l2_bytes: int | None, source: str) -> CacheSize:
    """A GPU's L2 as its framework reported it (``source``), or the default buffer's half where it did not."""
    if l2_bytes and l2_bytes > 0:
        return CacheSize(int(l2_bytes), source)
    return CacheSize(DEFAULT_GPU_FLUSH_BYTES // FLUSH_FACTOR,
                     f"default: L2 not readable ({source}); flush {DEFAULT_GPU_FLUSH_BYTES // 2**20} MiB")


@functools.cache
def host_flush() -> Flush:
    """The host's flush (one buffer per process, made on first use): adds 1 to every byte of a buffer of twice
    the LLC (see the module docstring for why an add, not a fill)."""
    import numpy as np

    cache = llc_size()
    buffer = np.zeros(flush_bytes(cache), dtype=np.uint8)

    def write() -> None:
        np.add(buffer, 1, out=buffer)

    return Flush(write, buffer.nbytes, cache)


CACHE_OPTION_HELP = ("comma list of warm (inputs stay in cache between calls, as before) and cold (a buffer of twice "
                     "the last-level cache, or a GPU's L2, written before every timed call, outside the timed "
                     "region; each call timed on its own); default warm")


def parse_cache_states(text: str) -> tuple[str, ...]:
    """``--cache``: ``warm``, ``cold`` or a comma list of both (order kept, repeats dropped); else UsageError."""
    from devbench.errors import choose_list

    return choose_list("cache state", text, CACHE_STATES)


def cache_variants(ops: Iterable[str], states: Iterable[str]) -> tuple[str, ...]:
    """The op names a sweep measures for ``ops`` in the cache ``states``: each op once per state, the warm and
    cache-cold curves of one op next to each other (``add, add[cache=cold], matmul, ...``)."""
    chosen = tuple(states)
    return tuple(dict.fromkeys(parse_op_name(op).with_cache(state).name for op in ops for state in chosen))


def cache_meta(ops: Iterable[str]) -> dict[str, Any]:
    """meta.json's ``cache`` entry for a run with cache-cold ops: the host LLC, where its size came from and
    the host flush buffer (a GPU's is in each visit's ``flush_bytes``); ``{}`` for a run without them."""
    if not any(parse_op_name(op).cache == "cold" for op in ops):
        return {}
    llc = llc_size()
    return {"cache": {"llc_bytes": llc.bytes, "llc_source": llc.source, "host_flush_bytes": flush_bytes(llc),
                      "flush_factor": FLUSH_FACTOR,
                      "gpu": "a device buffer of 2x the GPU's L2 (PyTorch's L2_cache_size), else "
                             f"{DEFAULT_GPU_FLUSH_BYTES // 2**20} MiB (JAX, TensorFlow: no L2 query)"}}


def host_llc_of(meta: Mapping[str, Any]) -> CacheSize | None:
    """The host LLC a run recorded (meta.json ``cache``), or None."""
    entry = meta.get("cache")
    if isinstance(entry, dict) and isinstance(entry.get("llc_bytes"), int):
        return CacheSize(int(entry["llc_bytes"]), str(entry.get("llc_source", "")))
    return None


# ---------------------------------------------------------------------------------------------------------
# The report's pairs: each cache-cold row with its warm twin

PAIR_KEYS = ("size", "dtype", "device", "mode", "sync")
"""Besides the op (its warm name), what a cache-cold row and its warm row share."""

PAIR_COLUMNS = ("op", *PAIR_KEYS, "working_set_bytes", "llc_bytes", "fits", "warm_s", "flushed_s", "ratio",
                "ratio_low", "ratio_high", "unflushed_s", "flushed_over_unflushed", "flush_bytes")
"""``op`` the warm name; ``warm_s``/``flushed_s`` the two medians; ``ratio`` flushed/warm (> 1: eviction costs),
paired by round where both have samples (``resampling.paired_ratio``), with its 95 % interval (NaN: too few
rounds); ``unflushed_s`` the cache-cold cell's own control (the same single call right after each flushed one,
``unflushed_median_s``) and ``flushed_over_unflushed`` the eviction's cost within that one protocol;
``llc_bytes`` the cache the flush was sized for (``flush_bytes`` / :data:`FLUSH_FACTOR`: the host's LLC, a GPU's
L2), else the run's host LLC; ``fits`` the working set (inputs + output, the row's ``bytes``) within it (None:
unknown)."""


def warm_cold_pairs(results: pd.DataFrame, samples: pd.DataFrame | None = None,
                    llc: CacheSize | None = None) -> pd.DataFrame:
    """Every ``ok`` cache-cold row paired with its ``ok`` warm row (same base op and shape, size, dtype,
    device, mode, sync): the ratio flushed/warm and where the working set sits against the LLC. Empty (with
    :data:`PAIR_COLUMNS`) when the run has no such pair. ``llc``: the host LLC for rows without ``flush_bytes``
    (a bare table), e.g. :func:`host_llc_of` the run's meta."""
    import numpy as np
    import pandas as pd

    from devbench.resampling import paired_ratio

    empty: pd.DataFrame = pd.DataFrame(columns=list(PAIR_COLUMNS))
    if results.empty or "op" not in results.columns:
        return empty
    ok = results[results["status"] == "ok"] if "status" in results.columns else results
    variants = {op: parse_op_name(op) for op in ok["op"].astype(str).unique()}
    cold_ops = {op: v.with_cache("warm").name for op, v in variants.items() if v.cache == "cold"}
    if not cold_ops:
        return empty
    warm = {tuple(r[k] for k in ("op", *PAIR_KEYS)): r for r in ok.to_dict("records")}
    by_cell: dict[tuple[Any, ...], list[np.ndarray]] = {}
    if samples is not None and not samples.empty and "round" in samples.columns:
        for key, group in samples.groupby(["op", *PAIR_KEYS], sort=False):
            rounds = [g["per_call_s"].to_numpy(dtype=np.float64) for _, g in group.groupby("round", sort=True)]
            by_cell[tuple(key)] = rounds
    rows: list[dict[str, Any]] = []
    for r in ok[ok["op"].isin(list(cold_ops))].to_dict("records"):
        warm_op = cold_ops[str(r["op"])]
        twin = warm.get((warm_op, *(r[k] for k in PAIR_KEYS)))
        if twin is None:
            continue
        ratio, low, high = float(r["median_s"]) / float(twin["median_s"]), math.nan, math.nan
        cold_rounds = by_cell.get((r["op"], *(r[k] for k in PAIR_KEYS)))
        warm_rounds = by_cell.get((warm_op, *(r[k] for k in PAIR_KEYS)))
        if cold_rounds and warm_rounds and len(cold_rounds) == len(warm_rounds):
            interval = paired_ratio(cold_rounds, warm_rounds, seed=int(r["size"]))
            ratio = interval.estimate
            if not interval.reason:
                low, high = interval.ci_low, interval.ci_high
        working_set = float(r.get("bytes", math.nan))
        flushed = int(r.get("flush_bytes", 0) or 0)
        unflushed = float(r.get("unflushed_median_s", math.nan))
        # The cache a flush was sized for is the one that matters for this device (a GPU's L2, the host's LLC).
        cache = flushed / FLUSH_FACTOR if flushed > 0 else (float(llc.bytes) if llc is not None else math.nan)
        rows.append({
            "op": warm_op, **{k: r[k] for k in PAIR_KEYS},
            "working_set_bytes": working_set,
            "llc_bytes": cache,
            "fits": working_set <= cache if math.isfinite(cache) and math.isfinite(working_set) else None,
            "warm_s": float(twin["median_s"]), "flushed_s": float(r["median_s"]),
            "ratio": ratio, "ratio_low": low, "ratio_high": high,
            "unflushed_s": unflushed,
            "flushed_over_unflushed": float(r["median_s"]) / unflushed if unflushed > 0 else math.nan,
            "flush_bytes": flushed,
        })
    if not rows:
        return empty
    frame: pd.DataFrame = pd.DataFrame(rows, columns=list(PAIR_COLUMNS)).sort_values(
        ["op", "dtype", "mode", "sync", "device", "size"], kind="stable").reset_index(drop=True)
    return frame


CACHE_EXPLANATION = (
    "Each cache-cold cell (`op[cache=cold]`) next to its warm twin. Cache-cold: before every timed call a buffer "
    "of twice the last-level cache (on a GPU twice its L2) is written, outside the timed region, and that one "
    "call is timed on its own (start, call, sync, stop); warm cells are blocks of back-to-back calls with one sync. "
    "`flushed/warm` (the geometric mean over rounds of each round's ratio, with its 95 % interval, so not always "
    "the quotient of the two medians shown) > 1 is what reading the inputs from memory costs; where the working "
    "set (inputs + output) "
    "fits in the LLC a warm call finds it in cache, well above it both read memory and the ratio tends to 1. "
    "A single call also pays one sync and two clock reads that a block spreads over its calls, and on a busy "
    "machine a long block catches preemptions a short call mostly misses: `unflushed` is the same single call "
    "timed again right after each flushed one, without a flush, so `flushed/unflushed` is the eviction's cost "
    "within one protocol."
)
"""What the warm/cache-cold table shows, for report.md and report.html alike."""


CACHE_HEADERS = ("op", "dtype", "mode", "sync", "device", "n", "working set", "LLC", "warm", "flushed",
                 "flushed/warm (95 % CI)", "unflushed", "flushed/unflushed")
"""The warm/cache-cold table's columns (report.md, report.html, the terminal). ``LLC``: the cache the flush
evicts (a GPU's L2 on a GPU); the working set says whether it fits in it."""


def cache_table_rows(pairs: pd.DataFrame) -> list[list[str]]:
    """The rows of :data:`CACHE_HEADERS` for :func:`warm_cold_pairs`' frame."""
    from devbench.formatting import format_bytes, format_ratio, format_ratio_interval, format_time

    rows: list[list[str]] = []
    for r in pairs.to_dict("records"):
        fits = r["fits"]
        where = (" (fits)" if fits else " (above)") if fits in (True, False) else ""  # None: no LLC known
        rows.append([str(r["op"]), str(r["dtype"]), str(r["mode"]), str(r["sync"]), str(r["device"]),
                     str(r["size"]), format_bytes(float(r["working_set_bytes"])) + where,
                     format_bytes(float(r["llc_bytes"])), format_time(float(r["warm_s"])),
                     format_time(float(r["flushed_s"])),
                     format_ratio_interval(float(r["ratio"]), float(r["ratio_low"]), float(r["ratio_high"])),
                     format_time(float(r["unflushed_s"])), format_ratio(float(r["flushed_over_unflushed"]))])
    return rows


def render_cache_pairs(pairs: pd.DataFrame, width: int = 160) -> str:
    """The warm/cache-cold table for the terminal ("" when the run has no pair)."""
    from devbench.formatting import rich_table

    if pairs.empty:
        return ""
    return rich_table("Cache state: flushed (cache-cold) vs warm", CACHE_HEADERS, cache_table_rows(pairs), width)
