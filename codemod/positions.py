"""Line/column of LibCST nodes, computed only for files that have findings.

LibCST's ``PositionProvider`` costs about twice a parse (it tracks the position of every token
for every node).  Here one code generation pass records, per node, the index of its first and
last token; lines and columns are then computed from token lengths on demand.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst
from libcst._nodes.internal import CodegenState


@dataclass(frozen=True)
class Span:
    line: int  # 1-based
    column: int  # 1-based, in characters
    end_line: int
    end_column: int  # 1-based, exclusive


class _RecordingState(CodegenState):
    def __init__(self, module: cst.Module) -> None:
        super().__init__(default_indent=module.default_indent, default_newline=module.default_newline)
        self.spans: dict[int, list[int]] = {}

    def before_codegen(self, node: cst.CSTNode) -> None:
        self.spans[id(node)] = [len(self.tokens), -1]

    def after_codegen(self, node: cst.CSTNode) -> None:
        entry = self.spans.get(id(node))
        if entry is not None:
            entry[1] = len(self.tokens)


class PositionIndex:
    def __init__(self, module: cst.Module) -> None:
        state = _RecordingState(module)
        module._codegen(state)
        self._tokens = state.tokens
        self._spans = state.spans
        self._starts: list[tuple[int, int]] | None = None  # per token: (line, column) where it starts

    def _token_starts(self) -> list[tuple[int, int]]:
        if self._starts is None:
            starts = []
            line, col = 1, 0
            for tok in self._tokens:
                starts.append((line, col))
                newlines = tok.count("\n")
                if newlines:
                    line += newlines
                    col = len(tok) - tok.rfind("\n") - 1
                else:
                    col += len(tok)
            starts.append((line, col))
            self._starts = starts
        return self._starts

    def span(self, node: cst.CSTNode) -> Span | None:
        entry = self._spans.get(id(node))
        if entry is None:
            return None
        first, last = entry
        starts = self._token_starts()
        tokens = self._tokens
        # Skip leading whitespace-only tokens (indentation, blank lines).
        while first < last and not tokens[first].strip():
            first += 1
        while last > first and not tokens[last - 1].strip():
            last -= 1
        line, col = starts[first] if first < len(starts) else starts[-1]
        if first < len(tokens):
            lead = len(tokens[first]) - len(tokens[first].lstrip(" \t"))
            col += lead
        end_line, end_col = starts[last] if last < len(starts) else starts[-1]
        if last > first:
            tail = tokens[last - 1]
            trailing = len(tail) - len(tail.rstrip(" \t\n"))
            if trailing and "\n" not in tail.rstrip(" \t"):
                end_col -= trailing
        return Span(line, col + 1, end_line, end_col + 1)

    def line(self, node: cst.CSTNode) -> int:
        span = self.span(node)
        return span.line if span else 0
