"""devbench compare's crossovers side by side: pairing the crossings of two runs by overlap."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import pandas as pd
import pytest

from devbench.compare import (
    CROSSOVER_COLUMNS,
    compare_runs,
    crossover_side_by_side,
)
from devbench.compare_render import render_comparison
from tests.compare_fixtures import (
    ROUNDS,
    FakeCell,
    grid,
    make_run,
    rounds_of,
)

# ------------------------------------------------------------------------------------------- crossovers


def crossover_frame(rows: Sequence[tuple[str, str, str, str, float, str]], *,
                    spread: float = 2.0) -> pd.DataFrame:
    """Hand-made crossover_frame output: (op, device_a, device_b, faster_above, size, note); bracket
    [size / spread, size * spread]."""
    frame: pd.DataFrame = pd.DataFrame(
        [{"op": op, "dtype": "float32", "mode": "eager", "device_a": a, "device_b": b,
          "crossover_size": size, "low": size / spread if math.isfinite(size) else math.nan,
          "high": size * spread if math.isfinite(size) else math.nan,
          "faster_below": a if faster_above == b else b, "faster_above": faster_above, "note": note}
         for op, a, b, faster_above, size, note in rows],
        columns=list(CROSSOVER_COLUMNS),
    )
    return frame


def test_crossovers_side_by_side() -> None:
    base = crossover_frame([("matmul", "CPU:0", "GPU:0", "GPU:0", 512.0, ""),
                            ("add", "CPU:0", "GPU:0", "GPU:0", math.nan, "CPU:0 faster at all sizes")])
    new = crossover_frame([("matmul", "GPU:0", "CPU:0", "GPU:0", 256.0, ""),
                           ("add", "CPU:0", "GPU:0", "GPU:0", 4096.0, ""),
                           ("exp", "CPU:0", "GPU:0", "GPU:0", 1024.0, "")])
    pairs = {p.op: p for p in crossover_side_by_side(base, new)}
    assert set(pairs) == {"add", "exp", "matmul"}
    matmul = pairs["matmul"]
    assert (matmul.device_a, matmul.device_b) == ("CPU:0", "GPU:0")  # matched in either order
    assert (matmul.base_size, matmul.new_size, matmul.moved) == (512.0, 256.0, 0.5)
    assert (matmul.base_low, matmul.new_high) == (256.0, 512.0)
    assert math.isnan(pairs["add"].moved)
    assert pairs["add"].base_note == "CPU:0 faster at all sizes"
    assert pairs["exp"].base_note == "not in base run"
    assert math.isnan(pairs["exp"].base_size)


def test_a_spurious_extra_crossing_does_not_shift_the_pairing() -> None:
    """Both runs cross at ~1000 (GPU faster above) and at ~8000 (back to CPU); the new run also has a
    spurious pair of crossings at 100 and 130 (noise). By rank the 100 would pair with 1000 and every
    pairing after it would shift; by overlap the real ones pair and the spurious ones stand alone."""
    base = crossover_frame([("matmul", "CPU:0", "GPU:0", "GPU:0", 1000.0, ""),
                            ("matmul", "CPU:0", "GPU:0", "CPU:0", 8000.0, "")], spread=1.3)
    new = crossover_frame([("matmul", "CPU:0", "GPU:0", "GPU:0", 100.0, "within noise"),
                           ("matmul", "CPU:0", "GPU:0", "CPU:0", 130.0, "within noise"),
                           ("matmul", "CPU:0", "GPU:0", "GPU:0", 1100.0, ""),
                           ("matmul", "CPU:0", "GPU:0", "CPU:0", 7000.0, "")], spread=1.3)
    pairs = crossover_side_by_side(base, new)
    assert [(p.base_size, p.new_size) for p in pairs][2:] == [(1000.0, 1100.0), (8000.0, 7000.0)]
    spurious = pairs[:2]
    assert [p.new_size for p in spurious] == [100.0, 130.0]
    assert all(math.isnan(p.base_size) for p in spurious)
    assert all(p.base_note == "only in new run: no crossing in the base run overlaps it" for p in spurious)
    assert [p.crossing for p in pairs] == [0, 1, 2, 3]
    # The mirror: a spurious crossing in the base run only.
    mirrored = crossover_side_by_side(new, base)
    assert [(p.base_size, p.new_size) for p in mirrored][2:] == [(1100.0, 1000.0), (7000.0, 8000.0)]
    assert all(p.new_note.startswith("only in base run") for p in mirrored[:2])


def test_crossings_pair_only_with_the_same_hand_over() -> None:
    """Overlapping brackets but opposite directions (GPU faster above in one run, below in the other) are
    different crossings."""
    base = crossover_frame([("matmul", "CPU:0", "GPU:0", "GPU:0", 512.0, ""),
                            ("matmul", "CPU:0", "GPU:0", "CPU:0", 600.0, "")])
    new = crossover_frame([("matmul", "CPU:0", "GPU:0", "CPU:0", 520.0, "")])
    pairs = crossover_side_by_side(base, new)
    assert [(p.base_size, p.new_size) for p in pairs][1] == (600.0, 520.0)
    assert math.isnan(pairs[0].new_size)


def test_a_lone_crossing_that_moved_beyond_its_bracket_still_pairs() -> None:
    """One crossing each side, same hand-over, brackets apart: the crossover moved (another machine)."""
    base = crossover_frame([("matmul", "CPU:0", "GPU:0", "GPU:0", 4096.0, "")], spread=1.2)
    new = crossover_frame([("matmul", "CPU:0", "GPU:0", "GPU:0", 256.0, "")], spread=1.2)
    (pair,) = crossover_side_by_side(base, new)
    assert pair.moved == pytest.approx(1 / 16)


def test_crossovers_are_rendered_when_given() -> None:
    base_frame = crossover_frame([("matmul", "CPU:0", "GPU:0", "GPU:0", 512.0, "")])
    new_frame = crossover_frame([("matmul", "CPU:0", "GPU:0", "GPU:0", 256.0, "")])
    base, new = make_run(grid()), make_run(grid(), run_id="new")
    comparison = compare_runs(base, new, crossovers=(base_frame, new_frame))
    assert comparison.crossovers is not None
    assert len(comparison.crossovers) == 1
    text = render_comparison(comparison, "table", width=200)
    assert "Crossover sizes" in text
    assert "0.5×" in text  # the crossover moved to half the size
    assert "512 [256, 1024]" in text
    data = json.loads(render_comparison(comparison, "json"))
    assert data["crossovers"][0]["moved"] == 0.5
    assert "Crossover sizes" not in render_comparison(compare_runs(base, new), "table")


def test_a_crossover_function_gets_the_samples_when_it_takes_them() -> None:
    """``crossovers`` may be crossover_frame(results) (today) or crossover_frame(results, samples=None)
    (rounds-aware); compare passes the samples to the second kind."""
    base_frame = crossover_frame([("matmul", "CPU:0", "GPU:0", "GPU:0", 512.0, "")])
    base, new = make_run(grid()), make_run(grid(), run_id="new")
    seen: list[tuple[int, int | None]] = []

    def old_style(results: pd.DataFrame) -> pd.DataFrame:
        seen.append((len(results), None))
        return base_frame

    def new_style(results: pd.DataFrame, samples: pd.DataFrame | None = None) -> pd.DataFrame:
        seen.append((len(results), None if samples is None else len(samples)))
        return base_frame

    assert compare_runs(base, new, crossovers=old_style).crossovers is not None
    assert compare_runs(base, new, crossovers=new_style).crossovers is not None
    assert seen == [(6, None), (6, None), (6, 6 * ROUNDS * 10), (6, 6 * ROUNDS * 10)]


def test_a_crossover_frame_missing_columns_is_a_bug_not_a_usage_error() -> None:
    with pytest.raises(ValueError, match="lacks the columns note"):
        crossover_side_by_side(crossover_frame([]).drop(columns=["note"]), crossover_frame([]))


def test_crossovers_from_the_analysis_module_side_by_side() -> None:
    from devbench import analysis

    def cells(gpu_scale: float) -> list[FakeCell]:
        out = []
        for size in (64, 128, 256, 512, 1024):
            out.append(FakeCell(size=size, device="CPU:0", rounds=rounds_of(1e-9 * size**2, 0.01)))
            gpu = gpu_scale * (2e-5 + 1e-11 * size**2)
            out.append(FakeCell(size=size, device="GPU:0", rounds=rounds_of(gpu, 0.01)))
        return out

    comparison = compare_runs(make_run(cells(1.0)), make_run(cells(0.5), run_id="new"),
                              crossovers=analysis.crossover_frame)
    assert comparison.crossovers is not None
    (pair,) = comparison.crossovers
    assert (pair.device_a, pair.device_b) == ("CPU:0", "GPU:0")
    assert 128 <= pair.base_size <= 256
    assert pair.new_size < pair.base_size  # a faster GPU crosses over earlier
    assert pair.new_faster_above == "GPU:0"
