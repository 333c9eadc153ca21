"""LibCST trees built from Python's own parser, to decide cheaply whether a file has a finding.

LibCST's parser costs about five times ``ast.parse`` here, and of the files a run keeps after the
``ast`` pre-filter few hold any finding. The rules read only the semantic fields of LibCST's
nodes (``analysis.syntax``): names, operands, arguments, bodies; never whitespace, commas or
parentheses. So this module builds the same node classes from an ``ast`` tree, field for field,
with shared default punctuation and without LibCST's validation. The engine runs the rules on
such a tree first; a file is parsed with LibCST only when they find anything there (the tree
from this module never reaches an edit, a message or the output).

Names, numbers and strings are kept as written (the rules read ``u"int"`` annotations and
``"a" "b"`` buffer names as LibCST gives them: each literal of an implicit concatenation is its
own ``SimpleString``). Where the two parsers' trees differ, the difference is in what the rules
do not read: parentheses, comments, the text and conversions of f-strings (Python joins
``f"a" "b"`` into one). Python reads identifiers NFKC-normalized and LibCST as written, so a file
with text that normalization changes is left to LibCST. ``tests/test_ast_to_cst.py`` holds the
trees equal, every field but layout, on every file of the repository, its fixtures and generated
programs. The rules decide by statement lines only (a ``m.inplace = True`` the whole-program
phase located); other positions go into messages, written from LibCST's tree. So only statements
keep their ``ast`` node for a position (``MirrorPositions``); any other node has none, as a node
LibCST's positions do not cover. Syntax this module does not build (``match``) raises
``Unsupported``, and the file is then parsed with LibCST as before.

Nodes are made by constructors generated from each class's dataclass fields (``_maker``): the
given fields and shared defaults set through the slot descriptors. Python's parse and the build
together cost about a fifth of LibCST's parse of the same skeletons, with the collector paused as
the engine runs (``tests/benchmarks/bench_phases.py``).
"""

from __future__ import annotations

import ast
import codecs
import dataclasses
import re
import unicodedata
from typing import Any, Callable

import libcst as cst

from .positions import Span


class Unsupported(Exception):
    """Syntax that ``ast_to_cst`` does not build; the caller parses the file with LibCST."""


_new = object.__new__


def _maker(cls: type, *names: str) -> Callable[..., Any]:
    """A constructor for ``cls`` taking ``names`` positionally (others keep their defaults,
    shared between nodes: LibCST's nodes are immutable); no validation."""
    given = set(names)
    defaults: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in given:
            continue
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
        else:
            raise TypeError(f"{cls.__name__}.{f.name} has no default")
    namespace: dict[str, Any] = {"_new": _new, "_cls": cls}
    lines = [f"def make({', '.join(names)}):", "    o = _new(_cls)"]
    for i, name in enumerate((*names, *defaults)):
        # Each field's slot descriptor, called directly (a third cheaper than ``__setattr__``).
        namespace[f"_s{i}"] = next(k.__dict__[name] for k in cls.__mro__ if name in k.__dict__).__set__
        if name in defaults:
            namespace[f"_d{i}"] = defaults[name]
            lines.append(f"    _s{i}(o, _d{i})")
        else:
            lines.append(f"    _s{i}(o, {name})")
    lines.append("    return o")
    exec("\n".join(lines), namespace)  # noqa: S102 - generated from dataclass fields only
    return namespace["make"]


