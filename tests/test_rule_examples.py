"""The examples `codemod rules` shows are what the engine does."""

from __future__ import annotations

import pytest

from codemod.engine import FileTask, Selection, analyse_bytes
from codemod.rules import RULES

HEADER = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n\n"
CASES = [(code, i, ex) for rule in RULES for code in rule.codes for i, ex in enumerate(code.examples)]


def test_every_rewritten_code_has_an_example():
    missing = [
        code.code
        for rule in RULES
        for code in rule.codes
        if code.fix == "rewritten" and not any(ex.after for ex in code.examples)
    ]
    assert not missing


@pytest.mark.parametrize("code,index,example", CASES, ids=[f"{c.code}-{i}" for c, i, _ in CASES])
def test_example(code, index, example):
    task = FileTask("example.py", "example.py", Selection.build([code.family]).codes, example.mode)
    result = analyse_bytes((HEADER + example.before).encode(), task)
    assert result.skipped is None
    if example.after is None:
        # Shown as "reported": the code fires and nothing is rewritten (or, for a "stays"
        # example of a rewritten code, nothing at all happens).
        assert result.new_source is None
        if code.fix == "reported":
            assert code.code in {r.code for r in result.results}, [(r.code, r.message) for r in result.results]
    else:
        assert result.new_source == HEADER + example.after
        assert code.code in {r.code for r in result.results if r.fixed}
