"""Small, fast helpers over LibCST trees.

LibCST's visitor machinery rebuilds every node it passes (``CSTVisitor`` costs about 60% of a
parse); the analyses here only read the tree, so they walk the semantic fields of each node
directly (about 1 ms for a 400-line file).
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import libcst as cst

# Fields that hold only whitespace, punctuation or comments.
_SKIP_FIELDS = frozenset(
    {
        "lpar",
        "rpar",
        "leading_lines",
        "comma",
        "header",
        "footer",
        "semicolon",
        "lines_after_decorators",
        "newline",
        "trailing_whitespace",
        "indent",
        "colon",
        "equal",
        "dot",
        "star",
        "lbracket",
        "rbracket",
        "lbrace",
        "rbrace",
        "operator",
        "asynchronous",
        "whitespace_before_colon",
        "whitespace_after_colon",
    }
)
_fields_cache: dict[type, tuple[str, ...]] = {}


def _fields(tp: type) -> tuple[str, ...]:
    fields = _fields_cache.get(tp)
    if fields is None:
        fields = tuple(
            f.name for f in dataclasses.fields(tp) if f.name not in _SKIP_FIELDS and not f.name.startswith("whitespace")
        )
        _fields_cache[tp] = fields
    return fields


_node_types: dict[type, bool] = {}


def _is_node_type(tp: type) -> bool:
    # isinstance against the CSTNode ABC is slow; a per-type cache is a dict lookup.
    known = _node_types.get(tp)
    if known is None:
        known = _node_types[tp] = issubclass(tp, cst.CSTNode)
    return known


def children(node: cst.CSTNode) -> list[cst.CSTNode]:
    """Semantic children in source order (no whitespace or punctuation nodes)."""
    out = []
    for name in _fields(type(node)):
        value = getattr(node, name)
        tp = type(value)
        if tp is tuple or tp is list:
            for item in value:
                if _is_node_type(type(item)):
                    out.append(item)
        elif _is_node_type(tp):
            out.append(value)
    return out


# Node types without semantic children (most of a tree's nodes are names): a walk need not ask.
LEAF_TYPES = frozenset(
    {cst.Name, cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString, cst.Pass, cst.Break, cst.Continue, cst.Ellipsis}
)


def walk(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """Pre-order walk over semantic nodes."""
    stack = [node]
    pop, extend = stack.pop, stack.extend
    while stack:
        current = pop()
        yield current
        if type(current) not in LEAF_TYPES:
            kids = children(current)
            kids.reverse()
            extend(kids)


# Exact types: ``isinstance`` against LibCST's classes goes through ``ABCMeta`` (slow), and no
# node class is subclassed.
_NEW_SCOPES = frozenset({cst.FunctionDef, cst.ClassDef, cst.Lambda})


def walk_same_scope(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """Pre-order walk that does not enter nested functions, classes or lambdas (it yields them)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if type(current) in LEAF_TYPES or (current is not node and type(current) in _NEW_SCOPES):
            continue
        kids = children(current)
        kids.reverse()
        stack.extend(kids)


def dotted_name(expr: cst.BaseExpression) -> str | None:
    """``a.b.c`` for Name/Attribute chains, else None."""
    parts = []
    while type(expr) is cst.Attribute:
        parts.append(expr.attr.value)
        expr = expr.value
    if type(expr) is cst.Name:
        parts.append(expr.value)
        return ".".join(reversed(parts))
    return None


def self_attribute(expr: cst.BaseExpression, self_name: str | None) -> str | None:
    """``"x"`` for ``self.x`` (one level), else None."""
    if (
        self_name
        and isinstance(expr, cst.Attribute)
        and isinstance(expr.value, cst.Name)
        and expr.value.value == self_name
    ):
        return expr.attr.value
    return None


def is_true(expr: cst.BaseExpression | None) -> bool:
    return isinstance(expr, cst.Name) and expr.value == "True"


def is_false(expr: cst.BaseExpression | None) -> bool:
    return isinstance(expr, cst.Name) and expr.value == "False"


def is_number(expr: cst.BaseExpression) -> bool:
    """A numeric literal, possibly negated, or ``float("inf")``-style constants."""
    while isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, (cst.Minus, cst.Plus)):
        expr = expr.expression
    if isinstance(expr, (cst.Integer, cst.Float, cst.Imaginary)):
        return True
    if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Name) and expr.func.value in ("float", "int"):
        return True
    return dotted_name(expr) in ("math.pi", "math.e", "math.inf", "math.nan")


def keyword_arg(call: cst.Call, name: str) -> cst.Arg | None:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg
    return None


def positional_args(call: cst.Call) -> list[cst.Arg]:
    return [a for a in call.args if a.keyword is None and not a.star]

    return any(a.star for a in call.args)


def code_of(node: cst.CSTNode) -> str:
    """Source text of a node (for messages)."""
    return cst.Module(body=[]).code_for_node(node)


def short_code(node: cst.CSTNode, limit: int = 60) -> str:
    text = " ".join(code_of(node).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def call_display(call: cst.Call) -> str:
    """``torch.var(...)`` style display of a call."""
    func = call.func
    if isinstance(func, cst.Attribute):
        name = dotted_name(func)
        if name is None:
            name = f"{short_code(func.value, 30)}.{func.attr.value}"
    else:
        name = dotted_name(func) or short_code(func, 30)
    return f"{name}(...)" if call.args else f"{name}()"


def module_list_loops(fn: cst.FunctionDef, self_name: str | None) -> dict[str, str]:
    """Names bound only as the module of a loop over a module attribute: ``layer`` in ``for layer
    in self.blocks:`` or ``for i, layer in enumerate(self.blocks):`` -> ``"blocks"``. A name also
    bound anywhere else in the function (another loop, an assignment) is left out."""
    loops: dict[str, str] = {}
    bound: dict[str, int] = {}

    def bind(target: cst.CSTNode) -> None:
        if isinstance(target, cst.Name):
            bound[target.value] = bound.get(target.value, 0) + 1
        elif isinstance(target, (cst.Tuple, cst.List)):
            for element in target.elements:
                bind(element.value)
        elif isinstance(target, cst.StarredElement):
            bind(target.value)

    stack: list[cst.CSTNode] = [fn.body]
    while stack:
        node = stack.pop()
        t = type(node)
        if t is cst.For:
            bind(node.target)
            it, target = node.iter, node.target
            if (
                isinstance(it, cst.Call)
                and isinstance(it.func, cst.Name)
                and it.func.value == "enumerate"
                and len(it.args) == 1
                and not it.args[0].star
                and isinstance(target, cst.Tuple)
                and len(target.elements) == 2
            ):
                it, target = it.args[0].value, target.elements[1].value
            attr = self_attribute(it, self_name)
            if attr is not None and isinstance(target, cst.Name):
                loops[target.value] = attr
        elif t is cst.CompFor or t is cst.AugAssign or t is cst.AnnAssign or t is cst.NamedExpr:
            bind(node.target)
        elif t is cst.Assign:
            for assigned in node.targets:
                bind(assigned.target)
        elif t is cst.AsName or t is cst.FunctionDef or t is cst.ClassDef or t is cst.Param:
            bind(node.name)
        if t not in LEAF_TYPES:
            stack.extend(children(node))
    return {name: attr for name, attr in loops.items() if bound.get(name) == 1}
