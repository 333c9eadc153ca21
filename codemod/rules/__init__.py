"""Rule registry: one module per rule family."""

from __future__ import annotations

from .base import Rule, RuleCode, RuleOptions
from .init_derived import InitDerivedRule
from .inplace import InplaceRule

RULES: tuple[type[Rule], ...] = (InplaceRule, InitDerivedRule)


def all_codes() -> list[RuleCode]:
    return [code for rule in RULES for code in rule.codes]


def families() -> list[str]:
    return [rule.family for rule in RULES]


__all__ = ["RULES", "Rule", "RuleCode", "RuleOptions", "all_codes", "families"]
