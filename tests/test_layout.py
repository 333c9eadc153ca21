"""The package's import graph: no module imports one that imports it back.

Read from the source with ``ast`` (every ``import`` of a ``codemod`` module, with the module it
names), then checked for cycles twice: the imports that run when a module is imported, and those
plus the ones inside functions and ``TYPE_CHECKING`` blocks (a cycle there works today and breaks
the day someone hoists the import). The only edges allowed to point back up are the old
addresses of the LibCST commands (``codemod.rules.inplace.InplaceCommand``), which resolve to
``codemod.commands`` by name on first use. Each module then imports alone in a fresh interpreter,
in dependency order."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "codemod"
# Old addresses of the LibCST commands: a module ``__getattr__`` imports the adapter above the
# engine when the name is asked for (``rules/base.py``, ``command_getattr``).
COMPATIBILITY_EDGES = {("codemod.rules.base", "codemod.commands")}


def _modules() -> dict[str, tuple[Path, bool]]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, modules) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        name = ".".join(base + ([node.module] if node.module else []))
    else:
        name = node.module or ""
    # ``from a import b``: the module a.b when there is one, else a's ``__init__``.
    return [f"{name}.{alias.name}" if f"{name}.{alias.name}" in modules else name for alias in node.names]


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Per module: the codemod modules it imports when imported, and those it imports later."""
    modules = _modules()
    eager: dict[str, set[str]] = {m: set() for m in modules}
    deferred: dict[str, set[str]] = {m: set() for m in modules}

    def visit(module, is_package, node, late):
        for child in ast.iter_child_nodes(node):
            child_late = late or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                child_late = True
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in _targets(module, is_package, child, modules):
                    if target in modules and target != module:
                        (deferred if child_late else eager)[module].add(target)
            visit(module, is_package, child, child_late)

    for module, (path, is_package) in modules.items():
        visit(module, is_package, ast.parse(path.read_text()), False)
    return eager, deferred


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    return found


def test_cycle_detection_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_when_modules_are_imported():
    eager, _ = import_graph()
    assert eager["codemod.commands"] >= {"codemod.engine", "codemod.rules"}  # the graph is read at all
    assert cycles(eager) == []


def test_no_import_cycle_through_imports_inside_functions():
    eager, deferred = import_graph()
    graph = {m: {t for t in eager[m] | deferred[m] if (m, t) not in COMPATIBILITY_EDGES} for m in eager}
    assert cycles(graph) == []


def test_the_rules_do_not_import_the_engine_or_the_commands():
    eager, deferred = import_graph()
    for module in eager:
        if module.startswith(("codemod.rules", "codemod.analysis")):
            reached = {t for t in eager[module] | deferred[module] if (module, t) not in COMPATIBILITY_EDGES}
            assert not reached & {"codemod.engine", "codemod.commands", "codemod.cli", "codemod.api"}, module


def _dependency_order() -> list[str]:
    eager, _ = import_graph()
    order: list[str] = []
    seen: set[str] = set()

    def visit(module):
        if module not in seen:
            seen.add(module)
            for target in sorted(eager[module]):
                visit(target)
            order.append(module)

    for module in sorted(eager):
        visit(module)
    return order


# ``__main__`` runs the CLI and ``locate.bootstrap`` is the ``sitecustomize`` of a located run:
# neither is imported as a module.
@pytest.mark.parametrize(
    "module", [m for m in _dependency_order() if m != "codemod.__main__" and ".bootstrap" not in m]
)
def test_each_module_imports_alone_in_a_fresh_interpreter(module):
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
