"""What rules produce (nodes and edits) and what reports consume (plain, picklable data)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import libcst as cst


@dataclass(eq=False)
class StatementEdit:
    """Replace one small statement by ``before + replacement`` (replacement None: keep it; an
    empty replacement deletes it, and its line if it was alone there)."""

    statement: cst.BaseSmallStatement
    before: list[cst.BaseSmallStatement] = field(default_factory=list)
    replacement: list[cst.BaseSmallStatement] | None = None
    comment_on: int = 0  # index into ``replacement`` (or the kept statement) that keeps the line's comment


@dataclass(eq=False)
class NodeEdit:
    """Replace an expression-level node (a call) by another."""

    node: cst.CSTNode
    replacement: cst.CSTNode


@dataclass(eq=False)
class InsertAfter:
    """Insert whole statements (a method, say) after a statement of the same block."""

    anchor: cst.BaseStatement
    statements: list[cst.BaseStatement]


Edit = StatementEdit | NodeEdit | InsertAfter


@dataclass(eq=False)
class Related:
    node: cst.CSTNode
    message: str


@dataclass(eq=False)
class Finding:
    """One finding of a rule, still attached to the tree."""

    code: str
    message: str
    node: cst.CSTNode
    related: list[Related] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)
    replacement_text: str | None = None  # what the fix reads like, for messages and reports

    @property
    def fixable(self) -> bool:
        return bool(self.edits)


@dataclass
class Location:
    line: int
    column: int
    end_line: int
    end_column: int


@dataclass
class RelatedLocation:
    message: str
    line: int
    column: int


@dataclass
class Result:
    """A finding as reports see it: plain data with positions."""

    path: str
    code: str
    message: str
    location: Location
    related: list[RelatedLocation] = field(default_factory=list)
    fixed: bool = False  # the rewrite was (or would be) applied
    suppressed: bool = False
    fix: str | None = None  # what the rewrite reads like

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FileResult:
    """The outcome for one file."""

    path: str
    results: list[Result] = field(default_factory=list)
    new_source: str | None = None  # set when the file changes
    old_source: str | None = None  # kept only when a diff or verification needs it
    skipped: str | None = None  # reason the file was not analysed
    parsed: bool = False
    seconds: float = 0.0
    encoding: str = "utf-8"
    write_error: str | None = None  # set when the rewrite could not be written (the reason, one line)

    @property
    def changed(self) -> bool:
        return self.new_source is not None
