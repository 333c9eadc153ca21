"""In-place writes into tensors autograd saved (IP1xx found, IP2xx why not rewritten).

- ``codes.py``: the codes, their documentation and examples;
- ``analysis.py``: the flow-sensitive dataflow per function (values, storage links, what was saved);
- ``edits.py``: the out-of-place forms of each kind of write, as LibCST nodes;
- ``rule.py``: the rule, which decides per site (safety contract P1-P5 in DESIGN.md) and edits or reports.
"""

from __future__ import annotations

from ..base import command_getattr
from .codes import CODES, FAMILY
from .rule import InplaceRule

# The LibCST command lives in ``codemod.commands``; its old address still works.
__getattr__ = command_getattr("InplaceCommand")

__all__ = ["CODES", "FAMILY", "InplaceRule"]
