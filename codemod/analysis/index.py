"""One pass over a module: imports, classes with their ``self.*`` attributes, and functions.

Every rule reads this shared index instead of walking the tree again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from . import torch_api
from .imports import ImportMap
from .syntax import dotted_name, is_false, is_true, keyword_arg, positional_args, walk_same_scope


@dataclass(eq=False)
class Constructor:
    """One value assigned to ``self.<attr>``: the expression and what it is."""

    node: cst.BaseExpression
    kind: str  # "module" | "parameter" | "buffer" | "tensor" | "other"
    qualname: str | None = None  # torch.nn.ReLU, or a class of this module
    inplace: bool = False  # a torch.nn activation built with inplace=True
    method: str | None = None  # method where the assignment is


@dataclass(eq=False)
class AttrInfo:
    name: str
    values: list[Constructor] = field(default_factory=list)

    @property
    def kinds(self) -> set[str]:
        return {c.kind for c in self.values}

    def is_parameter(self) -> bool:
        return "parameter" in self.kinds

    def is_buffer(self) -> bool:
        return "buffer" in self.kinds

    def is_module(self) -> bool:
        return bool(self.values) and self.kinds <= {"module"}

    def inplace_constructors(self) -> list[Constructor]:
        return [c for c in self.values if c.inplace]


@dataclass(eq=False)
class ClassInfo:
    node: cst.ClassDef
    name: str
    bases: list[str]
    methods: dict[str, cst.FunctionDef] = field(default_factory=dict)
    attrs: dict[str, AttrInfo] = field(default_factory=dict)
    is_module: bool = False  # subclasses torch.nn.Module (directly or via a class of this file)

    def attr(self, name: str) -> AttrInfo | None:
        return self.attrs.get(name)


@dataclass(eq=False)
class FunctionInfo:
    node: cst.FunctionDef
    name: str
    cls: ClassInfo | None
    parent: "FunctionInfo | None"
    decorators: list[str]
    self_name: str | None  # first parameter of a method (usually "self")

    @property
    def qualname(self) -> str:
        prefix = f"{self.cls.name}." if self.cls else ""
        if self.parent is not None:
            prefix = f"{self.parent.qualname}.<locals>."
        return prefix + self.name


_NN_MODULE_BASES = {"torch.nn.Module", "torch.nn.modules.module.Module"}


class ModuleIndex:
    def __init__(self, module: cst.Module) -> None:
        self.module = module
        self.imports = ImportMap()
        self.classes: list[ClassInfo] = []
        self.functions: list[FunctionInfo] = []
        self._collect(module, cls=None, parent=None)
        self._resolve_module_classes()
        for info in self.classes:
            self._collect_attrs(info)

    # -- collection -------------------------------------------------------------------------
    def _collect(self, node: cst.CSTNode, cls: ClassInfo | None, parent: FunctionInfo | None) -> None:
        for child in walk_same_scope(node):
            if child is node:
                continue
            if isinstance(child, (cst.Import, cst.ImportFrom)):
                self.imports.add(child)
            elif isinstance(child, cst.ClassDef):
                info = ClassInfo(child, child.name.value, [dotted_name(a.value) or "" for a in child.bases])
                self.classes.append(info)
                for stmt in child.body.body if isinstance(child.body, cst.IndentedBlock) else ():
                    if isinstance(stmt, cst.FunctionDef):
                        info.methods[stmt.name.value] = stmt
                self._collect(child, cls=info, parent=parent)
            elif isinstance(child, cst.FunctionDef):
                is_method = cls is not None and child in cls.methods.values()
                params = child.params.params
                self_name = params[0].name.value if is_method and params and not _is_static(child) else None
                fn = FunctionInfo(
                    child,
                    child.name.value,
                    cls if is_method else (parent.cls if parent else None),
                    parent,
                    [dotted_name(_decorator_callee(d.decorator)) or "" for d in child.decorators],
                    self_name,
                )
                self.functions.append(fn)
                self._collect(child, cls=cls if is_method else None, parent=fn)

    def _resolve_module_classes(self) -> None:
        by_name = {c.name: c for c in self.classes}
        changed = True
        while changed:
            changed = False
            for info in self.classes:
                if info.is_module:
                    continue
                for base in info.bases:
                    qual = self.qualify_name(base)
                    if qual in _NN_MODULE_BASES or (base in by_name and by_name[base].is_module):
                        info.is_module = True
                        changed = True
                        break

    def qualify_name(self, dotted: str) -> str | None:
        head, _, rest = dotted.partition(".")
        base = self.imports.names.get(head)
        if base is None:
            return None
        return self.imports.qualify(cst.parse_expression(dotted)) if rest else base

    def _collect_attrs(self, info: ClassInfo) -> None:
        for method_name, method in info.methods.items():
            params = method.params.params
            if not params:
                continue
            self_name = params[0].name.value
            for node in walk_same_scope(method):
                if isinstance(node, cst.Assign):
                    for target in node.targets:
                        self._record_target(info, target.target, node.value, self_name, method_name)
                elif isinstance(node, cst.AnnAssign) and node.value is not None:
                    self._record_target(info, node.target, node.value, self_name, method_name)
                elif isinstance(node, cst.Call):
                    self._record_register(info, node, self_name, method_name)

    def _record_target(self, info, target, value, self_name, method) -> None:
        if (
            isinstance(target, cst.Attribute)
            and isinstance(target.value, cst.Name)
            and target.value.value == self_name
        ):
            attr = info.attrs.setdefault(target.attr.value, AttrInfo(target.attr.value))
            for expr in _branches(value):
                attr.values.append(self.classify_constructor(expr, method))

    def _record_register(self, info, call, self_name, method) -> None:
        func = call.func
        if not (isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == self_name):
            return
        kind = {"register_buffer": "buffer", "register_parameter": "parameter", "add_module": "module", "register_module": "module"}.get(func.attr.value)
        args = positional_args(call)
        if kind is None or not args or not isinstance(args[0].value, cst.SimpleString):
            return
        name = args[0].value.evaluated_value
        if not isinstance(name, str):
            return
        attr = info.attrs.setdefault(name, AttrInfo(name))
        value = args[1].value if len(args) > 1 else None
        if kind == "module" and value is not None:
            for expr in _branches(value):
                attr.values.append(self.classify_constructor(expr, method))
        else:
            attr.values.append(Constructor(value if value is not None else call, kind, method=method))

    def classify_constructor(self, expr: cst.BaseExpression, method: str | None = None) -> Constructor:
        if isinstance(expr, cst.Call):
            qual = self.imports.qualify(expr.func)
            if qual in ("torch.nn.Parameter", "torch.nn.parameter.Parameter", "torch.Tensor.Parameter"):
                return Constructor(expr, "parameter", qual, method=method)
            if qual is not None and qual.startswith("torch.nn.") and qual.count(".") == 2:
                spec = torch_api.module_spec(qual)
                inplace = False
                if spec is not None and spec.inplace_index is not None:
                    inplace = _inplace_flag(expr, spec.inplace_index)
                if qual[len("torch.nn."):][:1].isupper():
                    return Constructor(expr, "module", qual, inplace=inplace, method=method)
            name = dotted_name(expr.func)
            if name is not None and any(c.name == name and c.is_module for c in self.classes):
                return Constructor(expr, "module", name, method=method)
            if qual is not None and (qual.startswith("torch.") and qual.rsplit(".", 1)[-1] in torch_api.FACTORY_FUNCTIONS):
                return Constructor(expr, "tensor", qual, method=method)
        return Constructor(expr, "other", method=method)

    # -- queries ------------------------------------------------------------------------------
    def class_named(self, name: str) -> ClassInfo | None:
        for info in self.classes:
            if info.name == name:
                return info
        return None

    def function_for(self, node: cst.FunctionDef) -> FunctionInfo | None:
        for fn in self.functions:
            if fn.node is node:
                return fn
        return None


def _branches(expr: cst.BaseExpression) -> list[cst.BaseExpression]:
    """The possible values of ``a if c else b`` (recursively), else the expression itself."""
    if isinstance(expr, cst.IfExp):
        return _branches(expr.body) + _branches(expr.orelse)
    return [expr]


def _inplace_flag(call: cst.Call, index: int) -> bool:
    kw = keyword_arg(call, "inplace")
    if kw is not None:
        return is_true(kw.value)
    pos = positional_args(call)
    if len(pos) > index:
        value = pos[index].value
        return is_true(value) and not is_false(value)
    return False


def _decorator_callee(expr: cst.BaseExpression) -> cst.BaseExpression:
    return expr.func if isinstance(expr, cst.Call) else expr


def _is_static(fn: cst.FunctionDef) -> bool:
    return any(dotted_name(_decorator_callee(d.decorator)) == "staticmethod" for d in fn.decorators)