_Name = _maker(cst.Name, "value")
_Attribute = _maker(cst.Attribute, "value", "attr")
_Call = _maker(cst.Call, "func", "args")
_Arg = _maker(cst.Arg, "value", "keyword", "star")
_Subscript = _maker(cst.Subscript, "value", "slice")
_SubscriptElement = _maker(cst.SubscriptElement, "slice")
_Index = _maker(cst.Index, "value", "star")
_Slice = _maker(cst.Slice, "lower", "upper", "step")
_BinaryOperation = _maker(cst.BinaryOperation, "left", "operator", "right")
_UnaryOperation = _maker(cst.UnaryOperation, "operator", "expression")
_BooleanOperation = _maker(cst.BooleanOperation, "left", "operator", "right")
_Comparison = _maker(cst.Comparison, "left", "comparisons")
_ComparisonTarget = _maker(cst.ComparisonTarget, "operator", "comparator")
_IfExp = _maker(cst.IfExp, "test", "body", "orelse")
_Lambda = _maker(cst.Lambda, "params", "body")
_Tuple = _maker(cst.Tuple, "elements")
_List = _maker(cst.List, "elements")
_Set = _maker(cst.Set, "elements")
_Element = _maker(cst.Element, "value")
_StarredElement = _maker(cst.StarredElement, "value")
_Dict = _maker(cst.Dict, "elements")
_DictElement = _maker(cst.DictElement, "key", "value")
_StarredDictElement = _maker(cst.StarredDictElement, "value")
_ListComp = _maker(cst.ListComp, "elt", "for_in")
_SetComp = _maker(cst.SetComp, "elt", "for_in")
_GeneratorExp = _maker(cst.GeneratorExp, "elt", "for_in")
_DictComp = _maker(cst.DictComp, "key", "value", "for_in")
_CompFor = _maker(cst.CompFor, "target", "iter", "ifs", "inner_for_in", "asynchronous")
_CompIf = _maker(cst.CompIf, "test")
_Integer = _maker(cst.Integer, "value")
_Float = _maker(cst.Float, "value")
_Imaginary = _maker(cst.Imaginary, "value")
_SimpleString = _maker(cst.SimpleString, "value")
_ConcatenatedString = _maker(cst.ConcatenatedString, "left", "right")
_FormattedString = _maker(cst.FormattedString, "parts")
_FormattedStringText = _maker(cst.FormattedStringText, "value")
_FormattedStringExpression = _maker(cst.FormattedStringExpression, "expression", "conversion", "format_spec")
_Ellipsis = _maker(cst.Ellipsis)
_NamedExpr = _maker(cst.NamedExpr, "target", "value")
_Await = _maker(cst.Await, "expression")
_Yield = _maker(cst.Yield, "value")
_From = _maker(cst.From, "item")

_Module = _maker(cst.Module, "body")
_SimpleStatementLine = _maker(cst.SimpleStatementLine, "body")
_SimpleStatementSuite = _maker(cst.SimpleStatementSuite, "body")
_IndentedBlock = _maker(cst.IndentedBlock, "body")
_Expr = _maker(cst.Expr, "value")
_Assign = _maker(cst.Assign, "targets", "value")
_AssignTarget = _maker(cst.AssignTarget, "target")
_AugAssign = _maker(cst.AugAssign, "target", "operator", "value")
_AnnAssign = _maker(cst.AnnAssign, "target", "annotation", "value")
_Annotation = _maker(cst.Annotation, "annotation")
_Return = _maker(cst.Return, "value")
_Raise = _maker(cst.Raise, "exc", "cause")
_Assert = _maker(cst.Assert, "test", "msg")
_Del = _maker(cst.Del, "target")
_Pass = _maker(cst.Pass)
_Break = _maker(cst.Break)
_Continue = _maker(cst.Continue)
_Global = _maker(cst.Global, "names")
_Nonlocal = _maker(cst.Nonlocal, "names")
_NameItem = _maker(cst.NameItem, "name")
_Import = _maker(cst.Import, "names")
_ImportFrom = _maker(cst.ImportFrom, "module", "names", "relative")
_ImportAlias = _maker(cst.ImportAlias, "name", "asname")
_AsName = _maker(cst.AsName, "name")
_If = _maker(cst.If, "test", "body", "orelse")
_Else = _maker(cst.Else, "body")
_For = _maker(cst.For, "target", "iter", "body", "orelse", "asynchronous")
_While = _maker(cst.While, "test", "body", "orelse")
_With = _maker(cst.With, "items", "body", "asynchronous")
_WithItem = _maker(cst.WithItem, "item", "asname")
_Try = _maker(cst.Try, "body", "handlers", "orelse", "finalbody")
_TryStar = _maker(cst.TryStar, "body", "handlers", "orelse", "finalbody")
_ExceptHandler = _maker(cst.ExceptHandler, "body", "type", "name")
_ExceptStarHandler = _maker(cst.ExceptStarHandler, "body", "type", "name")
_Finally = _maker(cst.Finally, "body")
_FunctionDef = _maker(cst.FunctionDef, "name", "params", "body", "decorators", "returns", "asynchronous")
_ClassDef = _maker(cst.ClassDef, "name", "body", "bases", "keywords", "decorators")
_Decorator = _maker(cst.Decorator, "decorator")
_Parameters = _maker(
    cst.Parameters, "params", "star_arg", "kwonly_params", "star_kwarg", "posonly_params", "posonly_ind"
)
_Param = _maker(cst.Param, "name", "annotation", "default", "star")

