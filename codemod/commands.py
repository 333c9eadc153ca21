"""The rule families as LibCST codemod commands, above the engine and the rules.

``python -m libcst.tool codemod -x codemod.commands.InplaceCommand PATH`` (and
``InitDerivedCommand``) runs one family through the engine, as ``codemod apply`` does for one
file. The adapter imports the engine and the rules; nothing below imports it back (the old
addresses ``codemod.rules.inplace.InplaceCommand`` and ``codemod.rules.init_derived.
InitDerivedCommand`` resolve here by name, on first use). Importing this module imports
``libcst.codemod`` (about 0.2 s), which the CLI never needs.

The classes are defined here at module level: LibCST pickles the command into its worker
processes (``-j N``, or more than a few files), and pickle finds a class by its module and
qualified name."""

from __future__ import annotations

from typing import ClassVar

from libcst.codemod import CodemodCommand

from .config import MODES, Mode
from .engine import rewrite_module
from .rules import Rule
from .rules.init_derived import InitDerivedRule
from .rules.inplace import InplaceRule


def _description(rule: type[Rule]) -> str:
    return f"torch-codemod {rule.family}: " + "; ".join(c.summary for c in rule.codes if c.fix == "rewritten")


class RuleCommand(CodemodCommand):
    """Runs ``rule`` on one module and applies its edits; reported findings become warnings."""

    rule: ClassVar[type[Rule]]

    def __init__(self, context, mode: Mode = "hazards") -> None:
        super().__init__(context)
        self.mode = mode

    @staticmethod
    def add_args(arg_parser) -> None:
        arg_parser.add_argument(
            "--mode",
            choices=MODES,
            default="hazards",
            help="hazards (default) or all safe in-place ops in differentiable code",
        )

    def transform_module_impl(self, tree):
        rule = self.rule
        codes = frozenset(c.code for c in rule.codes)
        new, results = rewrite_module(tree, tree.code, self.context.filename or "<stdin>", [rule()], codes, self.mode)
        for res in results:
            if not res.fixed and not res.suppressed:
                self.warn(f"{res.location.line}:{res.location.column}: {res.code} {res.message}")
        return new


class InplaceCommand(RuleCommand):
    DESCRIPTION = _description(InplaceRule)
    rule = InplaceRule


class InitDerivedCommand(RuleCommand):
    DESCRIPTION = _description(InitDerivedRule)
    rule = InitDerivedRule


COMMANDS: dict[str, type[RuleCommand]] = {"InplaceCommand": InplaceCommand, "InitDerivedCommand": InitDerivedCommand}
