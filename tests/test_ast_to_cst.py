"""``codemod/ast_to_cst.py`` builds, from Python's parser, the tree LibCST's parser builds: the
same node classes with the same fields (all but layout: whitespace, commas, parentheses), node
for node, names, numbers and strings as written, and each statement's line. Checked on every
Python file of this repository and of its fixtures, on each kind of syntax, and on generated
programs; and in the engine, that LibCST parses only files where the rules find something."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import hypothesmith
import libcst as cst
import pytest
from hypothesis import HealthCheck, given, settings

from codemod import ast_to_cst
from codemod.analysis.syntax import children
from codemod.positions import PositionIndex

ROOT = Path(__file__).resolve().parents[1]
# Fields that hold only whitespace, punctuation or formatting.
_LAYOUT = frozenset(
    {
        "lpar", "rpar", "comma", "semicolon", "leading_lines", "lines_after_decorators", "header", "footer",
        "trailing_whitespace", "newline", "indent", "colon", "equal", "dot", "lbracket", "rbracket", "lbrace",
        "rbrace", "first_colon", "second_colon", "default_indent", "default_newline", "has_trailing_newline",
        "encoding", "leading_whitespace",
    }
)  # fmt: skip


def _has_fstring(node: cst.CSTNode) -> bool:
    if isinstance(node, cst.ConcatenatedString):
        return _has_fstring(node.left) or _has_fstring(node.right)
    return isinstance(node, cst.FormattedString)


def _fstring_expressions(node: cst.CSTNode) -> list:
    """The expressions inside an f-string (or a concatenation holding one), in order: Python
    joins ``f"a" "b"`` into one f-string and reads ``f"{x=}"`` as ``f"x={x!r}"``, so neither the
    text nor the conversions are compared."""
    if isinstance(node, cst.ConcatenatedString):
        return _fstring_expressions(node.left) + _fstring_expressions(node.right)
    out = []
    if isinstance(node, cst.FormattedString):
        for part in node.parts:
            if isinstance(part, cst.FormattedStringExpression):
                out.append(_shape(part.expression))
                out += _fstring_expressions(cst.FormattedString(parts=part.format_spec or []))
    return out


def _shape(node) -> object:
    """Every field but layout, as it is: names, numbers and strings as written, the operators,
    ``star`` and ``asynchronous``."""
    if isinstance(node, (list, tuple)):
        return [_shape(x) for x in node]
    if not isinstance(node, cst.CSTNode):
        return node if isinstance(node, (str, bool, int)) or node is None else repr(node)
    if isinstance(node, (cst.ConcatenatedString, cst.FormattedString)) and _has_fstring(node):
        return ("f-string", _fstring_expressions(node))
    fields = [
        (f.name, _shape(getattr(node, f.name)))
        for f in dataclasses.fields(node)
        if f.name not in _LAYOUT and not f.name.startswith("whitespace")
    ]
    return (type(node).__name__, fields)


def _statement_lines(module: cst.Module, positions) -> list[tuple[str, int]]:
    """Each small statement with its line: the rules decide by statement lines only (a switch
    ``m.inplace = True`` the whole-program phase located); other positions go into messages,
    which are written from LibCST's tree (there, a compound statement starts at its leading
    comments and an expression at its parentheses)."""
    out = []
    stack = [module]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.BaseSmallStatement):
            out.append((type(node).__name__, positions.line(node)))
        stack.extend(reversed(children(node)))
    return out


def _difference(a, b, path="") -> str | None:
    """Where two shapes first differ, for a readable failure."""
    if type(a) is not type(b) or not isinstance(a, (list, tuple)) or len(a) != len(b):
        return None if a == b else f"at {path or '/'}: {str(a)[:300]} != {str(b)[:300]}"
    for i, (x, y) in enumerate(zip(a, b)):
        found = _difference(x, y, f"{path}/{x[0] if isinstance(x, tuple) and isinstance(x[0], str) else i}")
        if found:
            return found
    return None


def _check(data: bytes) -> bool:
    try:
        real = cst.parse_module(data)
    except Exception:
        return False  # not Python LibCST reads
    try:
        mirror, positions = ast_to_cst.build(data)
    except (SyntaxError, ValueError, RecursionError, MemoryError, ast_to_cst.Unsupported):
        return False
    assert _difference(_shape(mirror), _shape(real)) is None
    assert _difference(_statement_lines(mirror, positions), _statement_lines(real, PositionIndex(real))) is None
    return True


def test_the_trees_match_libcst_on_every_file_of_the_repository_and_its_fixtures():
    files = [p for p in sorted(ROOT.rglob("*.py")) if ".venv" not in p.parts and ".git" not in p.parts]
    checked = sum(_check(path.read_bytes()) for path in files)
    assert checked > 200


@pytest.mark.parametrize(
    "source",
    [
        "x[(a), b]\nx[(a, b)]\nx[((a), b)]\nx[a, b:c]\nx[()]\nx[(a,)]\n",
        "if a: b = 1; c = 2\nelif d:\n    pass\nelse:\n    if e: f()\n",
        "a = 1; b = 2\nc = 3\n",
        "def f(a, /, b=1, *c, d, e=2, **g) -> int: return 0\nlambda *, k: k\n",
        "f(a, *b, c=1, **d)\nf(c=1, *b)\n",
        "@dec\n@dec2(1)\nclass A(B, metaclass=M):\n    x: int = 0\n    y: int\n",
        "a and b and c or d\nnot a < b <= c is not d\n",
        "try:\n    pass\nexcept (A, B) as e:\n    raise C from e\nelse:\n    pass\nfinally:\n    del a, b\n",
        "async def f():\n    async with a as (b, c), d:\n        async for x in y:\n            await z\n",
        "global a\nimport a.b as c, d\nfrom .. import (e as f, g)\nfrom h.i import *\n",
        "x = f'{a!r:>{w}} {b}' 'c'\ny = b'1' b\"2\"\nz = 0x10 + 1_000 + 1.5e3 + 2j + 1e400\n",
        'w = (\'2\'  # two\n  r\'3\' u"""4\\"""" \'\\\\\'\n)\n',
        "\ufeffx = 'bom'\ndef f(a: u'int', b: 'in' 't', c: r\"\\\"\"):\n    return '''doc\n    string'''\n",
        "[x for x in y if x for z in x]\n{k: v for k, v in d.items()}\n{*a, *b}\n{**a, 'b': 1}\n(yield)\n",
        "def g():\n    yield from h\n    x = yield 1\n    (y := 2)\n    return\n",
    ],
)
def test_the_trees_match_libcst_on_each_kind_of_syntax(source):
    assert _check(source.encode())


@pytest.mark.parametrize("source", ["match x:\n    case 1:\n        pass\n", "\uff48 = 1\n", "x = 'ﬁ'\n"])
def test_match_statements_and_text_python_normalizes_are_left_to_libcst(source):
    with pytest.raises(ast_to_cst.Unsupported):
        ast_to_cst.build(source.encode())


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(hypothesmith.from_grammar())
def test_the_trees_match_libcst_on_generated_programs(source):
    _check(source.encode("utf-8", "surrogatepass"))


# ---------------------------------------------------------------- in the engine
CLEAN = "import torch\n\n\ndef f(x):\n    y = x * 2\n    y.add_(1)\n    return y\n"
HAZARD = "import torch\n\n\ndef f(x):\n    y = torch.sigmoid(x)\n    y.mul_(2)\n    return y\n"
MATCH = HAZARD + "\n\ndef g(v):\n    match v:\n        case 1:\n            return v\n"
HEAD = "import torch\nimport torch.nn as nn\n\n\n"
# Where the rules read what the mirror must keep as written (found in review): a string
# annotation's prefix, a buffer name of two literals, an identifier Python normalizes.
ANNOTATION = HEAD + 'def norm(x: u"int"):\n    s = x.var(1, keepdim=True)\n    x /= s\n    return x\n'
BUFFER = (
    HEAD + "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
    "        self.act = nn.ReLU(inplace=True)\n        self.register_buffer('a' 'ct', None)\n\n"
    "    def forward(self, x):\n        return self.act(torch.sigmoid(x))\n"
)
IDENTIFIER = HEAD + "def f(a, b):\n    h = torch.sigmoid(a)\n    \uff48 = a * 2\n    h *= b + 1\n    return h\n"


def _run(source: str, mirror: bool, monkeypatch) -> tuple[object, int]:
    from codemod import engine
    from prefilter_check import outcome

    parses = []
    real = engine.parse_unvalidated
    monkeypatch.setattr(engine, "parse_unvalidated", lambda data: parses.append(data) or real(data))
    task = engine.FileTask("f.py", "f.py", engine.Selection.build().codes, mirror=mirror)
    result = engine.analyse_bytes(source.encode(), task)
    assert result.parsed
    return outcome(result), len(parses)


@pytest.mark.parametrize("source", [CLEAN, HAZARD, MATCH, ANNOTATION, BUFFER, IDENTIFIER])
def test_libcst_parses_only_files_where_the_rules_find_something_in_the_mirror(source, monkeypatch):
    plain, plain_parses = _run(source, False, monkeypatch)
    mirrored, parses = _run(source, True, monkeypatch)
    assert mirrored == plain and plain_parses == 1
    found = bool(plain[3])
    assert found == (source != CLEAN)
    assert parses == (1 if found else 0)  # ``match``: no mirror, LibCST as before
