"""Op names with variants (devbench.variants) and their resolution to ops (devbench.ops.op_named)."""

from __future__ import annotations

import numpy as np
import pytest

from devbench.errors import UsageError
from devbench.ops import OPS, UnsupportedCombination, op_named
from devbench.variants import Variant, parse_op_name, shaped_name


@pytest.mark.parametrize("name", ["matmul", "matmul[m=*,k=256,n=64]", "add[cache=cold]",
                                  "matmul[m=16,k=*,n=8,cache=cold]"])
def test_a_name_parses_back_to_itself(name: str) -> None:
    assert parse_op_name(name).name == name


@pytest.mark.parametrize(("name", "why"), [
    ("matmul[m=*,k=*,n=3]", "exactly one dimension"),
    ("matmul[m=1,k=2,n=3]", "exactly one dimension"),
    ("matmul[m=*,k=0,n=3]", "positive whole number"),
    ("matmul[m=*,k=2.5,n=3]", "positive whole number"),
    ("matmul[m=*,m=2]", "given twice"),
    ("add[cache=hot]", "cache=hot"),
    ("add[cache=warm]", "write it as 'add'"),
    ("add[cache=cold,m=*]", "write it as 'add[m=*,cache=cold]'"),
    ("matmul[m=*", "brackets"),
    ("[m=*]", "not an op name"),
    ("matmul[m]", "key=value"),
])
def test_bad_names_say_what_is_wrong(name: str, why: str) -> None:
    with pytest.raises(UsageError, match="bad op name") as info:
        parse_op_name(name)
    assert why in str(info.value)


def test_a_variant_knows_its_shape_axis_and_fixed_dimensions() -> None:
    variant = parse_op_name("matmul[m=*,k=256,n=64]")
    assert variant == Variant("matmul", (("m", None), ("k", 256), ("n", 64)))
    assert variant.axis == "m"
    assert variant.fixed == {"k": 256, "n": 64}
    assert variant.shape_text(512) == "m=512,k=256,n=64"
    assert variant.curve_label == "m swept; k=256, n=64"
    assert shaped_name("matmul", {"m": None, "k": 256, "n": 64}, "cold") == "matmul[m=*,k=256,n=64,cache=cold]"
    assert parse_op_name("add").shape_at(8) == {}


def test_a_shaped_name_resolves_to_an_op_of_the_swept_size() -> None:
    op = op_named("matmul[m=*,k=32,n=8]")
    assert op.name == "matmul[m=*,k=32,n=8]"
    assert op.flops(16) == 2.0 * 16 * 32 * 8
    a, b = op.host_inputs(16, "float32", 0).args
    assert a.shape == (16, 32)
    assert b.shape == (32, 8)
    assert np.asarray(op.numpy(a, b)).shape == (16, 8)


def test_the_square_curve_of_the_shaped_matmul_is_the_builtin_one() -> None:
    square = op_named("matmul[m=*,k=24,n=24]")
    builtin = OPS["matmul"]
    assert square.flops(24) == builtin.flops(24)
    assert square.bytes(24, 4) == builtin.bytes(24, 4)


def test_cache_state_comes_from_the_name_and_changes_nothing_else() -> None:
    cold = op_named("add[cache=cold]")
    assert cold.cache == "cold"
    assert cold.name == "add[cache=cold]"
    assert op_named("add").cache == "warm"
    assert cold.flops(64) == OPS["add"].flops(64)


@pytest.mark.parametrize(("name", "message"), [
    ("nosuch", "unknown op 'nosuch'"),
    ("add[m=*]", "no named dimensions"),
    ("matmul[k=*,m=2,n=3]", "the dimensions m,k,n"),
    ("matmul[m=*,k=2]", "the dimensions m,k,n"),
])
def test_names_that_resolve_to_no_op_are_usage_errors(name: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        op_named(name)


def test_an_op_without_a_framework_version_is_unsupported_there() -> None:
    from dataclasses import replace

    op = replace(OPS["add"], jax=None)
    with pytest.raises(UnsupportedCombination, match="no jax version"):
        op.expression("jax")
    assert op.expression("tf") is OPS["add"].tf
