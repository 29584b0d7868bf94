"""Cache state (issue 18): the cache-cold timing protocol with a fake clock, LLC detection from a fake sysfs,
the ``--cache`` flag, the flush through the one run_cell, and the report's warm/flushed table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from devbench import cache
from devbench.backends.numpy import NumpyBackend
from devbench.cache import (
    DEFAULT_LLC_BYTES,
    FLUSH_FACTOR,
    CacheSize,
    Flush,
    cache_meta,
    cache_variants,
    llc_size,
    parse_size,
    warm_cold_pairs,
)
from devbench.cli import main
from devbench.errors import UsageError
from devbench.report import render_report
from devbench.runner import run_cell
from devbench.spec import NUMPY_DEVICE, Cell, TimingPolicy
from devbench.store import Run
from devbench.timer import measure
from tests.fakes import FakeDevice
from tests.synthetic import frame, row

POLICY = TimingPolicy(max_cell_time=10.0, min_samples=5, max_samples=50, target_rel_iqr=0.05,
                      warmup_time=0.1, min_warmup_calls=2, min_block_time=0.01)


class Recorder:
    """A FakeDevice whose clock reads, calls, syncs and flushes are logged in order; a flush costs ``flush_s`` of
    (fake) time, far more than a call, so that a flush inside a timed region could not go unseen."""

    def __init__(self, cost: float | list[float], flush_s: float = 0.5, miss_s: float = 0.0,
                 **kw: float | bool) -> None:
        self.dev = FakeDevice(cost, **kw)  # type: ignore[arg-type]
        self.flush_s = flush_s
        self.miss_s = miss_s
        """What the first call after a flush pays on top (its inputs come from memory)."""
        self.evicted = False
        self.events: list[str] = []
        self.flushes = 0

    def clock(self) -> float:
        self.events.append("clock")
        return self.dev.clock()

    def call(self) -> int:
        self.events.append("call")
        output = self.dev.call()
        if self.evicted:
            self.dev.busy_until += self.miss_s
            self.evicted = False
        return output

    def sync(self, output: int) -> None:
        self.events.append("sync")
        self.dev.sync(output)

    def flush(self) -> None:
        self.events.append("flush")
        self.flushes += 1
        self.evicted = True
        self.dev.now = max(self.dev.now, self.dev.busy_until) + self.flush_s


def test_every_flush_lies_between_a_stop_and_the_next_start() -> None:
    rec = Recorder(1e-4, launch=1e-6)
    m = measure(rec.call, rec.sync, POLICY, clock=rec.clock, flush=rec.flush)
    events = rec.events
    flushes = [i for i, e in enumerate(events) if e == "flush"]
    assert len(flushes) == 1 + len(m.samples)  # the cold call, then every sample
    for i in flushes[1:]:
        # flush, then the timed region: start, ONE call, sync, stop; nothing else inside it; then the unflushed twin
        assert events[i + 1:i + 9] == ["clock", "call", "sync", "clock", "clock", "call", "sync", "clock"], (
            events[i - 2:i + 10])
    assert events[flushes[0] + 1:flushes[0] + 5] == ["clock", "call", "sync", "clock"]  # the cold call
    # Every sample is the call and its sync alone: the 0.5 s flushes are in none of them, nothing subtracted.
    assert m.samples == pytest.approx([1e-4 + 1e-6] * len(m.samples))
    assert m.unflushed_samples == pytest.approx(m.samples)
    assert m.cold_s == pytest.approx(1e-4 + 1e-6)
    assert (m.number, m.calibration_blocks) == (1, 0)


def test_a_flushed_cell_times_one_call_per_sample_even_where_a_block_would_be_long() -> None:
    rec = Recorder(1e-6)  # a warm block would hold thousands of calls
    m = measure(rec.call, rec.sync, POLICY, clock=rec.clock, flush=rec.flush)
    sampled_calls = rec.dev.calls - 1 - m.warmup_calls
    assert m.number == 1
    assert sampled_calls == len(m.samples) + len(m.unflushed_samples)
    assert len(m.unflushed_samples) == len(m.samples)


def test_the_unflushed_twin_sees_the_cached_inputs_and_the_sample_the_miss() -> None:
    rec = Recorder(1e-4, miss_s=3e-4)  # the call after a flush pays 3x its warm cost in misses
    m = measure(rec.call, rec.sync, POLICY, clock=rec.clock, flush=rec.flush)
    assert m.samples == pytest.approx([4e-4] * len(m.samples))
    assert m.unflushed_samples == pytest.approx([1e-4] * len(m.samples))


def test_warm_cells_are_not_flushed_and_keep_their_blocks() -> None:
    rec = Recorder(1e-4)
    m = measure(rec.call, rec.sync, POLICY, clock=rec.clock)
    assert rec.flushes == 0
    assert m.unflushed_samples == []
    assert m.number == math.ceil(POLICY.min_block_time / 1e-4)


def test_flushes_spend_the_budget_but_one_sample_is_always_taken() -> None:
    policy = TimingPolicy(max_cell_time=3.0, min_samples=5, max_samples=50, warmup_time=0.1, min_block_time=0.01)
    rec = Recorder([1e-3, 2e-3, 4e-3], flush_s=1.0)  # noisy: only the budget stops it
    m = measure(rec.call, rec.sync, policy, clock=rec.clock, flush=rec.flush)
    assert m.stop_reason == "budget"
    assert 1 <= len(m.samples) <= 3  # each sample costs a 1 s flush of the 3 s budget
    huge = Recorder(1e-3, flush_s=100.0)
    m = measure(huge.call, huge.sync, policy, clock=huge.clock, flush=huge.flush)
    assert (len(m.samples), m.stop_reason) == (1, "budget")


def test_an_asynchronous_device_is_synchronised_inside_each_timed_call() -> None:
    rec = Recorder(1e-3, launch=1e-6, asynchronous=True)
    m = measure(rec.call, rec.sync, POLICY, clock=rec.clock, flush=rec.flush)
    assert m.samples == pytest.approx([1e-3 + 1e-6] * len(m.samples))  # the work, not just the launch


# ---------------------------------------------------------------------------------------------------------
# Through the one run_cell


QUICK = TimingPolicy(max_cell_time=0.05, min_samples=3, max_samples=10, warmup_time=0.005, min_block_time=0.001)


class CountingNumpy(NumpyBackend):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flusher(self, device: str) -> Flush:
        def write() -> None:
            self.flushes += 1

        return Flush(write, 12345, CacheSize(6000, "test"))


def test_run_cell_flushes_cache_cold_cells_and_records_the_buffer() -> None:
    backend = CountingNumpy()
    cold = run_cell(backend, "t", Cell(size=32, op="add[cache=cold]", dtype="float32", device=NUMPY_DEVICE), QUICK, 0)
    assert cold.record.status == "ok", cold.record.reason
    assert cold.record.flush_bytes == 12345
    assert cold.record.number == 1
    assert cold.record.unflushed_median_s > 0
    assert backend.flushes == 1 + cold.record.n_samples
    flushed = backend.flushes
    warm = run_cell(backend, "t", Cell(size=32, op="add", dtype="float32", device=NUMPY_DEVICE), QUICK, 0)
    assert (warm.record.status, warm.record.flush_bytes, backend.flushes) == ("ok", 0, flushed)
    assert math.isnan(warm.record.unflushed_median_s)


def test_the_host_flush_is_twice_the_llc_and_a_gpu_without_a_flush_is_unsupported() -> None:
    flush = NumpyBackend().flusher(NUMPY_DEVICE)
    assert flush.bytes == FLUSH_FACTOR * llc_size().bytes
    flush()  # writes its buffer (64 MiB on a 32 MiB LLC): must simply work

    from devbench.backends.base import FrameworkBackend, UnsupportedCombination

    class NoFlush(FrameworkBackend):
        FRAMEWORK = "numpy"

    with pytest.raises(UnsupportedCombination, match="cache-cold cells on GPU:0"):
        NoFlush().flusher("GPU:0")


# ---------------------------------------------------------------------------------------------------------
# LLC detection


def _sysfs(root: Path, caches: list[tuple[int, str, str]]) -> Path:
    for i, (level, kind, size) in enumerate(caches):
        index = root / f"index{i}"
        index.mkdir(parents=True)
        (index / "level").write_text(f"{level}\n")
        (index / "type").write_text(f"{kind}\n")
        (index / "size").write_text(f"{size}\n")
    return root


def no_sysconf(name: str) -> int:
    raise ValueError(f"unrecognized configuration name {name!r}")


def test_llc_is_the_highest_level_data_or_unified_cache(tmp_path: Path) -> None:
    root = _sysfs(tmp_path / "cache", [(1, "Data", "32K"), (1, "Instruction", "32K"), (2, "Unified", "1024K"),
                                      (3, "Unified", "32768K")])
    found = llc_size(root, sysconf=no_sysconf)
    assert found.bytes == 32 * 2**20
    assert found.source == f"{root / 'index3'} (L3)"


def test_instruction_caches_and_unreadable_entries_are_skipped(tmp_path: Path) -> None:
    root = _sysfs(tmp_path / "cache", [(1, "Data", "48K"), (2, "Unified", "2M"), (3, "Instruction", "64M"),
                                      (3, "Unified", "lots")])
    assert llc_size(root, sysconf=no_sysconf) == CacheSize(2 * 2**20, f"{root / 'index1'} (L2)")


def test_llc_falls_back_to_sysconf_then_to_a_stated_default(tmp_path: Path) -> None:
    missing = tmp_path / "none"
    assert llc_size(missing, sysconf=lambda name: 8 * 2**20) == CacheSize(8 * 2**20, "sysconf SC_LEVEL3_CACHE_SIZE")
    for sysconf in (no_sysconf, lambda name: 0, lambda name: -1):
        found = llc_size(missing, sysconf=sysconf)
        assert found.bytes == DEFAULT_LLC_BYTES
        assert found.source.startswith("default 64 MiB")


def test_parse_size() -> None:
    assert [parse_size(t) for t in ("32K", "1024K", "32M", "1G", "512\n")] == [32768, 2**20, 2**25, 2**30, 512]
    with pytest.raises(ValueError, match="not a cache size"):
        parse_size("12Q")


def test_gpu_l2_from_the_framework_else_the_default_buffer() -> None:
    assert cache.flush_bytes(cache.gpu_l2(50 * 2**20, "torch")) == 100 * 2**20
    unknown = cache.gpu_l2(None, "JAX says nothing")
    assert cache.flush_bytes(unknown) == cache.DEFAULT_GPU_FLUSH_BYTES
    assert "JAX says nothing" in unknown.source


# ---------------------------------------------------------------------------------------------------------
# The flag


def test_cache_states_turn_ops_into_their_variants() -> None:
    assert cache_variants(("add", "matmul"), ("warm", "cold")) == ("add", "add[cache=cold]", "matmul",
                                                                    "matmul[cache=cold]")
    assert cache_variants(("add",), ("cold",)) == ("add[cache=cold]",)
    assert cache_variants(("add",), ("cold", "warm", "cold")) == ("add[cache=cold]", "add")
    assert cache.parse_cache_states("Warm, cold") == ("warm", "cold")


@pytest.mark.parametrize(("value", "message"), [
    ("hot", "unknown cache state 'hot'; allowed: warm, cold"),
    ("cld", "unknown cache state 'cld' (did you mean 'cold'?); allowed: warm, cold"),
    ("warm,,cold", "empty cache state in 'warm,,cold'"),
])
def test_bad_cache_values_are_one_line_and_exit_2(value: str, message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "--cache", value, "--ops", "add", "--devices", NUMPY_DEVICE]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert err.startswith("devbench: error: "), err
    assert message in err, err


def test_the_no_tensorflow_validation_checks_the_cache_flag() -> None:
    import argparse

    from devbench.cli.sweep import validate_without_tf

    args = argparse.Namespace(resume=None, sizes="64", ops="add", cache="lukewarm", dtypes="float32",
                              modes="eager", sync="scalar", devices=None, processes=1, rounds=1, shard=None,
                              shard_count=None, out=None)
    with pytest.raises(UsageError, match="unknown cache state 'lukewarm'"):
        validate_without_tf(args)


def test_meta_records_the_llc_only_for_runs_with_cache_cold_ops() -> None:
    assert cache_meta(["add", "matmul"]) == {}
    entry = cache_meta(["add", "add[cache=cold]"])["cache"]
    assert entry["host_flush_bytes"] == FLUSH_FACTOR * entry["llc_bytes"]
    assert entry["llc_source"]


# ---------------------------------------------------------------------------------------------------------
# The report's table

LLC = CacheSize(32 * 2**20, "test sysfs")


def _pair_run(rounds: int = 5, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """add warm and cache-cold on CPU:0 at n=256 (768 KiB: fits) and 4096 (192 MiB: above), ``rounds`` rounds
    of 4 samples, cache-cold 3x slower at 256 and 1.02x at 4096, plus noise."""
    rng = np.random.default_rng(seed)
    truth = {("add", 256): 1e-5, ("add[cache=cold]", 256): 3e-5,
             ("add", 4096): 1e-2, ("add[cache=cold]", 4096): 1.02e-2}
    rows: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    for (op, n), t in truth.items():
        flush = FLUSH_FACTOR * LLC.bytes if "cold" in op else 0
        unflushed = truth[("add", n)] * 1.1 if "cold" in op else math.nan  # a single call: a little dearer
        rows.append(row(n, "CPU:0", t, op=op, bytes=3.0 * 4 * n * n, flush_bytes=flush,
                        unflushed_median_s=unflushed))
        for r in range(1, rounds + 1):
            drift = math.exp(rng.normal(0, 0.05))
            samples.extend({"run_id": "synthetic", "op": op, "size": n, "dtype": "float32", "device": "CPU:0",
                            "mode": "eager", "sync": "scalar", "round": r, "sample": i, "number": 1,
                            "per_call_s": t * drift * math.exp(rng.normal(0, 0.02))} for i in range(4))
    return frame(rows), pd.DataFrame(samples)


def test_pairs_give_the_ratio_and_where_the_working_set_sits() -> None:
    results, samples = _pair_run()
    pairs = warm_cold_pairs(results, samples, LLC)
    assert list(pairs["op"]) == ["add", "add"]
    small, large = pairs.to_dict("records")
    assert (small["size"], small["fits"], large["size"], large["fits"]) == (256, True, 4096, False)
    assert small["llc_bytes"] == LLC.bytes  # flush_bytes / FLUSH_FACTOR: the cache the flush evicted
    assert small["ratio_low"] > 2.5
    assert small["ratio_high"] < 3.5
    assert small["ratio_low"] < small["ratio"] < small["ratio_high"]
    assert large["ratio_low"] < 1.02 < large["ratio_high"]
    assert small["unflushed_s"] == pytest.approx(1.1e-5)
    assert small["flushed_over_unflushed"] == pytest.approx(3 / 1.1)


def test_pairs_without_samples_fall_back_to_the_ratio_of_medians() -> None:
    results, _ = _pair_run()
    pairs = warm_cold_pairs(results, None, None)
    assert pairs["ratio"].tolist() == pytest.approx([3.0, 1.02])
    assert pairs["ratio_low"].isna().all()


def test_no_pairs_without_a_warm_twin_or_without_cold_cells() -> None:
    results, samples = _pair_run()
    assert warm_cold_pairs(results[results["op"] == "add"], samples).empty
    assert warm_cold_pairs(results[results["op"] != "add"], samples).empty


def test_report_shows_the_ratio_table_with_the_llc(tmp_path: Path) -> None:
    from devbench.html_report import render_html_report

    results, samples = _pair_run()
    meta = {"cache": {"llc_bytes": LLC.bytes, "llc_source": "test sysfs", "host_flush_bytes": 2 * LLC.bytes}}
    run = Run(path=None, meta=meta, results=results, samples=samples)
    text = render_report(run, tmp_path)
    assert "## Cache state (warm vs flushed)" in text
    assert "Host LLC: 32 MiB, from test sysfs." in text
    lines = [line for line in text.splitlines() if line.startswith("| add | float32 | eager | scalar | CPU:0 |")]
    assert len(lines) == 2
    assert "| 256 | 768 KiB (fits) | 32 MiB |" in lines[0]
    assert "| 4096 | 192 MiB (above) | 32 MiB |" in lines[1]
    html = render_html_report(run)
    assert 'id="cache"' in html
    assert "768 KiB (fits)" in html
    warm_only = Run(path=None, meta={}, results=results[results["op"] == "add"], samples=samples)
    assert "## Cache state" not in render_report(warm_only, tmp_path)
    assert 'id="cache"' not in render_html_report(warm_only)


def test_a_real_framework_backend_flushes_its_host_device() -> None:
    pytest.importorskip("jax")
    from devbench.backends.jax import JaxBackend

    cell = Cell(size=32, op="add[cache=cold]", dtype="float32", device="jax:cpu:0")
    result = run_cell(JaxBackend(), "t", cell, QUICK, 0)
    assert result.record.status == "ok", result.record.reason
    assert result.record.flush_bytes == FLUSH_FACTOR * llc_size().bytes
    assert result.record.number == 1


def test_a_rows_unflushed_median_weighs_its_visits_alike() -> None:
    from devbench.schema import visit_record
    from devbench.visits import LoggedVisit, cell_row

    base = {"run_id": "r", "op": "add[cache=cold]", "size": 16, "dtype": "float32", "device": "CPU:0",
            "mode": "eager", "sync": "scalar", "status": "ok", "flush_bytes": 64}
    visits = [LoggedVisit(visit_record({**base, "unflushed_median_s": u}), [2.0, 2.0], r)
              for r, u in ((1, 1.0), (2, 3.0), (3, 2.5))]
    row = cell_row(visits, rounds_planned=3)
    assert (row.unflushed_median_s, row.flush_bytes) == (2.5, 64)
    warm = cell_row([LoggedVisit(visit_record({**base, "op": "add", "flush_bytes": 0}), [1.0], 1)], 1)
    assert math.isnan(warm.unflushed_median_s)
