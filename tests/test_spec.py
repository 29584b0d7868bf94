"""The size grammar, choice lists and the sweep spec (pure, no TensorFlow)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devbench.errors import UsageError, choose, choose_list
from devbench.spec import MAX_SIZES, Cell, SweepSpec, TimingPolicy, parse_sizes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64", (64,)),
        ("64..512", (64, 128, 256, 512)),
        ("64..8192", (64, 128, 256, 512, 1024, 2048, 4096, 8192)),
        ("64..600", (64, 128, 256, 512)),
        ("100..1000:+100", (100, 200, 300, 400, 500, 600, 700, 800, 900, 1000)),
        ("64..256:x1.5", (64, 96, 144, 216)),
        ("1k", (1024,)),
        ("8K", (8192,)),
        ("1k..4k", (1024, 2048, 4096)),
        ("512,64,512,128", (64, 128, 512)),
        ("64..256, 100..300:+100 ,1k", (64, 100, 128, 200, 256, 300, 1024)),
        ("1.5k", (1536,)),
        ("7..7", (7,)),
    ],
)
def test_sizes_parse(text: str, expected: tuple[int, ...]) -> None:
    assert parse_sizes(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("0", "positive"),
        ("-64", "bad size"),
        ("64..32", "reversed"),
        ("64..512:x1", "never advances"),
        ("64..512:x0.5", "never advances"),
        ("64..512:+0", "never advances"),
        ("64..512:+1.5", "fractional"),
        ("abc", "bad size"),
        ("64..", "bad size"),
        ("..64", "bad size"),
        ("64,,128", "empty item"),
        ("1.5", "not a whole number"),
        ("64..512:*2", "bad size"),
        ("1..100000:+1", "at most 1000"),
        ("nan", "bad size"),
        ("1e3", "bad size"),
    ],
)
def test_sizes_reject(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_sizes(text)
    assert "\n" not in str(info.value)
    if text.strip():
        assert repr(text.split(",", maxsplit=1)[0].strip())[1:-1] in str(info.value) or "empty" in str(info.value)


def test_too_many_sizes_in_a_list() -> None:
    with pytest.raises(UsageError, match="more than"):
        parse_sizes(",".join(str(i) for i in range(1, MAX_SIZES + 2)))


@given(st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=40))
def test_sizes_list_round_trip(sizes: list[int]) -> None:
    parsed = parse_sizes(",".join(map(str, sizes)))
    assert parsed == tuple(sorted(set(sizes)))
    assert parse_sizes(",".join(map(str, parsed))) == parsed


@given(st.integers(1, 5000), st.integers(0, 12), st.integers(1, 500))
def test_linear_ranges_hit_every_step(start: int, count: int, step: int) -> None:
    stop = start + count * step
    assert parse_sizes(f"{start}..{stop}:+{step}") == tuple(range(start, stop + 1, step))


@given(st.integers(1, 4096), st.integers(0, 10))
def test_doubling_ranges_end_exactly(start: int, doublings: int) -> None:
    stop = start * 2**doublings
    sizes = parse_sizes(f"{start}..{stop}")
    assert sizes[0] == start
    assert sizes[-1] == stop
    assert len(sizes) == doublings + 1


def test_choose_is_case_insensitive_and_suggests() -> None:
    assert choose("dtype", "FLOAT32", ["float32", "float64"]) == "float32"
    with pytest.raises(UsageError, match=r"did you mean 'float32'\?.*allowed: float32, float64"):
        choose("dtype", "flaot32", ["float32", "float64"])
    with pytest.raises(UsageError, match="unknown dtype 'complex'") as info:
        choose("dtype", "complex", ["float32", "float64"])
    assert "did you mean" not in str(info.value)


def test_choose_list_dedups_and_rejects_empty_items() -> None:
    assert choose_list("op", "b,a,b", ["a", "b"]) == ("b", "a")
    with pytest.raises(UsageError, match="empty op"):
        choose_list("op", "a,,b", ["a", "b"])


def test_cells_run_smallest_first_with_devices_side_by_side() -> None:
    spec = SweepSpec(ops=("matmul", "add"), sizes=(256, 64), devices=("CPU:0", "GPU:0"))
    cells = list(spec.cells())
    assert len(cells) == spec.n_cells() == 8
    assert [c.size for c in cells] == [64, 64, 64, 64, 256, 256, 256, 256]
    assert [(c.op, c.device) for c in cells[:4]] == [
        ("matmul", "CPU:0"), ("matmul", "GPU:0"), ("add", "CPU:0"), ("add", "GPU:0")
    ]


def test_spec_round_trips_through_dict() -> None:
    spec = SweepSpec(ops=("matmul",), sizes=(64, 128), dtypes=("float16",), devices=("CPU:1",),
                     modes=("xla",), sync="full", seed=3, policy=TimingPolicy(max_cell_time=0.5))
    assert SweepSpec.from_dict(spec.to_dict()) == spec


def test_cell_key_matches_identity_columns() -> None:
    from devbench.schema import IDENTITY

    cell = Cell(size=64, op="add", dtype="float32", device="CPU:0")
    assert dict(zip(IDENTITY, cell.key(), strict=True)) == {
        "op": "add", "size": 64, "dtype": "float32", "device": "CPU:0", "mode": "eager", "sync": "scalar"
    }


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (TimingPolicy(max_cell_time=0), "max-cell-time"),
        (TimingPolicy(max_cell_time=-1), "max-cell-time"),
        (TimingPolicy(min_samples=0), "min-samples"),
        (TimingPolicy(min_samples=10, max_samples=5), "at least min samples"),
        (TimingPolicy(target_rel_iqr=0), "relative IQR"),
    ],
)
def test_policy_validation(policy: TimingPolicy, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        policy.validate()
