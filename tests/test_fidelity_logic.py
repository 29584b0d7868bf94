"""The pure half of fidelity: devbench-vs-bare verdicts, the dispatch gap, transfer overhead, and the spec
that measures every cell with and without transfer. Synthetic data only."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from devbench.fidelity import (
    FidelityPair,
    dispatch_gap,
    dispatch_gap_by_device,
    fidelity_target,
    host_only,
    summarize_fidelity,
    transfer_overhead,
)
from devbench.spec import MODES, SYNC_MODES, SweepSpec


def test_verdict_is_the_median_of_per_round_ratios() -> None:
    pairs = [FidelityPair(1024, d, b) for d, b in ((1.02, 1.0), (2.0, 2.0), (0.99, 1.0), (3.3, 3.0), (1.0, 1.0))]
    (verdict,) = summarize_fidelity(pairs)
    assert verdict.size == 1024
    assert verdict.rounds == 5
    assert verdict.ratio == pytest.approx(1.0)  # ratios 1.02, 1, .99, 1.1, 1 -> median 1.0
    assert verdict.low == pytest.approx(0.99)
    assert verdict.high == pytest.approx(1.1)
    assert verdict.devbench_s == pytest.approx(1.02)
    assert verdict.ok
    assert "n=1024" in verdict.line()
    assert "ok" in verdict.line()


def test_targets_are_five_percent_at_64_and_three_elsewhere() -> None:
    assert fidelity_target(64) == 0.05
    assert fidelity_target(1024) == fidelity_target(2048) == 0.03
    verdicts = summarize_fidelity([FidelityPair(64, 1.04, 1.0), FidelityPair(2048, 1.04, 1.0)])
    assert [(v.size, v.ok) for v in verdicts] == [(64, True), (2048, False)]
    assert "MISSED" in verdicts[1].line()


def test_a_zero_bare_time_gives_no_ratio_and_misses() -> None:
    (verdict,) = summarize_fidelity([FidelityPair(64, 1.0, 0.0)])
    assert math.isnan(verdict.ratio)
    assert not verdict.ok


def _row(op: str, size: int, device: str, mode: str, median: float, *, sync: str = "scalar",
         status: str = "ok") -> dict[str, Any]:
    return {"op": op, "size": size, "dtype": "float32", "device": device, "mode": mode, "sync": sync,
            "status": status, "median_s": median}


def test_dispatch_gap_is_eager_minus_graph_loop_per_cell() -> None:
    results = pd.DataFrame([
        _row("matmul", 64, "CPU:0", "eager", 60e-6),
        _row("matmul", 64, "CPU:0", "graph_loop", 15e-6),
        _row("matmul", 64, "CPU:0", "function", 40e-6),
        _row("matmul", 1024, "CPU:0", "eager", 20e-3),
        _row("matmul", 1024, "CPU:0", "graph_loop", 19.9e-3),
        _row("matmul", 64, "GPU:0", "eager", 30e-6),
        _row("matmul", 64, "GPU:0", "graph_loop", math.nan, status="error"),
        _row("matmul", 64, "numpy:CPU", "eager", 7e-6),
        _row("matmul", 64, "numpy:CPU", "graph_loop", 7e-6),
    ])
    gaps = dispatch_gap(results)
    assert list(gaps["size"]) == [64, 1024]
    assert set(gaps["device"]) == {"CPU:0"}
    assert gaps["gap_s"].tolist() == pytest.approx([45e-6, 0.1e-3])
    assert gaps["gap_fraction"].iloc[0] == pytest.approx(0.75)
    by_device = dispatch_gap_by_device(results)
    assert by_device.to_dict("records") == [{"device": "CPU:0", "cells": 2, "smallest_size": 64,
                                             "gap_at_smallest_s": pytest.approx(45e-6),
                                             "median_gap_s": pytest.approx((45e-6 + 0.1e-3) / 2)}]


def test_dispatch_gap_of_a_table_without_graph_loop_is_empty() -> None:
    results = pd.DataFrame([_row("add", 64, "CPU:0", "eager", 1e-5)])
    assert dispatch_gap(results).empty
    assert dispatch_gap_by_device(results).empty


def test_transfer_overhead_pairs_each_cell_with_its_resident_measurement() -> None:
    results = pd.DataFrame([
        _row("add", 64, "CPU:0", "eager", 50e-6),
        _row("add", 64, "CPU:0", "eager", 80e-6, sync="transfer"),
        _row("add", 64, "CPU:0", "eager", 5e-6, sync="none"),  # unsynchronized: never the resident side
        _row("add", 128, "CPU:0", "eager", 60e-6),
        _row("add", 64, "GPU:0", "eager", 20e-6, sync="full"),
        _row("add", 64, "GPU:0", "eager", 120e-6, sync="transfer"),
    ])
    frame = transfer_overhead(results)
    assert frame[["device", "size", "resident_sync"]].values.tolist() == [["CPU:0", 64, "scalar"],
                                                                          ["GPU:0", 64, "full"]]
    assert frame["overhead_s"].tolist() == pytest.approx([30e-6, 100e-6])
    assert frame["ratio"].tolist() == pytest.approx([1.6, 6.0])


def test_host_only_devices() -> None:
    assert host_only(["CPU:0", "CPU:1", "numpy:CPU"])
    assert not host_only(["CPU:0", "GPU:0"])


# ---------------------------------------------------------------------------------------------------------
# The spec: modes, sync modes, and measuring every cell with and without transfer


def test_new_modes_and_sync_modes_exist() -> None:
    assert "graph_loop" in MODES
    assert "transfer" in SYNC_MODES


def test_include_transfer_measures_every_cell_twice() -> None:
    spec = SweepSpec(ops=("matmul", "add"), sizes=(64, 128), devices=("CPU:0", "numpy:CPU"), sync="full",
                     include_transfer=True)
    cells = list(spec.cells())
    # CPU:0 with both syncs; the numpy baseline, synchronous, once (a transfer is no different there)
    assert len(cells) == spec.n_cells() == 2 * 2 * (2 + 1)
    assert {c.sync for c in cells} == {"full", "transfer"}
    assert {c.sync for c in cells if c.device == "numpy:CPU"} == {"full"}
    assert len({c.key() for c in cells}) == len(cells)
    # smallest first, and each cell's resident measurement right before its transfer one
    assert [c.size for c in cells[:6]] == [64] * 6
    assert [(c.op, c.sync, c.device) for c in cells[:3]] == [
        ("matmul", "full", "CPU:0"), ("matmul", "full", "numpy:CPU"), ("matmul", "transfer", "CPU:0"),
    ]


def test_include_transfer_with_sync_transfer_is_not_doubled() -> None:
    spec = SweepSpec(ops=("add",), sizes=(64,), sync="transfer", include_transfer=True)
    assert spec.syncs() == ("transfer",)
    assert spec.n_cells() == len(list(spec.cells())) == 1


def test_include_transfer_round_trips_through_meta() -> None:
    spec = SweepSpec(ops=("add",), sizes=(64,), modes=("eager", "graph_loop"), include_transfer=True)
    assert SweepSpec.from_dict(spec.to_dict()) == spec
    old = spec.to_dict()
    del old["include_transfer"]  # a run written before the field existed
    assert SweepSpec.from_dict(old).include_transfer is False
