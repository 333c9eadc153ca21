"""The ``ast`` pre-filter (``codemod/candidates.py``) never drops a file that has a finding.

* Every fixture directory, in both modes: the engine with and without the filter (and the
  skeletons it allows, ``codemod/skeleton.py``) gives identical findings, reports, rewrites and
  skipped files (and the filter does leave files unparsed, skeletons do stand in for files).
* Generated programs (the property tests' in-place programs and module programs, placed in
  functions of every kind): where the filter says a family cannot have a finding, the engine
  finds nothing of that family.
* The criteria one by one, on small files.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codemod.candidates import INIT_DERIVED, INPLACE, possible_findings
from codemod.engine import FileTask, Selection, analyse_bytes
from prefilter_check import compare
from test_properties import EXAMPLES, module_programs, torch_programs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _fixture_roots() -> list[Path]:
    """Each fixture repository or directory of one-file fixtures, as the tests run them."""
    roots = []
    for group in sorted(p for p in FIXTURES.iterdir() if p.is_dir()):
        subdirs = sorted(p for p in group.iterdir() if p.is_dir())
        if group.name in ("codemods", "program", "repos") or any(not list(d.glob("*.py")) for d in subdirs):
            roots += subdirs
        else:
            roots.append(group)
    return [r for r in roots if any(r.rglob("*.py"))]


ROOTS = _fixture_roots()


def test_fixture_roots_cover_every_fixture_file():
    covered = {f for root in ROOTS for f in root.rglob("*.py")}
    assert covered == set(FIXTURES.rglob("*.py"))


@pytest.mark.parametrize("mode", ["hazards", "all"])
def test_fixtures_give_the_same_results_with_and_without_the_filter(mode):
    parsed = {"with": 0, "without": 0}
    findings = skeletons = 0
    for root in ROOTS:
        # Two workers where there are enough files for the pool (the path `-j 2` takes).
        differ, counts = compare(root, jobs=2, mode=mode)
        assert differ == [], f"{root}: {differ}"
        parsed["with"] += counts["parsed with filter"]
        parsed["without"] += counts["parsed without filter"]
        findings += counts["findings"]
        skeletons += counts["skeletons"]
    assert findings > 100  # the comparison saw real findings of both kinds
    assert parsed["with"] < parsed["without"]  # and the filter did leave files out
    assert skeletons > 10  # and skeletons stood in for many of the files it parsed


CODES = Selection.build().codes
FAMILY_OF = {c.code: c.family for c in __import__("codemod.rules", fromlist=["all_codes"]).all_codes()}


def _check_sound(source: str, mode: str = "hazards") -> None:
    may = possible_findings(ast.parse(source))
    result = analyse_bytes(source.encode(), FileTask("gen.py", "gen.py", CODES, mode, mirror=False))
    found = {FAMILY_OF[r.code] for r in result.results}
    assert found <= may, f"the filter says {sorted(may)}, the engine found {sorted(found)}:\n{source}"
    if not may:
        assert result.new_source is None


FUNCTION_NAMES = ["f", "forward", "__init__", "_init_weights", "reset_parameters", "helper", "__getitem__"]


@st.composite
def placed_programs(draw):
    """An in-place program as a function of any name, perhaps a method, perhaps called by a
    ``forward`` (so differentiable code reaches it), perhaps with an in-place module around."""
    source = draw(torch_programs())
    name = draw(st.sampled_from(FUNCTION_NAMES))
    lines = source.replace("def f(p, q, flag):", f"def {name}(p, q, flag):").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("def "))
    header, body = lines[:start], lines[start:]
    extra = []
    if draw(st.booleans()):
        extra += ["", "def forward(x):", f"    return {name}(x, x * 2, True)"]
    if draw(st.booleans()):
        act = draw(st.sampled_from(["nn.ReLU(inplace=True)", "nn.ReLU(True)", "nn.ReLU()", "nn.Dropout(0.1)"]))
        extra += [
            "",
            "class Block(torch.nn.Module):",
            "    def __init__(self):",
            "        super().__init__()",
            f"        self.seq = nn.Sequential(nn.Sigmoid(), {act})",
            f"        self.act = {act}",
            "",
            "    def forward(self, x):",
            "        return self.act(torch.sigmoid(self.seq(x)))",
        ]
        header = header + ["import torch.nn as nn"]
    if draw(st.booleans()):
        body = ["class Holder:"] + ["    " + line for line in body]
        body += ["", f"holder_{name.strip('_')} = Holder()"]
    return "\n".join(header + body + extra) + "\n"


@settings(max_examples=max(20, EXAMPLES // 4), deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(source=placed_programs(), mode=st.sampled_from(["hazards", "all"]))
def test_generated_inplace_programs_have_no_finding_the_filter_rules_out(source, mode):
    _check_sound(source, mode)


@settings(max_examples=max(20, EXAMPLES // 8), deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(source=module_programs())
def test_generated_module_programs_have_no_finding_the_filter_rules_out(source):
    _check_sound(source)


# ---------------------------------------------------------------- the criteria one by one
HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n"


@pytest.mark.parametrize(
    "body, families",
    [
        # in-place writes in differentiable code
        ("def forward(x):\n    y = torch.sigmoid(x)\n    y += 1\n    return y\n", {INPLACE}),
        ("def f(x):\n    y = torch.sigmoid(x)\n    y[0] = 1\n    return y\n", {INPLACE}),
        ("def f(x):\n    y = torch.sigmoid(x)\n    y.mul_(2)\n    return y\n", {INPLACE}),
        ("def f(x):\n    y = torch.sigmoid(x)\n    return F.relu(y, True)\n", {INPLACE}),
        ("def f(x, y):\n    torch.mul(x, 2, out=y)\n    return y\n", {INPLACE}),
        ("def f(x):\n    def g(y):\n        y.add_(1)\n    g(x)\n", {INPLACE}),
        # ... and the same writes where the rules never look: init code, module level, flags unset
        (
            "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.w = torch.zeros(3)\n"
            "        self.w.add_(1)\n        self.w[0] = 2\n",
            set(),
        ),
        ("def _init_weights(m):\n    m.weight.data.normal_(0, 1)\n    m.bias.data.zero_()\n", set()),
        ("x = torch.zeros(3)\nx += 1\nx[0] = 2\nx.add_(1)\n", set()),
        ("def f(x):\n    return F.dropout(x, p=0.1, training=True) + F.relu(x)\n", set()),
        (
            "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.drop = nn.Dropout(0.1)\n",
            set(),
        ),
        # in-place modules: built anywhere, found where they are called
        (
            "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.act = nn.ReLU(inplace=True)\n",
            {INPLACE},
        ),
        (
            "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.act = nn.ReLU(True)\n",
            {INPLACE},
        ),
        (
            "class M(nn.Module):\n    def __init__(self, **kw):\n        super().__init__()\n        self.act = nn.ReLU(**kw)\n",
            {INPLACE},
        ),
        ("seq = nn.Sequential(nn.Sigmoid(), nn.ReLU(inplace=True))\n", {INPLACE}),
        ("def _init_weights(model):\n    for m in model.modules():\n        m.inplace = True\n", {INPLACE}),
        # __init__-derived tensors
        (
            "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.raw = nn.Parameter(torch.zeros(3))\n"
            "        self.x = torch.sigmoid(self.raw)\n",
            {INIT_DERIVED},
        ),
        (
            "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.lin = nn.Linear(3, 3)\n"
            "        self.register_buffer('w', self.lin.weight * 2)\n",
            {INIT_DERIVED},
        ),
        (
            "class M(nn.Module):\n    def __init__(self, d):\n        super().__init__()\n        self.w = nn.Parameter(torch.zeros(3)).to(d)\n",
            {INIT_DERIVED},
        ),
        (
            "from torch.nn import Parameter as P\n\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            "        self.x = torch.exp(P(torch.zeros(3)))\n",
            {INIT_DERIVED},
        ),
        (
            "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.register_parameter('g', nn.Parameter(torch.ones(1)))\n"
            "        self.h = self.g * 2\n",
            {INIT_DERIVED},
        ),
        # ... and what is no finding of that family
        (
            "class M(nn.Module):\n    def __init__(self, config):\n        super().__init__()\n        self.w = nn.Parameter(torch.ones(3))\n"
            "        self.head_dim = config.hidden // self.heads\n        self.register_buffer('pos', torch.arange(3))\n",
            set(),
        ),
    ],
)
def test_possible_findings(body, families):
    source = HEAD + body
    assert possible_findings(ast.parse(source)) == families
    _check_sound(source, "all")
