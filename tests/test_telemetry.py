"""GPU telemetry: the decoding of NVML's answers (through a stand-in with NVML's function names, since this
machine has no GPU), the throttle rule, the device -> NVML index mapping, and the absence of NVML."""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from devbench import telemetry


class NotSupported(Exception):
    """What pynvml raises (NVMLError_NotSupported) for a query this GPU cannot answer."""


@dataclass(eq=False)
class StandInNvml:
    """Answers NVML's calls the way pynvml returns them (ints, bytes or str, ctypes-like structs)."""

    gpus: list[dict[str, Any]] = field(default_factory=list)
    init_error: Exception | None = None
    inits: int = 0

    def nvmlInit(self) -> None:
        self.inits += 1
        if self.init_error is not None:
            raise self.init_error

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.gpus):
            raise ValueError("Invalid Argument")
        return self.gpus[index]

    def _get(self, handle: dict[str, Any], key: str) -> Any:
        if key not in handle:
            raise NotSupported("Not Supported")
        return handle[key]

    def nvmlSystemGetDriverVersion(self) -> bytes:
        return b"550.54.15"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12040

    def nvmlDeviceGetName(self, handle: dict[str, Any]) -> Any:
        return self._get(handle, "name")

    def nvmlDeviceGetUUID(self, handle: dict[str, Any]) -> Any:
        return self._get(handle, "uuid")

    def nvmlDeviceGetCudaComputeCapability(self, handle: dict[str, Any]) -> tuple[int, int]:
        return (9, 0)

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any]) -> SimpleNamespace:
        return SimpleNamespace(total=self._get(handle, "memory"), free=0, used=0)

    def nvmlDeviceGetPersistenceMode(self, handle: dict[str, Any]) -> int:
        return int(self._get(handle, "persistence"))

    def nvmlDeviceGetMigMode(self, handle: dict[str, Any]) -> list[int]:
        return list(self._get(handle, "mig"))

    def nvmlDeviceGetClockInfo(self, handle: dict[str, Any], kind: int) -> int:
        return int(self._get(handle, {1: "sm", 2: "mem"}[kind]))

    def nvmlDeviceGetTemperature(self, handle: dict[str, Any], sensor: int) -> int:
        assert sensor == 0
        return int(self._get(handle, "temp"))

    def nvmlDeviceGetPowerUsage(self, handle: dict[str, Any]) -> int:
        return int(self._get(handle, "power_mw"))

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: dict[str, Any]) -> int:
        return int(self._get(handle, "reasons"))

    def nvmlDeviceGetViolationStatus(self, handle: dict[str, Any], policy: int) -> SimpleNamespace:
        return SimpleNamespace(referenceTime=0, violationTime=self._get(handle, ("power_v", "thermal_v")[policy]))


H200 = {"name": "NVIDIA H200", "uuid": b"GPU-1234abcd-0000", "memory": 150_000_000_000, "persistence": 1,
        "mig": [0, 1], "sm": 1980, "mem": 3201, "temp": 41, "power_mw": 123_456, "reasons": 0x4 | 0x1,
        "power_v": 10, "thermal_v": 0}


def test_fingerprint_decodes_every_field() -> None:
    nvml = StandInNvml(gpus=[H200, {"name": "NVIDIA L4", "uuid": "GPU-9"}])
    info = telemetry.gpu_fingerprint(nvml)
    assert info["available"] is True
    assert info["driver_version"] == "550.54.15"
    assert info["cuda_version"] == "12.4"
    first, second = info["gpus"]
    assert first == {"index": 0, "name": "NVIDIA H200", "uuid": "GPU-1234abcd-0000", "compute_capability": "9.0",
                     "memory_total_bytes": 150_000_000_000, "persistence_mode": True, "mig_mode": False}
    # What the second GPU cannot report is None, not an exception.
    assert second["name"] == "NVIDIA L4"
    assert second["persistence_mode"] is None
    assert second["mig_mode"] is None
    assert second["memory_total_bytes"] is None


def test_fingerprint_with_driver_but_no_gpu_says_so() -> None:
    info = telemetry.gpu_fingerprint(StandInNvml(gpus=[]))
    assert info["available"] is False
    assert "no NVIDIA GPU" in info["reason"]


def test_failed_init_says_no_driver_and_nothing_raises() -> None:
    nvml = StandInNvml(gpus=[H200], init_error=RuntimeError("NVML Shared Library Not Found"))
    for answer in (telemetry.gpu_fingerprint(nvml), telemetry.snapshot(0, nvml)):
        assert answer["available"] is False
        assert "no NVIDIA driver" in answer["reason"]
        assert "NVML Shared Library Not Found" in answer["reason"]


def test_nvml_is_initialised_once_per_module() -> None:
    nvml = StandInNvml(gpus=[H200])
    telemetry.snapshot(0, nvml)
    telemetry.snapshot(0, nvml)
    telemetry.gpu_fingerprint(nvml)
    assert nvml.inits == 1


def test_snapshot_decodes_units_and_reasons() -> None:
    snap = telemetry.snapshot(0, StandInNvml(gpus=[H200]))
    assert snap == {"available": True, "index": 0, "sm_clock_mhz": 1980, "mem_clock_mhz": 3201,
                    "temperature_c": 41, "power_w": pytest.approx(123.456),
                    "throttle_reasons": ["gpu_idle", "sw_power_cap"],
                    "power_violation_ns": 10, "thermal_violation_ns": 0}


def test_snapshot_of_missing_index_and_unsupported_fields() -> None:
    nvml = StandInNvml(gpus=[{"sm": 1000}])
    assert telemetry.snapshot(3, nvml)["available"] is False
    snap = telemetry.snapshot(0, nvml)
    assert snap["sm_clock_mhz"] == 1000
    assert snap["power_w"] is None
    assert snap["throttle_reasons"] is None
    assert snap["thermal_violation_ns"] is None


