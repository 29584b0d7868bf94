"""docs/architecture.md is the living design: its module map names every module, and the imports have no cycle.

The import graph is read from the source: every ``import``/``from`` statement, inside functions too (a lazy
import keeps start-up fast, but a cycle through one is still two modules that cannot be understood apart), so a
cycle is caught before it bites at import time.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "devbench"
MAX_LINES = 600
"""A module over this many lines says in its docstring why it is not split ("The module is long ..." and a
reason)."""


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _statements(tree: ast.Module) -> list[ast.stmt]:
    """Every statement of the module, inside functions and classes too, but not under ``if TYPE_CHECKING:``
    (never run)."""
    out: list[ast.stmt] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.stmt):
            out.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The devbench modules ``name`` imports, anywhere in its source (see the module docstring)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in _statements(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            owner = target
            while owner and owner not in known:
                owner = owner.rpartition(".")[0]
            if owner and owner != name:
                found.add(owner)
    return found


def test_the_import_graph_has_no_cycle() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    # A package importing its own submodules is how packages work; only cycles through other modules count.
    graph = {name: {t for t in targets if not t.startswith(name + ".")} for name, targets in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == [], " ; ".join(" -> ".join(c) for c in cycles)


def test_the_module_map_names_every_module() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = doc.split("## Module map", 1)[1].split("\n\n", 2)[1]
    named: set[str] = set()
    for cell in re.findall(r"^\| ([^|]+) \|", table, flags=re.MULTILINE):
        named.update(name.strip("`/ ") for name in re.findall(r"`([^`]+)`", cell))
    missing = []
    for name, path in _modules().items():
        short = name.removeprefix("devbench").lstrip(".")
        if not short:
            continue
        top = short.split(".")[0]
        if path.parent != PACKAGE:  # a package's modules are named in its row's text
            if top not in named:
                missing.append(short)
            continue
        if short not in named:
            missing.append(short)
    assert not missing, f"docs/architecture.md's module map lacks {missing}"


def test_long_modules_say_why() -> None:
    too_long = []
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_LINES:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "module is long" not in " ".join(doc.lower().split()):
                too_long.append(f"{name} ({text.count(chr(10))} lines)")
    assert not too_long, f"modules over {MAX_LINES} lines without a reason in their docstring: {too_long}"


def test_the_readme_module_map_matches_the_architecture_doc() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/architecture.md" in readme
    doc_table = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8").split("## Module map", 1)[1]
    for top in sorted({n.split(".")[1] for n in _modules() if n.count(".") >= 1}):
        assert f"`{top}" in readme, f"README's module map lacks {top}"
        assert f"`{top}" in doc_table


FRAMEWORKS_PACKAGE = "devbench.frameworks"
SPLITS_ON_COLON = {
    ("devbench.machine", "line"): "a /proc/cpuinfo line, 'model name : ...'",
    ("devbench.backends", "target"): "a backend's 'module:Class', not a device name",
}
"""``x.split(":")`` and its kin outside devbench.frameworks, with what ``x`` is: none of them a device name."""
REGISTRY_QUESTIONS = ("canonical", "framework_of", "frameworks_of", "is_accelerator", "is_host", "is_host_device")


def _outside_the_registry() -> dict[str, ast.Module]:
    return {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in _modules().items()
            if name != FRAMEWORKS_PACKAGE and not name.startswith(FRAMEWORKS_PACKAGE + ".")}


def test_there_is_one_device_name_parser() -> None:
    """Only devbench.frameworks splits a device name to find its framework or its kind: no other module splits
    a string on ':' (except the listed non-device strings) or tests one for a framework's or kind's prefix
    (``startswith("jax:")``, ``startswith("CPU:")``); they ask the registry."""
    from devbench import frameworks

    prefixes = {*frameworks.FRAMEWORKS, "cpu", "gpu", "tpu", "mps", "cuda", "device"}
    found = []
    for name, tree in _outside_the_registry().items():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            method, receiver = node.func.attr, ast.unparse(node.func.value)
            literals = [a.value for arg in node.args for a in ast.walk(arg)
                        if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if (method in ("split", "rsplit", "partition", "rpartition") and literals[:1] == [":"]
                    and (name, receiver) not in SPLITS_ON_COLON):
                found.append(f"{name}: {ast.unparse(node)}")
            if method in ("startswith", "endswith") and any(
                    text.endswith(":") and text.strip("/:").lower() in prefixes for text in literals):
                found.append(f"{name}: {ast.unparse(node)}")
    assert not found, f"device names parsed outside devbench.frameworks: {found}"


def test_there_is_one_is_accelerator() -> None:
    """The registry's questions (accelerator or host, framework, canonical spelling) are defined once, in
    devbench.frameworks; other modules import them."""
    defined = [f"{name}.{node.name}" for name, tree in _outside_the_registry().items() for node in ast.walk(tree)
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in REGISTRY_QUESTIONS]
    assert defined == []
    import devbench.analysis
    import devbench.devices
    from devbench import frameworks

    assert devbench.analysis.is_accelerator is devbench.devices.is_accelerator is frameworks.is_accelerator
    assert devbench.devices.is_host_device is frameworks.is_host


def _calls(function: ast.AST, name: str) -> bool:
    """Whether ``function``'s body calls something named ``name`` (``name(...)`` or ``x.name(...)``)."""
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            callee = node.func
            if (isinstance(callee, ast.Name) and callee.id == name) or (
                    isinstance(callee, ast.Attribute) and callee.attr == name):
                return True
    return False


