"""Skeletons (``codemod/skeleton.py``) and the tree Python's parser gives (``codemod/ast_to_cst.py``):
analysing a file's skeleton first, and that as ``ast_to_cst`` builds it, never changes a result.

* The text: line for line the file, left-out bodies become ``...``; what is kept is unchanged;
  a body that does not start its own line is kept; hypothesmith programs' skeletons parse.
* The closure (``candidates._blank_bodies``): callers, callees and the ``forward`` of a
  submodule's class stay in the skeleton; a case for each where leaving them out would change
  the result.
* Generated programs (in-place programs with callers under ``no_grad`` or not, callees that
  save their arguments, submodules, unrelated functions; hypothesmith programs): the engine with
  and without skeletons gives identical results. Every fixture directory is compared the same way
  in ``test_candidates.py`` (``prefilter_check.compare`` runs the engine with the filter and
  skeletons against the plain engine).
"""

from __future__ import annotations

import ast

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from codemod.candidates import possible_findings
from codemod.engine import FileTask, Selection, analyse_bytes
from codemod.skeleton import skeleton
from prefilter_check import outcome
from test_properties import EXAMPLES, mentions_torch, torch_programs

CODES = Selection.build().codes
HEAD = "import torch\nimport torch.nn as nn\n\n\n"


def _analyse(source: str, mode: str, skeletons: bool):
    data = source.encode()
    may = possible_findings(ast.parse(data)) if skeletons else None
    return analyse_bytes(data, FileTask("gen.py", "gen.py", CODES, mode, may_find=may, mirror=skeletons))


def _stable(res) -> tuple:
    return outcome(res)


def _same_with_and_without(source: str, mode: str = "hazards"):
    plain = _analyse(source, mode, False)
    skel = _analyse(source, mode, True)
    assert _stable(skel) == _stable(plain), source
    assert skel.parsed == plain.parsed
    return plain


def _blanked(source: str) -> set[int]:
    """The first lines of the bodies the skeleton leaves out."""
    found = possible_findings(ast.parse(source))
    return {first for first, _last, _col in found.blank or ()}


def _line(source: str, text: str) -> int:
    return next(i for i, line in enumerate(source.splitlines(), 1) if line.strip() == text)


# ---------------------------------------------------------------- the text
def test_skeleton_keeps_lines_and_leaves_out_bodies():
    source = (
        HEAD + "def used(x):\n    y = torch.sigmoid(x)\n    y.mul_(2)\n    return y\n\n\n"
        "def unused(x):\n    '''Docs.'''\n    z = x * 2\n\n    return z  # codemod: ignore\n\n\n"
        "class M(nn.Module):\n    def extra(self, x):\n        return x\r\n\n    def tiny(self): return 1\n"
    )
    found = possible_findings(ast.parse(source))
    out = skeleton(source.encode(), found.blank).decode()
    before, after = source.splitlines(keepends=True), out.splitlines(keepends=True)
    assert len(after) == len(before)
    changed = [i for i, (a, b) in enumerate(zip(before, after), 1) if a != b]
    first = _line(source, "'''Docs.'''")
    assert changed == [first, first + 1, first + 3, _line(source, "return x")]  # first + 2 was empty
    assert after[first - 1] == "    ...\n" and after[first] == "\n" and after[first + 3] == "\n"
    assert after[_line(source, "return x") - 1] == "        ...\r\n"
    assert "def tiny(self): return 1" in out  # the body on the def's line stays
    ast.parse(out)


def test_body_not_starting_its_own_line_is_kept():
    source = HEAD + "def f(a,\n      b): return a\n\n\ndef g(x):\n    return x\n\n\ndef h(x):\n    x += 1\n"
    found = possible_findings(ast.parse(source))
    assert (_line(source, "b): return a"), _line(source, "b): return a"), 10) in found.blank
    out = skeleton(source.encode(), found.blank).decode()
    assert "b): return a" in out and "def g(x):\n    ...\n" in out


def test_nothing_left_out_no_skeleton():
    source = HEAD + "def forward(x):\n    y = torch.sigmoid(x)\n    y.mul_(2)\n    return y\n"
    found = possible_findings(ast.parse(source))
    assert found.blank == ()
    assert skeleton(source.encode(), found.blank) is None


def test_no_skeleton_where_any_function_may_matter():
    # an in-place module makes a site of any call of a module attribute
    source = (
        HEAD
        + "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.act = nn.ReLU(inplace=True)\n\n"
        "    def forward(self, x):\n        return self.act(torch.sigmoid(x))\n\n    def other(self, x):\n        return x\n"
    )
    assert possible_findings(ast.parse(source)).blank is None
    assert _same_with_and_without(source).results


def test_init_derived_written_elsewhere_is_reported_as_in_the_whole_file():
    # In the skeleton ``tweak`` is left out and the derived attribute looks rewritable; the
    # whole file is analysed again and the report (ID202, written by ``m.x = ...``) is what counts.
    source = (
        HEAD + "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.raw = nn.Parameter(torch.zeros(3))\n        self.x = torch.sigmoid(self.raw)\n\n"
        "    def forward(self, y):\n        return y * self.x\n\n\ndef tweak(m):\n    m.x = torch.ones(3)\n"
    )
    assert _blanked(source) == {_line(source, "m.x = torch.ones(3)"), _line(source, "return y * self.x")}
    result = _same_with_and_without(source)
    assert [(r.code, r.fixed) for r in result.results] == [("ID202", False)]
    assert "m.x = ..." in result.results[0].message
    cut = source.replace("    m.x = torch.ones(3)\n", "    ...\n")
    # what the skeleton alone says: a rewrite
    assert [(r.code, r.fixed) for r in _analyse(cut, "hazards", False).results] == [("ID101", True)]