_ASYNC = _maker(cst.Asynchronous)()
_IMPORT_STAR = _maker(cst.ImportStar)()
_DOT = _maker(cst.Dot)()
_PARAM_STAR = _maker(cst.ParamStar)()
_PARAM_SLASH = _maker(cst.ParamSlash)()
_DEFAULT = cst.MaybeSentinel.DEFAULT

_BINARY = {
    ast.Add: cst.Add,
    ast.Sub: cst.Subtract,
    ast.Mult: cst.Multiply,
    ast.Div: cst.Divide,
    ast.FloorDiv: cst.FloorDivide,
    ast.Mod: cst.Modulo,
    ast.Pow: cst.Power,
    ast.MatMult: cst.MatrixMultiply,
    ast.LShift: cst.LeftShift,
    ast.RShift: cst.RightShift,
    ast.BitOr: cst.BitOr,
    ast.BitAnd: cst.BitAnd,
    ast.BitXor: cst.BitXor,
}
_AUGMENTED = {
    ast.Add: cst.AddAssign,
    ast.Sub: cst.SubtractAssign,
    ast.Mult: cst.MultiplyAssign,
    ast.Div: cst.DivideAssign,
    ast.FloorDiv: cst.FloorDivideAssign,
    ast.Mod: cst.ModuloAssign,
    ast.Pow: cst.PowerAssign,
    ast.MatMult: cst.MatrixMultiplyAssign,
    ast.LShift: cst.LeftShiftAssign,
    ast.RShift: cst.RightShiftAssign,
    ast.BitOr: cst.BitOrAssign,
    ast.BitAnd: cst.BitAndAssign,
    ast.BitXor: cst.BitXorAssign,
}
_UNARY = {ast.UAdd: cst.Plus, ast.USub: cst.Minus, ast.Invert: cst.BitInvert, ast.Not: cst.Not}
_BOOLEAN = {ast.And: cst.And, ast.Or: cst.Or}
_COMPARE = {
    ast.Eq: cst.Equal,
    ast.NotEq: cst.NotEqual,
    ast.Lt: cst.LessThan,
    ast.LtE: cst.LessThanEqual,
    ast.Gt: cst.GreaterThan,
    ast.GtE: cst.GreaterThanEqual,
    ast.Is: cst.Is,
    ast.IsNot: cst.IsNot,
    ast.In: cst.In,
    ast.NotIn: cst.NotIn,
}


def _one_each(table: dict[type, type]) -> dict[type, cst.CSTNode]:
    """One instance per operator: operators hold only whitespace, and nodes are immutable."""
    return {key: _maker(cls)() for key, cls in table.items()}


_BIN, _AUG, _UN = _one_each(_BINARY), _one_each(_AUGMENTED), _one_each(_UNARY)
_BOOL, _CMP = _one_each(_BOOLEAN), _one_each(_COMPARE)

_SIMPLE_STATEMENTS = frozenset(
    {
        ast.Expr,
        ast.Assign,
        ast.AugAssign,
        ast.AnnAssign,
        ast.Return,
        ast.Raise,
        ast.Assert,
        ast.Delete,
        ast.Pass,
        ast.Break,
        ast.Continue,
        ast.Global,
        ast.Nonlocal,
        ast.Import,
        ast.ImportFrom,
    }
)