def test_old_pynvml_throttle_reason_name_is_used_when_the_new_one_is_absent() -> None:
    class OldNvml(StandInNvml):
        nvmlDeviceGetCurrentClocksEventReasons = None  # type: ignore[assignment]

        def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: dict[str, Any]) -> int:
            return 0x40

    assert telemetry.snapshot(0, OldNvml(gpus=[H200]))["throttle_reasons"] == ["hw_thermal_slowdown"]


def test_reason_names_keep_unknown_bits() -> None:
    assert telemetry.throttle_reason_names(0) == []
    assert telemetry.throttle_reason_names(0x8 | 0x20) == ["hw_slowdown", "sw_thermal_slowdown"]
    assert telemetry.throttle_reason_names(0x800) == ["unknown_0x800"]


def snap(reasons: list[str] | None = None, power_v: int | None = 0, thermal_v: int | None = 0,
         available: bool = True) -> dict[str, Any]:
    return {"available": available, "sm_clock_mhz": 1500, "throttle_reasons": reasons,
            "power_violation_ns": power_v, "thermal_violation_ns": thermal_v}


@pytest.mark.parametrize(("start", "end", "expected"), [
    (snap([]), snap([]), False),
    (snap(["gpu_idle", "sync_boost"]), snap(["applications_clocks_setting"]), False),
    (snap([]), snap(["sw_power_cap"]), True),
    (snap(["hw_thermal_slowdown"]), snap([]), True),
    (snap([], power_v=100), snap([], power_v=250), True),
    (snap([], thermal_v=5), snap([], thermal_v=6), True),
    (snap([], power_v=None), snap([], power_v=250), False),
    (snap(None), snap(None), False),
    ({"available": False, "reason": "x"}, {"available": False, "reason": "x"}, False),
])
def test_throttled_rule(start: dict[str, Any], end: dict[str, Any], expected: bool) -> None:
    assert telemetry.throttled(start, end) is expected


@pytest.mark.parametrize(("device", "env", "expected"), [
    ("GPU:1", {}, 1),
    ("tf:GPU:0", {}, 0),
    ("torch:cuda:2", {}, 2),
    ("jax:gpu:0", {}, 0),
    ("CPU:0", {}, None),
    ("torch:cpu", {}, None),
    ("jax:cpu:0", {}, None),
    ("numpy:CPU", {}, None),
    ("torch:cuda:0", {"CUDA_VISIBLE_DEVICES": "3,1"}, 3),
    ("jax:gpu:1", {"CUDA_VISIBLE_DEVICES": "3,1"}, 1),
    ("torch:cuda:2", {"CUDA_VISIBLE_DEVICES": "3,1"}, None),
    ("torch:cuda:1", {"CUDA_VISIBLE_DEVICES": "3,x,1"}, None),  # CUDA ignores everything after a bad entry
    ("torch:cuda:0", {"CUDA_VISIBLE_DEVICES": ""}, None),
    ("torch:cuda:0", {"CUDA_VISIBLE_DEVICES": "MIG-abc"}, None),
])
def test_nvml_index(device: str, env: dict[str, str], expected: int | None) -> None:
    assert telemetry.nvml_index(device, env=env, nvml=StandInNvml(gpus=[H200])) == expected


def test_nvml_index_resolves_uuid_prefix() -> None:
    nvml = StandInNvml(gpus=[{"uuid": "GPU-aaaa"}, {"uuid": "GPU-bbbb-1"}])
    assert telemetry.nvml_index("torch:cuda:0", env={"CUDA_VISIBLE_DEVICES": "GPU-bbbb"}, nvml=nvml) == 1
    assert telemetry.nvml_index("torch:cuda:0", env={"CUDA_VISIBLE_DEVICES": "GPU-cccc"}, nvml=nvml) is None


def test_without_pynvml_everything_returns_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml now raises ImportError, installed or not
    for answer in (telemetry.gpu_fingerprint(), telemetry.snapshot(0)):
        assert answer["available"] is False
        assert "nvidia-ml-py" in answer["reason"]
    assert telemetry.throttled(telemetry.snapshot(0), telemetry.snapshot(0)) is False
    assert telemetry.nvml_index("torch:cuda:0", env={"CUDA_VISIBLE_DEVICES": "GPU-x"}) is None


def test_visit_telemetry_flattens_a_visit() -> None:
    nvml = StandInNvml(gpus=[H200])
    start = telemetry.snapshot(0, nvml)
    end = {**start, "sm_clock_mhz": 1700, "throttle_reasons": ["hw_thermal_slowdown", "gpu_idle"]}
    fields = asdict(telemetry.visit_telemetry(start, end))
    assert tuple(fields) == telemetry.TELEMETRY_COLUMNS
    assert fields["sm_clock_start_mhz"] == 1980.0
    assert fields["sm_clock_end_mhz"] == 1700.0
    assert fields["power_start_w"] == pytest.approx(123.456)
    assert fields["temperature_end_c"] == 41.0
    assert fields["throttle_reasons"] == "sw_power_cap,hw_thermal_slowdown"
    assert fields["throttled"] is True


def test_visit_telemetry_without_gpu_is_empty() -> None:
    missing = {"available": False, "reason": "no NVML"}
    fields = asdict(telemetry.visit_telemetry(missing, missing))
    assert all(math.isnan(float(v)) for k, v in fields.items() if k.endswith(("_mhz", "_c", "_w")))
    assert fields["throttle_reasons"] == ""
    assert fields["throttled"] is False
