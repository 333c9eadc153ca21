"""Tensors computed from a module's Parameters once, in ``__init__``.

``self.x = torch.sigmoid(self.x_raw)`` builds its graph once: the second backward raises "Trying to
backward through the graph a second time", or (ops that save nothing, ``retain_graph=True``) ``x``
silently never changes while ``x_raw`` trains; deepcopy fails; ``.to()``/``.double()`` leave it
behind. The fix measured in ``reference/autograd/exp4_init_derived.py``: delete the assignment and
add a ``@property`` of the same name that recomputes it (state_dict keys unchanged, old checkpoints
load strictly; deepcopy, pickle, ``.to()``, ``jit.script`` and ``torch.compile`` work; every
method reading ``self.x`` sees the current value).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import libcst as cst

from ...analysis import torch_api
from ...analysis.index import ClassInfo, ModuleIndex, all_params, is_layer_base
from ...analysis.syntax import (
    children,
    dotted_name,
    is_false,
    is_true,
    keyword_arg,
    positional_args,
    short_code,
    walk,
    walk_same_scope,
)
from ...context import FileContext
from ...findings import Finding, InsertAfter, StatementEdit
from ..base import Rule, RuleOptions
from .codes import CODES, FAMILY
from .edits import recomputing_property

_PARAM_FACTORIES = torch_api.PARAMETER_CLASSES
_BUFFER_FACTORIES = torch_api.BUFFER_CLASSES
_SNAPSHOT = {"detach", "detach_", "clone", "numpy", "tolist", "item", "cpu"}
# ``.float()`` / ``.cpu()`` are left out: on a float32 CPU Parameter they return the Parameter itself.
_MOVES = {"to", "cuda", "half", "double", "bfloat16"}


@dataclass
class _Derived:
    name: str
    statement: cst.BaseSmallStatement
    line: cst.SimpleStatementLine
    value: cst.BaseExpression
    params: list[str] = field(default_factory=list)  # the Parameters it depends on (for messages)
    view: bool = False  # a view of one Parameter (``self.w.t()``): backward works, .to()/deepcopy do not


class InitDerivedRule(Rule):
    family = FAMILY
    codes = CODES
    prefilter = re.compile(r"def __init__")
    needs_project = True

    def check(self, ctx: FileContext, options: RuleOptions) -> list[Finding]:
        checks = _FileChecks(ctx, options)
        out: list[Finding] = []
        for cls in ctx.index.classes:
            out += checks.findings(cls)
        return out


class _FileChecks:
    """One check per module class, run on demand: an outer module asks whether ``self.inner.g``
    is derived in the inner class before that class's turn comes."""

    def __init__(self, ctx: FileContext, options: RuleOptions) -> None:
        self.ctx = ctx
        self.options = options
        self.done: dict[int, _ClassCheck] = {}
        self.running: set[int] = set()
        self._foreign: dict[str, str] | None = None

    def check(self, cls: ClassInfo) -> "_ClassCheck | None":
        if not (cls.is_module and "__init__" in cls.methods) or id(cls) in self.running:
            return None
        if id(cls) not in self.done:
            self.running.add(id(cls))
            try:
                check = _ClassCheck(self.ctx, cls, self.options, self)
                check.findings = check.run()
                self.done[id(cls)] = check
            finally:
                self.running.discard(id(cls))
        return self.done[id(cls)]

    def findings(self, cls: ClassInfo) -> list[Finding]:
        check = self.check(cls)
        return check.findings if check is not None else []

    def derived_names(self, cls: ClassInfo) -> set[str]:
        check = self.check(cls)
        return set(check.derived) if check is not None else set()

    def foreign_stores(self) -> dict[str, str]:
        """Attributes stored through something other than ``self`` anywhere in the file
        (``agent.alpha = ...``, ``self.agent.alpha = ...``): name -> where, for messages."""
        if self._foreign is None:
            self._foreign = {}
            for node in walk(self.ctx.module):
                if isinstance(node, (cst.Assign, cst.AugAssign, cst.AnnAssign)):
                    targets = [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
                    for target in targets:
                        for t in _flatten_targets(target):
                            if (
                                isinstance(t, cst.Attribute)
                                and not (isinstance(t.value, cst.Name) and t.value.value in ("self", "cls"))
                                and t.attr.value not in self._foreign
                            ):
                                self._foreign[t.attr.value] = (
                                    f"`{short_code(t, 40)} = ...` (line {self.ctx.line(node)})"
                                )
        return self._foreign


class _ClassCheck:
    def __init__(self, ctx: FileContext, cls: ClassInfo, options: RuleOptions, checks: _FileChecks) -> None:
        self.ctx = ctx
        self.index: ModuleIndex = ctx.index
        self.cls = cls
        self.options = options
        self.checks = checks
        self.findings: list[Finding] = []
        self.lineage = _lineage(cls, self.index)  # the class and its bases defined in this file
        self.init = cls.methods["__init__"]
        params = self.init.params.params
        self.self_name = params[0].name.value if params else "self"
        self.init_args = {p.name.value for p in all_params(self.init.params)} - {self.self_name}
        self.init_locals = self._init_locals()
        self.parameters: set[str] = {n for c in self.lineage for n, a in c.attrs.items() if a.is_parameter()}
        if any(is_layer_base(self.index.qualify_base(b)) for c in self.lineage for b in c.bases):
            self.parameters |= {"weight", "bias"}  # ``class NormedLinear(nn.Linear)`` inherits them
        self.derived: dict[str, _Derived] = {}

    # ------------------------------------------------------------------ walk __init__
    def run(self) -> list[Finding]:
        findings: list[Finding] = []
        rewritable: list[_Derived] = []
        top_level = {id(s) for s in self.init.body.body} if isinstance(self.init.body, cst.IndentedBlock) else set()
        assigned_in_init: dict[str, int] = {}
        for node, _, _ in self._statements(self.init.body, grad_off=False):
            targets = (
                [t.target for t in node.targets]
                if isinstance(node, cst.Assign)
                else ([node.target] if isinstance(node, (cst.AnnAssign, cst.AugAssign)) else [])
            )
            for t in targets:
                attr = self._self_attr(t)
                if attr is not None:
                    assigned_in_init[attr] = assigned_in_init.get(attr, 0) + 1
        for node, line, grad_off in self._statements(self.init.body, grad_off=False):
            if isinstance(node, cst.Expr) and isinstance(node.value, cst.Call):
                finding = self._register_buffer(node.value, grad_off)
                if finding is not None:
                    findings.append(finding)
                continue
            if not isinstance(node, (cst.Assign, cst.AnnAssign)) or node.value is None:
                continue
            targets = [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
            if len(targets) != 1:
                continue
            name = self._self_attr(targets[0])
            if name is None:
                continue
            value = node.value
            if isinstance(value, cst.Call) and self.index.imports.qualify(value.func) in _BUFFER_FACTORIES:
                finding = self._register_buffer(value, grad_off, attr=name)
                if finding is not None:
                    findings.append(finding)
                continue
            moved = self._moved_parameter(value)
            if moved is not None:
                findings.append(self._moved_finding(node, name, moved))
                continue
            if self._is_parameter(value):
                self.parameters.add(name)
                continue
            inner = self._inline_parameter(value)
            if inner is not None and not grad_off:
                findings.append(self._inline_parameter_finding(node, name, inner))
                continue
            deps = self._depends_on(value)
            if deps and self._is_alias(value):
                self.parameters.add(name)  # ``self.w = self.lin.weight`` is the Parameter itself
                continue
            if not deps or grad_off or self._is_snapshot(value):
                continue
            derived = _Derived(name, node, line, value, sorted(deps), view=self._is_view(value))
            self.derived[name] = derived
            if name in self.parameters:
                findings.append(
                    self._report(
                        derived,
                        "ID202",
                        (
                            f"`{self.self_name}.{name}` is a Parameter: assigning a plain tensor to it raises TypeError when "
                            f"the module is built; keep the Parameter under another name (`{name}_raw`) and make `{name}` a property"
                        ),
                    )
                )
                continue
            problem = self._not_recomputable(value) or self._problem(derived, id(line) in top_level)
            if problem is None and assigned_in_init.get(name, 0) > 1:
                problem = (
                    "ID202",
                    f"`{self.self_name}.{name}` is assigned more than once in `__init__`; "
                    "a property would make the other assignment fail",
                )
            if problem is not None:
                findings.append(self._report(derived, *problem))
            else:
                rewritable.append(derived)
        findings += self._rewrite(rewritable)
        return findings

    def _statements(self, block, grad_off: bool):
        """Small statements of ``__init__`` in order, with their line and whether grad is off."""
        body = block.body if isinstance(block, cst.IndentedBlock) else [block]
        for stmt in body:
            if isinstance(stmt, (cst.SimpleStatementLine, cst.SimpleStatementSuite)):
                for small in stmt.body:
                    yield small, stmt, grad_off
            elif isinstance(stmt, cst.With):
                off = grad_off or any(self._disables_grad(item.item) for item in stmt.items)
                yield from self._statements(stmt.body, off)
            elif isinstance(stmt, (cst.If, cst.For, cst.While, cst.Try)):
                for child in _blocks(stmt):
                    yield from self._statements(child, grad_off)

    def _disables_grad(self, expr) -> bool:
        qual = self.index.imports.qualify(expr.func if isinstance(expr, cst.Call) else expr)
        args = positional_args(expr) if isinstance(expr, cst.Call) else []
        if qual in torch_api.GRAD_SETTING:
            return not (args and is_true(args[0].value))
        if qual in torch_api.GRAD_DISABLING:
            return not (args and is_false(args[0].value))
        return False

    def _init_locals(self) -> set[str]:
        names = set()
        for node in walk_same_scope(self.init.body):
            t = type(node)  # exact types: ``isinstance`` against LibCST's ABCs is slow
            if t is cst.Assign:
                for target in node.targets:
                    names |= _names(target.target)
            elif t is cst.AnnAssign or t is cst.AugAssign or t is cst.For:
                names |= _names(node.target)
            elif t is cst.WithItem and node.asname is not None:
                names |= _names(node.asname.name)
        return names

    # ------------------------------------------------------------------ classification
    def _self_attr(self, expr) -> str | None:
        if isinstance(expr, cst.Attribute) and isinstance(expr.value, cst.Name) and expr.value.value == self.self_name:
            return expr.attr.value
        return None

    def _is_parameter(self, value) -> bool:
        return isinstance(value, cst.Call) and self.index.imports.qualify(value.func) in _PARAM_FACTORIES

    def _moved_parameter(self, value) -> str | None:
        """``nn.Parameter(t).to(device)`` / ``self.w.cuda()``: the Parameter that was moved."""
        if not (
            isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) and value.func.attr.value in _MOVES
        ):
            return None
        receiver = value.func.value
        if self._is_parameter(receiver):
            return short_code(receiver, 40)
        attr = self._self_attr(receiver)
        if attr is not None and attr in self.parameters:
            return f"{self.self_name}.{attr}"
        return None

    def _inline_parameter(self, value) -> cst.Call | None:
        """``torch.exp(nn.Parameter(t))``: a Parameter created inside the expression (never registered)."""
        itself = set()  # positions whose Parameter is the assigned value: ``P(t) if c else None``, ``P(t).float()``
        stack = [value]
        while stack:
            node = stack.pop()
            itself.add(id(node))
            if isinstance(node, cst.IfExp):
                stack += [node.body, node.orelse]
            elif (
                isinstance(node, cst.Call)
                and isinstance(node.func, cst.Attribute)
                and node.func.attr.value in ("float", "cpu", "requires_grad_")
            ):
                stack.append(node.func.value)
        stack = [value]
        while stack:
            node = stack.pop()
            t = type(node)
            if t is cst.FunctionDef or t is cst.ClassDef or t is cst.Lambda:
                continue
            if t is cst.Call:
                if id(node) not in itself and self._is_parameter(node):
                    return node
                qual = self.index.imports.qualify(node.func) or ""
                if (
                    qual.startswith("torch.nn.")
                    and qual.rsplit(".", 1)[-1][:1].isupper()
                    and not self._is_parameter(node)
                ):
                    continue  # nn.ParameterList/ParameterDict (and modules) register what they are given
            stack.extend(children(node))
        return None

    def _is_view(self, value) -> bool:
        """``self.w.t()``, ``self.w.T``, ``self.w[:, 0]``, ``self.w.view(-1)``: a view of one Parameter."""
        expr = value
        while True:
            if (
                isinstance(expr, cst.Call)
                and isinstance(expr.func, cst.Attribute)
                and expr.func.attr.value in _VIEW_METHODS
            ):
                expr = expr.func.value
            elif isinstance(expr, cst.Attribute) and expr.attr.value in _VIEW_ATTRS:
                expr = expr.value
            elif isinstance(expr, cst.Subscript) and all(
                isinstance(e.slice, cst.Index)
                and isinstance(e.slice.value, (cst.Integer, cst.UnaryOperation, cst.Name))
                and (not isinstance(e.slice.value, cst.Name) or e.slice.value.value == "None")
                or isinstance(e.slice, cst.Slice)
                for e in expr.slice
            ):
                expr = expr.value
            else:
                break
        if expr is value:
            return False
        chain = dotted_name(expr) if isinstance(expr, cst.Attribute) else None
        if chain is None or not chain.startswith(self.self_name + "."):
            return False
        parts = chain.split(".")[1:]
        return (len(parts) == 1 and parts[0] in self.parameters) or (
            len(parts) == 2 and self._submodule_parameter(parts[0], parts[1])
        )

    def _not_recomputable(self, value) -> tuple[str, str] | None:
        """Random draws, in-place writes, containers, modules or other objects (ID206)."""
        kind = _CONTAINERS.get(type(value))
        if kind is not None:
            return (
                "ID206",
                f"it builds a {kind}: a property would return a new one on every access, and changes to it would be lost",
            )
        for node in walk_same_scope(value):
            if not isinstance(node, cst.Call):
                continue
            func = node.func
            qual = self.index.imports.qualify(func) or ""
            name = (
                func.attr.value
                if isinstance(func, cst.Attribute)
                else (func.value if isinstance(func, cst.Name) else "")
            )
            if (
                name in _RANDOM_METHODS
                or (name in _RANDOM_FUNCTIONS and qual.startswith("torch"))
                or qual.startswith(("numpy.random.", "random."))
            ):
                return (
                    "ID206",
                    f"`{short_code(node, 40)}` draws random numbers: a property would draw new ones on every access",
                )
            if _is_inplace_name(name):
                return (
                    "ID206",
                    f"`{short_code(node, 40)}` writes a tensor in place: a property would repeat the write on every access",
                )
            if name[:1].isupper() and not qual.startswith(("torch.distributions.", "torch.Size", "torch.tensor")):
                return "ID206", (
                    f"`{short_code(node, 40)}` builds an object (a module?): a property would build a new one on "
                    "every access, and it would no longer be registered or saved"
                )
        return None

    def _depends_on(self, value) -> set[str]:
        """The Parameters (``self.p``, ``self.sub.weight``) and derived attributes ``value`` reads."""
        deps: set[str] = set()
        for node in _tensor_valued_parts(value):
            if type(node) is not cst.Attribute:
                continue
            chain = dotted_name(node)
            if chain is None or not chain.startswith(self.self_name + "."):
                continue
            parts = chain.split(".")[1:]
            head = parts[0]
            if head in self.parameters or head in self.derived:
                deps.add(head)
            elif len(parts) >= 2 and self._submodule_parameter(head, parts[1]):
                deps.add(f"{head}.{parts[1]}")
        return deps

    def _class_attr(self, name: str):
        return next((c.attr(name) for c in self.lineage if c.attr(name) is not None), None)

    def _submodule_parameter(self, attr: str, name: str) -> bool:
        info = self._class_attr(attr)
        if info is None or not info.is_module():
            return False
        for ctor in info.values:
            cls = self.index.class_named(ctor.qualname or "")
            if cls is not None:
                lineage = _lineage(cls, self.index)
                sub = next((c.attr(name) for c in lineage if c.attr(name) is not None), None)
                if not ((sub is not None and sub.is_parameter()) or name in self.checks.derived_names(cls)):
                    return False
            elif not (name.startswith(("weight", "bias")) or name.endswith(("_weight", "_bias"))):
                return False
        return True

    def _is_snapshot(self, value) -> bool:
        """``.detach()``, ``.data``, ``.clone().detach()``...: a frozen copy on purpose."""
        for node in walk_same_scope(value):
            if isinstance(node, cst.Attribute) and node.attr.value == "data":
                return True
            if (
                isinstance(node, cst.Call)
                and isinstance(node.func, cst.Attribute)
                and node.func.attr.value in _SNAPSHOT - {"clone", "cpu"}
            ):
                return True
        return False

    def _is_alias(self, value) -> bool:
        """``self.w = self.lin.weight``: the Parameter itself, which stays current. (An alias of a
        derived attribute, ``self.y = self.x``, is derived too.)"""
        chain = dotted_name(value) if isinstance(value, cst.Attribute) else None
        if chain is None or not chain.startswith(self.self_name + "."):
            return False
        return chain.split(".")[1] not in self.derived

    def _problem(self, derived: _Derived, top_level: bool) -> tuple[str, str] | None:
        name = derived.name
        used = self._locals_used(derived.value)
        if used:
            names = ", ".join(f"`{n}`" for n in sorted(used))
            stores = "; ".join(f"`{self.self_name}.{n} = {n}`" for n in sorted(used))
            return "ID201", (
                f"it uses {names} from `__init__`, which a property cannot see: store "
                f"{'it' if len(used) == 1 else 'them'} on the module first ({stores}) and use "
                f"`{self.self_name}.{sorted(used)[0]}` in the expression"
            )
        elsewhere = {
            f"in `{c.method}`"
            for c in (self.cls.attr(name).values if self.cls.attr(name) else [])
            if c.method != "__init__"
        }
        written = self._written_elsewhere(derived)
        if written is not None:
            elsewhere.add(written)
        if elsewhere:
            where = ", ".join(sorted(elsewhere))
            return "ID202", (
                f"`{self.self_name}.{name}` is also written {where}; a property would make that write fail, or lose it"
            )
        clash = self._name_taken(name)
        if clash is not None:
            return "ID203", clash
        if not top_level:
            return "ID205", "it is assigned inside a branch or loop of `__init__`, so it does not always exist"
        return None

    def _locals_used(self, value) -> set[str]:
        """Bare names of ``__init__`` locals and arguments read by ``value`` (not ``self.dim``'s
        ``dim``, not the keyword of ``dim=-1``)."""
        scope = self.init_locals | self.init_args
        return {n for n in _bare_names(value) if n in scope}

    def _written_elsewhere(self, derived: _Derived) -> str | None:
        """Where ``self.x`` is written besides its assignment: updated (``self.x *= 0.5``), written
        into (``self.x[0] = 1``, ``self.x.clamp_(...)``), deleted, ``setattr``-ed, or stored
        through another object (``agent.x = ...``, in this file or another file of the run)."""
        name = derived.name
        for method_name, method in self.cls.methods.items():
            for node in walk_same_scope(method):
                if node is derived.statement:
                    continue
                if self._writes_attr(node, name, own=method_name != "__init__"):
                    return f"in `{method_name}`"
        where = self.checks.foreign_stores().get(name)
        if where is not None:
            return f"by {where}"
        facts = self.options.project
        if facts is not None and name in facts.foreign_stores:
            return f"in another file ({facts.foreign_stores[name]})"
        where = facts.subclass_store(self.cls.name, name) if facts is not None else None
        if where is not None:
            return f"by a subclass in another file ({where})"
        return None

    def _writes_attr(self, node, name: str, own: bool) -> bool:
        """Whether ``node`` writes ``self.<name>`` (``own``: plain re-assignments count too; in
        ``__init__`` those are counted separately)."""
        if isinstance(node, cst.Del):
            targets = (
                [e.value for e in node.target.elements]
                if isinstance(node.target, (cst.Tuple, cst.List))
                else [node.target]
            )
            return any(self._self_attr(t) == name for t in targets)
        if isinstance(node, (cst.AugAssign, cst.Assign, cst.AnnAssign)):
            targets = [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
            for t in targets:
                if isinstance(t, cst.Subscript) and self._root_attr(t) == name:
                    return True  # self.x[0] = 1
                if isinstance(node, cst.AugAssign) and own and self._self_attr(t) == name:
                    return True
            return False
        if isinstance(node, cst.Call):
            func = node.func
            if isinstance(func, cst.Name) and func.value in ("setattr", "delattr"):
                args = positional_args(node)
                return (
                    len(args) >= 2
                    and isinstance(args[1].value, cst.SimpleString)
                    and args[1].value.evaluated_value == name
                )
            if isinstance(func, cst.Attribute) and _is_inplace_name(func.attr.value):
                return self._root_attr(func.value) == name  # self.x.clamp_(...), self.x.data.zero_()
        return False

    def _root_attr(self, expr) -> str | None:
        """``x`` for ``self.x``, ``self.x[0]``, ``self.x.data``, ``self.x[0].T``."""
        while isinstance(expr, (cst.Subscript, cst.Attribute)):
            attr = self._self_attr(expr)
            if attr is not None:
                return attr
            expr = expr.value
        return None

    def _name_taken(self, name: str) -> str | None:
        if name in self.cls.methods:
            return f"the class already defines `{name}`"
        for stmt in self.cls.node.body.body if isinstance(self.cls.node.body, cst.IndentedBlock) else ():
            if isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    targets = (
                        [t.target for t in small.targets]
                        if isinstance(small, cst.Assign)
                        else ([small.target] if isinstance(small, cst.AnnAssign) else [])
                    )
                    if any(isinstance(t, cst.Name) and t.value == name for t in targets):
                        return f"the class already has a class attribute `{name}`"
        for sub in self.index.classes:
            if sub is not self.cls and any(c is self.cls for c in _lineage(sub, self.index)):
                if name in sub.methods:
                    return f"the subclass `{sub.name}` defines `{name}`"
                attr = sub.attr(name)
                if attr is not None and attr.values:
                    return f"the subclass `{sub.name}` assigns `self.{name}`"
        return None

    # ------------------------------------------------------------------ findings
    def _what(self, derived: _Derived) -> str:
        deps = ", ".join(f"`{self.self_name}.{d}`" for d in derived.params)
        return f"`{self.self_name}.{derived.name}` is computed from {deps} once, in `__init__`"

    def _report(self, derived: _Derived, code: str, reason: str) -> Finding:
        message = f"{self._what(derived)}: {_bug(derived)}; not rewritten: {reason}"
        return Finding(code, message, derived.statement)

    def _register_buffer(self, call: cst.Call, grad_off: bool, attr: str | None = None) -> Finding | None:
        """``self.register_buffer("w", f(self.p))``, or ``self.w = nn.Buffer(f(self.p))`` (``attr``)."""
        func = call.func
        args = positional_args(call)
        if attr is not None:
            if not args or grad_off:
                return None
            value, name = args[0].value, attr
        else:
            if not (
                isinstance(func, cst.Attribute)
                and func.attr.value == "register_buffer"
                and isinstance(func.value, cst.Name)
                and func.value.value == self.self_name
            ):
                return None
            if len(args) < 2 or grad_off:
                return None
            value = args[1].value
            name = args[0].value.evaluated_value if isinstance(args[0].value, cst.SimpleString) else "?"
        deps = self._depends_on(value)
        if not deps or self._is_snapshot(value):
            return None
        deps_text = ", ".join(f"`{self.self_name}.{d}`" for d in sorted(deps))
        persistent = keyword_arg(call, "persistent")
        if persistent is not None and is_false(persistent.value):
            message = (
                f"buffer `{name}` is computed from {deps_text} once, in `__init__`: {_SHORT_BUG}; not rewritten: "
                f"a property would change what `named_buffers()` and `.to()` see. Drop the `register_buffer` "
                f"call and compute `{name}` in `forward` (or a property)"
            )
        else:
            message = (
                f"buffer `{name}` is computed from {deps_text} once, in `__init__`: {_SHORT_BUG}, and its stale "
                f"value is saved in checkpoints; not rewritten: a property would remove `{name}` from the "
                "state_dict. Compute it in `forward` (or a property) and drop the buffer, converting old checkpoints"
            )
        return Finding("ID102", message, call)

    def _inline_parameter_finding(self, node, name: str, inner: cst.Call) -> Finding:
        kind = _CONTAINERS.get(type(node.value))
        if kind in ("list", "dict"):
            holder = "nn.ParameterList" if kind == "list" else "nn.ParameterDict"
            message = (
                f"`{self.self_name}.{name}` holds Parameters in a plain {kind}: they are never registered, so they "
                f"are never trained, saved or moved by `model.to()`; wrap the {kind} in `{holder}(...)`"
            )
            return Finding("ID204", message, node)
        message = (
            f"`{self.self_name}.{name}` is computed from `{short_code(inner, 40)}`, a Parameter created inside the "
            "expression: it is never registered, so it is never trained or saved; register it under its own name "
            f"(`{self.self_name}.{name}_raw = {short_code(inner, 30)}`) and compute `{name}` from it in a property"
        )
        return Finding("ID204", message, node)

    def _moved_finding(self, node, name: str, moved: str) -> Finding:
        message = (
            f"`{self.self_name}.{name}` is `{moved}` moved with `.{node.value.func.attr.value}()` in `__init__`: when that "
            "moves it (another device or dtype), the result is a plain tensor, not a registered Parameter, so it is never "
            "trained, not saved in the state_dict and not moved by `model.to()`; create the Parameter from a tensor "
            "already on the target device and dtype instead"
        )
        return Finding("ID204", message, node)

    def _rewrite(self, items: list[_Derived]) -> list[Finding]:
        if not items:
            return []
        findings: list[Finding] = []
        for derived in items:
            # Each finding carries its own property, so a suppressed one leaves its attribute alone;
            # properties anchored on ``__init__`` land after it in this order.
            prop = recomputing_property(derived.name, self.self_name, derived.value, derived.statement, derived.line)
            edits = [StatementEdit(derived.statement, replacement=[]), InsertAfter(self.init, [prop])]
            text = f"@property def {derived.name}({self.self_name}): return {short_code(derived.value, 60)}"
            message = (
                f"{self._what(derived)}: {_bug(derived)}; rewrite: a `@property` `{derived.name}` that recomputes it"
            )
            findings.append(Finding("ID101", message, derived.statement, [], edits, text))
        return findings


_SHORT_BUG = "its graph is built once, so the second backward fails or the value never trains"
_VIEW_BUG = (
    "it is a view, so training works, but `.to()`, `.cuda()` and `.double()` leave it on the old storage "
    "and deepcopy fails"
)


def _bug(derived: _Derived) -> str:
    return _VIEW_BUG if derived.view else _SHORT_BUG


# ``torch.zeros_like(self.w)`` reads only the shape, dtype and device of its argument.
_LIKE_FACTORIES = torch_api.LIKE_FACTORIES
_METADATA_ATTRS = torch_api.METADATA_ATTRIBUTES
_METADATA_METHODS = torch_api.METADATA_METHODS


_NOT_TENSOR_VALUED = frozenset({cst.Comparison, cst.FunctionDef, cst.ClassDef, cst.Lambda})


def _tensor_valued_parts(value):
    """Nodes of ``value`` whose tensors can flow into its result: comparisons, ``not`` and the
    conditions of ``and``/``or``/``if`` give Python bools (``self.p is None``), and shapes, dtypes
    and devices (``self.w.shape[1]``, ``self.w.size(0)``, ``len(self.w)``) are metadata: none is a
    tensor computed from the Parameter."""
    stack = [value]
    while stack:
        node = stack.pop()
        t = type(node)  # exact types: ``isinstance`` against LibCST's ABCs is slow
        if t in _NOT_TENSOR_VALUED:
            continue
        if t is cst.UnaryOperation and type(node.operator) is cst.Not:
            continue
        if t is cst.Attribute and node.attr.value in _METADATA_ATTRS:
            continue
        if t is cst.Call:
            func = type(node.func)
            if (
                (func is cst.Attribute and node.func.attr.value in _METADATA_METHODS)
                or (func is cst.Name and node.func.value in ("len", "isinstance", "id", "type"))
                or ((func is cst.Name or func is cst.Attribute) and _callee_name(node.func) in _LIKE_FACTORIES)
            ):
                continue
        yield node
        if t is cst.IfExp:
            stack += [node.body, node.orelse]
        elif t is cst.BooleanOperation:
            stack.append(node.right)  # ``a and b`` / ``a or b``: only ``b`` is a plausible tensor result
        else:
            stack.extend(reversed(children(node)))


_RANDOM_FUNCTIONS = torch_api.RANDOM_FUNCTIONS
_RANDOM_METHODS = torch_api.RNG_INPLACE
_VIEW_METHODS = torch_api.VIEW_METHODS
_VIEW_ATTRS = torch_api.VIEW_ATTRIBUTES
_CONTAINERS = {
    cst.Dict: "dict",
    cst.List: "list",
    cst.Set: "set",
    cst.DictComp: "dict",
    cst.ListComp: "list",
    cst.SetComp: "set",
    cst.GeneratorExp: "generator",
}


def _is_inplace_name(name: str) -> bool:
    return name.endswith("_") and not name.endswith("__")


def _flatten_targets(target):
    if isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            yield from _flatten_targets(element.value)
    elif isinstance(target, cst.StarredElement):
        yield from _flatten_targets(target.value)
    else:
        yield target


def _callee_name(func) -> str:
    return func.value if isinstance(func, cst.Name) else func.attr.value


def _bare_names(value) -> set[str]:
    """Names read as variables in ``value``: not attribute names, not keywords of calls, not the
    names a lambda or comprehension binds itself."""
    out: set[str] = set()
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.Name):
            out.add(node.value)
        elif isinstance(node, cst.Attribute):
            stack.append(node.value)
        elif isinstance(node, cst.Arg):
            stack.append(node.value)
        elif isinstance(node, (cst.FunctionDef, cst.ClassDef)):
            continue
        elif isinstance(node, cst.Lambda):
            inner = _bare_names(node.body) - {p.name.value for p in all_params(node.params)}
            out |= inner
        else:
            stack.extend(children(node))
    return out


def _lineage(cls: ClassInfo, index: ModuleIndex) -> list[ClassInfo]:
    """``cls`` and its base classes defined in the same file, nearest first."""
    out: list[ClassInfo] = []
    stack = [cls]
    while stack:
        cur = stack.pop(0)
        if any(c is cur for c in out):
            continue
        out.append(cur)
        for base in cur.bases:
            found = index.class_named(base.rsplit(".", 1)[-1])
            if found is not None and found is not cur:
                stack.append(found)
    return out


def _blocks(stmt):
    if isinstance(stmt, cst.If):
        yield stmt.body
        if stmt.orelse is not None:
            yield from (_blocks(stmt.orelse) if isinstance(stmt.orelse, cst.If) else [stmt.orelse.body])
    elif isinstance(stmt, (cst.For, cst.While)):
        yield stmt.body
        if stmt.orelse is not None:
            yield stmt.orelse.body
    elif isinstance(stmt, cst.Try):
        yield stmt.body
        for h in stmt.handlers:
            yield h.body
        if stmt.orelse is not None:
            yield stmt.orelse.body
        if stmt.finalbody is not None:
            yield stmt.finalbody.body


def _names(target) -> set[str]:
    if isinstance(target, cst.Name):
        return {target.value}
    if isinstance(target, (cst.Tuple, cst.List)):
        out = set()
        for e in target.elements:
            out |= _names(e.value)
        return out
    return set()
