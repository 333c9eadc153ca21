"""Engine internals a user relies on without seeing them."""

from __future__ import annotations

import re
from pathlib import Path

import libcst as cst
import pytest

from codemod.engine import parse_unvalidated, rewrite_module
from codemod.findings import Finding, StatementEdit
from codemod.rules.base import Rule, RuleCode

ROOT = Path(__file__).resolve().parent.parent


def test_unvalidated_parse_builds_the_same_tree_and_restores_validation():
    sources = [p.read_bytes() for p in sorted((ROOT / "codemod").rglob("*.py"))]
    assert len(sources) > 20
    for data in sources:
        assert parse_unvalidated(data).deep_equals(cst.parse_module(data))
    # Validation is back on for nodes built afterwards (rules build their replacements).
    with pytest.raises(cst.CSTValidationError):
        cst.Name("not a name")


def test_unvalidated_parse_still_rejects_bad_syntax_and_restores_validation():
    with pytest.raises(cst.ParserSyntaxError):
        parse_unvalidated(b"def f(:\n    pass\n")
    with pytest.raises(cst.CSTValidationError):
        cst.Name("1x")


class _LaterRoundRule(Rule):
    """Reports every ``x += y``; rewrites ``z += 1`` with a statement inserted before it, and,
    once that is done (a later round), the last ``x += y``: as a rewrite can make another
    write provable."""

    family = "test-rounds"
    codes = (RuleCode("TR1", "later-round", "test", "test", "reported"),)
    prefilter = re.compile("")

    def check(self, ctx, options):
        writes = [
            small
            for line in ctx.module.body
            if isinstance(line, cst.SimpleStatementLine)
            for small in line.body
            if isinstance(small, cst.AugAssign)
        ]
        second_round = "w = 0" in ctx.source
        out = []
        xs = [w for w in writes if isinstance(w.target, cst.Name) and w.target.value == "x"]
        for i, write in enumerate(xs):
            if second_round and len(xs) == 2 and i == 1:
                fixed = cst.parse_statement("x = x + y").body[0]
                out.append(Finding("TR1", "`x += y` rewritten", write, edits=[StatementEdit(write, [], [fixed])]))
            else:
                out.append(Finding("TR1", "`x += y` reported", write))
        for write in writes:
            if isinstance(write.target, cst.Name) and write.target.value == "z":
                before = cst.parse_statement("w = 0").body[0]
                fixed = cst.parse_statement("z = z + 1").body[0]
                out.append(Finding("TR1", "`z += 1` rewritten", write, edits=[StatementEdit(write, [before], [fixed])]))
        return out


def test_a_later_rounds_fix_replaces_only_the_report_of_its_own_write():
    # Two identical writes in the same column: the later round's fix of the second must not take
    # the first one's report with it (lines move between rounds: they are followed, not dropped).
    source = "z += 1\nx += y\nx += y\n"
    module, results = rewrite_module(cst.parse_module(source), source, "t.py", [_LaterRoundRule()], frozenset({"TR1"}))
    assert module.code == "w = 0\nz = z + 1\nx += y\nx = x + y\n"
    summary = sorted((r.location.line, r.fixed, r.message) for r in results)
    assert summary == [
        (1, True, "`z += 1` rewritten"),
        (2, False, "`x += y` reported"),
        (4, True, "`x += y` rewritten"),
    ]
