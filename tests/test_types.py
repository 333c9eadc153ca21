"""The ``Literal`` types of modes, fixes, edit forms and statuses name every value the code uses.

No type checker runs over the tree, so these read the code: every string a ``form`` is compared
with or decided as, every status assigned, every rule code's fix and example mode, and every
publication decision must be one the type declares."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path
from typing import get_args

from codemod.api import OutcomeStatus
from codemod.config import MODES, Mode
from codemod.rules import all_codes
from codemod.rules.base import Fix
from codemod.rules.inplace.edits import Form
from codemod.verify.runner import VerifyStatus
from service.proposal import Publication, publication

ROOT = Path(__file__).resolve().parent.parent


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _is_form(node: ast.AST) -> bool:
    """``form``, ``x.form``, ``decisions.get(...)``, ``self.decisions.get(...)``."""
    if isinstance(node, ast.Name):
        return node.id == "form"
    if isinstance(node, ast.Attribute):
        return node.attr == "form"
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and ast.unparse(node.func.value).endswith("decisions")
    )


def form_strings(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and any(_is_form(n) for n in (node.left, *node.comparators)):
            found |= set().union(*(_strings(n) for n in (node.left, *node.comparators)))
        elif isinstance(node, ast.FunctionDef) and node.name == "form_for":
            for ret in ast.walk(node):
                if isinstance(ret, ast.Return) and ret.value is not None:
                    found |= _strings(ret.value) - _strings_in_calls(ret.value)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Subscript) and ast.unparse(t.value).endswith("decisions") for t in node.targets
        ):
            found |= _strings(node.value)
    return found


def _strings_in_calls(node: ast.AST) -> set[str]:
    return set().union(set(), *(_strings(c) for c in ast.walk(node) if isinstance(c, ast.Call)))


def test_every_in_place_form_the_rule_uses_is_declared():
    rules = ROOT / "codemod" / "rules" / "inplace"
    used = form_strings((rules / "rule.py").read_text()) | form_strings((rules / "analysis.py").read_text())
    assert len(used) >= 10  # the reading finds them at all
    assert used <= set(get_args(Form))
    assert form_strings("if form == 'sideways':\n    pass\n") == {"sideways"}  # an undeclared one would show


def assigned_statuses(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Attribute) and t.attr == "status" for t in node.targets
        ):
            found |= _strings(node.value)
    return found


def test_every_status_assigned_is_declared():
    verify = assigned_statuses(ROOT / "codemod" / "verify" / "runner.py")
    outcome = assigned_statuses(ROOT / "codemod" / "api.py")
    assert {"proven", "not proven"} <= verify <= set(get_args(VerifyStatus))
    assert {"clean", "unverified"} <= outcome <= set(get_args(OutcomeStatus)) | set(get_args(VerifyStatus))


def test_rule_codes_use_the_declared_fixes_and_modes():
    assert MODES == get_args(Mode)
    codes = all_codes()
    assert {c.fix for c in codes} == set(get_args(Fix))
    assert {e.mode for c in codes for e in c.examples} <= set(MODES)


def test_every_publication_decision_is_declared():
    decisions = {
        publication(has_changes=c, proven=p, unverified=u, held=h)
        for c, p, h in itertools.product((False, True), repeat=3)
        for u in ("draft", "skip")
    }
    assert decisions == set(get_args(Publication))
