"""Engine internals a user relies on without seeing them."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest

from codemod.engine import parse_unvalidated

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