class MirrorPositions:
    """``positions.PositionIndex``'s interface over the ``ast`` nodes statements were built from."""

    def __init__(self, origin: dict[int, ast.AST], lines: list[bytes]) -> None:
        self._origin = origin
        self._lines = lines

    def _column(self, line: int, offset: int) -> int:
        """1-based column in characters of a UTF-8 byte ``offset`` on ``line``."""
        text = self._lines[line - 1] if 0 < line <= len(self._lines) else b""
        return len(text[:offset].decode("utf-8", "replace")) + 1

    def span(self, node: cst.CSTNode) -> Span | None:
        a = self._origin.get(id(node))
        if a is None or getattr(a, "lineno", None) is None:
            return None
        line, col = a.lineno, a.col_offset
        decorators = getattr(a, "decorator_list", None)
        if decorators:  # LibCST's definition starts at its first decorator's ``@``
            line, col = decorators[0].lineno, decorators[0].col_offset - 1
        end_line, end_col = a.end_lineno or line, a.end_col_offset or 0
        return Span(line, self._column(line, col), end_line, self._column(end_line, end_col))

    def line(self, node: cst.CSTNode) -> int:
        span = self.span(node)
        return span.line if span else 0


class Builder:
    """Builds a LibCST module from an ``ast`` module; ``origin`` maps each built statement's id
    to the ``ast`` node it stands for (its position)."""

    def __init__(self, data: bytes, lines: list[bytes]) -> None:
        self.data = data
        self.lines = lines
        self.origin: dict[int, ast.AST] = {}
        self._line_starts: list[int] | None = None

    # Statements ---------------------------------------------------------------------------

    def module(self, tree: ast.Module) -> cst.Module:
        return _Module(self.statements(tree.body))

    def _starts_line(self, node: ast.stmt) -> bool:
        line = self.lines[node.lineno - 1] if node.lineno <= len(self.lines) else b""
        return not line[: node.col_offset].strip()

    def statements(self, body: list[ast.stmt]) -> list[cst.BaseStatement]:
        out: list[cst.BaseStatement] = []
        small: list[cst.BaseSmallStatement] | None = None
        for node in body:
            if type(node) in _SIMPLE_STATEMENTS:
                built = self.small(node)
                if small is not None and not self._starts_line(node):
                    small.append(built)  # ``a = 1; b = 2``: one line of statements
                    continue
                small = [built]
                line = _SimpleStatementLine(small)
                self.origin[id(line)] = node
                out.append(line)
            else:
                small = None
                out.append(self.compound(node))
        return out

    def suite(self, body: list[ast.stmt]) -> cst.BaseSuite:
        if body and not self._starts_line(body[0]):  # ``if x: y`` on one line
            return _SimpleStatementSuite([self.small(node) for node in body])
        return _IndentedBlock(self.statements(body))

    def small(self, n: ast.stmt) -> cst.BaseSmallStatement:
        tp = type(n)
        e = self.expr
        if tp is ast.Expr:
            out = _Expr(e(n.value))
        elif tp is ast.Assign:
            targets = []
            for t in n.targets:
                targets.append(_AssignTarget(e(t)))
            out = _Assign(targets, e(n.value))
        elif tp is ast.AugAssign:
            out = _AugAssign(e(n.target), _AUG[type(n.op)], e(n.value))
        elif tp is ast.AnnAssign:
            annotation = _Annotation(e(n.annotation))
            out = _AnnAssign(e(n.target), annotation, None if n.value is None else e(n.value))
        elif tp is ast.Return:
            out = _Return(None if n.value is None else e(n.value))
        elif tp is ast.Raise:
            out = _Raise(None if n.exc is None else e(n.exc), None if n.cause is None else _From(e(n.cause)))
        elif tp is ast.Assert:
            out = _Assert(e(n.test), None if n.msg is None else e(n.msg))
        elif tp is ast.Delete:
            if len(n.targets) == 1:
                out = _Del(e(n.targets[0]))
            else:
                out = _Del(_Tuple([self._element(t) for t in n.targets]))
        elif tp is ast.Pass:
            out = _Pass()
        elif tp is ast.Break:
            out = _Break()
        elif tp is ast.Continue:
            out = _Continue()
        elif tp is ast.Global:
            out = _Global([_NameItem(_Name(name)) for name in n.names])
        elif tp is ast.Nonlocal:
            out = _Nonlocal([_NameItem(_Name(name)) for name in n.names])
        elif tp is ast.Import:
            out = _Import([self._alias(a) for a in n.names])
        elif tp is ast.ImportFrom:
            if len(n.names) == 1 and n.names[0].name == "*":
                names: Any = _IMPORT_STAR
            else:
                names = [self._alias(a) for a in n.names]
            module = _dotted(n.module) if n.module else None
            out = _ImportFrom(module, names, [_DOT] * (n.level or 0))
        else:
            raise Unsupported(tp.__name__)
        self.origin[id(out)] = n
        return out

    def _alias(self, a: ast.alias) -> cst.ImportAlias:
        return _ImportAlias(_dotted(a.name), _AsName(_Name(a.asname)) if a.asname else None)

    def _orelse(self, body: list[ast.stmt]) -> cst.Else | None:
        return _Else(self.suite(body)) if body else None

    def compound(self, n: ast.stmt) -> cst.BaseCompoundStatement:
        tp = type(n)
        e = self.expr
        if tp is ast.If:
            orelse: Any = None
            if n.orelse:
                first = n.orelse[0]
                if len(n.orelse) == 1 and type(first) is ast.If and first.col_offset == n.col_offset:
                    orelse = self.compound(first)  # ``elif``
                else:
                    orelse = _Else(self.suite(n.orelse))
            out = _If(e(n.test), self.suite(n.body), orelse)
        elif tp is ast.For or tp is ast.AsyncFor:
            out = _For(
                e(n.target),
                e(n.iter),
                self.suite(n.body),
                self._orelse(n.orelse),
                _ASYNC if tp is ast.AsyncFor else None,
            )
        elif tp is ast.While:
            out = _While(e(n.test), self.suite(n.body), self._orelse(n.orelse))
        elif tp is ast.With or tp is ast.AsyncWith:
            items = [
                _WithItem(e(i.context_expr), None if i.optional_vars is None else _AsName(e(i.optional_vars)))
                for i in n.items
            ]
            out = _With(items, self.suite(n.body), _ASYNC if tp is ast.AsyncWith else None)
        elif tp is ast.Try or tp is ast.TryStar:
            handler = _ExceptHandler if tp is ast.Try else _ExceptStarHandler
            handlers = [
                handler(
                    self.suite(h.body),
                    None if h.type is None else e(h.type),
                    _AsName(_Name(h.name)) if h.name else None,
                )
                for h in n.handlers
            ]
            out = (_Try if tp is ast.Try else _TryStar)(
                self.suite(n.body),
                handlers,
                self._orelse(n.orelse),
                _Finally(self.suite(n.finalbody)) if n.finalbody else None,
            )
        elif tp is ast.FunctionDef or tp is ast.AsyncFunctionDef:
            out = _FunctionDef(
                _Name(n.name),
                self.parameters(n.args),
                self.suite(n.body),
                [_Decorator(e(d)) for d in n.decorator_list],
                None if n.returns is None else _Annotation(e(n.returns)),
                _ASYNC if tp is ast.AsyncFunctionDef else None,
            )
        elif tp is ast.ClassDef:
            out = _ClassDef(
                _Name(n.name),
                self.suite(n.body),
                [self._arg(b) for b in n.bases],
                [self._keyword(k) for k in n.keywords],
                [_Decorator(e(d)) for d in n.decorator_list],
            )
        else:
            raise Unsupported(tp.__name__)  # ``match``: parsed with LibCST
        self.origin[id(out)] = n
        return out

    def parameters(self, a: ast.arguments) -> cst.Parameters:
        positional = a.posonlyargs + a.args
        defaults: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
        params = [self._param(p, d, "") for p, d in zip(positional, defaults)]
        posonly = params[: len(a.posonlyargs)]
        star_arg: Any = _DEFAULT
        if a.vararg is not None:
            star_arg = self._param(a.vararg, None, "*")
        elif a.kwonlyargs:
            star_arg = _PARAM_STAR
        return _Parameters(
            params[len(a.posonlyargs) :],
            star_arg,
            [self._param(p, d, "") for p, d in zip(a.kwonlyargs, a.kw_defaults)],
            None if a.kwarg is None else self._param(a.kwarg, None, "**"),
            posonly,
            _PARAM_SLASH if posonly else _DEFAULT,
        )

    def _param(self, p: ast.arg, default: ast.expr | None, star: str) -> cst.Param:
        annotation = None if p.annotation is None else _Annotation(self.expr(p.annotation))
        return _Param(_Name(p.arg), annotation, None if default is None else self.expr(default), star)

    # Expressions --------------------------------------------------------------------------

    def expr(self, n: ast.expr) -> cst.BaseExpression:
        tp = type(n)
        if tp is ast.Name:  # most nodes: built here without a dispatch
            return _Name(n.id)
        if tp is ast.Attribute:
            return _Attribute(self.expr(n.value), _Name(n.attr))
        build = _EXPRESSIONS.get(tp)
        if build is None:
            raise Unsupported(tp.__name__)
        return build(self, n)

    def _name(self, n: ast.Name) -> cst.Name:
        return _Name(n.id)

    def _constant(self, n: ast.Constant) -> cst.BaseExpression:
        value = n.value
        if value is None or value is True or value is False:
            return _Name(repr(value))
        if value is ...:
            return _Ellipsis()
        tp = type(value)
        if tp is int or tp is float or tp is complex:  # as written: ``0x10``, ``1_000``, ``1e400``
            text = self._segment(n).decode("ascii")
            return _Integer(text) if tp is int else _Float(text) if tp is float else _Imaginary(text)
        tokens = _string_tokens(self._segment(n))  # as written, each literal of ``"a" "b"``
        out: Any = _SimpleString(tokens[-1].decode("utf-8"))
        for token in reversed(tokens[:-1]):
            out = _ConcatenatedString(_SimpleString(token.decode("utf-8")), out)
        return out

    def _segment(self, n: ast.expr) -> bytes:
        """The source bytes of ``n``."""
        line, end = n.lineno, n.end_lineno or n.lineno
        if line == end:
            return self.lines[line - 1][n.col_offset : n.end_col_offset]
        if self._line_starts is None:
            starts, pos = [0], 0
            for text in self.data.splitlines(keepends=True):
                pos += len(text)
                starts.append(pos)
            self._line_starts = starts
        starts = self._line_starts
        return self.data[starts[line - 1] + n.col_offset : starts[end - 1] + (n.end_col_offset or 0)]

    def _attribute(self, n: ast.Attribute) -> cst.Attribute:
        return _Attribute(self.expr(n.value), _Name(n.attr))

    def _arg(self, n: ast.expr) -> cst.Arg:
        return _Arg(self.expr(n.value), None, "*") if type(n) is ast.Starred else _Arg(self.expr(n), None, "")

    def _keyword(self, k: ast.keyword) -> cst.Arg:
        return _Arg(self.expr(k.value), None, "**") if k.arg is None else _Arg(self.expr(k.value), _Name(k.arg), "")

    def _call(self, n: ast.Call) -> cst.Call:
        args = [self._arg(a) for a in n.args]
        if n.keywords:
            keywords = [self._keyword(k) for k in n.keywords]
            last = n.args[-1] if n.args else None
            first = n.keywords[0]
            if last is not None and (last.lineno, last.col_offset) > (first.lineno, first.col_offset):
                # ``f(a=1, *b)``: LibCST keeps the source order
                pairs = sorted(
                    zip(list(n.args) + list(n.keywords), args + keywords), key=lambda p: (p[0].lineno, p[0].col_offset)
                )
                args = [built for _, built in pairs]
            else:
                args += keywords
        return _Call(self.expr(n.func), args)

    def _subscript_part(self, n: ast.expr) -> cst.SubscriptElement:
        if type(n) is ast.Slice:
            e = self.expr
            inner: Any = _Slice(
                None if n.lower is None else e(n.lower),
                None if n.upper is None else e(n.upper),
                None if n.step is None else e(n.step),
            )
        elif type(n) is ast.Starred:
            inner = _Index(self.expr(n.value), "*")
        else:
            inner = _Index(self.expr(n), None)
        return _SubscriptElement(inner)

    def _subscript(self, n: ast.Subscript) -> cst.Subscript:
        part = n.slice
        if type(part) is ast.Tuple and part.elts and not self._parenthesized(part):
            elements = [self._subscript_part(p) for p in part.elts]
        else:
            elements = [self._subscript_part(part)]
        return _Subscript(self.expr(n.value), elements)

    def _parenthesized(self, n: ast.Tuple) -> bool:
        """``x[(a, b)]`` (one index, a tuple) rather than ``x[a, b]`` (two): more brackets open
        before the first element than close after it (``x[(a), b]`` opens and closes one)."""
        line = self.lines[n.lineno - 1] if n.lineno <= len(self.lines) else b""
        if line[n.col_offset : n.col_offset + 1] != b"(":
            return False
        first = n.elts[0]
        if first.lineno != n.lineno:
            return True
        opened = line[n.col_offset : first.col_offset].count(b"(")
        if first.end_lineno != n.lineno:
            return opened > 0
        after = line[first.end_col_offset :]
        closing = after[: len(after) - len(after.lstrip(b") \t"))]
        return opened > closing.count(b")")

    def _binop(self, n: ast.BinOp) -> cst.BinaryOperation:
        return _BinaryOperation(self.expr(n.left), _BIN[type(n.op)], self.expr(n.right))

    def _unaryop(self, n: ast.UnaryOp) -> cst.UnaryOperation:
        return _UnaryOperation(_UN[type(n.op)], self.expr(n.operand))

    def _boolop(self, n: ast.BoolOp) -> cst.BooleanOperation:
        op = _BOOL[type(n.op)]
        values = n.values
        out = self.expr(values[0])
        for value in values[1:]:
            out = _BooleanOperation(out, op, self.expr(value))
        return out

    def _compare(self, n: ast.Compare) -> cst.Comparison:
        targets = [_ComparisonTarget(_CMP[type(op)], self.expr(c)) for op, c in zip(n.ops, n.comparators)]
        return _Comparison(self.expr(n.left), targets)

    def _ifexp(self, n: ast.IfExp) -> cst.IfExp:
        return _IfExp(self.expr(n.test), self.expr(n.body), self.expr(n.orelse))

    def _lambda(self, n: ast.Lambda) -> cst.Lambda:
        return _Lambda(self.parameters(n.args), self.expr(n.body))

    def _element(self, n: ast.expr) -> cst.BaseElement:
        return _StarredElement(self.expr(n.value)) if type(n) is ast.Starred else _Element(self.expr(n))

    def _tuple(self, n: ast.Tuple) -> cst.Tuple:
        return _Tuple([self._element(x) for x in n.elts])

    def _list(self, n: ast.List) -> cst.List:
        return _List([self._element(x) for x in n.elts])

    def _set_(self, n: ast.Set) -> cst.Set:
        return _Set([self._element(x) for x in n.elts])

    def _dict(self, n: ast.Dict) -> cst.Dict:
        e = self.expr
        return _Dict(
            [_StarredDictElement(e(v)) if k is None else _DictElement(e(k), e(v)) for k, v in zip(n.keys, n.values)]
        )

    def _for_in(self, generators: list[ast.comprehension]) -> cst.CompFor:
        inner = None
        e = self.expr
        for g in reversed(generators):
            inner = _CompFor(
                e(g.target), e(g.iter), [_CompIf(e(t)) for t in g.ifs], inner, _ASYNC if g.is_async else None
            )
        assert inner is not None
        return inner

    def _listcomp(self, n: ast.ListComp) -> cst.ListComp:
        return _ListComp(self.expr(n.elt), self._for_in(n.generators))

    def _setcomp(self, n: ast.SetComp) -> cst.SetComp:
        return _SetComp(self.expr(n.elt), self._for_in(n.generators))

    def _genexp(self, n: ast.GeneratorExp) -> cst.GeneratorExp:
        return _GeneratorExp(self.expr(n.elt), self._for_in(n.generators))

    def _dictcomp(self, n: ast.DictComp) -> cst.DictComp:
        return _DictComp(self.expr(n.key), self.expr(n.value), self._for_in(n.generators))

    def _joinedstr(self, n: ast.JoinedStr) -> cst.FormattedString:
        return _FormattedString(self._fstring_parts(n.values))

    def _fstring_parts(self, values: list[ast.expr]) -> list[cst.BaseFormattedStringContent]:
        parts: list[cst.BaseFormattedStringContent] = []
        for v in values:
            if type(v) is ast.FormattedValue:
                spec = None if v.format_spec is None else self._fstring_parts(v.format_spec.values)
                conversion = None if v.conversion == -1 else chr(v.conversion)
                parts.append(_FormattedStringExpression(self.expr(v.value), conversion, spec))
            elif type(v) is ast.Constant:
                parts.append(_FormattedStringText(str(v.value)))
            else:
                raise Unsupported(type(v).__name__)
        return parts

    def _namedexpr(self, n: ast.NamedExpr) -> cst.NamedExpr:
        return _NamedExpr(self.expr(n.target), self.expr(n.value))

    def _await(self, n: ast.Await) -> cst.Await:
        return _Await(self.expr(n.value))

    def _yield(self, n: ast.Yield) -> cst.Yield:
        return _Yield(None if n.value is None else self.expr(n.value))

    def _yieldfrom(self, n: ast.YieldFrom) -> cst.Yield:
        return _Yield(_From(self.expr(n.value)))


