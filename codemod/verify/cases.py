"""Smoke cases for the built-in harness, and where they come from.

A repository names a function with ``[tool.codemod.smoke] cases = "module_or_path:function"``. The
function returns an iterable of cases; each case is a :class:`SmokeCase` or, so that a repository
need not import torch-codemod, a dict or tuple with the same fields::

    def cases():
        return [
            {"name": "forecaster", "module": lambda: Forecaster(3), "inputs": lambda: torch.randn(4, 24, 3)},
            ("with_projection", lambda: WithInputProjection(3), lambda: (torch.randn(4, 24, 3),)),
        ]

``inputs`` returns one tensor, a tuple of positional arguments, or a dict of keyword arguments;
``loss`` (optional) maps the module's output to a scalar. Without a config the harness discovers
cases: ``nn.Module`` subclasses in the rewritten files that construct without arguments and whose
input shape can be read off their first layer.

This module runs in the child process (it imports the repository's code); the parent only passes
strings.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable


class CaseError(Exception):
    """The smoke cases could not be loaded; the message says why."""


@dataclass(frozen=True)
class SmokeCase:
    name: str
    module: Callable[[], Any]
    inputs: Callable[[], Any]
    loss: Callable[[Any], Any] | None = None


def load_cases(spec: str, root: Path) -> list[SmokeCase]:
    """Load ``module_or_path:function`` (a path is relative to ``root``) and call the function."""
    target, _, func_name = spec.rpartition(":")
    if not target or not func_name:
        raise CaseError(f"smoke.cases {spec!r} must look like 'module_or_path:function'")
    module = _import_target(target, root)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise CaseError(f"smoke.cases: {target} has no function {func_name!r}")
    try:
        raw = func()
    except Exception as exc:
        raise CaseError(f"smoke.cases: {spec} raised {type(exc).__name__}: {exc}") from exc
    cases = [_as_case(item, i) for i, item in enumerate(_iterable(raw, spec))]
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise CaseError(
            f"smoke.cases: {spec} returned duplicate case names: {sorted({n for n in names if names.count(n) > 1})}"
        )
    if not cases:
        raise CaseError(f"smoke.cases: {spec} returned no cases")
    return cases


def _import_target(target: str, root: Path):
    if target.endswith(".py") or "/" in target:
        path = (root / target).resolve()
        if not path.is_file():
            raise CaseError(f"smoke.cases: no file {target} in the repository")
        return import_path(path, root)
    try:
        return importlib.import_module(target)
    except Exception as exc:
        raise CaseError(f"smoke.cases: cannot import {target}: {type(exc).__name__}: {exc}") from exc


def import_path(path: Path, root: Path):
    """Import a file of the repository under its dotted name where it has one (so relative
    imports work), else under a private name."""
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    dotted = ".".join(parts)
    if dotted and all(p.isidentifier() for p in parts) and _is_package_path(path.parent, root, len(parts) - 1):
        try:
            return importlib.import_module(dotted)
        except Exception as exc:
            raise CaseError(f"cannot import {rel.as_posix()}.py: {type(exc).__name__}: {exc}") from exc
    name = "_codemod_smoke_" + "_".join(p if p.isidentifier() else "_" for p in parts)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CaseError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise CaseError(f"cannot import {rel.as_posix()}.py: {type(exc).__name__}: {exc}") from exc
    return module


def _is_package_path(directory: Path, root: Path, depth: int) -> bool:
    # Every directory between root and the file is a package (or a namespace package dir).
    for _ in range(depth):
        if directory == root:
            return False
        directory = directory.parent
    return directory == root


def _iterable(raw: Any, spec: str) -> Iterable[Any]:
    if isinstance(raw, dict) and "module" not in raw:
        return [dict(name=k, **v) if isinstance(v, dict) else (k, *v) for k, v in raw.items()]
    if isinstance(raw, (dict, SmokeCase)):
        return [raw]
    try:
        return list(raw)
    except TypeError:
        raise CaseError(f"smoke.cases: {spec} must return a list of cases, not {type(raw).__name__}") from None


def _as_case(item: Any, index: int) -> SmokeCase:
    if isinstance(item, SmokeCase):
        return item
    if isinstance(item, dict):
        unknown = set(item) - {"name", "module", "inputs", "loss"}
        if unknown:
            raise CaseError(f"smoke case {index}: unknown keys {sorted(unknown)} (known: name, module, inputs, loss)")
        fields = item
    elif isinstance(item, (tuple, list)) and 3 <= len(item) <= 4:
        fields = dict(zip(("name", "module", "inputs", "loss"), item))
    else:
        raise CaseError(
            f"smoke case {index}: expected a dict (name, module, inputs, loss) or a tuple, not {type(item).__name__}"
        )
    name = fields.get("name") or f"case{index}"
    for key in ("module", "inputs"):
        if not callable(fields.get(key)):
            raise CaseError(f"smoke case {name!r}: {key!r} must be a function with no arguments")
    if fields.get("loss") is not None and not callable(fields["loss"]):
        raise CaseError(f"smoke case {name!r}: 'loss' must be a function of the output")
    return SmokeCase(str(name), fields["module"], fields["inputs"], fields.get("loss"))


# -- discovery (no config) -----------------------------------------------------------------------


def discover_cases(files: list[Path], root: Path) -> tuple[list[SmokeCase], list[str]]:
    """Modules defined in ``files`` that construct without arguments and whose input can be read
    off their first layer. Returns the cases and, for the verdict, why other classes were left out."""
    import torch.nn as nn

    cases: list[SmokeCase] = []
    notes: list[str] = []
    for path in files:
        try:
            module = import_path(path, root)
        except CaseError as exc:
            notes.append(str(exc))
            continue
        rel = path.relative_to(root).as_posix()
        for name, cls in vars(module).items():
            if not (inspect.isclass(cls) and issubclass(cls, nn.Module) and cls.__module__ == module.__name__):
                continue
            label = f"{rel}:{name}"
            if not _constructs_without_arguments(cls):
                notes.append(f"{label}: its constructor needs arguments")
                continue
            try:
                instance = cls()
            except Exception as exc:
                notes.append(f"{label}: {name}() raised {type(exc).__name__}: {exc}")
                continue
            make_inputs = _infer_inputs(instance)
            if make_inputs is None:
                notes.append(
                    f"{label}: cannot infer its input (no Linear, Conv or Embedding layer to read a shape from)"
                )
                continue
            try:
                instance(*make_inputs())
            except Exception as exc:
                notes.append(f"{label}: forward on the inferred input raised {type(exc).__name__}: {exc}")
                continue
            cases.append(SmokeCase(label, cls, make_inputs))
    return cases, notes


def _constructs_without_arguments(cls: type) -> bool:
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return False
    params = list(sig.parameters.values())[1:]
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)


def _infer_inputs(instance: Any) -> Callable[[], tuple] | None:
    import torch
    import torch.nn as nn

    for layer in instance.modules():
        if isinstance(layer, nn.Linear):
            n = layer.in_features
            return lambda: (torch.randn(2, 8, n),)
        if isinstance(layer, nn.Conv1d):
            c = layer.in_channels
            return lambda: (torch.randn(2, c, 32),)
        if isinstance(layer, nn.Conv2d):
            c = layer.in_channels
            return lambda: (torch.randn(2, c, 16, 16),)
        if isinstance(layer, nn.Embedding):
            v = layer.num_embeddings
            return lambda: (torch.randint(0, v, (2, 8)),)
    return None
