"""Apply rule edits to a module, touching only the statements that change.

The transformer enters only nodes on the path from the module to an edited node, so applying a
handful of edits costs a few microseconds per statement instead of LibCST's full-tree rebuild.
Edits that overlap an edit already taken are returned as deferred; the engine runs the rules
again on the result, so the output is a fixpoint.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import libcst as cst

from .analysis.syntax import children
from .findings import Edit, InsertAfter, NodeEdit, StatementEdit


def parent_map(module: cst.Module) -> dict[int, cst.CSTNode]:
    parents: dict[int, cst.CSTNode] = {}
    stack: list[cst.CSTNode] = [module]
    while stack:
        node = stack.pop()
        for child in _all_children(node):
            parents[id(child)] = node
            stack.append(child)
    return parents


def _all_children(node: cst.CSTNode) -> Iterable[cst.CSTNode]:
    # Statements must be reachable through their SimpleStatementLine; semantic children suffice.
    return children(node)


class _Applier(cst.CSTTransformer):
    def __init__(
        self,
        ancestors: set[int],
        statements: dict[int, StatementEdit],
        nodes: dict[int, NodeEdit],
        inserts: dict[int, list[cst.BaseStatement]],
    ) -> None:
        super().__init__()
        self.ancestors = ancestors
        self.statements = statements
        self.nodes = nodes
        self.inserts = inserts

    def on_visit(self, node: cst.CSTNode) -> bool:
        return id(node) in self.ancestors

    def on_leave(self, original: cst.CSTNode, updated: cst.CSTNode):
        edit = self.nodes.get(id(original))
        if edit is not None:
            return edit.replacement
        if isinstance(original, (cst.SimpleStatementLine, cst.SimpleStatementSuite)):
            return self._statement_line(original, updated)
        inserted = self.inserts.get(id(original))
        if inserted:
            # Blank lines that closed the anchor's block now close the last inserted statement.
            last = inserted[-1]
            body = getattr(updated, "body", None)
            if (
                isinstance(body, cst.IndentedBlock)
                and body.footer
                and isinstance(getattr(last, "body", None), cst.IndentedBlock)
            ):
                # Comments there (``# end of __init__``) stay with the anchor's block.
                keep = max((i + 1 for i, line in enumerate(body.footer) if line.comment is not None), default=0)
                last = last.with_changes(body=last.body.with_changes(footer=body.footer[keep:]))
                updated = updated.with_changes(body=body.with_changes(footer=body.footer[:keep]))
                inserted = [*inserted[:-1], last]
            return cst.FlattenSentinel([updated, *inserted])
        return updated

    def _statement_line(self, original, updated):
        if not any(id(s) in self.statements for s in original.body):
            return updated
        new_body: list[cst.BaseSmallStatement] = []
        comment_owner = None
        for orig_small, small in zip(original.body, updated.body):
            edit = self.statements.get(id(orig_small))
            if edit is None:
                new_body.append(small)
                continue
            replacement = edit.replacement if edit.replacement is not None else [small]
            produced = list(edit.before) + list(replacement)
            if orig_small is original.body[-1]:
                comment_owner = len(new_body) + len(edit.before) + edit.comment_on
            new_body.extend(produced)
        if not new_body:
            if isinstance(original, cst.SimpleStatementSuite):
                return updated.with_changes(body=[cst.Pass()])
            return cst.RemovalSentinel.REMOVE
        new_body = _fix_semicolons(new_body, original.body[-1])
        if isinstance(original, cst.SimpleStatementSuite) or len(original.body) > 1:
            return updated.with_changes(body=new_body)
        # One statement on its own line became several: one line each; the first keeps the blank
        # lines and comments above, ``comment_owner`` keeps the trailing comment.
        lines = []
        for i, small in enumerate(new_body):
            lines.append(
                cst.SimpleStatementLine(
                    body=[small],
                    leading_lines=updated.leading_lines if i == 0 else (),
                    trailing_whitespace=updated.trailing_whitespace if i == comment_owner else cst.TrailingWhitespace(),
                )
            )
        return cst.FlattenSentinel(lines) if len(lines) > 1 else lines[0]


def _fix_semicolons(body: list[cst.BaseSmallStatement], original_last: cst.BaseSmallStatement):
    out = []
    for i, small in enumerate(body):
        last = i == len(body) - 1
        if last:
            small = small.with_changes(
                semicolon=original_last.semicolon if hasattr(original_last, "semicolon") else cst.MaybeSentinel.DEFAULT
            )
        elif not isinstance(getattr(small, "semicolon", cst.MaybeSentinel.DEFAULT), cst.Semicolon):
            small = small.with_changes(semicolon=cst.MaybeSentinel.DEFAULT)
        out.append(small)
    return out


def apply_edits(module: cst.Module, edits: Sequence[Edit]) -> tuple[cst.Module, list[Edit]]:
    """Apply ``edits``; return the new module and the edits deferred because they overlap one
    already taken (a replaced statement or call contains, or lies inside, the other's target)."""
    if not edits:
        return module, []
    parents = parent_map(module)

    def chain(node: cst.CSTNode) -> list[cst.CSTNode]:
        out = []
        cur = parents.get(id(node))
        while cur is not None:
            out.append(cur)
            cur = parents.get(id(cur))
        return out

    statements: dict[int, StatementEdit] = {}
    nodes: dict[int, NodeEdit] = {}
    inserts: dict[int, list[cst.BaseStatement]] = {}
    claimed: list[tuple[cst.CSTNode, set[int]]] = []  # replaced targets and their ancestors
    deferred: list[Edit] = []
    ancestors: set[int] = set()
    for edit in edits:
        if isinstance(edit, InsertAfter):
            up = chain(edit.anchor)
            if not up:
                deferred.append(edit)
                continue
            inserts.setdefault(id(edit.anchor), []).extend(edit.statements)
            ancestors.update(id(u) for u in up)
            ancestors.add(id(edit.anchor))
            continue
        target = edit.statement if isinstance(edit, StatementEdit) else edit.node
        up = chain(target)
        if not up:
            deferred.append(edit)
            continue
        up_ids = {id(u) for u in up}
        if (
            isinstance(edit, NodeEdit)
            and id(target) in nodes
            and nodes[id(target)].replacement.deep_equals(edit.replacement)
        ):
            continue  # the same edit again (one module constructor, several findings)
        replaces = isinstance(edit, NodeEdit) or edit.replacement is not None
        if replaces and any(
            other is target or id(other) in up_ids or id(target) in other_up for other, other_up in claimed
        ):
            deferred.append(edit)
            continue
        if isinstance(edit, NodeEdit):
            nodes[id(target)] = edit
        else:
            existing = statements.get(id(target))
            if existing is None:
                statements[id(target)] = StatementEdit(target, list(edit.before), edit.replacement, edit.comment_on)
            else:
                for stmt in edit.before:
                    if not any(stmt.deep_equals(s) for s in existing.before):
                        existing.before.append(stmt)
                if edit.replacement is not None:
                    existing.replacement, existing.comment_on = edit.replacement, edit.comment_on
        if replaces:
            claimed.append((target, up_ids))
        ancestors |= up_ids
        ancestors.add(id(target))
    new = module.visit(_Applier(ancestors, statements, nodes, inserts))
    return new, deferred
