"""bench/gpu_check.py's checks on synthetic results with known answers, and its choice of devices and exits.

The checks are the real functions of the script; the results tables are synthetic (tests/synthetic.py), and
the crossover tables come from devbench's own ``crossover_frame`` on them, through the JSON the script reads.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from devbench.analysis import crossover_frame, render_crossovers
from devbench.telemetry import TELEMETRY_COLUMNS
from tests.synthetic import frame, row

ROOT = Path(__file__).resolve().parent.parent


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


gc = _load()
GPUS = ["torch:cuda:0", "jax:gpu:0"]


def gpu_rows(placed: str = "cuda:0", **kw: Any) -> list[dict[str, Any]]:
    return [row(n, device, 1e-4 * (n / 64) ** 2, placed_device=placed, **kw)
            for device in GPUS for n in (64, 128, 256)]


# --- placement -------------------------------------------------------------------------------------------


def test_gpu_cells_placed_on_the_gpu_pass() -> None:
    check = gc.check_placement(frame(gpu_rows("cuda:0")), GPUS)
    assert check.verdict == gc.PASS
    assert "torch:cuda:0: 3/3 ok cells on cuda:0" in check.figure


def test_gpu_cells_placed_on_the_cpu_fail() -> None:
    rows = gpu_rows("cuda:0")
    rows[1]["placed_device"] = "cpu"
    check = gc.check_placement(frame(rows), GPUS)
    assert check.verdict == gc.FAIL
    assert "torch:cuda:0: 1 of 3 cells off the GPU, e.g. matmul n=128 on cpu" in check.figure


def test_fallback_and_missing_gpu_cells_fail() -> None:
    rows = [row(64, "torch:cuda:0", math.nan, status="fallback", reason="landed on cpu")]
    rows += [row(64, "jax:gpu:0", 1e-4, placed_device="cuda:0")]
    assert gc.check_placement(frame(rows), GPUS).verdict == gc.FAIL
    assert "jax:gpu:0: no ok cell" in gc.check_placement(frame(gpu_rows()[:3]), GPUS).figure


@pytest.mark.parametrize(("placed", "gpu"), [
    ("cuda:0", True), ("CudaDevice(id=0)", True), ("gpu:0", True),
    ("/job:localhost/replica:0/task:0/device:GPU:0", True), ("cpu", False), ("TFRT_CPU_0", False), ("", False),
])
def test_is_gpu_placement(placed: str, gpu: bool) -> None:
    assert gc.is_gpu_placement(placed) is gpu


def test_no_gpu_lines_say_not_run() -> None:
    empty = frame([])
    assert gc.check_placement(empty, []).verdict == gc.NOT_RUN
    assert gc.check_sync_needed(empty, empty, []).verdict == gc.NOT_RUN
    assert gc.check_init(empty, {}, []).verdict == gc.NOT_RUN
    assert gc.check_crossovers(pd.DataFrame(), empty, [], "x")[0].verdict == gc.NOT_RUN
    assert gc.check_pct_of_peak(empty, [])[0].verdict == gc.NOT_RUN
    assert gc.check_telemetry({}, [], empty, []).verdict == gc.NOT_RUN
    assert gc.check_events_agree(empty, {}).verdict == gc.NOT_RUN


# --- sync ------------------------------------------------------------------------------------------------


def sync_tables(ratio: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    synced = frame([row(8192, d, 0.02) for d in GPUS] + [row(4096, d, 0.003) for d in GPUS])
    unsynced = frame([row(8192, d, 0.02 / ratio, sync="none") for d in GPUS])
    return synced, unsynced


def test_sync_ratio_50x_passes() -> None:
    check = gc.check_sync_needed(*sync_tables(50.0), GPUS)
    assert check.verdict == gc.PASS
    assert "torch:cuda:0 n=8192: synced 20 ms / unsynced 400 µs = 50x" in check.figure


def test_sync_ratio_2x_fails() -> None:
    assert gc.check_sync_needed(*sync_tables(2.0), GPUS).verdict == gc.FAIL


def test_sync_without_the_none_run_fails() -> None:
    synced, _ = sync_tables(50.0)
    check = gc.check_sync_needed(synced, frame([]), GPUS)
    assert check.verdict == gc.FAIL
    assert "no size measured both ways" in check.figure


# --- CUDA events -----------------------------------------------------------------------------------------


def events_table() -> pd.DataFrame:
    return frame([row(n, "torch:cuda:0", t, dtype=dtype)
                  for n, t in ((4096, 0.004), (8192, 0.03)) for dtype in ("float32", "bfloat16")])


def test_events_within_10_percent_pass() -> None:
    events = {(4096, "float32"): 0.0042, (8192, "float32"): 0.0291, (8192, "bfloat16"): 0.03 / 1.09}
    check = gc.check_events_agree(events_table(), events)
    assert check.verdict == gc.PASS
    assert "n=4096 float32: devbench 4 ms, events 4.2 ms (4.8% apart)" in check.figure


def test_events_20_percent_apart_fail() -> None:
    events = {(4096, "float32"): 0.004 / 1.2, (8192, "float32"): 0.03}
    assert gc.check_events_agree(events_table(), events).verdict == gc.FAIL


def test_events_without_a_devbench_cell_fail() -> None:
    check = gc.check_events_agree(events_table(), {(2048, "float32"): 0.001})
    assert check.verdict == gc.FAIL
    assert "n=2048 float32: devbench has no ok cell" in check.figure


# --- init ------------------------------------------------------------------------------------------------


def test_cold_first_call_far_slower_passes_and_small_ratio_fails() -> None:
    assert gc.check_init(frame(row(64, d, 1e-5, cold_factor=1e4) for d in GPUS), {}, GPUS).verdict == gc.PASS
    check = gc.check_init(frame(row(64, d, 1e-5, cold_factor=3.0) for d in GPUS), {}, GPUS)
    assert check.verdict == gc.FAIL
    assert "cold_s of matmul n=64" in check.figure


def test_init_from_meta_is_preferred_to_cold_s() -> None:
    results = frame(row(64, d, 1e-5, cold_factor=3.0) for d in GPUS)
    check = gc.check_init(results, {"init_s": {"torch:cuda:0": 2.5, "jax:gpu:0": 1.0}}, GPUS)
    assert check.verdict == gc.PASS
    assert "torch:cuda:0: 2.5 s (meta init_s) vs warm 10 µs = 2.5e+05x" in check.figure


def test_init_takes_the_smallest_cell() -> None:
    results = frame([row(4096, "torch:cuda:0", 1e-2, cold_factor=1.5), row(64, "torch:cuda:0", 1e-5,
                                                                         cold_factor=500.0)])
    assert gc.check_init(results, {}, ["torch:cuda:0"]).verdict == gc.PASS


# --- crossovers ------------------------------------------------------------------------------------------


def crossing_results(dtypes: tuple[str, ...] = ("float32",)) -> pd.DataFrame:
    """torch:cpu = 1e-9·n³/64 s; torch:cuda:0 = 1 ms flat: the GPU overtakes at n = 400."""
    sizes = (64, 128, 256, 512, 1024, 2048)
    rows = [row(n, "torch:cpu", 1e-9 * n**3 / 64, dtype=dtype) for n in sizes for dtype in dtypes]
    rows += [row(n, "torch:cuda:0", 1e-3, dtype=dtype, placed_device="cuda:0") for n in sizes for dtype in dtypes]
    return frame(rows)


def as_read_by_the_script(results: pd.DataFrame) -> pd.DataFrame:
    """The crossover table as gpu_check.py reads it: ``devbench crossover RUN --format json``."""
    table: pd.DataFrame = pd.DataFrame(json.loads(render_crossovers(crossover_frame(results), "json")))
    return table


def test_crossover_line_names_the_size_and_range() -> None:
    results = crossing_results()
    checks = gc.check_crossovers(as_read_by_the_script(results), results, [("torch:cpu", "torch:cuda:0")],
                                 "where the GPU overtakes the CPU")
    assert [c.name for c in checks] == ["where the GPU overtakes the CPU (matmul)"]
    assert checks[0].verdict == gc.PASS
    figure = checks[0].figure
    assert figure.startswith("torch:cuda:0 vs torch:cpu float32: torch:cuda:0 overtakes at n≈")
    low, high = (float(x) for x in figure.split("[")[1].split("]")[0].split(", "))
    size = float(figure.split("n≈")[1].split(" ")[0])
    assert low <= size <= high
    assert 256 < size < 512  # the model's crossing is 400


def test_crossover_with_too_few_cells_fails_and_unsupported_dtype_is_named() -> None:
    results = frame([row(64, "torch:cpu", 1e-5), row(64, "torch:cuda:0", 1e-3),
                     row(128, "torch:cpu", 1e-5, dtype="bfloat16"), row(256, "torch:cpu", 1e-5, dtype="bfloat16"),
                     row(128, "torch:cuda:0", math.nan, dtype="bfloat16", status="unsupported"),
                     row(256, "torch:cuda:0", math.nan, dtype="bfloat16", status="skipped")])
    checks = gc.check_crossovers(as_read_by_the_script(results), results, [("torch:cpu", "torch:cuda:0")], "x")
    assert checks[0].verdict == gc.FAIL
    assert "torch:cuda:0 vs torch:cpu bfloat16: torch:cuda:0 unsupported" in checks[0].figure
    assert "too few ok cells" in checks[0].figure


def test_crossover_one_device_faster_throughout_passes() -> None:
    sizes = (64, 128, 256)
    results = frame([row(n, "jax:cpu:0", 1e-3) for n in sizes] + [row(n, "jax:gpu:0", 1e-4) for n in sizes])
    check = gc.check_crossovers(as_read_by_the_script(results), results, [("jax:cpu:0", "jax:gpu:0")], "x")[0]
    assert check.verdict == gc.PASS
    assert "jax:gpu:0 faster throughout" in check.figure


# --- percentage of peak ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("pct", "verdict"), [(math.nan, "not run"), (62.0, "PASS"), (150.0, "FAIL")])
def test_pct_of_peak(pct: float, verdict: str) -> None:
    results = frame([row(4096, "torch:cuda:0", 0.01, pct_of_peak=1.0),
                     row(8192, "torch:cuda:0", 0.03, pct_of_peak=pct)])
    (check,) = gc.check_pct_of_peak(results, ["torch:cuda:0"])
    assert check.verdict == verdict
    assert check.figure.startswith("no calibration" if verdict == "not run" else "n=8192: ")


# --- telemetry -------------------------------------------------------------------------------------------

FINGERPRINT = {"available": True, "driver_version": "550.54", "cuda_version": "12.4",
               "gpus": [{"index": 0, "name": "NVIDIA H200"}]}
SNAPSHOT = {"available": True, "index": 0, "sm_clock_mhz": 1980, "mem_clock_mhz": 3201, "temperature_c": 40,
            "power_w": 120.5, "throttle_reasons": []}


def test_telemetry_without_nvml_is_not_run_with_the_reason() -> None:
    check = gc.check_telemetry({"available": False, "reason": "nvidia-ml-py is not installed"}, [],
                               frame(gpu_rows()), GPUS)
    assert check.verdict == gc.NOT_RUN
    assert "nvidia-ml-py" in check.figure


def test_telemetry_filled_passes_and_a_missing_field_fails() -> None:
    filled = {c: 1.0 for c in TELEMETRY_COLUMNS} | {"throttle_reasons": "", "throttled": False}
    results = pd.DataFrame([{**r, **filled} for r in gpu_rows()])
    check = gc.check_telemetry(FINGERPRINT, [SNAPSHOT], results, GPUS)
    assert check.verdict == gc.PASS
    assert "NVIDIA H200" in check.figure
    failed = gc.check_telemetry(FINGERPRINT, [{**SNAPSHOT, "power_w": None}], results, GPUS)
    assert failed.verdict == gc.FAIL
    assert "missing: power_w" in failed.figure


def test_telemetry_columns_in_the_run_must_be_filled() -> None:
    filled = {c: 1.0 for c in TELEMETRY_COLUMNS} | {"throttle_reasons": "", "throttled": False}
    rows = [{**r, **filled} for r in gpu_rows()]
    results = pd.DataFrame(rows)
    assert gc.check_telemetry(FINGERPRINT, [SNAPSHOT], results, GPUS).verdict == gc.PASS
    rows[0]["sm_clock_end_mhz"] = math.nan
    check = gc.check_telemetry(FINGERPRINT, [SNAPSHOT], pd.DataFrame(rows), GPUS)
    assert check.verdict == gc.FAIL
    assert "run: 5/6 GPU cells with telemetry" in check.figure


# --- devices, exits --------------------------------------------------------------------------------------


def test_choose_devices() -> None:
    probe = {"torch:cpu": True, "torch:cuda:0": True, "jax:cpu:0": True, "jax:gpu:0": False, "tf": False}
    assert gc.choose_devices(probe, cpu_only=False) == (["torch:cpu", "jax:cpu:0"], ["torch:cuda:0"], "")
    assert gc.choose_devices(probe, cpu_only=True) == (["torch:cpu", "jax:cpu:0"], [], "")
    cpus, gpus, note = gc.choose_devices({"tf": True}, cpu_only=True)
    assert (cpus, gpus) == (["CPU:0", "numpy:CPU"], [])
    assert "neither PyTorch nor JAX" in note
    assert gc.choose_devices({}, cpu_only=True)[0] == ["numpy:CPU"]


def test_no_gpu_reason() -> None:
    assert gc.no_gpu_reason({"torch:cuda:0": True}) is None
    assert "no torch/JAX backend" in gc.no_gpu_reason({"cuda_name": "NVIDIA H200", "torch:cuda:0": False})
    assert "finds a GPU" in gc.no_gpu_reason({"torch:cpu": True})


def test_missing_device_files(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the /dev/nvidia* rule is Linux's")
    assert "no NVIDIA driver or GPU" in gc.missing_device_files(tmp_path)
    (tmp_path / "nvidiactl").touch()
    assert gc.missing_device_files(tmp_path) is not None  # the control file alone is no GPU
    (tmp_path / "nvidia0").touch()
    assert gc.missing_device_files(tmp_path) is None


def test_without_a_gpu_main_stops_at_once_with_one_line(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setattr(gc, "missing_device_files", lambda: "no /dev/nvidia[0-9]* device files")
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    assert gc.main([]) == 3
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert out[0].startswith("no GPU: no /dev/nvidia")
    assert not (tmp_path / "out").exists()  # nothing was run or written


def test_sweep_args_carry_the_budget(tmp_path: Path) -> None:
    options = gc.argparse.Namespace(sizes="64..8192", rounds=3, max_cell_time=0.6, max_call_time=0.25)
    args = gc.sweep_args(["torch:cpu", "torch:cuda:0"], tmp_path, options, calibrate=False)
    text = " ".join(args)
    assert text.startswith("sweep --devices torch:cpu,torch:cuda:0 --ops matmul,add,conv2d --sizes 64..8192 "
                           "--dtypes float32,bfloat16 --rounds 3 --max-cell-time 0.6 --max-call-time 0.25")
    assert args[-1] == "--no-calibrate"


def test_torch_tf32_settings_from_either_record() -> None:
    from devbench.tf32 import apply_tf32, tf32_state

    settings = {"matmul_allow_tf32": False, "cudnn_allow_tf32": False, "float32_matmul_precision": "highest"}
    applied = {"torch": {"applied": "off", "calls": [], "why": "set", "state": {"state": "disabled", "why": "",
                                                                                 "settings": settings}}}
    state = {"torch": {"state": "disabled", "why": "", "settings": settings}}
    assert gc.torch_tf32_settings({"tf32": applied}) == settings
    assert gc.torch_tf32_settings({"tf32": state}) == settings
    assert gc.torch_tf32_settings({}) == {}
    assert gc.torch_tf32_settings({"tf32": {"torch": {"state": "unknown", "why": "torch is not installed",
                                                      "settings": {}}}}) == {}
    # The records apply_tf32 and tf32_state really make have these shapes.
    assert set(apply_tf32("default", ["jax"])["jax"]) == {"applied", "calls", "why", "state"}
    assert set(tf32_state(["jax"])["jax"]) == {"state", "why", "settings"}
