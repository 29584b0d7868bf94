"""Which result rows analysis, charts and the report use, and how devices are ordered and classified.

The shared filters of every results reader: ``ok_cells`` (status ok, finite positive median, one row per cell,
a synchronized measurement preferred), the quality flags (noisy, unsynchronized), transfer timings as a mode of
their own, the device order (``CPU:0`` first: the reference of every speed-up). What counts as an accelerator is the
registry's rule (``devbench.frameworks.is_accelerator``). Units: times are seconds per call, sizes the matrix side n.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from devbench.schema import IDENTITY
from devbench.stats import NOISY_REL_IQR

REFERENCE_DEVICE = "CPU:0"
"""Speed-ups are over this device: the place an op runs when nobody chooses."""

GROUP = ("op", "dtype", "mode")
"""A crossover is sought within one (op, dtype, mode): sizes are comparable only there."""


# ---------------------------------------------------------------------------------------------------------
# Cell selection and quality flags


def noisy_flags(results: pd.DataFrame) -> pd.Series[bool]:
    """True where a cell's IQR exceeds ``NOISY_REL_IQR`` of its median (or the row says ``noisy``).

    ``rel_iqr`` is used when present, else recomputed from ``q1_s``, ``q3_s`` and ``median_s``.
    """

    def numeric(name: str) -> pd.Series[float]:
        if name not in results:
            empty: pd.Series[float] = pd.Series(math.nan, index=results.index, dtype="float64")
            return empty
        values: pd.Series[float] = pd.to_numeric(results[name], errors="coerce").astype("float64")
        return values

    rel = numeric("rel_iqr").fillna((numeric("q3_s") - numeric("q1_s")) / numeric("median_s"))
    flagged = rel.fillna(0.0) > NOISY_REL_IQR
    if "noisy" in results:
        flagged = flagged | results["noisy"].fillna(False).astype(bool)
    out: pd.Series[bool] = flagged.astype(bool)
    return out


def unsynchronized_flags(results: pd.DataFrame) -> pd.Series[bool]:
    """True where a cell was timed without waiting for the device (``sync == "none"``): launch, not work."""
    flagged = pd.Series(False, index=results.index, dtype=bool)
    if "sync" in results:
        flagged = flagged | (results["sync"].astype(str) == "none")
    if "unsynchronized" in results:
        flagged = flagged | results["unsynchronized"].fillna(False).astype(bool)
    out: pd.Series[bool] = flagged
    return out


TRANSFER_SUFFIX = "+transfer"


def transfer_as_mode(results: pd.DataFrame) -> pd.DataFrame:
    """Rows timed with ``sync == "transfer"`` (host→device copies and the full result back inside the timed
    region) become their own mode, ``eager+transfer`` etc., so they are analysed beside the resident timings
    of the same cell instead of being mixed with them. Idempotent; other rows are unchanged."""
    if "sync" not in results.columns or "mode" not in results.columns:
        return results
    transfer = (results["sync"].astype(str) == "transfer") & ~results["mode"].astype(str).str.endswith(
        TRANSFER_SUFFIX)
    if not transfer.any():
        return results
    out: pd.DataFrame = results.copy()
    out.loc[transfer, "mode"] = out.loc[transfer, "mode"].astype(str) + TRANSFER_SUFFIX
    return out


def split_mode(mode: str) -> tuple[str, str | None]:
    """(mode, sync override) for an analysis mode: ``eager+transfer`` -> (``eager``, ``transfer``)."""
    if mode.endswith(TRANSFER_SUFFIX):
        return mode[: -len(TRANSFER_SUFFIX)], "transfer"
    return mode, None


def ok_cells(results: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """The rows analysis may use: status ok, finite positive median; one per (op, dtype, mode, device, size).

    Adds boolean columns ``is_noisy`` and ``is_unsynchronized``. When a cell was measured under several sync
    policies, a synchronized row wins (an unsynchronized one measures launch, not work); among equals the
    last row wins, as in the store. ``by``: extra columns that tell tables apart (``history`` passes its run
    column to select the cells of many runs at once).
    """
    frame = transfer_as_mode(results).copy()
    frame["is_noisy"] = noisy_flags(frame)
    frame["is_unsynchronized"] = unsynchronized_flags(frame)
    median = pd.to_numeric(frame["median_s"], errors="coerce")
    keep = (frame["status"].astype(str) == "ok") & np.isfinite(median) & (median > 0)
    frame = frame[keep]
    frame = frame.assign(_order=np.arange(len(frame))).sort_values(
        ["is_unsynchronized", "_order"], ascending=[False, True], kind="stable"
    )
    frame = frame.drop_duplicates(subset=[*by, *GROUP, "device", "size"], keep="last")
    out: pd.DataFrame = frame.drop(columns="_order").sort_values([*by, *GROUP, "device", "size"])
    out = out.reset_index(drop=True)
    return out


_DEVICE = re.compile(r"^(?:.*device:)?([A-Za-z_]+):(\d+)$")


def device_sort_key(device: str) -> tuple[int, str, int, str]:
    """CPU:0 first, then by kind and numeric index (GPU:2 before GPU:10), then by name."""
    match = _DEVICE.match(device)
    kind, index = (match.group(1).upper(), int(match.group(2))) if match else (device, 0)
    return (0 if device == REFERENCE_DEVICE else 1, kind, index, device)


def device_order(devices: Iterable[str]) -> list[str]:
    return sorted(set(devices), key=device_sort_key)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts keyed by column name (typed access for callers; values keep their types)."""
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict(orient="records")]


def merge_results(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Append ``new`` rows to ``old``; a cell (schema identity) present in both keeps the ``new`` row."""
    if new.empty or old.empty:
        only: pd.DataFrame = (old if new.empty else new).reset_index(drop=True)
        return only
    merged = pd.concat([old, new], ignore_index=True)
    merged = merged[~merged.duplicated(subset=list(IDENTITY), keep="last")]
    out: pd.DataFrame = merged.sort_values([*GROUP, "device", "size"], kind="stable")
    out = out.reset_index(drop=True)
    return out
