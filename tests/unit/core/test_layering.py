"""Every import inside ``src/avlearn`` runs down the layer order of docs/architecture.md, never up or sideways.

Each module is parsed with ``ast`` (no import is executed): module-level imports, imports inside functions and
``TYPE_CHECKING`` blocks, and ``importlib.import_module("avlearn...")`` with a literal name all count. A module
belongs to the layer of its longest listed package prefix; a module in no layer is itself a failure, so a new
top-level package has to be placed in the order.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[3] / "src"

# Lowest first; a module may import its own layer and the layers below it (docs/architecture.md, "Layers").
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("avlearn.errors", "avlearn.registry", "avlearn.distributed", "avlearn.files")),
    ("config", ("avlearn.config",)),
    ("io", ("avlearn.io",)),
    ("audio", ("avlearn.audio",)),
    ("backbones", ("avlearn.backbones", "avlearn.convert")),
    ("data", ("avlearn.data",)),
    ("metrics", ("avlearn.metrics",)),
    ("viz", ("avlearn.viz",)),
    ("losses", ("avlearn.losses",)),
    ("layers", ("avlearn.layers",)),
    ("pipelines", ("avlearn.data.pipelines",)),
    ("methods", ("avlearn.methods",)),
    ("tasks", ("avlearn.tasks",)),
    ("build", ("avlearn.build",)),
    ("engine", ("avlearn.engine",)),
    ("cli", ("avlearn.cli", "avlearn.__main__")),
)
ROOT = "avlearn"  # the package itself: ``register_all`` imports the component packages by name, at run time

# Families whose members are independent: a member may import only the family's shared modules, never a sibling.
FAMILIES = {
    "avlearn.methods": ("avlearn.methods.base",),
    "avlearn.tasks": ("avlearn.tasks.base",),
    "avlearn.data.pipelines": ("avlearn.data.pipelines",),  # the package holds what every pipeline shares
}
# The engine runs any task through the contract: it may not import a particular method or task.
CONTRACT_ONLY = {"avlearn.engine": ("avlearn.methods", "avlearn.tasks")}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported avlearn module (the deepest module the statement names)
    where: str  # file:line


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / "avlearn").rglob("*.py"))}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(name: str) -> int | None:
    """Index in ``LAYERS`` of the longest prefix of ``name``; ``ROOT`` is the lowest layer; None: not placed."""
    if name == ROOT:
        return 0
    matches = [(len(p), i) for i, (_, prefixes) in enumerate(LAYERS) for p in prefixes if _within(name, p)]
    return max(matches)[1] if matches else None


def _package(source: str, path: Path) -> str:
    return source if path.name == "__init__.py" else source.rpartition(".")[0]


def _targets(node: ast.AST, source: str, path: Path, modules: dict[str, Path]) -> list[str]:
    """The avlearn modules one AST node imports (empty for any other node)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if _within(a.name, ROOT)]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: resolve against the importing module's package
            package = _package(source, path).split(".")
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
        if not _within(base, ROOT):
            return []
        return list(dict.fromkeys(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names))
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        arg = node.args[0] if node.args else None
        if name == "import_module" and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return [arg.value] if _within(arg.value, ROOT) else []
    return []


def all_imports() -> list[Import]:
    modules = all_modules()
    found = []
    for source, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        where = path.relative_to(SRC.parent)
        for node in ast.walk(tree):
            found += [Import(source, t, f"{where}:{node.lineno}") for t in _targets(node, source, path, modules)]
    return found


def _member(name: str, family: str) -> str | None:
    """The member of ``family`` that ``name`` is in ("" for the family package itself; None: outside it)."""
    if name == family:
        return ""
    return name[len(family) + 1 :].split(".")[0] if _within(name, family) else None


def violation(imp: Import) -> str | None:
    """Why ``imp`` is not allowed, or None."""
    src, dst = layer_of(imp.source), layer_of(imp.target)
    if src is None or dst is None:
        return None  # reported by test_every_module_has_a_layer
    if dst > src:
        return f"upward: {LAYERS[src][0]} -> {LAYERS[dst][0]}"
    for family, shared in FAMILIES.items():
        source, target = _member(imp.source, family), _member(imp.target, family)
        if source and target is not None and target != source and imp.target not in shared:
            return f"sideways: one member of {family} imports another"
    for layer, contracts in CONTRACT_ONLY.items():
        for contract in contracts:
            if _within(imp.source, layer) and _within(imp.target, contract) and imp.target != f"{contract}.base":
                return f"{layer} may use {contract} only through {contract}.base (the contract)"
    return None


def test_every_module_has_a_layer():
    unplaced = [name for name in all_modules() if layer_of(name) is None]
    assert not unplaced, f"modules in no layer (add them to LAYERS and docs/architecture.md): {unplaced}"


def test_docs_list_the_same_layers_in_the_same_order():
    text = (SRC.parent / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| (\d+) \| (\w+) \|", text, flags=re.M)  # | # | layer | packages | ...
    assert [(int(i), name) for i, name in rows] == [(i, name) for i, (name, _) in enumerate(LAYERS)]


def test_no_import_runs_up_or_sideways():
    bad = [f"{i.where}: {i.source} imports {i.target} ({why})" for i in all_imports() if (why := violation(i))]
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_the_scan_sees_function_level_and_dynamic_imports(tmp_path, monkeypatch):
    """The checker itself: a function-level upward import and an ``import_module`` literal are both caught."""
    package = tmp_path / "avlearn" / "io"
    package.mkdir(parents=True)
    (tmp_path / "avlearn" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "read.py").write_text(
        "import importlib\n\ndef f():\n    from avlearn.engine.run import run\n\n"
        "x = importlib.import_module('avlearn.tasks.ave')\nfrom . import write\n"
    )
    (package / "write.py").write_text("")
    monkeypatch.setitem(globals(), "SRC", tmp_path)
    found = {(i.target, i.where.rsplit(":", 1)[1]) for i in all_imports()}
    assert found == {("avlearn.engine.run", "4"), ("avlearn.tasks.ave", "6"), ("avlearn.io.write", "7")}
    assert [violation(i) is not None for i in sorted(all_imports(), key=lambda i: i.where)] == [True, True, False]


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        ("avlearn.tasks.avvp", "avlearn.tasks.ave", False),  # a task importing another task
        ("avlearn.tasks.avvp", "avlearn.tasks.base", True),
        ("avlearn.tasks", "avlearn.tasks.ave", True),  # the package registers its members
        ("avlearn.methods.dgsct", "avlearn.methods.baseline", False),
        ("avlearn.data.pipelines.avs", "avlearn.data.pipelines", True),
        ("avlearn.data.pipelines.avs", "avlearn.data.pipelines.avqa", False),
        ("avlearn.engine.run", "avlearn.tasks.ave", False),  # the engine knows the contract only
        ("avlearn.engine.run", "avlearn.tasks.base", True),
        ("avlearn.data.segments", "avlearn.data.pipelines", False),  # data below its pipelines
        ("avlearn.data.pipelines.captions", "avlearn.layers.prompts", True),
        ("avlearn.config.compose", "avlearn.registry", True),
        ("avlearn.io.read", "avlearn.data.store", False),
    ],
)
def test_rules(source, target, allowed):
    assert (violation(Import(source, target, "x.py:1")) is None) == allowed
