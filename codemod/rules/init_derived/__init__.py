"""Tensors derived from Parameters in ``__init__`` (ID1xx found, ID2xx why not rewritten).

- ``codes.py``: the codes, their documentation and examples;
- ``rule.py``: the rule, which reads each module class's ``__init__`` and decides, per value derived
  from a Parameter, whether a ``@property`` that recomputes it can replace it, or why not;
- ``edits.py``: that ``@property``.
"""

from __future__ import annotations

from ..base import command_getattr
from .codes import CODES, FAMILY
from .rule import InitDerivedRule

# The LibCST command lives in ``codemod.commands``; its old address still works.
__getattr__ = command_getattr("InitDerivedCommand")

__all__ = ["CODES", "FAMILY", "InitDerivedRule"]