# ---------------------------------------------------------------- the closure
def test_callers_stay_they_decide_whether_code_is_differentiable():
    # ``_f`` is differentiable code only because ``loud`` calls it with grad on: without
    # ``loud`` its only caller runs under no_grad and the rewrite would not be made.
    source = (
        HEAD + "def _f(p):\n    a = torch.sigmoid(p)\n    a.mul_(2)\n    return a\n\n\n"
        "@torch.no_grad()\ndef quiet(x):\n    return _f(x)\n\n\ndef loud(x):\n    y = _f(x)\n    return y * 3\n\n\n"
        "def unrelated(x):\n    y = x + 1\n    return y\n"
    )
    blanked = _blanked(source)
    assert blanked == {_line(source, "y = x + 1")}
    result = _same_with_and_without(source, "all")
    assert [(r.code, r.fixed) for r in result.results] == [("IP102", True)]
    cut = source.replace("    y = _f(x)\n    return y * 3\n", "    ...\n\n")
    assert _analyse(cut, "all", False).results == []  # what leaving ``loud`` out would have done


def test_submodule_forward_stays_it_saves_the_input():
    source = (
        HEAD + "class Act(nn.Module):\n    def forward(self, x):\n        return x * x\n\n\n"
        "class Other(nn.Module):\n    def forward(self, x):\n        return x * x\n\n\n"
        "class Block(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.act = Act()\n\n"
        "    def forward(self, x):\n        h = x * 1\n        y = self.act(h)\n        h.mul_(2)\n        return y + h\n"
    )
    assert _blanked(source) == {_line(source, "return x * x") + 5}  # Other.forward only
    result = _same_with_and_without(source)
    assert [r.code for r in result.results] == ["IP102"]
    cut = source.replace(
        "    def forward(self, x):\n        return x * x\n", "    def forward(self, x):\n        ...\n", 1
    )
    assert _analyse(cut, "hazards", False).results == []  # what leaving ``Act.forward`` out would have done


def test_callees_stay():
    source = (
        HEAD + "def helper(x):\n    return x * x\n\n\ndef other(x):\n    return x * 2\n\n\n"
        "class M(nn.Module):\n    def _inner(self, x):\n        return x.exp()\n\n    def _unused(self, x):\n        return x.exp()\n\n"
        "    def forward(self, p):\n        a = p * 1\n        y = helper(a) + self._inner(a)\n        a.mul_(2)\n        return y + a\n"
    )
    lines = source.splitlines()
    assert _blanked(source) == {_line(source, "return x * 2"), lines.index("    def _unused(self, x):") + 2}
    _same_with_and_without(source)


# ---------------------------------------------------------------- generated programs
@st.composite
def skeleton_programs(draw):
    """An in-place program ``f`` (perhaps a method) among functions the skeleton may leave out
    or must keep: callers with grad on or off, a callee that saves its argument, a submodule
    whose ``forward`` saves its input, unrelated functions with and without in-place writes."""
    source = draw(torch_programs())
    lines = source.splitlines()
    start = lines.index("def f(p, q, flag):")
    header, body = lines[:start], lines[start:]
    if draw(st.booleans()):
        body.insert(body.index("    b = q * 1") + 1, "    keep.append(helper(a))")
    header += ["import torch.nn as nn", "", "", "def helper(x):", "    return x * x", "", ""]
    extra = []
    for i in range(draw(st.integers(0, 3))):
        deco = draw(st.sampled_from(["", "@torch.no_grad()\n"]))
        call = draw(st.sampled_from(["f(x, x * 2, True)", "f(x, x, False)", "x * 2", "unrelated(x)"]))
        extra += ["", "", f"{deco}def caller{i}(x):\n    y = {call}\n    return y"]
    if draw(st.booleans()):
        extra += ["", "", "def unrelated(x):\n    y = x + 1\n    y[0] = 2\n    return y"]
    if draw(st.booleans()):
        extra += [
            "",
            "",
            "class Act(nn.Module):\n    def forward(self, x):\n        return x * x",
            "",
            "",
            "class Block(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.act = Act()",
            "",
            "    def forward(self, x):\n        h = x * 1\n        y = self.act(h)\n        h.add_(1)\n        return y + h",
            "",
            "    def spare(self, x):\n        return x.exp()",
        ]
    if draw(st.booleans()):
        body = ["class Holder:"] + ["    " + line for line in body]
        body += ["", "", "holder = Holder()"]
    return "\n".join(header + body + extra) + "\n"


@settings(max_examples=max(20, EXAMPLES // 4), deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(source=skeleton_programs(), mode=st.sampled_from(["hazards", "all"]))
def test_generated_programs_same_with_and_without_skeletons(source, mode):
    _same_with_and_without(source, mode)


def test_generated_programs_do_get_skeletons():
    """The generator above reaches both kinds: files with a skeleton and files without."""
    seen = {"skeleton": 0, "none": 0}

    @settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(source=skeleton_programs())
    def count(source):
        found = possible_findings(ast.parse(source))
        seen["skeleton" if found.blank and skeleton(source.encode(), found.blank) else "none"] += 1

    count()
    assert seen["skeleton"] > 5 and seen["none"] > 5, seen


hypothesmith = pytest.importorskip("hypothesmith")


@settings(max_examples=max(20, EXAMPLES // 4), deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(source=hypothesmith.from_grammar())
def test_hypothesmith_programs_same_with_and_without_skeletons(source):
    source = mentions_torch(source)
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        assume(False)
    found = possible_findings(tree)
    if found.blank:
        out = skeleton(source.encode(), found.blank)
        if out is not None:
            assert out.count(b"\n") == source.encode().count(b"\n")
            ast.parse(out)  # a skeleton is valid Python
    _same_with_and_without(source, "all")
