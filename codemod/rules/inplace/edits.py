"""Building the replacement syntax for in-place rewrites (pure LibCST node construction)."""

from __future__ import annotations

from typing import Literal

import libcst as cst

from ...analysis import torch_api
from ...analysis.syntax import children

# How one in-place site is rewritten (the rule's decision, which the analysis reads back):
# ``x = x op y`` (aug), the out-of-place method or function (method, function; ``-dtype``: cast
# back to the low-precision dtype), a clone first (clone, clone-into), a new name (rename, rebind),
# the write removed (drop), ``out=`` removed (out), or rewritten with the head of its chain (chain).
Form = Literal[
    "aug",
    "aug-dtype",
    "method",
    "method-dtype",
    "function",
    "clone",
    "clone-into",
    "rename",
    "rebind",
    "drop",
    "out",
    "chain",
]

# Operator precedence, lowest to highest (Python reference, "Operator precedence").
_BINARY_PRECEDENCE = {
    cst.BitOr: 6,
    cst.BitXor: 7,
    cst.BitAnd: 8,
    cst.LeftShift: 9,
    cst.RightShift: 9,
    cst.Add: 10,
    cst.Subtract: 10,
    cst.Multiply: 11,
    cst.Divide: 11,
    cst.FloorDivide: 11,
    cst.Modulo: 11,
    cst.MatrixMultiply: 11,
    cst.Power: 13,
}
AUG_TO_BINARY = {
    cst.AddAssign: cst.Add,
    cst.SubtractAssign: cst.Subtract,
    cst.MultiplyAssign: cst.Multiply,
    cst.DivideAssign: cst.Divide,
    cst.FloorDivideAssign: cst.FloorDivide,
    cst.ModuloAssign: cst.Modulo,
    cst.PowerAssign: cst.Power,
    cst.BitAndAssign: cst.BitAnd,
    cst.BitOrAssign: cst.BitOr,
    cst.BitXorAssign: cst.BitXor,
    cst.LeftShiftAssign: cst.LeftShift,
    cst.RightShiftAssign: cst.RightShift,
}


def precedence(expr: cst.BaseExpression) -> int:
    if getattr(expr, "lpar", None):
        return 100  # already parenthesized
    if isinstance(expr, (cst.Lambda,)):
        return 0
    if isinstance(expr, cst.IfExp):
        return 1
    if isinstance(expr, cst.BooleanOperation):
        return 2 if isinstance(expr.operator, cst.Or) else 3
    if isinstance(expr, cst.UnaryOperation):
        return 4 if isinstance(expr.operator, cst.Not) else 12
    if isinstance(expr, cst.Comparison):
        return 5
    if isinstance(expr, cst.BinaryOperation):
        return _BINARY_PRECEDENCE[type(expr.operator)]
    if isinstance(expr, cst.Await):
        return 14
    if isinstance(expr, (cst.NamedExpr, cst.Yield, cst.StarredElement)):
        return -1
    return 15  # atoms and primaries: names, calls, attributes, subscripts, literals, displays


def parenthesize(expr: cst.BaseExpression) -> cst.BaseExpression:
    return expr.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def right_operand(expr: cst.BaseExpression, operator: cst.BaseBinaryOp) -> cst.BaseExpression:
    """``expr`` as the right operand of ``operator``: parenthesized unless it binds tighter.

    Same precedence needs parentheses too (``x -= a - b`` is ``x = x - (a - b)``).
    """
    if precedence(expr) <= _BINARY_PRECEDENCE[type(operator)]:
        return parenthesize(expr)
    return expr


def assign(name: str, value: cst.BaseExpression, like: cst.BaseSmallStatement | None = None) -> cst.Assign:
    target = cst.AssignTarget(target=cst.Name(name))
    if isinstance(like, cst.AugAssign):
        target = target.with_changes(
            whitespace_before_equal=like.operator.whitespace_before,
            whitespace_after_equal=like.operator.whitespace_after,
        )
    return cst.Assign(targets=[target], value=value)


def to_dtype_of(value: cst.BaseExpression, name: str) -> cst.Call:
    """``(value).to(name.dtype)``: keep the dtype the in-place op kept."""
    if precedence(value) < 15:
        value = parenthesize(value)
    return cst.Call(
        func=cst.Attribute(value=value, attr=cst.Name("to")),
        args=[cst.Arg(cst.Attribute(value=cst.Name(name), attr=cst.Name("dtype")))],
    )


def augassign_replacement(stmt: cst.AugAssign, keep_dtype: bool) -> cst.Assign:
    """``x op= y`` -> ``x = x op y`` (``x = (x op y).to(x.dtype)`` with ``keep_dtype``)."""
    assert isinstance(stmt.target, cst.Name)
    op = AUG_TO_BINARY[type(stmt.operator)]()
    value: cst.BaseExpression = cst.BinaryOperation(
        left=stmt.target.with_changes(lpar=(), rpar=()), operator=op, right=right_operand(stmt.value, op)
    )
    if keep_dtype:
        value = to_dtype_of(value, stmt.target.value)
    return assign(stmt.target.value, value, like=stmt)


