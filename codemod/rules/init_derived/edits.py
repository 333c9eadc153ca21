"""The init-derived family's edit: the ``@property`` that replaces a value computed once in
``__init__`` (the assignment itself is deleted by a ``StatementEdit``)."""

from __future__ import annotations

import libcst as cst


def recomputing_property(
    name: str,
    self_name: str,
    value: cst.BaseExpression,
    statement: cst.Assign | cst.AnnAssign,
    line: cst.SimpleStatementLine,
) -> cst.FunctionDef:
    """``@property def name(self): return value``, keeping the assignment's comments above it,
    its annotation as the return type and its trailing comment."""
    comments = [empty for empty in line.leading_lines if empty.comment is not None]
    returns = cst.Annotation(statement.annotation.annotation) if isinstance(statement, cst.AnnAssign) else None
    trailing = line.trailing_whitespace if len(line.body) == 1 else cst.TrailingWhitespace()
    body = cst.IndentedBlock(
        body=[cst.SimpleStatementLine(body=[cst.Return(value=value)], trailing_whitespace=trailing)]
    )
    return cst.FunctionDef(
        name=cst.Name(name),
        params=cst.Parameters(params=[cst.Param(cst.Name(self_name))]),
        body=body,
        decorators=[cst.Decorator(decorator=cst.Name("property"))],
        returns=returns,
        leading_lines=[cst.EmptyLine(indent=False), *comments],
    )
