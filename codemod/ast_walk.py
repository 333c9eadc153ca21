"""Fast traversal of Python's ``ast`` trees, for the whole-program phase (``program.summarize``,
``candidates.possible_findings``), which walks every tree of the run several times.

``ast.walk`` and ``ast.iter_child_nodes`` are generators over ``ast.iter_fields`` that test every
field of every node; here each node type's child fields are worked out once, from the ASDL
signature Python gives each node class as its docstring (``Call(expr func, expr* args, keyword*
keywords)``), and read directly. The nodes come in the same order as with ``ast``'s functions,
less the leaves no analysis here looks at: expression contexts (``Load``, ``Store``) and
operators (``Add``, ``Eq``), which hold nothing.
"""

from __future__ import annotations

import ast
import re

# ASDL types of fields that hold no child worth visiting: plain values and the leaf kinds.
_LEAF_TYPES = frozenset(
    {"identifier", "string", "constant", "int", "expr_context", "boolop", "operator", "unaryop", "cmpop", "type_ignore"}
)
# List fields that may hold None: a ``**d`` in a dict display (its key), a keyword-only parameter
# without a default.
_NULLABLE_LISTS = frozenset({"keys", "kw_defaults"})
ONE, MANY, MANY_OR_NONE = 0, 1, 2

_FIELDS: dict[type, tuple[tuple[str, int], ...]] = {}


def child_fields(node_type: type) -> tuple[tuple[str, int], ...]:
    """The fields of ``node_type`` that may hold nodes, each with ``ONE`` (a node or None),
    ``MANY`` (a list of nodes) or ``MANY_OR_NONE`` (a list of nodes and Nones)."""
    fields = _FIELDS.get(node_type)
    if fields is None:
        signature = {
            name: (kind, mark) for kind, mark, name in re.findall(r"(\w+)([*?]?) (\w+)", node_type.__doc__ or "")
        }
        fields = []
        for name in node_type._fields:
            kind, mark = signature.get(name, ("?", "?"))
            if kind in _LEAF_TYPES:
                continue
            if kind == "?":  # no signature to read (a future node type): test the value each time
                fields.append((name, -1))
            elif mark == "*":
                fields.append((name, MANY_OR_NONE if name in _NULLABLE_LISTS else MANY))
            else:
                fields.append((name, ONE))
        fields = _FIELDS[node_type] = tuple(fields)
    return fields


def add_children(node: ast.AST, out: list[ast.AST]) -> None:
    """Append ``node``'s children to ``out``, in ``ast.iter_child_nodes``'s order."""
    fields = _FIELDS.get(type(node))
    if fields is None:
        fields = child_fields(type(node))
    for name, kind in fields:
        value = getattr(node, name)
        if kind == MANY:
            out += value
        elif kind == ONE:
            if value is not None:
                out.append(value)
        elif kind == MANY_OR_NONE:
            out += [v for v in value if v is not None]
        elif isinstance(value, list):
            out += [v for v in value if isinstance(v, ast.AST)]
        elif isinstance(value, ast.AST):
            out.append(value)


# Node types that never have children (``Name``, ``Constant``, ``Pass``): not worth a call.
CHILDLESS = frozenset(
    t for t in vars(ast).values() if isinstance(t, type) and issubclass(t, ast.AST) and not child_fields(t)
)


def children(node: ast.AST) -> list[ast.AST]:
    out: list[ast.AST] = []
    add_children(node, out)
    return out


def walk(node: ast.AST) -> list[ast.AST]:
    """``node`` and every node under it, breadth first, in ``ast.walk``'s order."""
    nodes = [node]
    i = 0
    while i < len(nodes):
        if type(nodes[i]) not in CHILDLESS:
            add_children(nodes[i], nodes)
        i += 1
    return nodes


_SCOPES = frozenset({ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda})


def own_nodes(fn: ast.AST) -> list[ast.AST]:
    """The nodes of a function's body, not those of functions, classes or lambdas nested in it
    (each nested definition itself is included), depth first, the last child first."""
    out: list[ast.AST] = []
    stack = children(fn)
    while stack:
        node = stack.pop()
        out.append(node)
        if type(node) not in _SCOPES and type(node) not in CHILDLESS:
            add_children(node, stack)
    return out
