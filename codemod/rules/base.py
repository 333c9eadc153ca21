"""The rule interface: codes with their documentation, a cheap text pre-filter, and ``check``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar, Mapping

from ..context import FileContext
from ..findings import Finding
from ..program import Program
from ..project import ProjectFacts


@dataclass(frozen=True)
class Example:
    before: str
    after: str | None = None  # None: reported, not rewritten
    mode: str = "hazards"


@dataclass(frozen=True)
class RuleCode:
    """One rule code: what it finds, why it matters, what the fix is, and examples."""

    code: str
    name: str
    summary: str  # one line
    why: str
    fix: str  # "rewritten" | "reported"
    examples: tuple[Example, ...] = ()
    family: str = ""


@dataclass(frozen=True)
class RuleOptions:
    mode: str = "hazards"  # "hazards" | "all"
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


_commands: dict[type[Rule], type] = {}


def command_for(rule: type[Rule], name: str | None = None):
    """A ``libcst.codemod.CodemodCommand`` that runs ``rule`` (and applies its edits), so each
    family also works as ``python -m libcst.tool codemod -x codemod.rules.<family>.<Class> PATH``.

    One class per rule, named ``name`` in the rule's own module: LibCST pickles the command into
    its worker processes (``-j N``, or more than a few files), and pickle finds a class by its
    module and qualified name, which then resolve (through the module's ``__getattr__``) to this
    very class."""
    command = _commands.get(rule)
    if command is None:
        command = _commands[rule] = _build_command(rule, name or f"{rule.__name__}Command")
    return command


def _build_command(rule: type[Rule], name: str):
    from libcst.codemod import CodemodCommand

    class _Command(CodemodCommand):
        DESCRIPTION = f"torch-codemod {rule.family}: " + "; ".join(c.summary for c in rule.codes if c.fix == "rewritten")

        def __init__(self, context, mode: str = "hazards") -> None:
            super().__init__(context)
            self.mode = mode

        @staticmethod
        def add_args(arg_parser) -> None:
            arg_parser.add_argument("--mode", choices=("hazards", "all"), default="hazards",
                                    help="hazards (default) or all safe in-place ops in differentiable code")

        def transform_module_impl(self, tree):
            from ..engine import rewrite_module

            codes = frozenset(c.code for c in rule.codes)
            new, results = rewrite_module(tree, tree.code, self.context.filename or "<stdin>", [rule()], codes, self.mode)
            for res in results:
                if not res.fixed and not res.suppressed:
                    self.warn(f"{res.location.line}:{res.location.column}: {res.code} {res.message}")
            return new

    _Command.__name__ = _Command.__qualname__ = name
    _Command.__module__ = rule.__module__
    return _Command


def command_getattr(rule: type[Rule], name: str):
    """A module ``__getattr__`` that builds ``name`` (the rule's LibCST command) on first use:
    importing ``libcst.codemod`` costs about 0.2 s that the CLI does not need."""

    def __getattr__(attr: str):
        if attr != name:
            raise AttributeError(attr)
        return command_for(rule, name)

    return __getattr__
