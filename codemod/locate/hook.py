"""Start the recorder once the program has imported torch (and never import torch first).

A meta-path finder watches for the top-level ``torch`` import; its loader runs torch's own and then
starts :mod:`codemod.locate.recorder` in the thread that imported torch (the program's main thread,
where its forward and backward run). Processes that never import torch pay nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from typing import Any


class _AfterTorch(importlib.abc.Loader):
    """Wraps torch's loader: execute torch, then start the recorder."""

    def __init__(self, loader: Any):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self._loader  # torch's own loader from now on (resources, reloads)
        from . import recorder

        recorder.start_from_environment()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _TorchImportWatch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None:
            spec.loader = _AfterTorch(spec.loader)
        return spec


def install() -> None:
    """Called from the injected ``sitecustomize``."""
    if "torch" in sys.modules:  # imported already (a .pth of the environment): start now
        from . import recorder

        recorder.start_from_environment()
    elif not any(isinstance(f, _TorchImportWatch) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchImportWatch())
