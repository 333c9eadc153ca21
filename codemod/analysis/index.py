"""One pass over a module: imports, classes with their ``self.*`` attributes, functions with the
names they bind and the in-place-looking syntax they contain, and ``nn.Sequential`` calls.

Every rule reads this shared index instead of walking the tree again. The walk dispatches on exact
node types: ``isinstance`` against LibCST classes goes through ``ABCMeta`` and costs more than
the rest of the walk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from . import torch_api
from .imports import ImportMap
from .syntax import LEAF_TYPES, children, dotted_name, is_false, is_true, keyword_arg, positional_args


@dataclass(eq=False)
class Constructor:
    """One value assigned to ``self.<attr>``: the expression and what it is."""

    node: cst.BaseExpression
    kind: str  # "module" | "parameter" | "buffer" | "tensor" | "value" (a Python number/str/bool) | "other"
    qualname: str | None = None  # torch.nn.ReLU, or a class of this module
    inplace: bool = False  # a torch.nn activation built with inplace=True
    method: str | None = None  # method where the assignment is
    # nn.Sequential whose first layer is an in-place activation: that layer writes the input.
    first_inplace: "Constructor | None" = None
    # ``m.inplace = True`` over ``self.modules()`` after construction: the statement that turns
    # this module in place (the inplace rule marks it; ``inplace`` stays what the call says).
    switched: cst.CSTNode | None = None

    @property
    def writes_input(self) -> bool:
        return self.inplace or self.switched is not None


@dataclass(eq=False)
class AttrInfo:
    name: str
    values: list[Constructor] = field(default_factory=list)
    other_uses: int = 0  # ``self.attr`` used other than called or assigned (passed on, stored ...)

    @property
    def kinds(self) -> set[str]:
        return {c.kind for c in self.values}

    def is_parameter(self) -> bool:
        return "parameter" in self.kinds

    def is_buffer(self) -> bool:
        return "buffer" in self.kinds

    def is_module(self) -> bool:
        return bool(self.values) and self.kinds <= {"module"}

    def is_python_value(self) -> bool:
        return bool(self.values) and self.kinds <= {"value"}

    def inplace_constructors(self) -> list[Constructor]:
        """Constructors whose module writes its input: in-place activations, and the first layer
        of an ``nn.Sequential`` when that layer is one."""
        return [c for c in self.values if c.writes_input] + [c.first_inplace for c in self.values if c.first_inplace]


@dataclass(eq=False)
class ClassInfo:
    node: cst.ClassDef
    name: str
    bases: list[str]
    methods: dict[str, cst.FunctionDef] = field(default_factory=dict)
    attrs: dict[str, AttrInfo] = field(default_factory=dict)
    is_module: bool = False  # subclasses torch.nn.Module (directly or via a class of this file)
    # (constructor expression, method name) for every ``self.x = ...`` / register_* seen, classified
    # once imports are known.
    _pending: list = field(default_factory=list)

    def attr(self, name: str) -> AttrInfo | None:
        return self.attrs.get(name)


@dataclass(eq=False)
class FunctionInfo:
    node: cst.FunctionDef
    name: str
    cls: ClassInfo | None  # the class it is a method of (or whose method encloses it)
    parent: "FunctionInfo | None"
    decorators: list[str]
    self_name: str | None  # first parameter of a method (usually "self")
    bound: set[str] = field(default_factory=set)  # names bound in its own scope
    declared: set[str] = field(default_factory=set)  # global / nonlocal
    writes_in_place: bool = False  # has syntax that may write a tensor in place
    self_calls: set[str] = field(default_factory=set)  # ``self.x(...)``
    name_calls: set[str] = field(default_factory=set)  # ``f(...)``

    @property
    def locals(self) -> set[str]:
        return self.bound - self.declared

    @property
    def qualname(self) -> str:
        if self.parent is not None:
            return f"{self.parent.qualname}.<locals>.{self.name}"
        return f"{self.cls.name}.{self.name}" if self.cls else self.name


_NN_MODULE_BASES = {"torch.nn.Module", "torch.nn.modules.module.Module"}
_LIGHTNING_MODULES = {
    "pytorch_lightning.LightningModule",
    "pytorch_lightning.core.LightningModule",
    "pytorch_lightning.core.module.LightningModule",
    "lightning.LightningModule",
    "lightning.pytorch.LightningModule",
    "lightning.pytorch.core.LightningModule",
}


def is_module_base(qual: str | None) -> bool:
    """``nn.Module``, any ``torch.nn`` module class (``nn.Linear``, ``nn.Sequential``), a LightningModule."""
    if qual is None:
        return False
    if qual in _NN_MODULE_BASES or qual in _LIGHTNING_MODULES:
        return True
    return qual.startswith("torch.nn.") and qual.rsplit(".", 1)[-1][:1].isupper() and "functional" not in qual


def is_layer_base(qual: str | None) -> bool:
    """A ``torch.nn`` layer class a subclass inherits ``weight``/``bias`` Parameters from."""
    return is_module_base(qual) and qual.startswith("torch.nn.") and qual.rsplit(".", 1)[-1] not in _NO_PARAMETER_BASES


_NO_PARAMETER_BASES = {"Module", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict", "Identity"}
_REGISTER = {
    "register_buffer": "buffer",
    "register_parameter": "parameter",
    "add_module": "module",
    "register_module": "module",
}
_T = type


class ModuleIndex:
    def __init__(self, module: cst.Module) -> None:
        self.module = module
        self.imports = ImportMap()
        self.classes: list[ClassInfo] = []
        self.functions: list[FunctionInfo] = []
        self.sequential_calls: list[cst.Call] = []  # calls whose callee ends in "Sequential"
        self.aliases: dict[str, str] = {}  # module-level ``Base = nn.Module``: name -> dotted value
        self._handled: set[int] = set()  # ``self.x`` nodes already seen as a call or a store
        self._walk()
        self._resolve_module_classes()
        for info in self.classes:
            for target_attr, value, method, kind in info._pending:
                attr = info.attrs.setdefault(target_attr, AttrInfo(target_attr))
                if kind is None:
                    for expr in _branches(value):
                        attr.values.append(self.classify_constructor(expr, method))
                else:
                    attr.values.append(Constructor(value, kind, method=method))
            info._pending = []

    # -- the walk -------------------------------------------------------------------------------
    def _walk(self) -> None:
        # One scope at a time (module, class body, function body); nested ones are queued.
        scopes: list[tuple[cst.CSTNode, FunctionInfo | None, ClassInfo | None]] = [(self.module, None, None)]
        imports = self.imports
        in_function = self._in_function
        while scopes:
            root, fn, cls = scopes.pop()
            stack = children(root)
            pop, extend = stack.pop, stack.extend
            while stack:
                node = pop()
                t = _T(node)
                if t is cst.FunctionDef:
                    scopes.append((node, self._function(node, fn, cls), None))
                    if fn is not None:
                        fn.bound.add(node.name.value)
                    continue
                if t is cst.ClassDef:
                    info = ClassInfo(node, node.name.value, [dotted_name(a.value) or "" for a in node.bases])
                    self.classes.append(info)
                    if _T(node.body) is cst.IndentedBlock:
                        for stmt in node.body.body:
                            if _T(stmt) is cst.FunctionDef:
                                info.methods[stmt.name.value] = stmt
                    if fn is not None:
                        fn.bound.add(node.name.value)
                    scopes.append((node, fn, info))
                    continue
                if t is cst.Lambda:
                    continue  # lambda bodies are not analysed
                if t is cst.Import or t is cst.ImportFrom:
                    imports.add(node)
                    if fn is not None and _T(node.names) is not cst.ImportStar:
                        for alias in node.names:
                            if alias.asname is not None and _T(alias.asname.name) is cst.Name:
                                fn.bound.add(alias.asname.name.value)
                            else:
                                fn.bound.add((dotted_name(alias.name) or "").split(".")[0])
                    continue
                if fn is not None:
                    if t in _FUNCTION_NODE_TYPES:
                        in_function(node, t, fn)
                elif (
                    t is cst.Assign
                    and cls is None
                    and len(node.targets) == 1
                    and _T(node.targets[0].target) is cst.Name
                ):
                    value = dotted_name(node.value) if _T(node.value) in (cst.Name, cst.Attribute) else None
                    if value is not None:
                        self.aliases[node.targets[0].target.value] = value
                elif t is cst.Call and _callee_name(node) == "Sequential":
                    self.sequential_calls.append(node)
                if t is cst.Attribute or t is cst.Arg:
                    stack.append(node.value)  # the other child is a name (``.attr``, ``keyword=``)
                elif t not in LEAF_TYPES:
                    extend(children(node))

    def _function(self, node: cst.FunctionDef, parent: FunctionInfo | None, cls: ClassInfo | None) -> FunctionInfo:
        is_method = cls is not None
        params = node.params.params
        static = any(dotted_name(_decorator_callee(d.decorator)) == "staticmethod" for d in node.decorators)
        self_name = params[0].name.value if is_method and params and not static else None
        info = FunctionInfo(
            node,
            node.name.value,
            cls if is_method else (parent.cls if parent else None),
            parent,
            [dotted_name(_decorator_callee(d.decorator)) or "" for d in node.decorators],
            self_name,
        )
        for param in all_params(node.params):
            info.bound.add(param.name.value)
        self.functions.append(info)
        return info

    def _in_function(self, node: cst.CSTNode, t: type, fn: FunctionInfo) -> None:
        bound = fn.bound
        if t is cst.Assign:
            for target in node.targets:
                tt = target.target
                _bind_target(tt, bound)
                if _T(tt) is cst.Subscript:
                    fn.writes_in_place = True
                self._self_store(fn, tt, node.value)
        elif t is cst.AugAssign:
            fn.writes_in_place = True
            _bind_target(node.target, bound)
        elif t is cst.AnnAssign:
            _bind_target(node.target, bound)
            if node.value is not None:
                self._self_store(fn, node.target, node.value)
        elif t is cst.For:
            _bind_target(node.target, bound)
        elif t is cst.WithItem:
            if node.asname is not None:
                _bind_target(node.asname.name, bound)
        elif t is cst.ExceptHandler:
            if node.name is not None:
                _bind_target(node.name.name, bound)
        elif t is cst.NamedExpr:
            _bind_target(node.target, bound)
        elif t is cst.Global or t is cst.Nonlocal:
            fn.declared |= {n.name.value for n in node.names}
        elif t is cst.MatchAs or t is cst.MatchStar:
            if node.name is not None:
                bound.add(node.name.value)
        elif t is cst.MatchMapping:
            if node.rest is not None:
                bound.add(node.rest.value)
        elif t is cst.Call:
            self._call(node, fn)
        elif t is cst.Attribute:
            value = node.value
            if (
                fn.cls is not None
                and _T(value) is cst.Name
                and value.value == fn.self_name
                and id(node) not in self._handled
            ):
                attr = fn.cls.attrs.setdefault(node.attr.value, AttrInfo(node.attr.value))
                attr.other_uses += 1

    def _self_store(self, fn: FunctionInfo, target: cst.BaseExpression, value: cst.BaseExpression) -> None:
        if fn.cls is None or fn.self_name is None:
            return
        if _T(target) is cst.Attribute and _T(target.value) is cst.Name and target.value.value == fn.self_name:
            self._handled.add(id(target))
            kind = "value" if _python_value(value, _scalar_params(fn.node)) else None
            fn.cls._pending.append((target.attr.value, value, fn.name, kind))

    def _call(self, call: cst.Call, fn: FunctionInfo) -> None:
        func = call.func
        tf = _T(func)
        if tf is cst.Attribute:
            attr = func.attr.value
            if attr.endswith("_") and not attr.startswith("__"):
                fn.writes_in_place = True
            elif attr in torch_api.FUNCTIONAL_INPLACE_ARG and len(call.args) > 1:
                fn.writes_in_place = True
            value = func.value
            if _T(value) is cst.Name:
                if value.value == fn.self_name:
                    self._handled.add(id(func))
                    fn.self_calls.add(attr)
                    kind = _REGISTER.get(attr)
                    if kind is not None and fn.cls is not None:
                        self._register(fn, call, kind)
            if attr == "Sequential":
                self.sequential_calls.append(call)
        elif tf is cst.Name:
            name = func.value
            fn.name_calls.add(name)
            if name.endswith("_") and not name.startswith("__"):
                fn.writes_in_place = True
            elif name in torch_api.FUNCTIONAL_INPLACE_ARG and len(call.args) > 1:
                fn.writes_in_place = True
            elif name == "Sequential":
                self.sequential_calls.append(call)
        for arg in call.args:
            kw = arg.keyword
            if kw is not None and (kw.value == "inplace" or kw.value == "out"):
                fn.writes_in_place = True

    def _register(self, fn: FunctionInfo, call: cst.Call, kind: str) -> None:
        args = positional_args(call)
        if not args or _T(args[0].value) is not cst.SimpleString:
            return
        name = args[0].value.evaluated_value
        if not isinstance(name, str):
            return
        value = args[1].value if len(args) > 1 else None
        if kind == "module" and value is not None:
            fn.cls._pending.append((name, value, fn.name, None))
        else:
            fn.cls._pending.append((name, value if value is not None else call, fn.name, kind))

    def qualify_base(self, base: str) -> str | None:
        """A base class name qualified through imports, or through a module-level alias
        (``Base = nn.Module``)."""
        alias = self.aliases.get(base)
        return self.imports.qualify_dotted(alias if alias is not None else base)

    # -- after the walk ---------------------------------------------------------------------------
    def _resolve_module_classes(self) -> None:
        by_name = {c.name: c for c in self.classes}
        changed = True
        while changed:
            changed = False
            for info in self.classes:
                if info.is_module:
                    continue
                for base in info.bases:
                    qual = self.qualify_base(base)
                    if is_module_base(qual) or (base in by_name and by_name[base].is_module):
                        info.is_module = True
                        changed = True
                        break

    def classify_constructor(self, expr: cst.BaseExpression, method: str | None = None) -> Constructor:
        if _T(expr) is cst.Call:
            qual = self.imports.qualify(expr.func)
            if qual in torch_api.PARAMETER_CLASSES:
                return Constructor(expr, "parameter", qual, method=method)
            if qual is not None and qual.startswith("torch.nn.") and qual.count(".") == 2 and qual[9:10].isupper():
                spec = torch_api.module_spec(qual)
                inplace = (
                    spec is not None and spec.inplace_index is not None and _inplace_flag(expr, spec.inplace_index)
                )
                ctor = Constructor(expr, "module", qual, inplace=inplace, method=method)
                if spec is not None and spec.container:
                    layers = [a.value for a in expr.args if a.keyword is None]
                    if layers and not any(a.star for a in expr.args):
                        first = self.classify_constructor(layers[0], method)
                        if first.inplace:
                            ctor.first_inplace = first
                return ctor
            name = dotted_name(expr.func)
            if name is not None and any(c.name == name and c.is_module for c in self.classes):
                return Constructor(expr, "module", name, method=method)
            if (
                qual is not None
                and qual.startswith("torch.")
                and qual.rsplit(".", 1)[-1] in torch_api.FACTORY_FUNCTIONS
            ):
                return Constructor(expr, "tensor", qual, method=method)
        return Constructor(expr, "other", method=method)

    def class_named(self, name: str) -> ClassInfo | None:
        for info in self.classes:
            if info.name == name:
                return info
        return None


def all_params(params: cst.Parameters) -> list[cst.Param]:
    out = list(params.posonly_params) + list(params.params)
    if _T(params.star_arg) is cst.Param:
        out.append(params.star_arg)
    out += list(params.kwonly_params)
    if params.star_kwarg is not None:
        out.append(params.star_kwarg)
    return out


def _bind_target(target: cst.BaseExpression, bound: set[str]) -> None:
    t = _T(target)
    if t is cst.Name:
        bound.add(target.value)
    elif t is cst.Tuple or t is cst.List:
        for element in target.elements:
            _bind_target(element.value, bound)
    elif t is cst.StarredElement:
        _bind_target(target.value, bound)


def _branches(expr: cst.BaseExpression) -> list[cst.BaseExpression]:
    """The possible values of ``a if c else b`` (recursively), else the expression itself."""
    if _T(expr) is cst.IfExp:
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


# Node types ``_in_function`` looks at (everything else is only walked through).
_FUNCTION_NODE_TYPES = frozenset(
    {
        cst.Assign,
        cst.AugAssign,
        cst.AnnAssign,
        cst.For,
        cst.WithItem,
        cst.ExceptHandler,
        cst.NamedExpr,
        cst.Global,
        cst.Nonlocal,
        cst.MatchAs,
        cst.MatchStar,
        cst.MatchMapping,
        cst.Call,
        cst.Attribute,
    }
)
_SCALAR_ANNOTATIONS = {"int", "float", "bool", "str"}
_SCALAR_BUILTINS = {"int", "float", "bool", "str", "len", "round", "abs", "min", "max", "pow"}


def _scalar_params(fn: cst.FunctionDef) -> set[str]:
    """Parameters annotated as int/float/bool/str, or with a number/str/bool default."""
    out = set()
    for param in all_params(fn.params):
        ann = param.annotation
        if ann is not None and dotted_name(ann.annotation) in _SCALAR_ANNOTATIONS:
            out.add(param.name.value)
        elif (
            param.default is not None
            and _python_value(param.default, set())
            and not (_T(param.default) is cst.Name and param.default.value == "None")
        ):
            out.add(param.name.value)
    return out


def _python_value(expr: cst.BaseExpression, scalars: set[str]) -> bool:
    """A Python number/str/bool/None: literals, arithmetic on them, ``config.x`` settings,
    scalar parameters, ``int(...)``/``len(...)``, ``math.*``."""
    t = _T(expr)
    if t in (cst.Integer, cst.Float, cst.SimpleString, cst.ConcatenatedString, cst.FormattedString):
        return True
    if t is cst.Name:
        return expr.value in ("True", "False", "None") or expr.value in scalars
    if t is cst.UnaryOperation:
        return _python_value(expr.expression, scalars)
    if t is cst.BinaryOperation:
        return _python_value(expr.left, scalars) and _python_value(expr.right, scalars)
    if t is cst.Attribute:
        root = expr
        while _T(root) is cst.Attribute:
            root = root.value
        return _T(root) is cst.Name and ("config" in root.value.lower() or root.value in ("math", "cfg"))
    if t is cst.Call:
        name = dotted_name(expr.func) or ""
        return name in _SCALAR_BUILTINS or name.startswith("math.")
    return False


def _callee_name(call: cst.Call) -> str | None:
    func = call.func
    if _T(func) is cst.Attribute:
        return func.attr.value
    if _T(func) is cst.Name:
        return func.value
    return None


def _decorator_callee(expr: cst.BaseExpression) -> cst.BaseExpression:
    return expr.func if _T(expr) is cst.Call else expr
