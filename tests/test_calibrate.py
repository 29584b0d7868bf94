"""Roofline calibration with injected measurements: size search, ceilings per device, pct_of_peak, the sweep."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devbench.backends import RoutingBackend
from devbench.calibrate import (
    CALIBRATION_VERSION,
    PROBE_POLICY,
    calibrate,
    calibrate_devices,
    calibrate_spec,
    measure_gemm,
    render_calibration,
    search_gemm,
    sweep_calibrator,
)
from devbench.ceilings import annotate, ceiling, ceilings_frame, pct_of_peak, roofline, with_pct_columns
from devbench.schema import VisitRecord
from devbench.spec import Cell, SweepSpec, TimingPolicy
from devbench.timer import Measurement

GFLOP = 1e9


class FakeMachine:
    """GEMM time = 2n³ / rate(backend, device, dtype) + a fixed overhead that makes small sizes inefficient;
    copy time = 2 bytes / bandwidth(backend, device). Records every probe."""

    def __init__(self, rates: dict[tuple[str, str, str], float], bandwidths: dict[tuple[str, str], float],
                 overhead_s: float = 1e-4) -> None:
        self.rates = rates
        self.bandwidths = bandwidths
        self.overhead_s = overhead_s
        self.gemms: list[tuple[str, str, str, int]] = []
        self.copies: list[tuple[str, str, int]] = []

    def gemm(self, backend: str, device: str, dtype: str, n: int) -> float:
        self.gemms.append((backend, device, dtype, n))
        rate = self.rates.get((backend, device, dtype))
        if rate is None:
            raise RuntimeError(f"no {dtype} GEMM kernel")
        return 2.0 * n**3 / rate + self.overhead_s

    def copy(self, backend: str, device: str, n_bytes: int) -> float:
        self.copies.append((backend, device, n_bytes))
        return 2.0 * n_bytes / self.bandwidths[(backend, device)]


def test_gemm_search_doubles_until_the_next_call_would_be_too_long() -> None:
    machine = FakeMachine({("tensorflow", "CPU:0", "float32"): 100 * GFLOP}, {}, overhead_s=0.0)
    results = search_gemm(machine.gemm, "tensorflow", "CPU:0", "float32", start_n=256, max_n=8192, max_call_s=0.25)
    # 2n³/1e11: 256 -> 0.34 ms, 512 -> 2.7 ms, 1024 -> 21 ms, 2048 -> 172 ms (x8 would be 1.4 s: stop)
    assert [r.n for r in results] == [256, 512, 1024, 2048]
    assert all(r.rate == pytest.approx(100 * GFLOP) for r in results)


def test_gemm_search_stops_at_max_n_and_at_an_error() -> None:
    machine = FakeMachine({("numpy", "host", "float32"): 1e15}, {})
    assert [r.n for r in search_gemm(machine.gemm, "numpy", "host", "float32", max_n=1024)] == [256, 512, 1024]
    failed = search_gemm(machine.gemm, "numpy", "host", "bfloat16")
    assert len(failed) == 1
    assert math.isnan(failed[0].rate)
    assert "no bfloat16 GEMM kernel" in failed[0].error


def _host_machine() -> FakeMachine:
    return FakeMachine(
        rates={("numpy", "host", "float32"): 80 * GFLOP, ("tensorflow", "CPU:0", "float32"): 180 * GFLOP,
               ("numpy", "host", "float64"): 45 * GFLOP, ("tensorflow", "CPU:0", "float64"): 40 * GFLOP,
               ("tensorflow", "GPU:0", "float32"): 50_000 * GFLOP},
        bandwidths={("numpy", "host"): 20e9, ("tensorflow", "CPU:0"): 16e9, ("tensorflow", "GPU:0"): 4e12},
    )


def test_ceilings_are_the_best_backend_per_device_and_dtype() -> None:
    machine = _host_machine()
    cal = calibrate(["CPU:0", "CPU:1", "numpy:CPU", "GPU:0"], ["float32", "float64"], gemm=machine.gemm,
                    copy=machine.copy, now=lambda: "then")
    assert cal["version"] == CALIBRATION_VERSION
    assert cal["measured_at"] == "then"
    devices = cal["devices"]
    host = devices["CPU:0"]
    # the host's ceiling: TF for float32, numpy for float64 (small overhead makes it slightly under the rate)
    assert host["peak_flops"]["float32"] == pytest.approx(180 * GFLOP, rel=0.01)
    assert host["peak_source"]["float32"].startswith("tensorflow n=")
    assert host["peak_flops"]["float64"] == pytest.approx(45 * GFLOP, rel=0.01)
    assert host["peak_source"]["float64"].startswith("numpy n=")
    assert host["peak_by_backend"]["float32"]["numpy"] == pytest.approx(80 * GFLOP, rel=0.01)
    assert host["peak_by_backend"]["float32"]["tensorflow"] == pytest.approx(180 * GFLOP, rel=0.01)
    assert host["bandwidth"] == pytest.approx(20e9)
    assert host["bandwidth_by_backend"] == {"numpy": pytest.approx(20e9), "tensorflow": pytest.approx(16e9)}
    assert host["bandwidth_source"] == "numpy 128 MiB"
    assert host["ridge"]["float32"] == pytest.approx(host["peak_flops"]["float32"] / 20e9)
    # every CPU device and the numpy baseline share the host's numbers; the host was probed once
    assert devices["CPU:1"] == host
    assert devices["numpy:CPU"] == host
    assert {d for _, d, _, _ in machine.gemms} == {"host", "CPU:0", "GPU:0"}
    assert machine.copies.count(("numpy", "host", 128 * 2**20)) == 1
    # the GPU: TF only, float64 has no kernel there (recorded, not fatal)
    gpu = devices["GPU:0"]
    assert set(gpu["peak_flops"]) == {"float32"}
    assert gpu["bandwidth"] == pytest.approx(4e12)
    assert ("tensorflow", "GPU:0", 2**30) in machine.copies
    assert any("no float64 GEMM kernel" in m["error"] for m in cal["measurements"])
    assert cal["numpy_gemm"]["float32"] == pytest.approx(80 * GFLOP, rel=0.01)
    json.dumps(cal)  # stored in meta.json as is


def test_only_the_numpy_baseline_still_probes_tf_on_cpu0() -> None:
    machine = _host_machine()
    cal = calibrate(["numpy:CPU"], ["float32"], gemm=machine.gemm, copy=machine.copy, now=lambda: "")
    assert set(cal["devices"]) == {"numpy:CPU"}
    assert ("tensorflow", "CPU:0", "float32", 256) in machine.gemms


def test_every_device_is_probed_with_its_own_framework() -> None:
    """JAX and torch devices get ceilings too: the host through numpy and each host framework asked for, every
    other device through its framework (the router's backend), named by the framework's module."""
    machine = FakeMachine(
        rates={("numpy", "host", "float32"): 80 * GFLOP, ("jax", "jax:cpu:0", "float32"): 120 * GFLOP,
               ("torch", "torch:cpu", "float32"): 90 * GFLOP, ("jax", "jax:gpu:0", "float32"): 40_000 * GFLOP,
               ("torch", "torch:cuda:0", "float32"): 45_000 * GFLOP},
        bandwidths={("numpy", "host"): 20e9, ("jax", "jax:cpu:0"): 15e9, ("torch", "torch:cpu"): 18e9,
                    ("jax", "jax:gpu:0"): 3e12, ("torch", "torch:cuda:0"): 3.2e12},
    )
    cal = calibrate(["jax:cpu:0", "torch:cpu", "numpy:CPU", "jax:gpu:0", "torch:cuda:0"], ["float32"],
                    gemm=machine.gemm, copy=machine.copy, now=lambda: "")
    assert {(b, d) for b, d, _, _ in machine.gemms} == {
        ("numpy", "host"), ("jax", "jax:cpu:0"), ("torch", "torch:cpu"), ("jax", "jax:gpu:0"),
        ("torch", "torch:cuda:0")}
    assert not any(b == "tensorflow" for b, _, _, _ in machine.gemms), "no TensorFlow device was asked for"
    devices = cal["devices"]
    host = devices["jax:cpu:0"]
    assert devices["torch:cpu"] == devices["numpy:CPU"] == host
    assert host["peak_flops"]["float32"] == pytest.approx(120 * GFLOP, rel=0.01)
    assert host["peak_source"]["float32"].startswith("jax n=")
    assert set(host["peak_by_backend"]["float32"]) == {"numpy", "jax", "torch"}
    assert devices["jax:gpu:0"]["peak_flops"]["float32"] == pytest.approx(40_000 * GFLOP, rel=0.01)
    assert devices["jax:gpu:0"]["bandwidth"] == pytest.approx(3e12)
    assert devices["torch:cuda:0"]["peak_source"]["float32"].startswith("torch n=")
    assert devices["torch:cuda:0"]["kind"] == "GPU"
    assert ("torch", "torch:cuda:0", 2**30) in machine.copies
    (line,) = [line for line in render_calibration(cal) if line.startswith("torch:cuda:0")]
    best = devices["torch:cuda:0"]["peak_by_backend"]["float32"]["torch"]
    assert line.split()[5:7] == ["-", f"{best / 1e9:.1f}"]  # numpy's column empty, the framework's filled


def test_the_real_probes_go_through_the_router() -> None:
    """measure_gemm asks the router for the device's backend: a JAX GPU's cells go to JAX's backend (a fake
    injected in its place here: no GPU needed), with the probe policy."""
    seen: list[tuple[Cell, TimingPolicy]] = []

    class Probe(_Backend):
        def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int) -> _Outcome:
            seen.append((cell, policy))
            return super().run_cell(cell, policy, seed)

    router = RoutingBackend(backends={"devbench.backends.jax:JaxBackend": Probe()})
    assert measure_gemm("jax", "jax:gpu:0", "float16", 512, router=router) == pytest.approx(0.04)
    ((cell, policy),) = seen
    assert (cell.op, cell.size, cell.dtype, cell.device) == ("matmul", 512, "float16", "jax:gpu:0")
    assert policy == PROBE_POLICY
    assert router.created == ("devbench.backends.jax:JaxBackend",)


def test_a_jax_cpu_device_gets_a_real_ceiling() -> None:
    """The real probes on jax:cpu:0 (small sizes and copies, to stay short): numpy's and JAX's GEMMs and copies,
    through the router; no TensorFlow device is probed, none being asked for."""
    pytest.importorskip("jax")
    cal = calibrate_devices(["jax:cpu:0"], ["float32"], max_n={"CPU": 256}, copy_bytes={"CPU": 2**20})
    entry = cal["devices"]["jax:cpu:0"]
    assert entry["kind"] == "CPU"
    assert entry["peak_flops"]["float32"] > 0
    assert set(entry["peak_by_backend"]["float32"]) == {"numpy", "jax"}
    assert set(entry["bandwidth_by_backend"]) == {"numpy", "jax"}
    assert entry["bandwidth"] > 0
    assert {m["backend"] for m in cal["measurements"]} == {"numpy", "jax"}
    assert not [m for m in cal["measurements"] if m["error"]]


def test_roofline_picks_the_bound_by_intensity_against_the_ridge() -> None:
    peak, bandwidth = 100e9, 10e9  # ridge at 10 FLOP/byte
    assert roofline(2e9, 1e6, peak, bandwidth) == (peak, "compute")  # intensity 2000
    attainable, bound = roofline(1e6, 12e6, peak, bandwidth)  # intensity 1/12
    assert bound == "memory"
    assert attainable == pytest.approx(1e6 / 12e6 * bandwidth)
    unknown, no_bound = roofline(1.0, 0.0, peak, bandwidth)  # no byte count: no intensity
    assert math.isnan(unknown)
    assert no_bound == ""


CAL = {"devices": {"CPU:0": {"peak_flops": {"float32": 100e9}, "bandwidth": 10e9},
                   "GPU:0": {"peak_flops": {"float32": 10e12}, "bandwidth": 1e12}}}


def test_pct_of_peak_compute_bound_is_flops_over_peak() -> None:
    # matmul 1024: 2.1e9 FLOPs, 12.6e6 bytes: intensity 171 >> ridge 10
    flops, nbytes = 2.0 * 1024**3, 3.0 * 1024 * 1024 * 4
    median = flops / 50e9  # achieves 50 GFLOP/s
    assert pct_of_peak(flops, nbytes, median, device="CPU:0", dtype="float32", bound="compute",
                       calibration=CAL) == pytest.approx(50)


def test_pct_of_peak_memory_bound_is_bytes_over_bandwidth() -> None:
    # add 1024: 1M FLOPs, 12.6 MB: intensity 1/12 << ridge
    flops, nbytes = 1024.0 * 1024, 3.0 * 1024 * 1024 * 4
    median = nbytes / 5e9  # moves 5 GB/s
    assert pct_of_peak(flops, nbytes, median, device="CPU:0", dtype="float32", bound="memory",
                       calibration=CAL) == pytest.approx(50)


def test_pct_of_peak_is_nan_without_calibration_of_that_device_or_dtype() -> None:
    args = (2e9, 1e7, 0.1)
    assert math.isnan(pct_of_peak(*args, device="CPU:0", dtype="float32", bound="compute", calibration=None))
    assert math.isnan(pct_of_peak(*args, device="CPU:0", dtype="float64", bound="compute", calibration=CAL))
    assert math.isnan(pct_of_peak(*args, device="GPU:1", dtype="float32", bound="compute", calibration=CAL))
    # a logical CPU that was not calibrated shares the host's ceilings
    assert pct_of_peak(*args, device="CPU:1", dtype="float32", bound="compute", calibration=CAL) == pytest.approx(20)
    assert ceiling(CAL, "CPU:3", "float32") == (100e9, 10e9)


def _record(status: str = "ok", device: str = "CPU:0") -> VisitRecord:
    return VisitRecord(run_id="r", op="matmul", size=1024, dtype="float32", device=device, mode="eager",
                       sync="scalar", status=status, flops=2e9, bytes=1.2e7, median_s=0.04)


def test_annotate_sets_pct_of_peak_on_ok_rows_only() -> None:
    assert annotate(_record(), CAL).pct_of_peak == pytest.approx(50)
    assert math.isnan(annotate(_record(status="skipped"), CAL).pct_of_peak)
    assert math.isnan(annotate(_record(), None).pct_of_peak)


def test_pct_of_peak_can_be_recomputed_for_a_loaded_table() -> None:
    import pandas as pd

    table = pd.DataFrame([_record().as_dict(), _record(device="GPU:0").as_dict(),
                          _record(status="error").as_dict()])
    out = with_pct_columns(table, CAL)
    assert out["pct_of_peak"].iloc[0] == pytest.approx(50)
    assert out["pct_of_peak"].iloc[1] == pytest.approx(2e9 / 0.04 / 10e12 * 100)
    assert math.isnan(out["pct_of_peak"].iloc[2])
    frame = ceilings_frame(CAL)
    assert list(frame["device"]) == ["CPU:0", "GPU:0"]
    assert frame["peak_flops"].iloc[0] == 100e9


def test_render_calibration_names_each_ceiling_and_numpys_best() -> None:
    machine = _host_machine()
    cal = calibrate(["CPU:0"], ["float32"], gemm=machine.gemm, copy=machine.copy, now=lambda: "")
    text = "\n".join(render_calibration(cal))
    assert "CPU:0" in text
    assert "tensorflow n=" in text
    assert "numpy's best GEMM: float32 80" in text


def test_sweep_calibrator_defaults_to_calibrating_only_real_backends() -> None:
    def injected(spec: SweepSpec) -> dict[str, Any]:
        return {}

    assert sweep_calibrator(None, real_backend=True) is calibrate_spec
    assert sweep_calibrator(None, real_backend=False) is None
    assert sweep_calibrator(False, real_backend=True) is None
    assert sweep_calibrator(True, real_backend=False) is calibrate_spec
    assert sweep_calibrator(injected, real_backend=False) is injected


# ---------------------------------------------------------------------------------------------------------
# In a sweep (fake backend, injected calibration)


@dataclass
class _Outcome:
    measurement: Measurement[Any]
    placed_device: str
    flops: float
    bytes: float
    traces: int = 0
    note: str = ""


class _Backend:
    def run_cell(self, cell: Cell, policy: TimingPolicy, seed: int) -> _Outcome:
        m: Measurement[Any] = Measurement(cold_s=1e-3, samples=[0.04, 0.04, 0.04], number=1, warmup_calls=2,
                                          sync_overhead_s=0.0, stop_reason="converged")
        return _Outcome(m, cell.device, flops=2e9, bytes=1.2e7, traces=1 if cell.mode != "eager" else 0)

    def classify(self, exc: BaseException) -> tuple[str, str]:
        return "error", str(exc)

    def release(self) -> None:
        pass


def test_a_sweep_stores_its_calibration_and_every_row_gets_pct_of_peak(tmp_path: Path) -> None:
    from devbench.sweep import execute

    seen: list[SweepSpec] = []

    def calibrator(spec: SweepSpec) -> dict[str, Any]:
        seen.append(spec)
        return CAL

    spec = SweepSpec(ops=("matmul",), sizes=(1024,), modes=("eager", "function"))
    run = execute(spec, tmp_path / "run", backend=_Backend(), calibrate=calibrator, handle_signals=False)
    assert seen == [spec]
    assert run.meta["calibration"] == CAL
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["calibration"] == CAL
    assert run.results["pct_of_peak"].tolist() == pytest.approx([50.0, 50.0])
    assert sorted(run.results["traces"].tolist()) == [0, 1]


def test_a_sweep_without_calibration_has_null_meta_and_nan_pct(tmp_path: Path) -> None:
    from devbench.sweep import execute

    run = execute(SweepSpec(ops=("matmul",), sizes=(64,)), tmp_path / "run", backend=_Backend(),
                  handle_signals=False)
    assert run.meta["calibration"] is None
    assert run.results["pct_of_peak"].isna().all()
