"""Resolve names to qualified torch names from a module's imports, without LibCST metadata."""

from __future__ import annotations

import libcst as cst

from .syntax import dotted_name


def _dotted(node: cst.BaseExpression) -> str:
    name = dotted_name(node)
    return name or ""


class ImportMap:
    """Local name -> qualified name, from ``import`` statements anywhere in the module.

    ``import torch.nn.functional as F`` maps ``F`` to ``torch.nn.functional``; ``import torch``
    maps ``torch``; ``from torch import nn`` maps ``nn`` to ``torch.nn``. Imports inside functions
    are included (module-wide), which is right for the usual ``import torch`` at any level.
    """

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def add(self, node: cst.Import | cst.ImportFrom) -> None:
        if isinstance(node, cst.Import):
            for alias in node.names:
                full = _dotted(alias.name)
                if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                    self.names[alias.asname.name.value] = full
                else:
                    head = full.split(".")[0]
                    self.names.setdefault(head, head)
        else:
            if node.relative or node.module is None:
                return
            module = _dotted(node.module)
            if isinstance(node.names, cst.ImportStar):
                return
            for alias in node.names:
                name = _dotted(alias.name)
                local = name
                if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                    local = alias.asname.name.value
                self.names[local] = f"{module}.{name}"

    def qualify(self, expr: cst.BaseExpression) -> str | None:
        """Qualified name of a Name/Attribute chain whose head is imported, else None."""
        name = dotted_name(expr)
        if name is None:
            return None
        return self.qualify_dotted(name)

    def qualify_dotted(self, name: str) -> str | None:
        head, _, rest = name.partition(".")
        base = self.names.get(head)
        if base is None:
            return None
        full = f"{base}.{rest}" if rest else base
        return _canonical(full)


_CANONICAL_PREFIXES = (
    ("torch.nn.modules.activation.", "torch.nn."),
    ("torch.nn.modules.linear.", "torch.nn."),
    ("torch.nn.modules.conv.", "torch.nn."),
    ("torch.nn.modules.container.", "torch.nn."),
    ("torch.nn.modules.dropout.", "torch.nn."),
    ("torch.nn.modules.", "torch.nn."),
    ("torch.functional.", "torch."),
    ("torch._C._nn.", "torch.nn.functional."),
    ("torch._C._VariableFunctions.", "torch."),
)


def _canonical(name: str) -> str:
    for prefix, replacement in _CANONICAL_PREFIXES:
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            if prefix == "torch.nn.modules." and "." in rest:
                rest = rest.rsplit(".", 1)[1]
            return replacement + rest
    return name
