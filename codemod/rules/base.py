"""The rule interface: codes with their documentation, a cheap text pre-filter, and ``check``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Mapping

from ..config import Mode
from ..context import FileContext
from ..findings import Finding
from ..program import Program
from ..project import ProjectFacts


# What a code's findings get: a rewrite, or a report of why not.
Fix = Literal["rewritten", "reported"]


@dataclass(frozen=True)
class Example:
    before: str
    after: str | None = None  # None: reported, not rewritten
    mode: Mode = "hazards"


@dataclass(frozen=True)
class RuleCode:
    """One rule code: what it finds, why it matters, what the fix is, and examples."""

    code: str
    name: str
    summary: str  # one line
    why: str
    fix: Fix
    examples: tuple[Example, ...] = ()
    family: str = ""


@dataclass(frozen=True)
class RuleOptions:
    mode: Mode = "hazards"
    # Lines (1-based) where the runtime locator saw an in-place write into a saved tensor.
    confirmed_lines: frozenset[int] = field(default_factory=frozenset)
    # ``# codemod: ignore[...]`` comments: line -> codes ({"*"}: all). A suppressed site is
    # treated as not rewritten when deciding the others.
    suppressions: Mapping[int, frozenset[str]] = field(default_factory=dict)
    # What the whole run knows (attributes stored from other files); None: this file alone.
    project: "ProjectFacts | None" = None
    # Summaries of every function of the run, resolved across files; None: this file alone.
    program: "Program | None" = None

    def suppressed(self, lines: range, code: str) -> bool:
        from ..suppression import is_suppressed

        return bool(self.suppressions) and is_suppressed(self.suppressions, lines, code)


class Rule:
    family: ClassVar[str]
    codes: ClassVar[tuple[RuleCode, ...]]
    needs_project: ClassVar[bool] = False  # reads RuleOptions.project (facts from every file of the run)
    # A file that does not match cannot hold a finding of this rule (checked before parsing).
    prefilter: ClassVar[re.Pattern[str]]

    def check(self, ctx: FileContext, options: RuleOptions) -> list[Finding]:  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def code(cls, code: str) -> RuleCode:
        for c in cls.codes:
            if c.code == code:
                return c
        raise KeyError(code)


def command_getattr(name: str):
    """A module ``__getattr__`` that keeps an old address of a LibCST command working
    (``codemod.rules.inplace.InplaceCommand``): it imports ``codemod.commands``, which sits above
    the engine, only when ``name`` is asked for, so the rules never import the engine."""

    def __getattr__(attr: str):
        if attr != name:
            raise AttributeError(f"module has no attribute {attr!r}")
        from .. import commands

        return commands.COMMANDS[name]

    return __getattr__
