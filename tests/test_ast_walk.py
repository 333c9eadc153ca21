"""``codemod/ast_walk.py`` visits what Python's own ``ast`` functions visit, in the same order,
less expression contexts and operators: checked on every Python file of this repository and of
its fixtures, and on generated programs."""

from __future__ import annotations

import ast
from pathlib import Path

import hypothesmith
from hypothesis import HealthCheck, given, settings

from codemod import ast_walk

ROOT = Path(__file__).resolve().parents[1]
_LEAVES = (ast.expr_context, ast.boolop, ast.operator, ast.unaryop, ast.cmpop)


def _expected(tree: ast.AST) -> list[ast.AST]:
    return [n for n in ast.walk(tree) if not isinstance(n, _LEAVES)]


def _own_expected(fn: ast.AST) -> list[ast.AST]:
    out, stack = [], list(ast.iter_child_nodes(fn))
    while stack:
        node = stack.pop()
        if isinstance(node, _LEAVES):
            continue
        out.append(node)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))
    return out


def _check(tree: ast.AST) -> None:
    assert ast_walk.walk(tree) == _expected(tree)  # the same node objects, in the same order
    for node in ast.walk(tree):
        assert ast_walk.children(node) == [c for c in ast.iter_child_nodes(node) if not isinstance(c, _LEAVES)]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            assert ast_walk.own_nodes(node) == _own_expected(node)


def test_the_walks_match_ast_on_every_file_of_the_repository_and_its_fixtures():
    files = [p for p in sorted(ROOT.rglob("*.py")) if ".venv" not in p.parts and ".git" not in p.parts]
    checked = 0
    for path in files:
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):
            continue  # fixtures that are broken on purpose
        _check(tree)
        checked += 1
    assert checked > 200


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(hypothesmith.from_grammar())
def test_the_walks_match_ast_on_generated_programs(source):
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return
    _check(tree)