def inplace_chain(call: cst.Call) -> list[cst.Call]:
    """``x.mul_(a).add_(b)`` -> [add_ call, mul_ call]: the in-place calls with out-of-place twins,
    outermost first, as long as each is the receiver of the previous."""
    chain = []
    node: cst.BaseExpression = call
    while (
        isinstance(node, cst.Call)
        and isinstance(node.func, cst.Attribute)
        and node.func.attr.value in torch_api.inplace_methods()
        and node.func.attr.value not in torch_api.METADATA_INPLACE
    ):
        chain.append(node)
        node = node.func.value
    return chain


def chain_base(call: cst.Call) -> cst.BaseExpression:
    chain = inplace_chain(call)
    return chain[-1].func.value if chain else call


def out_of_place_chain(call: cst.Call) -> cst.Call:
    """Rename every in-place method of the chain to its out-of-place twin."""
    chain = inplace_chain(call)
    twins = torch_api.inplace_methods()

    def rebuild(node: cst.BaseExpression) -> cst.BaseExpression:
        if isinstance(node, cst.Call) and any(node is c for c in chain):
            func = node.func
            return node.with_changes(
                func=func.with_changes(
                    value=rebuild(func.value), attr=func.attr.with_changes(value=twins[func.attr.value])
                )
            )
        return node

    return rebuild(call)  # type: ignore[return-value]


def renamed_function(call: cst.Call, new_name: str) -> cst.Call:
    func = call.func
    if isinstance(func, cst.Attribute):
        return call.with_changes(func=func.with_changes(attr=func.attr.with_changes(value=new_name)))
    assert isinstance(func, cst.Name)
    return call.with_changes(func=func.with_changes(value=new_name))


def without_arg(call: cst.Call, keyword: str | None, position: int | None) -> cst.Call:
    """The call without its ``keyword=`` argument, or without the positional at ``position``
    (replaced by ``False`` when later arguments follow it)."""
    args = list(call.args)
    index = None
    for i, arg in enumerate(args):
        if keyword is not None and arg.keyword is not None and arg.keyword.value == keyword:
            index = i
            break
    if index is None and position is not None:
        positional = [i for i, a in enumerate(args) if a.keyword is None and not a.star]
        if position < len(positional):
            index = positional[position]
            if index != len(args) - 1:
                args[index] = args[index].with_changes(value=cst.Name("False"))
                return call.with_changes(args=args)
    if index is None:
        return call
    removed = args.pop(index)
    if index == len(args) and args:
        args[-1] = args[-1].with_changes(
            comma=removed.comma if _is_trailing_comma(removed) else cst.MaybeSentinel.DEFAULT
        )
    return call.with_changes(args=args)


def _is_trailing_comma(arg: cst.Arg) -> bool:
    return isinstance(arg.comma, cst.Comma) and "\n" in cst.Module(body=[]).code_for_node(arg.comma)


def clone_of(name: str) -> cst.Assign:
    """``name = name.clone()``"""
    return assign(name, cst.Call(func=cst.Attribute(value=cst.Name(name), attr=cst.Name("clone"))))


def names_read(node: cst.CSTNode, name: str) -> int:
    """How many times the bare name ``name`` occurs in ``node`` (``obj.name`` attributes do not count)."""
    count = 0
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, cst.Name):
            count += cur.value == name
            continue
        if isinstance(cur, cst.Attribute):
            stack.append(cur.value)
            continue
        stack.extend(children(cur))
    return count


def rename_base(target: cst.BaseExpression, old: str, new: str) -> cst.BaseExpression | None:
    """``x[i]`` / ``x.view(-1)[i]`` with its base name ``old`` renamed to ``new``; None if the
    base is not ``old``."""
    if isinstance(target, cst.Name):
        return target.with_changes(value=new) if target.value == old else None
    if isinstance(target, (cst.Subscript, cst.Attribute)):
        inner = rename_base(target.value, old, new)
        return None if inner is None else target.with_changes(value=inner)
    if isinstance(target, cst.Call) and isinstance(target.func, cst.Attribute):
        inner = rename_base(target.func, old, new)
        return None if inner is None else target.with_changes(func=inner)
    return None


def clone_into(stmt: cst.Assign | cst.AugAssign, root: str, temp: str) -> list[cst.BaseSmallStatement] | None:
    """``x[i] = f(x)`` → ``temp = x.clone(); temp[i] = f(x); x = temp``: the right-hand side still
    reads the original (whose saved views stay untouched), the write goes into the copy."""
    if isinstance(stmt, cst.Assign):
        if len(stmt.targets) != 1:
            return None
        target = rename_base(stmt.targets[0].target, root, temp)
        if target is None:
            return None
        written = stmt.with_changes(targets=[stmt.targets[0].with_changes(target=target)])
    else:
        target = rename_base(stmt.target, root, temp)
        if target is None:
            return None
        written = stmt.with_changes(target=target)
    copy = assign(temp, cst.Call(func=cst.Attribute(value=cst.Name(root), attr=cst.Name("clone"))))
    return [copy, written.with_changes(semicolon=cst.MaybeSentinel.DEFAULT), assign(root, cst.Name(temp))]


def statement_code(stmts: list[cst.BaseSmallStatement]) -> str:
    module = cst.Module(body=[])
    return "; ".join(module.code_for_node(s).strip().rstrip(";").strip() for s in stmts)
