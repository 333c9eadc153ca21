"""Per-file state shared by all rules: the parsed module, the index, positions (lazily)."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import libcst as cst

from .analysis.index import ModuleIndex
from .positions import PositionIndex

if TYPE_CHECKING:
    from .ast_to_cst import MirrorPositions


class FileContext:
    def __init__(
        self, path: str, source: str, module: cst.Module, positions: PositionIndex | MirrorPositions | None = None
    ) -> None:
        self.path = path
        self.source = source
        self.module = module
        if positions is not None:  # a tree built from Python's parser (``ast_to_cst``) has its own
            self.__dict__["positions"] = positions

    @cached_property
    def index(self) -> ModuleIndex:
        return ModuleIndex(self.module)

    @cached_property
    def positions(self) -> PositionIndex:
        return PositionIndex(self.module)

    def line(self, node: cst.CSTNode) -> int:
        return self.positions.line(node)

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)
