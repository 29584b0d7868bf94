"""Your own ops (devbench.userops): the op() helper, op files and entry points, bad files as one line and exit 2,
the check against numpy before measuring, and the run's record of its op files, loaded again by every process
that adds visits (a worker, a resume, a refine).

Most tests load files into this process's registry; the ``registry`` fixture puts it back as it was. Real
sweeps run on the numpy baseline (no framework start-up) except the example's, on TensorFlow and JAX CPU.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from devbench import userops
from devbench.cli import main
from devbench.errors import UsageError
from devbench.ops import OPS, SHAPED, OpDef, ShapedOp, op_named
from devbench.prepare import RunSettings, spec_from_meta
from devbench.spec import NUMPY_DEVICE
from devbench.store import read_cell_log, read_meta
from devbench.sweep import plan_resume
from devbench.workers import TEST_EXIT_ENV
from tests.cli_helpers import run_cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "ops" / "attention.py"

NEG = """\
import numpy as np
from devbench.userops import op

neg = op("neg", inputs=lambda n: [(n, n)], numpy=np.negative, flops=lambda n: float(n * n))
"""
"""A user op with a numpy version only: measurable on numpy:CPU without any framework."""


@pytest.fixture
def registry() -> Iterator[None]:
    """The op registry and the record of loaded sources, put back as they were after the test."""
    ops, shaped, loaded, warned = dict(OPS), dict(SHAPED), dict(userops._LOADED), set(userops._WARNED)
    yield
    userops._WARNED.clear()
    userops._WARNED.update(warned)
    OPS.clear()
    OPS.update(ops)
    SHAPED.clear()
    SHAPED.update(shaped)
    userops._LOADED.clear()
    userops._LOADED.update(loaded)


def _write(tmp_path: Path, text: str, name: str = "my_ops.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# ---------------------------------------------------------------------------------------------------------
# The helper and the square mapping


def test_op_builds_an_opdef_with_derived_bytes_working_set_and_bound() -> None:
    made = userops.op("scale", inputs=lambda n: [(n, n)], numpy=np.negative, flops=lambda n: float(n * n))
    assert isinstance(made, OpDef)
    assert made.bytes(10, 4) == (100 + 100) * 4  # one input, one output shaped like it
    assert made.working_set(10, 4) == made.bytes(10, 4)
    assert made.bound == "memory"  # 1 FLOP per 8 bytes
    assert made.dtypes == ("float16", "bfloat16", "float32", "float64")  # no int32 unless asked
    data = made.host_inputs(4, "float32", seed=1)
    assert data.args[0].shape == (4, 4)
    np.testing.assert_array_equal(data.args[0], made.host_inputs(4, "float32", seed=1).args[0])  # seeded
    gemm = userops.op("gemm", inputs=lambda n: [(n, n), (n, n)], numpy=np.matmul, flops=lambda n: 2.0 * n**3,
                      outputs=lambda n: [(n, n)], int32=True)
    assert isinstance(gemm, OpDef)
    assert gemm.bound == "compute"
    assert "int32" in gemm.dtypes


def test_framework_functions_are_wrapped_into_the_registry_forms() -> None:
    def double(x: Any) -> Any:
        return x * 2

    made = userops.op("double", inputs=lambda n: [(n,)], numpy=double, tf=double, jax=double,
                      flops=float)
    assert isinstance(made, OpDef)
    assert made.torch is None
    assert made.expression("tf")(None, ()).fn(np.ones(2)).tolist() == [2, 2]
    assert made.expression("jax")(None) is double  # the user's function itself: pure if it is


def test_a_shaped_op_maps_n_to_its_square_shape() -> None:
    made = userops.op("attn", dims=("batch", "seq", "d"), inputs=lambda s: [(s["batch"], s["seq"], s["d"])] * 3,
                      numpy=lambda q, k, v: q, flops=lambda s: 4.0 * s["batch"] * s["seq"] ** 2 * s["d"],
                      square=lambda n: {"batch": 4, "seq": n, "d": 64}, means="q, k, v of batch×seq×d")
    assert isinstance(made, ShapedOp)
    assert made.shape_at_square(128) == {"batch": 4, "seq": 128, "d": 64}
    square = made.square()
    assert square.flops(128) == 4.0 * 4 * 128**2 * 64
    assert square.n_means == "q, k, v of batch×seq×d with batch=4, seq=n, d=64"
    assert square.host_inputs(8, "float32", 0).args[0].shape == (4, 8, 64)
    assert SHAPED["matmul"].square().n_means == "m×k @ k×n with m = k = n = n"  # the default is unchanged


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"numpy": 3}, "op 'x': numpy must be a function, not int"),
    ({"tf": "tf.add"}, "op 'x': tf must be a function or None, not str"),
    ({"square": lambda n: {"n": n}}, "op 'x': square maps n to a shape, so it needs dims"),
    ({"dims": "mn"}, "op 'x': dims must be a tuple of dimension names, not 'mn'"),
])
def test_the_helper_refuses_ill_typed_fields(kwargs: dict[str, Any], message: str) -> None:
    given: dict[str, Any] = {"inputs": lambda n: [(n,)], "numpy": np.negative, "flops": float,
                             **kwargs}
    with pytest.raises(UsageError, match="^" + message + "$"):
        userops.op("x", **given)


# ---------------------------------------------------------------------------------------------------------
# Loading files


@pytest.mark.usefixtures("registry")
def test_a_file_exposes_its_module_level_ops_or_its_ops_list(tmp_path: Path) -> None:
    names = userops.load_op_file(_write(tmp_path, NEG + "_private = neg\n"))
    assert names == ["neg"]
    assert op_named("neg").numpy is np.negative
    assert op_named("neg[cache=cold]").cache == "cold"
    listed = _write(tmp_path, NEG.replace('neg = op("neg"', 'neg2 = op("neg2"') + "other = neg2\nOPS = [neg2]\n",
                    "listed.py")
    assert userops.load_op_file(listed) == ["neg2"]
    assert userops.load_op_file(listed) == ["neg2"]  # once per process: the same file again is a no-op


@pytest.mark.usefixtures("registry")
def test_the_example_file_defines_attention_and_layer_norm() -> None:
    assert userops.load_op_file(EXAMPLE) == ["attention", "layer_norm"]
    attention = op_named("attention")
    assert attention.n_means.endswith("with batch=4, seq=n, d=64")
    assert op_named("attention[batch=2,seq=*,d=32]").host_inputs(16, "float32", 0).args[0].shape == (2, 16, 32)
    assert op_named("layer_norm").host_inputs(8, "float32", 0).args[1].shape == (8,)
    q, k, v = attention.host_inputs(16, "float64", 0).args
    weights = np.exp(q @ np.swapaxes(k, -1, -2) / 8.0)
    expected = weights / weights.sum(axis=-1, keepdims=True) @ v
    np.testing.assert_allclose(attention.numpy(q, k, v), expected)


BAD_FILES = [
    (None, "op file '{path}' does not exist (or is not a file)"),
    ("x = (\n", "op file '{path}': syntax error at line 1: '(' was never closed"),
    ("import os\nimport no_such_module_here\n",
     "op file '{path}' line 2: importing it raised ModuleNotFoundError: No module named 'no_such_module_here'"),
    ("import numpy as np\nfrom devbench.userops import op\nneg = op('neg', inputs=lambda n: [(n, n)], "
     "numpy=np.negative)\n",
     "op file '{path}' line 3: importing it raised TypeError: op() missing 1 required keyword-only argument: "
     "'flops'"),
    ("import numpy as np\nfrom devbench.userops import op\nneg = op('neg', inputs=lambda n: [(n, n)], "
     "numpy=np.negative, flops=2)\n",
     "op file '{path}' line 3: op 'neg': flops must be a function, not int"),
    (NEG.replace("flops=lambda n: float(n * n)", "flops=lambda n: n['m']"),
     "op file '{path}': op 'neg': flops(16) raised TypeError: 'int' object is not subscriptable"),
    (NEG.replace("float(n * n)", "0.0"), "op file '{path}': op 'neg': flops(16) gave 0.0, not a positive number"),
    (NEG.replace("numpy=np.negative", "numpy=lambda x: x.no_such_method()"),
     "op file '{path}': op 'neg': numpy(...) at n=16 raised AttributeError: 'numpy.ndarray' object has no "
     "attribute 'no_such_method'"),
    ("import numpy as np\nfrom devbench.ops import OpDef\nneg = OpDef(name='neg', n_means='n', summary='', "
     "flops=lambda n: 1.0, flops_formula='', bytes=8, working_set=lambda n, s: 1.0, bound='memory', "
     "inputs=lambda n, d, r: None, numpy=np.negative)\n",
     "op file '{path}': op 'neg': bytes must be a function, not int"),
    (NEG.replace('"neg"', '"matmul"'), "op file '{path}': op 'matmul' is a built-in op; give it another name"),
    (NEG.replace('"neg"', '"neg[m=*]"'),
     "op file '{path}': op 'neg[m=*]': its name must be a plain op name (letters, digits, _ . -), without brackets"),
    (NEG + "OPS = neg.name\n", "op file '{path}': OPS must be a list of ops (OpDef, ShapedOp, or made by "
     "devbench.userops.op), not str"),
    ("X = 1\n", "op file '{path}' defines no ops: list them in OPS = [...] or define them at module level "
     "(devbench.userops.op(...), OpDef or ShapedOp)"),
]


@pytest.mark.usefixtures("registry")
@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_a_bad_op_file_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              text: str | None, message: str) -> None:
    path = tmp_path / "bad_ops.py"
    if text is not None:
        path.write_text(text)
    before = set(OPS)
    for argv in (["ops", "--op-file", str(path)], ["sweep", "--op-file", str(path), "--devices", NUMPY_DEVICE,
                                                   "--out", str(tmp_path / "run")]):
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.err == f"devbench: error: {message.format(path=path)}\n"
    assert set(OPS) == before  # nothing of a bad file is registered
    assert not (tmp_path / "run").exists()


@pytest.mark.usefixtures("registry")
def test_ops_lists_the_files_ops_with_their_dims_and_frameworks(capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["ops", "--op-file", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("│ ")]
    assert [row.split("│")[1].strip() for row in rows] == ["attention", "layer_norm"]
    attention = [cell.strip() for cell in rows[0].split("│")[1:-1]]
    assert attention[1] == "batch,seq,d"
    assert attention[5] == "tf, jax, numpy"
    assert "batch=4, seq=n, d=64" in attention[2]
    assert main(["ops"]) == 0
    assert "attention" in capsys.readouterr().out  # loaded in this process, so listed with the built-ins


# ---------------------------------------------------------------------------------------------------------
# Entry points


class FakeDist:
    name = "my-ops"
    version = "1.2.0"
    metadata: ClassVar[dict[str, str]] = {"Name": "my-ops"}


class FakeEntryPoint:
    def __init__(self, name: str, value: Any) -> None:
        self.name, self.value, self.dist, self._value = name, f"my_ops:{name}", FakeDist(), value

    def load(self) -> Any:
        if isinstance(self._value, Exception):
            raise self._value
        return self._value


@pytest.mark.usefixtures("registry")
def test_entry_points_give_an_op_a_list_or_a_function_and_a_broken_one_warns(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def make(name: str) -> OpDef:
        made = userops.op(name, inputs=lambda n: [(n,)], numpy=np.negative, flops=float)
        assert isinstance(made, OpDef)
        return made

    entries = [FakeEntryPoint("one", make("ep_one")), FakeEntryPoint("two", [make("ep_two"), make("ep_three")]),
               FakeEntryPoint("four", lambda: make("ep_four")), FakeEntryPoint("broken", ImportError("no numpy"))]
    monkeypatch.setattr(userops, "_entry_points", lambda: entries)
    warnings: list[str] = []
    assert userops.load_entry_points(warn=warnings.append) == ["ep_one", "ep_two", "ep_three", "ep_four"]
    assert warnings == [f"devbench: warning: entry point 'broken' (my_ops:broken) of {userops.ENTRY_POINT_GROUP} "
                        "from my-ops 1.2.0: loading it raised ImportError: no numpy; its ops are not available"]
    assert userops.load_entry_points(warn=warnings.append) == ["ep_one", "ep_two", "ep_three", "ep_four"]
    assert len(warnings) == 1  # once per process, however often the ops are looked up
    assert userops.records_for(["ep_two", "matmul"]) == [{
        "entry_point": "two", "value": "my_ops:two", "distribution": "my-ops", "version": "1.2.0",
        "ops": ["ep_two", "ep_three"]}]
    FakeDist.version = "1.3.0"
    try:
        with pytest.raises(UsageError, match=r"^'m.json': the run's ops came from my-ops 1.2.0, installed here is "
                                             r"1.3.0; the run cannot be resumed$"):
            userops.load_recorded(userops.records_for(["ep_two"]), "'m.json'", "the run cannot be resumed")
    finally:
        FakeDist.version = "1.2.0"


# ---------------------------------------------------------------------------------------------------------
# The run's record, loaded again


@pytest.mark.usefixtures("registry")
def test_a_runs_op_files_are_loaded_again_from_its_meta_and_must_not_have_changed(tmp_path: Path) -> None:
    path = _write(tmp_path, NEG)
    userops.load_op_file(path)
    records = userops.records_for(["neg[cache=cold]"])
    assert records == [{"file": str(path.resolve()), "sha256": userops._sha256(path), "ops": ["neg"]}]
    assert userops.records_for(["matmul"]) == []
    meta = {"spec": {"ops": ["neg"], "sizes": [16], "dtypes": ["float32"], "devices": [NUMPY_DEVICE],
                     "modes": ["eager"]}, "user_ops": records}
    OPS.pop("neg")
    userops._LOADED.clear()  # a fresh process: nothing loaded
    with pytest.raises(UsageError, match="unknown op 'neg'"):
        spec_from_meta({**meta, "user_ops": None}, tmp_path)
    assert RunSettings.from_meta(meta, tmp_path).spec.ops == ("neg",)
    assert op_named("neg").numpy is np.negative

    OPS.pop("neg")
    userops._LOADED.clear()
    path.write_text(NEG + "# edited\n")
    with pytest.raises(UsageError, match=r"the run's op file '.*my_ops.py' changed since the run was made \(sha256 "
                                         r"\w{12}… then, \w{12}… now\): new cells would be of another op under the "
                                         r"same name; restore it or sweep a new run; the run cannot be resumed$"):
        spec_from_meta(meta, tmp_path)
    path.unlink()
    with pytest.raises(UsageError, match=r"the run's op file '.*my_ops.py' is missing; restore it"):
        spec_from_meta(meta, tmp_path, cannot="the run cannot be refined")


# ---------------------------------------------------------------------------------------------------------
# Real sweeps


FAST = ("--max-cell-time", "0.05", "--min-samples", "3", "--no-calibrate", "--quiet")


@pytest.mark.slow
@pytest.mark.usefixtures("registry")
def test_workers_and_a_resume_load_the_runs_op_file_again(tmp_path: Path) -> None:
    """A sweep of a file's op in two worker processes, the second crashing after one visit, then resumed in a
    new process: each fresh process finds the op by the run's record (a refine reads it the same way,
    RunSettings.from_meta, tested above); an edited file stops a resume."""
    ops_file = _write(tmp_path, NEG)
    run = tmp_path / "run"
    crashed = run_cli("sweep", "--op-file", str(ops_file), "--devices", NUMPY_DEVICE, "--sizes", "16,32",
                      "--rounds", "2", "--processes", "2", "--out", str(run), *FAST, env={TEST_EXIT_ENV: "2,1"})
    assert crashed.returncode == 1, crashed.stderr
    meta = read_meta(run)
    assert meta["user_ops"] == [{"file": str(ops_file.resolve()), "sha256": userops._sha256(ops_file),
                                 "ops": ["neg"]}]
    log = read_cell_log(run)
    assert list(zip(log.processes, log.rounds, strict=True)) == [(1, 1), (1, 1), (2, 2)]
    resumed = run_cli("sweep", "--resume", str(run), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    log = read_cell_log(run)
    assert [(r["op"], r["size"], r["status"]) for r in log.records] == [("neg", 16, "ok"), ("neg", 32, "ok")] * 2

    ops_file.write_text(NEG.replace("np.negative", "np.positive"))
    with pytest.raises(UsageError, match=r"the run's op file '.*my_ops.py' changed since the run was made"):
        plan_resume(run)


def test_a_wrong_op_stops_the_sweep_before_anything_is_measured(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    wrong = NEG.replace("numpy=np.negative,", "numpy=np.negative, jax=lambda x: x * 2,")
    failing = NEG.replace("numpy=np.negative,", "numpy=np.negative, jax=lambda x: x.no_such_method(),")
    for text, said in [(wrong, "disagrees with its numpy reference: output 0 at n=16 is off the numpy float64 "
                               "reference by 3 (relative; float32 allows 0.0001)"),
                       (failing, "fails on JAX (jax:cpu:0, float32, eager): AttributeError")]:
        ops_file = _write(tmp_path, text)
        run = tmp_path / "run"
        proc = run_cli("sweep", "--op-file", str(ops_file), "--devices", "jax:cpu:0", "--sizes", "16", *FAST,
                       "--out", str(run))
        assert proc.returncode == 2
        assert proc.stderr.startswith("devbench: error: op 'neg' ")
        assert said in proc.stderr
        assert proc.stderr.count("\n") == 1
        assert not run.exists()


@pytest.mark.slow
@pytest.mark.tf
def test_the_example_sweeps_on_tf_and_jax_cpu_into_a_crossover_table(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    run = tmp_path / "run"
    listed = run_cli("ops", "--op-file", str(EXAMPLE), env={"COLUMNS": "250"})
    assert listed.returncode == 0, listed.stderr
    assert "attention" in listed.stdout
    assert "layer_norm" in listed.stdout
    swept = run_cli("sweep", "--op-file", str(EXAMPLE), "--ops", "attention,layer_norm", "--devices",
                    "CPU:0,jax:cpu:0", "--sizes", "16,64", "--rounds", "2", *FAST, "--out", str(run), timeout=600)
    assert swept.returncode == 0, swept.stderr
    results = json.loads((run / "meta.json").read_text())
    assert results["user_ops"][0]["ops"] == ["attention", "layer_norm"]
    crossover = run_cli("crossover", str(run), env={"COLUMNS": "250"})
    assert crossover.returncode == 0, crossover.stderr
    assert "CPU:0 vs jax:cpu:0" in crossover.stdout
    for op in ("attention", "layer_norm"):
        assert op in crossover.stdout
    import pandas as pd

    table = pd.read_csv(run / "results.csv")
    ok = table[table["status"] == "ok"]
    assert set(ok["device"]) == {"CPU:0", "jax:cpu:0"}
    assert len(ok) == 2 * 2 * 2  # ops × sizes × devices, each checked against numpy and measured
    assert all(math.isfinite(g) and g > 0 for g in ok["gflops"])
