"""Every number shown to a person: one formatter per quantity, the same text in tables, charts and reports."""

from __future__ import annotations

import math

import pytest

from devbench.formatting import (
    MISSING,
    csv_text,
    format_bytes,
    format_duration,
    format_eta,
    format_gib,
    format_p_value,
    format_percent,
    format_rate,
    format_ratio,
    format_ratio_interval,
    format_size,
    format_size_interval,
    format_time,
    json_text,
    rich_table,
)


@pytest.mark.parametrize(("seconds", "text"), [(0.25, "0.25 s"), (45, "45 s"), (90, "1 min 30 s"),
                                                (130, "2 min 10 s"), (120, "2 min"), (7500, "2 h 5 min"),
                                                (math.inf, "unknown")])
def test_durations_read_in_minutes_and_hours(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(("seconds", "text"), [(8.12e-7, "812 ns"), (1.23e-5, "12.3 µs"), (4.56e-3, "4.56 ms"),
                                                (1.234, "1.23 s"), (9.996e-4, "1 ms"), (9.994e-4, "999 µs"),
                                                (math.nan, MISSING)])
def test_times_per_call_pick_their_si_unit(seconds: float, text: str) -> None:
    assert format_time(seconds) == text


def test_eta_is_approximate_and_missing_without_an_estimate() -> None:
    assert format_eta(130) == "~2 min 10 s"
    assert format_eta(math.nan) == MISSING


@pytest.mark.parametrize(("ratio", "text"), [(1.18, "1.18×"), (0.4213, "0.421×"), (23.64, "23.6×"),
                                              (1342.4, "1342×"), (math.nan, MISSING)])
def test_ratios_never_use_exponent_notation(ratio: float, text: str) -> None:
    assert format_ratio(ratio) == text


def test_intervals_sizes_rates_and_percentages() -> None:
    assert format_ratio_interval(1.0123, 1.004, 1.02) == "1.012× [1.004, 1.020]"
    assert format_ratio_interval(1.0123, math.nan, math.nan) == "1.012×"
    assert format_size(1024.4) == "1024"
    assert format_size(45.67) == "45.7"
    assert format_size_interval(math.nan, 1, 2) == "none"
    assert format_size_interval(724.2, 690, 760) == "724.2 [690, 760]"
    assert format_rate(2.5e12, "FLOP") == "2.5e+03 GFLOP/s"
    assert format_rate(3.1e11, "B") == "310 GB/s"
    assert format_percent(0.034) == "3%"
    assert format_gib(8 * 2**30) == "8.0 GiB"
    assert format_p_value(0.0312) == "0.031"
    assert format_p_value(2.1e-5) == "2.1e-05"


def test_tables_as_text() -> None:
    text = rich_table("Title", ["a", "b"], [["1", "2"]], width=40)
    assert "Title" in text
    assert "\x1b[" not in text
    assert csv_text(["a", "b"], [[1, "x"]]) == "a,b\n1,x\n"
    assert json_text({"x": math.nan}) == '{\n  "x": null\n}\n'


@pytest.mark.parametrize(("n_bytes", "text"), [(800, "800 B"), (49152, "48 KiB"), (3 * 2**20, "3 MiB"),
                                                (1023.9 * 2**10, "1 MiB"), (1.5 * 2**30, "1.5 GiB"),
                                                (math.nan, MISSING)])
def test_byte_counts_pick_their_binary_unit(n_bytes: float, text: str) -> None:
    assert format_bytes(n_bytes) == text