def test_there_is_one_run_cell() -> None:
    """The skeleton of a cell (check, build, dispatch, placement, measure, outcome) is written once: exactly one
    function named ``run_cell`` in the package calls the timer's ``measure``, and it is the one in
    devbench.backends.base that every framework's backend inherits; no other module defines a ``run_cell``
    method that measures, nor calls ``measure`` on a cell's op (the pytest plugin goes through run_cell too)."""
    measuring = [f"{name}.{node.name}" for name, path in _modules().items()
                 for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "run_cell"
                 and _calls(node, "measure")]
    assert measuring == ["devbench.backends.base.run_cell"]
    plugin = ast.parse((PACKAGE / "pytest_plugin.py").read_text(encoding="utf-8"))
    assert not _calls(plugin, "measure"), "the pytest plugin measures through run_cell, not on its own"


def test_every_framework_backend_is_the_one_run_cell_plus_hooks() -> None:
    """Each framework's backend class inherits run_cell (and check_correctness) instead of defining its own."""
    import importlib

    from devbench.backends.base import FrameworkBackend
    from devbench.frameworks import FRAMEWORKS

    for framework in FRAMEWORKS.values():
        module, _, name = framework.backend.partition(":")
        tree = ast.parse((ROOT / "src" / Path(*module.split("."))).with_suffix(".py").read_text(encoding="utf-8"))
        (cls,) = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == name]
        defined = {node.name for node in cls.body if isinstance(node, ast.FunctionDef)}
        assert not defined & {"run_cell", "check_correctness"}, f"{framework.backend} has its own skeleton"
        try:
            backend_class = getattr(importlib.import_module(module), name)
        except ImportError:  # the framework is not installed here (torch): the source check above still ran
            continue
        assert issubclass(backend_class, FrameworkBackend)
        assert framework.key == backend_class.FRAMEWORK


def _names_and_texts(path: Path) -> tuple[set[str], set[str]]:
    """The names (``x``, ``a.x``) and the string constants a module uses."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    names |= {alias.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for alias in n.names}
    texts = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return names, texts


def test_the_gpu_telemetry_columns_are_declared_once() -> None:
    """``schema.GpuTelemetry`` declares them, a visit record and a cell row extend it: no module lists the
    clock, temperature and power columns again as text (two lists and a ``setattr`` copy drifted before)."""
    from devbench.schema import TELEMETRY_COLUMNS

    per_visit = {c for c in TELEMETRY_COLUMNS if "_start_" in c or "_end_" in c}
    spelled = {name: sorted(per_visit & _names_and_texts(path)[1]) for name, path in _modules().items()}
    assert {name: cols for name, cols in spelled.items() if cols} == {}


def test_visited_once_is_read_from_its_field() -> None:
    """Only ``schema.visited_once_of``, for cells.jsonl lines from before the field, looks for the words
    "visited once:" in a reason; everything else reads ``visited_once``."""
    readers = {name for name, path in _modules().items() if "LEGACY_VISITED_ONCE" in _names_and_texts(path)[0]}
    assert readers == {"devbench.schema"}
    assert all("VISITED_ONCE" not in _names_and_texts(path)[0] for path in _modules().values())