_EXPRESSIONS: dict[type, Callable[[Builder, Any], cst.BaseExpression]] = {
    ast.Name: Builder._name,
    ast.Constant: Builder._constant,
    ast.Attribute: Builder._attribute,
    ast.Call: Builder._call,
    ast.Subscript: Builder._subscript,
    ast.BinOp: Builder._binop,
    ast.UnaryOp: Builder._unaryop,
    ast.BoolOp: Builder._boolop,
    ast.Compare: Builder._compare,
    ast.IfExp: Builder._ifexp,
    ast.Lambda: Builder._lambda,
    ast.Tuple: Builder._tuple,
    ast.List: Builder._list,
    ast.Set: Builder._set_,
    ast.Dict: Builder._dict,
    ast.ListComp: Builder._listcomp,
    ast.SetComp: Builder._setcomp,
    ast.GeneratorExp: Builder._genexp,
    ast.DictComp: Builder._dictcomp,
    ast.JoinedStr: Builder._joinedstr,
    ast.NamedExpr: Builder._namedexpr,
    ast.Await: Builder._await,
    ast.Yield: Builder._yield,
    ast.YieldFrom: Builder._yieldfrom,
}


_STRING_OPEN = re.compile(rb"[A-Za-z]{0,2}('''|\"\"\"|'|\")")
_BETWEEN_STRINGS = re.compile(rb"(?:[ \t\f\r\n]|\\\r?\n|\\\r|#[^\r\n]*)*")


