"""``codemod/ast_to_cst.py`` builds, from Python's parser, the tree LibCST's parser builds: the
same node classes with the same semantic fields (what ``analysis.syntax.children`` walks and the
rules read), node for node. Literals are compared by value (the spelling of a number or a string
is not kept), and positions by line. Checked on every Python file of this repository and of its
fixtures, and on generated programs."""

from __future__ import annotations

import ast
import unicodedata
from pathlib import Path

import hypothesmith
import libcst as cst
import pytest
from hypothesis import HealthCheck, given, settings

from codemod import ast_to_cst
from codemod.analysis.syntax import _fields, children
from codemod.positions import PositionIndex

ROOT = Path(__file__).resolve().parents[1]
_STRINGS = (cst.SimpleString, cst.ConcatenatedString, cst.FormattedString)
_NUMBERS = (cst.Integer, cst.Float, cst.Imaginary)
# Fields holding plain strings that carry meaning (the rest: encodings, indentation, quotes).
_TEXT_FIELDS = frozenset({"value", "star", "conversion"})


def _string_parts(node: cst.CSTNode) -> list:
    """The expressions inside a string (f-strings), in order; the text itself is not compared (nor
    conversions: Python reads ``f'{x=}'`` as ``f'x={x!r}'``)."""
    if isinstance(node, cst.ConcatenatedString):
        return _string_parts(node.left) + _string_parts(node.right)
    if isinstance(node, cst.FormattedString):
        out = []
        for part in node.parts:
            if isinstance(part, cst.FormattedStringExpression):
                out.append(_shape(part.expression))
                out += _string_parts(cst.FormattedString(parts=part.format_spec or []))
        return out
    return []


_PUNCTUATION = (cst.Colon, cst.Comma, cst.Semicolon, cst.AssignEqual, cst.Dot, cst.MaybeSentinel)


def _shape(node) -> object:
    if isinstance(node, _PUNCTUATION):
        return "punctuation"  # ``x[a::]`` has a second colon, ``x[a:]`` none: the same slice
    if isinstance(node, (list, tuple)):
        return [_shape(x) for x in node]
    if not isinstance(node, cst.CSTNode):
        return node if isinstance(node, str) or node is None else repr(node)
    if isinstance(node, _NUMBERS):
        return (type(node).__name__, ast.literal_eval(node.value))
    if isinstance(node, _STRINGS):
        return ("string", _string_parts(node))
    if isinstance(node, cst.Name):  # Python reads identifiers NFKC-normalized; LibCST as written
        return ("Name", unicodedata.normalize("NFKC", node.value))
    fields = []
    for name in _fields(type(node)):
        value = getattr(node, name)
        if isinstance(value, str) and name not in _TEXT_FIELDS:
            continue
        if isinstance(value, (bool, int)):
            continue
        fields.append((name, _shape(value)))
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
        "x = f'{a!r:>{w}} {b}' 'c'\ny = b'1' b\"2\"\nw = '2' '3'\nz = 0x10 + 1_000 + 1.5e3 + 2j\n",
        "[x for x in y if x for z in x]\n{k: v for k, v in d.items()}\n{*a, *b}\n{**a, 'b': 1}\n(yield)\n",
        "def g():\n    yield from h\n    x = yield 1\n    (y := 2)\n    return\n",
    ],
)
def test_the_trees_match_libcst_on_each_kind_of_syntax(source):
    assert _check(source.encode())


def test_match_statements_are_left_to_libcst():
    with pytest.raises(ast_to_cst.Unsupported):
        ast_to_cst.build(b"match x:\n    case 1:\n        pass\n")


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(hypothesmith.from_grammar())
def test_the_trees_match_libcst_on_generated_programs(source):
    _check(source.encode("utf-8", "surrogatepass"))


# ---------------------------------------------------------------- in the engine
CLEAN = "import torch\n\n\ndef f(x):\n    y = x * 2\n    y.add_(1)\n    return y\n"
HAZARD = "import torch\n\n\ndef f(x):\n    y = torch.sigmoid(x)\n    y.mul_(2)\n    return y\n"
MATCH = HAZARD + "\n\ndef g(v):\n    match v:\n        case 1:\n            return v\n"


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


@pytest.mark.parametrize("source", [CLEAN, HAZARD, MATCH])
def test_libcst_parses_only_files_where_the_rules_find_something_in_the_mirror(source, monkeypatch):
    plain, plain_parses = _run(source, False, monkeypatch)
    mirrored, parses = _run(source, True, monkeypatch)
    assert mirrored == plain and plain_parses == 1
    found = bool(plain[3])
    assert found == (source != CLEAN)
    assert parses == (1 if found else 0)  # ``match``: no mirror, LibCST as before