def _string_tokens(segment: bytes) -> list[bytes]:
    """The string literals of one ``ast`` string constant as written (several where Python
    joined adjacent literals); ``Unsupported`` where the text is not that."""
    out = []
    pos, size = 0, len(segment)
    while pos < size:
        opened = _STRING_OPEN.match(segment, pos)
        if opened is None:
            raise Unsupported("string")
        quote, start = opened.group(1), opened.end()
        at = start
        while True:
            close = segment.find(quote, at)
            if close < 0:
                raise Unsupported("string")
            k = close
            while k > start and segment[k - 1] == 0x5C:  # backslashes before the quote
                k -= 1
            if (close - k) % 2 == 0:
                break
            at = close + 1
        end = close + len(quote)
        out.append(segment[pos:end])
        pos = _BETWEEN_STRINGS.match(segment, end).end()
    return out


def _dotted(name: str) -> cst.Name | cst.Attribute:
    parts = name.split(".")
    out: Any = _Name(parts[0])
    for part in parts[1:]:
        out = _Attribute(out, _Name(part))
    return out


def build(data: bytes) -> tuple[cst.Module, MirrorPositions]:
    """The LibCST-shaped module of ``data`` (Python's parser) and its positions. Raises
    ``SyntaxError``/``ValueError`` where Python refuses the file, ``Unsupported`` for syntax not
    built here, ``RecursionError`` for very deep nesting."""
    tree = compile(data, "<file>", "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]  # not counted in the ``ast`` columns of line 1
    if not data.isascii():
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise Unsupported("a coding other than UTF-8") from None
        if not unicodedata.is_normalized("NFKC", text):
            # Python reads identifiers NFKC-normalized (``ｈ`` is ``h``), LibCST as written.
            raise Unsupported("text that NFKC normalization changes")
    lines = data.splitlines()
    builder = Builder(data, lines)
    module = builder.module(tree)
    return module, MirrorPositions(builder.origin, lines)
