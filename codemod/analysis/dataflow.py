"""Flow-sensitive analysis of one function: which tensors in-place ops overwrite, what saved them,
and whether an out-of-place rewrite would change what any other reader sees.

The function is interpreted abstractly over its syntax (if/for/while/try/with/match; loops run to
a fixpoint).  The state maps each local name to the set of abstract values that may reach it, plus
three path-sensitive sets:

* ``saved``: values that some op may have saved for backward on the way here (and which op);
* ``escaped``: values stored where this function cannot see later reads (``self.x = v``,
  ``lst.append(v)`` on an argument, ``yield v``);
* ``stale``: values that an in-place site wrote, paired with the site.  If a name bound to such a
  value is read later, rewriting that site out-of-place would change what the read sees.

Values that share storage are linked: a view's ``bases`` are what it views; a container's
``bases`` are its elements; an element taken out of a container has the container as base.
"Everything that shares memory with x" is the closure over those links.

Rewrite decisions feed back into the analysis: once ``x /= s`` is rewritten to ``x = x / s``,
``x`` names a fresh tensor; if it is not rewritten, ``x`` still names the overwritten one.  The
caller (the rule) passes the decisions in and re-runs until they are stable.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import libcst as cst

from . import torch_api
from .index import ClassInfo, FunctionInfo, ModuleIndex
from .syntax import call_display, children, dotted_name, is_true, keyword_arg, positional_args, short_code, walk_same_scope


class Kind(enum.Enum):
    FRESH = "fresh"  # new storage: op result, module call, factory, literal
    ALIAS = "alias"  # shares storage with its bases: view, slice, .detach(), element of a container
    CONTAINER = "container"  # tuple/list/dict built here; ``bases`` are the elements it holds
    PARAM = "param"  # a function argument: the caller holds it too
    EXTERNAL = "external"  # module state (self.x), globals, closure variables, .grad
    MUTATED = "mutated"  # the value after the in-place site ``site``


class Value:
    """An abstract value, created once per syntax node and role (so loops converge)."""

    __slots__ = (
        "kind", "node", "label", "bases", "tensor", "immutable", "site", "data_alias",
        "low_precision", "external", "elements", "tuple_kind",
    )

    def __init__(self, kind: Kind, node: cst.CSTNode | None, label: str, *, tensor: bool | None = None,
                 immutable: bool = False, external: str | None = None) -> None:
        self.kind = kind
        self.node = node
        self.label = label
        self.bases: set[Value] = set()
        self.tensor = tensor  # True: a tensor; False: not a tensor; None: unknown
        self.immutable = immutable  # a Python number/str/tuple/None: ``x op= y`` just rebinds
        self.site: Site | None = None
        self.data_alias = False  # reached through ``.data`` (no shared version counter)
        self.low_precision = False  # known float16/bfloat16
        self.external = external  # what it is, for EXTERNAL values
        self.elements: list[frozenset[Value]] | None = None  # per-position values of a tuple/list display
        self.tuple_kind: str | None = None  # "views" (x.chunk) | "fresh" (x.topk) | "call" (opaque result)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<{self.kind.value} {self.label}>"


@dataclass(frozen=True, eq=False)
class SaveEvent:
    node: cst.CSTNode  # the call or operator that saved the tensor
    op: str  # how to show it: ``torch.var(...)``, ``x * y``
    what: str  # "input" | "output" | "opaque"


@dataclass(frozen=True, eq=False)
class EscapeEvent:
    node: cst.CSTNode
    where: str  # "stored in `self.cache`", "yielded to the caller"


class SiteKind(enum.Enum):
    AUG = "aug"  # x op= y
    INDEX = "index"  # x[i] = v, x[i] op= v
    METHOD = "method"  # x.op_(...)
    FUNCTION = "function"  # torch.op_(x), nn.init.*_(x)
    ACTIVATION = "activation"  # F.act(x, inplace=True)
    MODULE = "module"  # self.act(x) where self.act = nn.Act(inplace=True)
    OUT = "out"  # torch.op(..., out=x)


@dataclass(eq=False)
class Reason:
    """Why a site cannot be rewritten automatically: a safety property P1-P5, or the code's shape."""

    prop: str  # "P1".."P5" | "form"
    text: str
    node: cst.CSTNode | None = None  # where the alias/argument/state comes from (for its line)


@dataclass(eq=False)
class Site:
    """An in-place write found by the analysis."""

    key: tuple
    kind: SiteKind
    node: cst.CSTNode  # AugAssign / Assign / Call: what the rule rewrites
    statement: cst.BaseSmallStatement | None  # enclosing small statement (None: in a compound header)
    receiver: cst.BaseExpression | None  # the expression written (x, x[i], x.view(-1), self.buf)
    op: str  # "/=", "div_", "F.relu(..., inplace=True)" ... for messages
    method: str | None = None  # in-place method/function name
    statement_role: str | None = None  # the call is the whole value of: "expr" | "assign" | "return"
    module_attr: str | None = None  # MODULE sites: the attribute (``act``)
    root: str | None = None  # local name whose storage is written, if any
    targets: set[Value] = field(default_factory=set)
    evidence: dict[SaveEvent, Value] = field(default_factory=dict)
    reasons: list[Reason] = field(default_factory=list)
    conflicts: dict[cst.CSTNode, str] = field(default_factory=dict)  # later read -> name read
    not_tensor: bool = False  # certainly not a tensor (list, dict, numpy): not an autograd matter
    tensor_unknown: bool = False
    grad_disabled: bool = False
    autocast: bool = False
    low_precision: bool = False
    nonlocal_target: bool = False  # writes module state / a global / a temporary we cannot name
    category: str = "inplace"  # "rng" | "init" | "dtype" for ops that are never rewritten

    def add_reason(self, prop: str, text: str, node: cst.CSTNode | None = None) -> None:
        if not any(r.prop == prop and r.text == text for r in self.reasons):
            self.reasons.append(Reason(prop, text, node))


class State:
    __slots__ = ("env", "saved", "escaped", "stale")

    def __init__(self, env=None, saved=frozenset(), escaped=frozenset(), stale=frozenset()) -> None:
        self.env: dict[str, frozenset[Value]] = env if env is not None else {}
        self.saved: frozenset[tuple[Value, SaveEvent]] = saved
        self.escaped: frozenset[tuple[Value, EscapeEvent]] = escaped
        self.stale: frozenset[tuple[Value, Site]] = stale

    def copy(self) -> "State":
        return State(dict(self.env), self.saved, self.escaped, self.stale)

    def same_as(self, other: "State") -> bool:
        return (
            self.env == other.env and self.saved == other.saved
            and self.escaped == other.escaped and self.stale == other.stale
        )


def join(states: Iterable[State | None]) -> State | None:
    live = [s for s in states if s is not None]
    if not live:
        return None
    if len(live) == 1:
        return live[0].copy()
    env: dict[str, frozenset[Value]] = {}
    for s in live:
        for name, values in s.env.items():
            env[name] = env.get(name, frozenset()) | values
    return State(
        env,
        frozenset().union(*(s.saved for s in live)),
        frozenset().union(*(s.escaped for s in live)),
        frozenset().union(*(s.stale for s in live)),
    )


_NO_GRAD = {"torch.no_grad", "torch.inference_mode", "torch.autograd.no_grad", "torch.autograd.grad_mode.no_grad",
            "torch.autograd.grad_mode.inference_mode"}
_ENABLE_GRAD = {"torch.enable_grad", "torch.autograd.enable_grad"}
_SET_GRAD = {"torch.set_grad_enabled", "torch.autograd.set_grad_enabled"}
_AUTOCAST = {"torch.autocast", "torch.cuda.amp.autocast", "torch.cpu.amp.autocast", "torch.amp.autocast"}
_LOW_PRECISION = {"torch.float16", "torch.half", "torch.bfloat16"}

AUG_OPS = {
    cst.AddAssign: ("+", "add_"),
    cst.SubtractAssign: ("-", "sub_"),
    cst.MultiplyAssign: ("*", "mul_"),
    cst.DivideAssign: ("/", "div_"),
    cst.FloorDivideAssign: ("//", "floor_divide_"),
    cst.ModuloAssign: ("%", "remainder_"),
    cst.PowerAssign: ("**", "pow_"),
    cst.BitAndAssign: ("&", "bitwise_and_"),
    cst.BitOrAssign: ("|", "bitwise_or_"),
    cst.BitXorAssign: ("^", "bitwise_xor_"),
    cst.LeftShiftAssign: ("<<", "bitwise_left_shift_"),
    cst.RightShiftAssign: (">>", "bitwise_right_shift_"),
}
_BIN_OPS = {
    cst.Multiply: "mul", cst.Divide: "div", cst.MatrixMultiply: "matmul", cst.Power: "pow",
    cst.Add: "add", cst.Subtract: "sub", cst.Modulo: "remainder", cst.FloorDivide: "floor_divide",
}
_CONTAINER_STORE_METHODS = {"append", "extend", "insert", "update", "setdefault", "put", "put_nowait", "appendleft", "extendleft"}
_CONTAINER_BUILTINS = {"list", "tuple", "set", "dict", "sorted", "reversed", "zip", "enumerate", "iter", "map", "filter"}
_BUILTINS = {
    "len", "isinstance", "issubclass", "hasattr", "callable", "id", "hash", "repr", "str", "int",
    "float", "bool", "complex", "range", "print", "type", "format", "ord", "chr", "divmod", "any",
    "all", "super", "vars", "dir", "locals", "globals", "open", "input", "slice", "object",
    "getattr", "setattr", "delattr", "next", "exit",
} | _CONTAINER_BUILTINS
_IMMUTABLE_BUILTINS = {"len", "int", "float", "bool", "str", "repr", "complex", "hash", "id", "ord", "chr", "format",
                       "range", "isinstance", "issubclass", "hasattr", "callable", "divmod", "any", "all", "print", "type"}
# torch functions whose first argument is a sequence of tensors, not a tensor.
_SEQUENCE_FIRST = {"cat", "stack", "hstack", "vstack", "dstack", "concat", "concatenate", "einsum", "broadcast_tensors",
                   "meshgrid", "block_diag", "cartesian_prod", "chain_matmul", "column_stack", "row_stack"}
# Tensor methods that make a fresh tensor and save nothing.
_FRESH_NO_SAVE_METHODS = {"new_zeros", "new_ones", "new_full", "new_empty", "new_tensor", "new_empty_strided",
                          "argmax", "argmin", "argsort", "nonzero", "bool", "eq", "ne", "lt", "le", "gt", "ge"}
_MAX_LOOP_PASSES = 6


class FunctionAnalysis:
    """Result of analysing one function."""

    def __init__(self, fn: FunctionInfo) -> None:
        self.fn = fn
        self.sites: dict[tuple, Site] = {}
        self.tensor_params: set[str] = set()


class _Analyzer:
    def __init__(self, fn: FunctionInfo, index: ModuleIndex, decisions: Mapping[tuple, str | None],
                 grad_disabled: bool) -> None:
        self.fn = fn
        self.index = index
        self.imports = index.imports
        self.cls: ClassInfo | None = fn.cls
        self.self_name = fn.self_name
        self.decisions = decisions
        self.result = FunctionAnalysis(fn)
        self._memo: dict[tuple, Value] = {}
        self._children: dict[Value, set[Value]] = {}
        self.grad_disabled = grad_disabled
        self.autocast = False
        self._statement: cst.BaseSmallStatement | None = None
        self._loop_exits: list[list[State]] = []
        self._loop_continues: list[list[State]] = []
        self.locals = _local_names(fn.node)
        self._params: dict[str, Value] = {}

    # ================================================================ values
    def _new(self, key: tuple, factory: Callable[[], Value]) -> Value:
        v = self._memo.get(key)
        if v is None:
            v = factory()
            self._memo[key] = v
        return v

    def link(self, v: Value, bases: Iterable[Value]) -> None:
        new = set(bases) - v.bases
        new.discard(v)
        if new:
            v.bases |= new
            for b in new:
                self._children.setdefault(b, set()).add(v)

    def fresh(self, node: cst.CSTNode, role: str, label: str, tensor: bool | None, immutable: bool = False) -> Value:
        v = self._new((id(node), role), lambda: Value(Kind.FRESH, node, label, tensor=tensor, immutable=immutable))
        if tensor and not v.tensor:
            v.tensor = True
        return v

    def alias(self, node: cst.CSTNode, role: str, bases: Iterable[Value], label: str, tensor: bool | None,
              low_precision: bool | None = None) -> Value:
        bases = set(bases)
        v = self._new((id(node), role), lambda: Value(Kind.ALIAS, node, label, tensor=tensor))
        self.link(v, bases)
        if tensor and not v.tensor:
            v.tensor = True
        if low_precision is None:
            low_precision = any(b.low_precision for b in bases)
        if low_precision:
            v.low_precision = True
        return v

    def container(self, node: cst.CSTNode, role: str, elements: list[frozenset[Value]], label: str,
                  immutable: bool, positional: bool) -> Value:
        v = self._new((id(node), role), lambda: Value(Kind.CONTAINER, node, label, tensor=False, immutable=immutable))
        for values in elements:
            self.link(v, values)
        if positional:
            if v.elements is None or len(v.elements) != len(elements):
                v.elements = [frozenset(e) for e in elements]
            else:
                v.elements = [old | new for old, new in zip(v.elements, elements)]
        return v

    def external(self, key: str, label: str, node: cst.CSTNode, tensor: bool | None = None) -> Value:
        return self._new(("external", key), lambda: Value(Kind.EXTERNAL, node, label, tensor=tensor, external=label))

    def rewritten(self, site: Site | None) -> bool:
        return site is not None and self.decisions.get(site.key) is not None

    def closure(self, values: Iterable[Value]) -> set[Value]:
        """Every value that may share storage with one of ``values``, and every container holding one.

        A container reached because it holds a value is an observer (its other elements are not
        affected); a container reached because a value was taken out of it may hold the value
        anywhere, so its elements are included.
        """
        seen: set[Value] = set()
        stack: list[tuple[Value, bool]] = [(v, True) for v in values]
        while stack:
            v, expand_bases = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            if v.kind is Kind.MUTATED and self.rewritten(v.site):
                continue  # a fresh tensor in the rewritten program
            if v.kind is not Kind.CONTAINER or expand_bases:
                for b in v.bases:
                    stack.append((b, True))
            for child in self._children.get(v, ()):
                if child.kind is Kind.MUTATED and self.rewritten(child.site):
                    continue
                stack.append((child, child.kind is not Kind.CONTAINER))
        return seen

    def tensorish(self, v: Value, depth: int = 0) -> bool | None:
        if v.tensor is not None or depth > 8:
            return v.tensor
        if v.kind in (Kind.MUTATED, Kind.ALIAS) and any(self.tensorish(b, depth + 1) for b in v.bases):
            return True
        return None

    def is_tensor(self, values: Iterable[Value]) -> bool | None:
        """True if the values are tensors (Python numbers may mix in: ``x op= y`` is then a plain
        rebinding), False if none is, None if unknown or mixed with mutable non-tensors."""
        verdicts = [(self.tensorish(v), v.immutable) for v in values if not (v.immutable and v.label == "None")]
        if not verdicts:
            return None
        if any(t is True for t, _ in verdicts):
            return True if all(t is True or (t is False and imm) for t, imm in verdicts) else None
        if all(t is False for t, _ in verdicts):
            return False
        return None

    def mark_tensor(self, values: Iterable[Value]) -> None:
        for v in values:
            if v.tensor is None and v.kind is not Kind.CONTAINER:
                v.tensor = True

    # ================================================================ driving
    def run(self) -> FunctionAnalysis:
        node = self.fn.node
        st = State()
        for param in _all_params(node.params):
            name = param.name.value
            tensor = _annotation_tensor(param.annotation) if param.annotation else None
            if name == self.self_name:
                tensor = False
            if param.default is not None:
                self.eval(param.default, st)
            v = self._new(("param", name), lambda n=name, t=tensor, p=param: Value(Kind.PARAM, p, f"argument `{n}`", tensor=t))
            self._params[name] = v
            st.env[name] = frozenset({v})
        self.body(node.body, st)
        self.result.tensor_params = {n for n, v in self._params.items() if v.tensor}
        return self.result

    def body(self, suite, st: State | None) -> State | None:
        if st is None:
            return None
        if isinstance(suite, cst.IndentedBlock):
            for stmt in suite.body:
                if st is None:
                    return None
                st = self.statement(stmt, st)
            return st
        return self.small_statements(suite.body, st)

    def small_statements(self, stmts, st: State | None) -> State | None:
        for small in stmts:
            if st is None:
                break
            self._statement = small
            st = self.small(small, st)
        self._statement = None
        return st

    def statement(self, stmt: cst.BaseStatement, st: State) -> State | None:
        if isinstance(stmt, cst.SimpleStatementLine):
            return self.small_statements(stmt.body, st)
        self._statement = None
        if isinstance(stmt, cst.If):
            self.eval(stmt.test, st)
            then = self.body(stmt.body, st.copy())
            if stmt.orelse is None:
                other: State | None = st
            elif isinstance(stmt.orelse, cst.If):
                other = self.statement(stmt.orelse, st.copy())
            else:
                other = self.body(stmt.orelse.body, st.copy())
            return join([then, other])
        if isinstance(stmt, (cst.For, cst.While)):
            return self.loop(stmt, st)
        if isinstance(stmt, cst.With):
            return self.with_(stmt, st)
        if isinstance(stmt, (cst.Try, cst.TryStar)):
            return self.try_(stmt, st)
        if isinstance(stmt, cst.FunctionDef):
            for d in stmt.decorators:
                self.eval(d.decorator, st)
            st.env[stmt.name.value] = frozenset({self.fresh(stmt, "def", f"function `{stmt.name.value}`", False, True)})
            return st
        if isinstance(stmt, cst.ClassDef):
            st.env[stmt.name.value] = frozenset({self.fresh(stmt, "class", f"class `{stmt.name.value}`", False, True)})
            return st
        if isinstance(stmt, cst.Match):
            self.eval(stmt.subject, st)
            outs: list[State | None] = [st.copy()]
            for case in stmt.cases:
                branch = st.copy()
                for name in _pattern_names(case.pattern):
                    branch.env[name] = frozenset({self.fresh(case, f"match:{name}", f"`{name}`", None)})
                if case.guard is not None:
                    self.eval(case.guard, branch)
                outs.append(self.body(case.body, branch))
            return join(outs)
        return st

    def loop(self, stmt: cst.For | cst.While, st: State) -> State | None:
        iter_values = self.eval(stmt.iter, st) if isinstance(stmt, cst.For) else frozenset()
        head = st.copy()
        exits: list[State] = []
        for _ in range(_MAX_LOOP_PASSES):
            self._loop_exits.append([])
            self._loop_continues.append([])
            entry = head.copy()
            if isinstance(stmt, cst.For):
                self._statement = None
                item = self.element_of(stmt.target, "iter", iter_values, f"loop variable `{short_code(stmt.target)}`")
                self.store(stmt.target, frozenset({item}), entry, stmt)
            else:
                self.eval(stmt.test, entry)
            end = self.body(stmt.body, entry)
            exits = self._loop_exits.pop()
            continues = self._loop_continues.pop()
            new_head = join([head, end, *continues])
            if new_head is None or new_head.same_as(head):
                break
            head = new_head
        after: State | None = head
        if stmt.orelse is not None:
            after = self.body(stmt.orelse.body, head.copy())
        return join([after, *exits])

    def element_of(self, node: cst.CSTNode, role: str, container_values: frozenset[Value], label: str) -> Value:
        """A value taken out of a container (iteration, unpacking, ``c[i]``)."""
        tensor = None
        if any(v.tuple_kind in ("views", "fresh") for v in container_values):
            tensor = True
        elif container_values and self.is_tensor(container_values):
            tensor = True  # iterating a tensor yields views
        return self.alias(node, role, container_values, label, tensor)

    def with_(self, stmt: cst.With, st: State) -> State | None:
        saved_grad, saved_autocast = self.grad_disabled, self.autocast
        for item in stmt.items:
            expr = item.item
            qual = self.imports.qualify(expr.func if isinstance(expr, cst.Call) else expr)
            if qual in _NO_GRAD:
                if not (isinstance(expr, cst.Call) and _first_arg_false(expr)):
                    self.grad_disabled = True
            elif qual in _ENABLE_GRAD:
                self.grad_disabled = False
            elif qual in _SET_GRAD and isinstance(expr, cst.Call):
                args = positional_args(expr)
                self.grad_disabled = not (args and is_true(args[0].value))
            elif qual in _AUTOCAST:
                self.autocast = True
            self.eval(expr, st)
            if item.asname is not None:
                self.store(item.asname.name, frozenset({self.fresh(item, "with", f"`{short_code(item.asname.name)}`", None)}), st, item)
        out = self.body(stmt.body, st)
        self.grad_disabled, self.autocast = saved_grad, saved_autocast
        return out

    def try_(self, stmt: cst.Try | cst.TryStar, st: State) -> State | None:
        # An exception may leave the try body after any statement.
        points = [st.copy()]
        cur: State | None = st
        if isinstance(stmt.body, cst.IndentedBlock):
            for s in stmt.body.body:
                if cur is None:
                    break
                cur = self.statement(s, cur)
                if cur is not None:
                    points.append(cur.copy())
        else:
            cur = self.small_statements(stmt.body.body, cur)
            if cur is not None:
                points.append(cur.copy())
        handler_in = join(points)
        if stmt.orelse is not None and cur is not None:
            cur = self.body(stmt.orelse.body, cur)
        outs = [cur]
        for handler in stmt.handlers:
            h = handler_in.copy() if handler_in is not None else None
            if h is None:
                continue
            self._statement = None
            if handler.type is not None:
                self.eval(handler.type, h)
            if handler.name is not None:
                self.store(handler.name.name, frozenset({self.fresh(handler, "exc", "an exception", False)}), h, handler)
            outs.append(self.body(handler.body, h))
        out = join(outs)
        if stmt.finalbody is not None:
            fin_in = join([out, handler_in])
            fin = self.body(stmt.finalbody.body, fin_in) if fin_in is not None else None
            return fin if out is not None else None
        return out

    # ================================================================ small statements
    def small(self, small: cst.BaseSmallStatement, st: State) -> State | None:
        if isinstance(small, cst.Expr):
            self.eval(small.value, st, role="expr")
        elif isinstance(small, cst.Assign):
            values = self.eval(small.value, st, role="assign")
            for target in small.targets:
                self.store(target.target, values, st, small)
        elif isinstance(small, cst.AnnAssign):
            if small.value is not None:
                values = self.eval(small.value, st, role="assign")
                self.store(small.target, values, st, small)
        elif isinstance(small, cst.AugAssign):
            self.augassign(small, st)
        elif isinstance(small, cst.Return):
            if small.value is not None:
                self.eval(small.value, st, role="return")
            return None
        elif isinstance(small, cst.Raise):
            if small.exc is not None:
                self.eval(small.exc, st)
            return None
        elif isinstance(small, cst.Break):
            if self._loop_exits:
                self._loop_exits[-1].append(st.copy())
            return None
        elif isinstance(small, cst.Continue):
            if self._loop_continues:
                self._loop_continues[-1].append(st.copy())
            return None
        elif isinstance(small, cst.Assert):
            self.eval(small.test, st)
            if small.msg is not None:
                self.eval(small.msg, st)
        elif isinstance(small, cst.Del):
            for name in _target_names(small.target):
                st.env.pop(name, None)
        elif isinstance(small, (cst.Import, cst.ImportFrom)) and not isinstance(small.names, cst.ImportStar):
            for alias in small.names:
                if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                    local = alias.asname.name.value
                else:
                    local = (dotted_name(alias.name) or "").split(".")[0]
                st.env[local] = frozenset({self.fresh(alias, "import", f"module `{local}`", False, True)})
        return st

    def store(self, target: cst.BaseExpression, values: frozenset[Value], st: State, stmt: cst.CSTNode) -> None:
        if isinstance(target, cst.Name):
            st.env[target.value] = values
        elif isinstance(target, (cst.Tuple, cst.List)):
            self.unpack(target, values, st, stmt)
        elif isinstance(target, cst.Attribute):
            self.eval(target.value, st)
            self.escape(values, stmt, f"stored in `{short_code(target)}`", st)
            attr = _self_attr(target, self.self_name)
            if attr is not None:
                st.env[f"self.{attr}"] = values
        elif isinstance(target, cst.Subscript):
            self.subscript_store(target, values, st, stmt)
        elif isinstance(target, cst.StarredElement):
            self.store(target.value, frozenset({self.container(target, "star", [values], "a starred list", False, False)}), st, stmt)

    def unpack(self, target: cst.Tuple | cst.List, values: frozenset[Value], st: State, stmt: cst.CSTNode) -> None:
        starred = any(isinstance(e, cst.StarredElement) for e in target.elements)
        for i, element in enumerate(target.elements):
            parts: set[Value] = set()
            for v in values:
                if not starred and v.elements is not None and len(v.elements) == len(target.elements):
                    parts |= v.elements[i]
                elif v.tuple_kind in ("fresh", "call") and v.kind is Kind.FRESH:
                    parts.add(self.fresh(element, "unpack-fresh", f"`{short_code(element.value)}`",
                                         True if v.tuple_kind == "fresh" else None))
                else:
                    parts.add(self.element_of(element, "unpack", frozenset({v}), f"`{short_code(element.value)}`"))
            self.store(element.value if not isinstance(element, cst.StarredElement) else element, frozenset(parts), st, stmt)

    def escape(self, values: Iterable[Value], node: cst.CSTNode, where: str, st: State) -> None:
        event = EscapeEvent(node, where)
        add = {(v, event) for v in values if v.tensor is not False or v.bases}
        if add:
            st.escaped = st.escaped | add

    # ================================================================ in-place sites
    def site(self, kind: SiteKind, node: cst.CSTNode, receiver: cst.BaseExpression | None, op: str, **kw) -> Site:
        key = (id(node), kind.value)
        site = self.result.sites.get(key)
        if site is None:
            site = Site(key, kind, node, self._statement, receiver, op, **kw)
            self.result.sites[key] = site
        return site

    def write(self, site: Site, st: State, targets: frozenset[Value], root: str | None, *, rebinds: bool,
              saves_output: SaveEvent | None = None, tensor_proof: bool = False) -> Value:
        """Record an in-place write of ``targets`` at ``site``; return the value after it."""
        site.root = root
        site.targets |= set(targets)
        site.grad_disabled |= self.grad_disabled
        site.autocast |= self.autocast
        site.low_precision |= any(v.low_precision for v in targets)
        if tensor_proof:
            self.mark_tensor(targets)
        verdict = self.is_tensor(targets)
        site.not_tensor = verdict is False
        site.tensor_unknown = verdict is None
        group = self.closure(targets)
        for value, event in st.saved:
            if value in group:
                site.evidence.setdefault(event, value)
        for v in group:
            if v.kind is Kind.PARAM and v.tensor is not False:
                site.add_reason("P3", f"{v.label} is not rebound before this line: the caller's tensor would stop changing", v.node)
            elif v.kind is Kind.EXTERNAL:
                site.add_reason("P5", f"it writes {v.external}: rewriting would stop updating it", v.node)
            elif v.data_alias:
                site.add_reason("P5", "it writes through `.data`, which autograd does not track: rewriting would stop updating the original tensor", v.node)
        for v, event in st.escaped:
            if v in group:
                site.add_reason("P2", f"{v.label} was {event.where} (line {{line}}): rewriting would stop updating that copy", event.node)
        if self.grad_disabled:
            site.add_reason("P4", "autograd is disabled here (no_grad, inference_mode or set_grad_enabled(False)), so the update looks intentional")
        # Later reads of anything sharing this memory would see another value after a rewrite.
        st.stale = st.stale | {(v, site) for v in group}
        label = f"`{root}`" if root else (f"`{short_code(site.receiver)}`" if site.receiver is not None else "the tensor")
        after = self._new((id(site.node), "after", site.kind.value), lambda: Value(Kind.MUTATED, site.node, label))
        after.site = site
        self.link(after, targets)
        after.low_precision |= site.low_precision
        if verdict:
            after.tensor = True
        if saves_output is not None and not self.grad_disabled:
            st.saved = st.saved | {(after, saves_output)}
        if root is not None and rebinds and self.decisions.get(site.key) != "drop":
            st.env[root] = frozenset({after})
        return after

    def read(self, name: str, values: frozenset[Value], node: cst.CSTNode, st: State) -> None:
        if st.stale:
            for v, site in st.stale:
                if v in values:
                    site.conflicts.setdefault(node, name)

    # ================================================================ augmented assignment
    def augassign(self, node: cst.AugAssign, st: State) -> None:
        rhs = self.eval(node.value, st)
        target = node.target
        symbol, inplace_name = AUG_OPS.get(type(node.operator), (None, None))
        if symbol is None:  # @=: torch.Tensor has no __imatmul__, so Python already rebinds
            values = self.eval(target, st)
            self.store(target, frozenset({self.fresh(node, "matmul", f"`{short_code(target)}`", self.is_tensor(values) or None)}), st, node)
            return
        display = f"`{short_code(node)}`"
        if isinstance(target, cst.Name):
            name = target.value
            local = name in self.locals
            values = st.env.get(name, frozenset()) if local else self.eval(target, st)
            if local:
                self.read(name, values, target, st)
            verdict = self.is_tensor(values)
            if verdict is False or not values:
                for v in values:
                    if not v.immutable and v.kind is Kind.CONTAINER:
                        self.link(v, rhs)  # list += [...] extends in place
                if any(not v.immutable for v in values):
                    return
                result = self.fresh(node, "aug", f"`{name}`", True if self.is_tensor(rhs) else None)
                if local:
                    st.env[name] = frozenset({result})
                return
            self.op_saves(node, display, [("other", rhs)], st, spec=torch_api.method_spec(inplace_name), inplace=True, receiver=values)
            site = self.site(SiteKind.AUG, node, target, f"{symbol}=", method=inplace_name)
            site.nonlocal_target = not local
            self.write(site, st, values, name if local else None, rebinds=local,
                       saves_output=self.inplace_output(node, display, inplace_name))
        elif isinstance(target, cst.Subscript):
            self.index_write(node, target, st, f"[...] {symbol}=")
        elif isinstance(target, cst.Attribute):
            values = self.eval(target, st)
            if self.is_tensor(values) is True:
                site = self.site(SiteKind.AUG, node, target, f"{symbol}=", method=inplace_name)
                site.nonlocal_target = True
                self.write(site, st, values, None, rebinds=False)

    def subscript_store(self, target: cst.Subscript, values: frozenset[Value], st: State, stmt: cst.CSTNode) -> None:
        base_values = self.eval(target.value, st)
        if self.is_tensor(base_values) is False or not base_values:
            for element in target.slice:
                self._eval_slice(element, st)
            for v in base_values:
                if v.kind is Kind.CONTAINER:
                    self.link(v, values)  # the dict/list now holds the values
                else:
                    self.escape(values, stmt, f"stored in `{short_code(target.value)}`", st)
            return
        self.index_write(stmt, target, st, "[...] =", base_values=base_values)

    def index_write(self, node: cst.CSTNode, target: cst.Subscript, st: State, op: str,
                    base_values: frozenset[Value] | None = None) -> None:
        if base_values is None:
            base_values = self.eval(target.value, st)
        for element in target.slice:
            self._eval_slice(element, st)
        if self.is_tensor(base_values) is False:
            return
        root, root_values = self.root_of(target.value, st)
        site = self.site(SiteKind.INDEX, node, target, op)
        site.nonlocal_target = root is None
        self.write(site, st, base_values if root is None else root_values, root, rebinds=True)

    def root_of(self, expr: cst.BaseExpression, st: State) -> tuple[str | None, frozenset[Value]]:
        """The local name whose storage ``expr`` views (``x`` for ``x[i].view(-1)``), if any."""
        while True:
            if isinstance(expr, cst.Name):
                if expr.value in self.locals:
                    return expr.value, st.env.get(expr.value, frozenset())
                return None, frozenset()
            if isinstance(expr, cst.Subscript):
                expr = expr.value
            elif isinstance(expr, cst.Attribute) and expr.attr.value in torch_api.ALIAS_ATTRIBUTES:
                expr = expr.value
            elif (
                isinstance(expr, cst.Call)
                and isinstance(expr.func, cst.Attribute)
                and torch_api.method_returns_alias(expr.func.attr.value)
            ):
                expr = expr.func.value
            else:
                return None, frozenset()

    # ================================================================ saving
    def op_saves(self, node: cst.CSTNode, display: str, args: list[tuple[str, frozenset[Value]]], st: State,
                 spec: torch_api.OpSpec | None, inplace: bool = False, receiver: frozenset[Value] = frozenset()) -> bool:
        """Record which argument values the op saves for backward; return whether it saves its output.

        ``receiver`` is ``self`` of a method; for an in-place op autograd saves a clone of the
        original ``self`` (an in-place op never breaks its own backward), so ``self`` itself is not
        recorded as saved.
        """
        if self.grad_disabled:
            return False
        all_args = ([("self", receiver)] if receiver else []) + args
        if spec is None:
            event = SaveEvent(node, display, "opaque")
            add = {(v, event) for name, values in all_args if not (inplace and name == "self") for v in values if v.tensor is not False}
            if add:
                st.saved = st.saved | add
            return False
        grad_inputs = {name for name, values in all_args if values and any(v.tensor is not False for v in values)}
        saved, out = spec.saved_args(grad_inputs)
        if inplace:
            saved.discard("self")
        event = SaveEvent(node, display, "input")
        add = {(v, event) for name, values in all_args if name in saved for v in values if v.tensor is not False}
        if add:
            st.saved = st.saved | add
        return out

    def inplace_output(self, node: cst.CSTNode, display: str, inplace_name: str | None) -> SaveEvent | None:
        """An in-place op whose backward reads its own result (``exp_``, ``relu_``) saves the written tensor."""
        spec = torch_api.method_spec(inplace_name) if inplace_name else None
        if spec is None or self.grad_disabled:
            return None
        _, out = spec.saved_args(set(spec.needs))
        return SaveEvent(node, display, "output") if out else None

    def named_args(self, spec: torch_api.OpSpec | None, args, offset: int = 0) -> list[tuple[str, frozenset[Value]]]:
        names = spec.args if spec is not None else ()
        out = []
        for key, values, _ in args:
            if isinstance(key, int):
                i = key + offset
                name = names[i] if i < len(names) else f"#{i}"
            elif key == "*":
                name = names[offset] if len(names) > offset else "*"
            elif key == "input" and names and names[0] == "self":
                name = "self"
            else:
                name = key
            out.append((name, values))
        return out

    # ================================================================ expressions
    def eval(self, expr: cst.BaseExpression, st: State, role: str | None = None) -> frozenset[Value]:
        handler = _EVAL.get(type(expr))
        if handler is None:
            for child in _expr_children(expr):
                self.eval(child, st)
            return frozenset({self.fresh(expr, "other", f"`{short_code(expr)}`", None)})
        return handler(self, expr, st, role)

    def _eval_name(self, expr: cst.Name, st: State, role) -> frozenset[Value]:
        name = expr.value
        if name in ("None", "True", "False"):
            return frozenset({self.fresh(expr, "const", name, False, True)})
        if name in self.locals:
            values = st.env.get(name, frozenset())
            self.read(name, values, expr, st)
            return values
        if name in self.imports.names:
            return frozenset({self.external(f"module:{name}", f"module `{name}`", expr, tensor=False)})
        return frozenset({self.external(f"global:{name}", f"the global `{name}`", expr)})

    def _eval_attribute(self, expr: cst.Attribute, st: State, role) -> frozenset[Value]:
        attr = expr.attr.value
        self_attr = _self_attr(expr, self.self_name)
        if self_attr is not None:
            key = f"self.{self_attr}"
            if key in st.env:
                return st.env[key]
            info = self.cls.attr(self_attr) if self.cls else None
            label, tensor = f"module state `{self.self_name}.{self_attr}`", None
            if info is not None:
                if info.is_parameter():
                    label, tensor = f"the Parameter `{self.self_name}.{self_attr}`", True
                elif info.is_buffer():
                    label, tensor = f"the buffer `{self.self_name}.{self_attr}`", True
                elif info.is_module():
                    tensor = False
            return frozenset({self.external(key, label, expr, tensor=tensor)})
        qual = self.imports.qualify(expr)
        if qual is not None:
            return frozenset({self.fresh(expr, "qual", qual, False, True)})
        base = self.eval(expr.value, st)
        label = f"`{short_code(expr)}`"
        if attr in torch_api.NON_TENSOR_ATTRIBUTES:
            return frozenset({self.fresh(expr, "attr", label, False, True)})
        if attr == "grad":
            return frozenset({self.external(f"grad:{id(expr)}", f"the gradient `{short_code(expr)}`", expr, tensor=True)})
        if attr in torch_api.ALIAS_ATTRIBUTES and self.is_tensor(base) is not False:
            v = self.alias(expr, "attr", base, label, tensor=True)
            v.data_alias = v.data_alias or attr == "data"
            return frozenset({v})
        return frozenset({self.element_of(expr, "attr", base, label)})

    def _eval_subscript(self, expr: cst.Subscript, st: State, role) -> frozenset[Value]:
        base = self.eval(expr.value, st)
        for element in expr.slice:
            self._eval_slice(element, st)
        label = f"`{short_code(expr)}`"
        idx = _int_index(expr)
        if idx is not None and base and all(v.elements is not None and -len(v.elements) <= idx < len(v.elements) for v in base):
            return frozenset().union(*(v.elements[idx] for v in base))  # type: ignore[index]
        if self.is_tensor(base):
            return frozenset({self.alias(expr, "sub", base, label, tensor=True)})
        return frozenset({self.element_of(expr, "sub", base, label)})

    def _eval_slice(self, element: cst.SubscriptElement, st: State) -> None:
        sl = element.slice
        if isinstance(sl, cst.Index):
            self.eval(sl.value, st)
        elif isinstance(sl, cst.Slice):
            for part in (sl.lower, sl.upper, sl.step):
                if part is not None:
                    self.eval(part, st)

    def _eval_literal(self, expr, st, role) -> frozenset[Value]:
        for child in _expr_children(expr):
            self.eval(child, st)
        return frozenset({self.fresh(expr, "lit", f"`{short_code(expr)}`", False, True)})

    def _eval_container(self, expr, st, role) -> frozenset[Value]:
        elements: list[frozenset[Value]] = []
        for element in expr.elements:
            if isinstance(element, cst.DictElement):
                self.eval(element.key, st)
            elements.append(self.eval(element.value, st))
        positional = isinstance(expr, (cst.Tuple, cst.List)) and not any(isinstance(e, cst.StarredElement) for e in expr.elements)
        return frozenset({self.container(expr, "display", elements, f"`{short_code(expr)}`", isinstance(expr, cst.Tuple), positional)})

    def _eval_comprehension(self, expr, st, role) -> frozenset[Value]:
        inner = st.copy()
        comp = expr.for_in
        while comp is not None:
            iter_values = self.eval(comp.iter, inner)
            item = self.element_of(comp.target, "comp", iter_values, f"`{short_code(comp.target)}`")
            for name in _target_names(comp.target):
                inner.env[name] = frozenset({item})
            for cond in comp.ifs:
                self.eval(cond.test, inner)
            comp = comp.inner_for_in
        if isinstance(expr, cst.DictComp):
            self.eval(expr.key, inner)
            values = self.eval(expr.value, inner)
        else:
            values = self.eval(expr.elt, inner)
        st.saved, st.escaped, st.stale = inner.saved, inner.escaped, inner.stale
        return frozenset({self.container(expr, "comp", [values], f"`{short_code(expr)}`", False, False)})

    def _eval_binary(self, expr: cst.BinaryOperation, st: State, role) -> frozenset[Value]:
        left = self.eval(expr.left, st)
        right = self.eval(expr.right, st)
        lt, rt = self.is_tensor(left), self.is_tensor(right)
        label = f"`{short_code(expr)}`"
        if lt is False and rt is False:
            immutable = all(v.immutable for v in left | right)
            if not immutable:
                return frozenset({self.container(expr, "concat", [left, right], label, False, False)})
            return frozenset({self.fresh(expr, "bin", label, False, True)})
        tensor = True if (lt or rt) else None
        op = _BIN_OPS.get(type(expr.operator))
        out = False
        if op is not None:
            out = self.op_saves(expr, label, [("self", left), ("other", right)], st, spec=torch_api.method_spec(op))
        result = self.fresh(expr, "bin", label, tensor)
        if any(v.low_precision for v in left | right):
            result.low_precision = True
        if out and not self.grad_disabled:
            st.saved = st.saved | {(result, SaveEvent(expr, label, "output"))}
        return frozenset({result})

    def _eval_unary(self, expr: cst.UnaryOperation, st: State, role) -> frozenset[Value]:
        values = self.eval(expr.expression, st)
        if isinstance(expr.operator, cst.Not):
            return frozenset({self.fresh(expr, "not", "a bool", False, True)})
        t = self.is_tensor(values)
        return frozenset({self.fresh(expr, "unary", f"`{short_code(expr)}`", t, immutable=t is False)})

    def _eval_boolop(self, expr: cst.BooleanOperation, st: State, role) -> frozenset[Value]:
        return self.eval(expr.left, st) | self.eval(expr.right, st)

    def _eval_compare(self, expr: cst.Comparison, st: State, role) -> frozenset[Value]:
        values = self.eval(expr.left, st)
        for comp in expr.comparisons:
            values = values | self.eval(comp.comparator, st)
        t = self.is_tensor(values)
        return frozenset({self.fresh(expr, "cmp", f"`{short_code(expr)}`", t, immutable=t is False)})

    def _eval_ifexp(self, expr: cst.IfExp, st: State, role) -> frozenset[Value]:
        self.eval(expr.test, st)
        return self.eval(expr.body, st) | self.eval(expr.orelse, st)

    def _eval_lambda(self, expr: cst.Lambda, st: State, role) -> frozenset[Value]:
        return frozenset({self.fresh(expr, "lambda", "a lambda", False, True)})

    def _eval_namedexpr(self, expr: cst.NamedExpr, st: State, role) -> frozenset[Value]:
        values = self.eval(expr.value, st)
        self.store(expr.target, values, st, expr)
        return values

    def _eval_yield(self, expr: cst.Yield, st: State, role) -> frozenset[Value]:
        if isinstance(expr.value, cst.From):
            values = self.eval(expr.value.item, st)
        elif expr.value is not None:
            values = self.eval(expr.value, st)
        else:
            values = frozenset()
        self.escape(values, expr, "yielded to the caller", st)
        return frozenset({self.fresh(expr, "yield", "the value sent in", None)})

    def _eval_await(self, expr: cst.Await, st: State, role) -> frozenset[Value]:
        self.eval(expr.expression, st)
        return frozenset({self.fresh(expr, "await", "an awaited value", None)})

    def _eval_starred(self, expr, st, role) -> frozenset[Value]:
        return self.eval(expr.value, st)

    # ================================================================ calls
    def _eval_call(self, call: cst.Call, st: State, role) -> frozenset[Value]:
        func = call.func
        if isinstance(func, cst.Attribute):
            qual = self.imports.qualify(func)
            if qual is not None:
                return self.call_qualified(call, qual, st, role)
            self_attr = _self_attr(func, self.self_name)
            if self_attr is not None and self.cls is not None:
                return self.call_self(call, self_attr, st, role)
            return self.call_method(call, func, st, role)
        if isinstance(func, cst.Name) and func.value not in self.locals:
            qual = self.imports.qualify(func)
            if qual is not None:
                return self.call_qualified(call, qual, st, role)
            if func.value in _BUILTINS:
                return self.call_builtin(call, func.value, st)
        self.eval(func, st)
        args = self.eval_args(call, st)
        return self.opaque_call(call, args, st)

    def eval_args(self, call: cst.Call, st: State) -> list[tuple[str | int, frozenset[Value], cst.Arg]]:
        out: list[tuple[str | int, frozenset[Value], cst.Arg]] = []
        pos = 0
        for arg in call.args:
            values = self.eval(arg.value, st)
            if arg.keyword is not None:
                out.append((arg.keyword.value, values, arg))
            elif arg.star:
                out.append(("*", values, arg))
            else:
                out.append((pos, values, arg))
                pos += 1
        return out

    def opaque_call(self, call: cst.Call, args, st: State, tensor: bool | None = None,
                    display: str | None = None, receiver: frozenset[Value] = frozenset()) -> frozenset[Value]:
        """A call we know nothing about: it may save any tensor it is given."""
        display = display or call_display(call)
        if not self.grad_disabled:
            event = SaveEvent(call, display, "opaque")
            add = {(v, event) for _, values, _ in args for v in values if v.tensor is not False}
            add |= {(v, event) for v in receiver if v.tensor is not False}
            if add:
                st.saved = st.saved | add
        result = self.fresh(call, "call", f"the result of `{display}`", tensor)
        result.tuple_kind = "call"
        return frozenset({result})

    def call_builtin(self, call: cst.Call, name: str, st: State) -> frozenset[Value]:
        args = self.eval_args(call, st)
        label = f"`{short_code(call)}`"
        if name in _CONTAINER_BUILTINS:
            return frozenset({self.container(call, "builtin", [v for _, v, _ in args], label, name == "tuple", False)})
        if name == "getattr" and args:
            return frozenset({self.element_of(call, "getattr", args[0][1], label)})
        if name == "setattr" and len(args) >= 3:
            self.escape(args[2][1], call, f"stored by `{short_code(call)}`", st)
        if name == "next" and args:
            return frozenset({self.element_of(call, "next", args[0][1], label)})
        return frozenset({self.fresh(call, "builtin", label, False, name in _IMMUTABLE_BUILTINS)})

    def call_qualified(self, call: cst.Call, qual: str, st: State, role) -> frozenset[Value]:
        module, _, name = qual.rpartition(".")
        args = self.eval_args(call, st)
        if qual in _NO_GRAD or qual in _ENABLE_GRAD or qual in _SET_GRAD or qual in _AUTOCAST:
            return frozenset({self.fresh(call, "ctx", qual, False)})
        if module.split(".")[0] in ("numpy", "math"):
            return frozenset({self.fresh(call, "np", f"`{short_code(call)}`", False, module.startswith("math"))})
        if module == "torch.nn.init":
            if name.endswith("_") and args and args[0][0] == 0:
                self.inplace_call(call, SiteKind.FUNCTION, args[0][2].value, args[0][1], f"torch.nn.init.{name}", name, st,
                                  role, out_saved=False, category="init")
            return frozenset({self.fresh(call, "init", qual, True)})
        if module == "torch.nn" and name[:1].isupper():
            return frozenset({self.fresh(call, "module", f"`{short_code(call)}`", False)})
        if module == "torch.nn.functional":
            return self.call_functional(call, name, args, st, role)
        if module in ("torch", "torch.special", "torch.linalg", "torch.fft"):
            return self.call_torch(call, qual, name, args, st, role)
        return self.opaque_call(call, args, st)

    def call_torch(self, call, qual, name, args, st, role) -> frozenset[Value]:
        display = f"{qual}(...)" if call.args else f"{qual}()"
        label = f"the result of `{display}`"
        if name in torch_api.NON_TENSOR_FUNCTIONS:
            return frozenset({self.fresh(call, "torch", label, False, True)})
        first = next((v for k, v, _ in args if k == 0), frozenset())
        first_expr = next((a.value for k, _, a in args if k == 0), None)
        if name not in _SEQUENCE_FIRST and name not in torch_api.FACTORY_FUNCTIONS:
            self.mark_tensor(first)
        if name in torch_api.FACTORY_FUNCTIONS:
            result = self.fresh(call, "factory", label, True)
            dtype = keyword_arg(call, "dtype")
            if dtype is not None:
                result.low_precision = self.imports.qualify(dtype.value) in _LOW_PRECISION
            elif name.endswith("_like") and any(v.low_precision for v in first):
                result.low_precision = True
            return frozenset({result})
        if name in torch_api.ALIAS_FUNCTIONS:
            return frozenset({self.alias(call, "torch-alias", first, label, True)})
        if name in torch_api.TUPLE_ALIAS_FUNCTIONS:
            v = self.container(call, "torch-tuple", [first], label, True, False)
            v.tuple_kind = "views"
            v.kind = Kind.ALIAS  # its elements are views of the argument
            return frozenset({v})
        spec = torch_api.function_spec(qual)
        named = self.named_args(spec, [a for a in args if a[0] != "out"])
        if name.endswith("_") and name in torch_api.table()["inplace_functions"] and first_expr is not None:
            out_saved = self.op_saves(call, display, named[1:], st, spec=torch_api.method_spec(name), inplace=True, receiver=first)
            return self.inplace_call(call, SiteKind.FUNCTION, first_expr, first, f"torch.{name}", name, st, role, out_saved)
        out_saved = self.op_saves(call, display, named, st, spec=spec)
        if name in torch_api.TUPLE_FRESH_FUNCTIONS:
            result = self.fresh(call, "torch", label, False)
            result.tuple_kind = "fresh"
        else:
            result = self.fresh(call, "torch", label, True)
        if out_saved and not self.grad_disabled:
            st.saved = st.saved | {(result, SaveEvent(call, display, "output"))}
        out_arg = next(((v, a) for k, v, a in args if k == "out"), None)
        if out_arg is not None:
            values, arg = out_arg
            root, root_values = self.root_of(arg.value, st)
            site = self.site(SiteKind.OUT, call, arg.value, f"out= of `{display}`", statement_role=role)
            site.nonlocal_target = root is None
            self.write(site, st, values if root is None else root_values, root, rebinds=True)
        return frozenset({result})

    def inplace_call(self, call: cst.Call, kind: SiteKind, arg_expr: cst.BaseExpression, arg_values: frozenset[Value],
                     op: str, method: str, st: State, role, out_saved: bool, category: str = "inplace",
                     module_attr: str | None = None) -> Value:
        """A call that writes its (first) argument: torch.relu_(x), F.relu(x, inplace=True),
        nn.init.zeros_(w), self.act(x) with an in-place activation module."""
        root, root_values = self.root_of(arg_expr, st)
        is_name = isinstance(arg_expr, cst.Name) and root is not None
        site = self.site(kind, call, arg_expr, op, method=method, statement_role=role, module_attr=module_attr, category=category)
        if method in torch_api.RNG_INPLACE:
            site.category = "rng"
        # A plain temporary (F.relu(self.bn(x), inplace=True)) is fine to name "none"; a write
        # into self.x[...] or a global is not ours to change.
        site.nonlocal_target = root is None and isinstance(arg_expr, (cst.Name, cst.Attribute, cst.Subscript)) and not self._is_temporary(arg_values)
        targets = root_values if is_name else arg_values
        display = call_display(call)
        return self.write(site, st, targets, root if is_name else None, rebinds=is_name and kind is not SiteKind.MODULE,
                          saves_output=SaveEvent(call, display, "output") if out_saved else None,
                          tensor_proof=category == "inplace")

    def _is_temporary(self, values: frozenset[Value]) -> bool:
        return bool(values) and all(v.kind is Kind.FRESH for v in values)

    def call_functional(self, call, name, args, st, role) -> frozenset[Value]:
        display = f"F.{name}(...)"
        spec = torch_api.function_spec(f"torch.nn.functional.{name}")
        named = self.named_args(spec, args)
        first = next((v for k, v, _ in args if k == 0), frozenset())
        first_expr = next((a.value for k, _, a in args if k == 0), None)
        self.mark_tensor(first)
        inplace_pos = torch_api.FUNCTIONAL_INPLACE_ARG.get(name)
        inplace = False
        if inplace_pos is not None:
            kw = keyword_arg(call, "inplace")
            pos = positional_args(call)
            if kw is not None:
                inplace = is_true(kw.value)
            elif len(pos) > inplace_pos:
                inplace = is_true(pos[inplace_pos].value)
        if inplace and first_expr is not None:
            aten = {"relu6": "hardtanh"}.get(name, name)
            ispec = torch_api.method_spec(f"{aten}_")
            out_saved = self.op_saves(call, display, named[1:], st, spec=ispec or spec, inplace=True, receiver=first)
            after = self.inplace_call(call, SiteKind.ACTIVATION, first_expr, first, f"F.{name}(..., inplace=True)", name, st, role, out_saved)
            return frozenset({after})
        out_saved = self.op_saves(call, display, named, st, spec=spec)
        label = f"the result of `{display}`"
        if name.startswith("dropout") or name in ("alpha_dropout", "feature_alpha_dropout"):
            result = self.alias(call, "F", first, label, True)  # eval mode returns the input itself
        else:
            result = self.fresh(call, "F", label, True)
        if out_saved and not self.grad_disabled:
            st.saved = st.saved | {(result, SaveEvent(call, display, "output"))}
        return frozenset({result})

    def call_self(self, call: cst.Call, attr: str, st: State, role) -> frozenset[Value]:
        """``self.attr(...)``: a submodule call or a method call."""
        args = self.eval_args(call, st)
        display = f"{self.self_name}.{attr}(...)" if call.args else f"{self.self_name}.{attr}()"
        info = self.cls.attr(attr) if self.cls else None
        if info is None or not info.is_module():
            return self.opaque_call(call, args, st, display=display)
        first = next((v for k, v, _ in args if k == 0), frozenset())
        first_expr = next((a.value for k, _, a in args if k == 0), None)
        specs = [torch_api.module_spec(c.qualname) if c.qualname else None for c in info.values]
        if first_expr is None or any(s is None for s in specs):
            return self.opaque_call(call, args, st, display=display)
        self.mark_tensor(first)
        out_saved = False
        for spec, ctor in zip(specs, info.values):
            if spec.container or spec.returns_input or spec.functional is None:
                if spec.container:
                    self.opaque_call(call, args, st, display=display)
                continue
            fspec = torch_api.function_spec(f"torch.nn.functional.{spec.functional}")
            if ctor.inplace:
                aten = {"relu6": "hardtanh"}.get(spec.functional, spec.functional)
                ispec = torch_api.method_spec(f"{aten}_")
                out_saved |= self.op_saves(call, display, [], st, spec=ispec or fspec, inplace=True, receiver=first)
            else:
                first_name = fspec.args[0] if fspec is not None and fspec.args else "self"
                out_saved |= self.op_saves(call, display, [(first_name, first)], st, spec=fspec)
        inplace = info.inplace_constructors()
        if inplace:
            cls_name = (inplace[0].qualname or "").rsplit(".", 1)[-1]
            after = self.inplace_call(call, SiteKind.MODULE, first_expr, first, f"`{display}` ({cls_name} with inplace=True)",
                                      cls_name, st, role, out_saved, module_attr=attr)
            return frozenset({after})
        label = f"the result of `{display}`"
        if any(s.returns_input or (s.functional or "").startswith("dropout") for s in specs):
            result = self.alias(call, "module", first, label, True)
        elif any(s.container for s in specs):
            result = self.fresh(call, "module", label, None)
        else:
            result = self.fresh(call, "module", label, True)
        if out_saved and not self.grad_disabled:
            st.saved = st.saved | {(result, SaveEvent(call, display, "output"))}
        return frozenset({result})

    def call_method(self, call: cst.Call, func: cst.Attribute, st: State, role) -> frozenset[Value]:
        name = func.attr.value
        receiver = self.eval(func.value, st)
        args = self.eval_args(call, st)
        recv = short_code(func.value, 30)
        display = f"{recv}.{name}(...)" if call.args else f"{recv}.{name}()"
        recv_tensor = self.is_tensor(receiver)
        if name in _CONTAINER_STORE_METHODS and recv_tensor is not True:
            for _, values, _ in args:
                for v in receiver:
                    if v.kind is Kind.CONTAINER:
                        self.link(v, values)
                    else:
                        self.escape(values, call, f"stored in `{short_code(func.value)}`", st)
            return frozenset({self.fresh(call, "store", "None", False, True)})
        if name in torch_api.tensor_methods() and recv_tensor is not False:
            if torch_api.is_tensor_only_method(name):
                self.mark_tensor(receiver)
            return self.tensor_method(call, func, name, receiver, args, st, role, display)
        return self.opaque_call(call, args, st, display=display, receiver=receiver)

    def tensor_method(self, call, func, name, receiver, args, st, role, display) -> frozenset[Value]:
        label = f"the result of `{display}`"
        if name in torch_api.NON_TENSOR_METHODS or (name == "type" and not call.args):
            return frozenset({self.fresh(call, "m", label, False, True)})
        if name in ("numpy", "tolist"):
            if name == "numpy":
                return frozenset({self.alias(call, "numpy", receiver, label, False)})
            return frozenset({self.fresh(call, "m", label, False)})
        if name in torch_api.METADATA_INPLACE:
            return frozenset({self.alias(call, "meta", receiver, label, True)})
        if torch_api.is_inplace_method(name):
            return self.inplace_method(call, func, name, receiver, args, st, role, display)
        if name in torch_api.TUPLE_ALIAS_METHODS:
            v = self.container(call, "tuple", [receiver], label, True, False)
            v.tuple_kind = "views"
            v.kind = Kind.ALIAS
            return frozenset({v})
        spec = None if name in _FRESH_NO_SAVE_METHODS else torch_api.method_spec(name)
        if name in _FRESH_NO_SAVE_METHODS:
            out_saved = False
        else:
            named = self.named_args(spec, args, offset=1)
            out_saved = self.op_saves(call, display, named, st, spec=spec, receiver=receiver)
        if name in torch_api.TUPLE_FRESH_METHODS:
            result = self.fresh(call, "m", label, False)
            result.tuple_kind = "fresh"
            return frozenset({result})
        if torch_api.method_returns_alias(name):
            low = None
            if name in ("half", "bfloat16") or (name == "to" and _casts_to(call, self.imports, _LOW_PRECISION)):
                low = True
            elif name in ("float", "double", "int", "long", "short", "bool", "byte", "char") or (name == "to" and _casts_to(call, self.imports, None)):
                low = False
            result = self.alias(call, "view", receiver, label, True, low_precision=low)
        else:
            result = self.fresh(call, "m", label, True)
            result.low_precision = any(v.low_precision for v in receiver)
        if out_saved and not self.grad_disabled:
            st.saved = st.saved | {(result, SaveEvent(call, display, "output"))}
        return frozenset({result})

    def inplace_method(self, call, func, name, receiver, args, st, role, display) -> frozenset[Value]:
        spec = torch_api.method_spec(name)
        named = self.named_args(spec, args, offset=1)
        out_saved = self.op_saves(call, display, named, st, spec=spec, inplace=True, receiver=receiver) if spec else False
        root, root_values = self.root_of(func.value, st)
        is_name = isinstance(func.value, cst.Name) and root is not None
        site = self.site(SiteKind.METHOD, call, func.value, name, method=name, statement_role=role)
        if name in torch_api.RNG_INPLACE:
            site.category = "rng"
        elif name in torch_api.DTYPE_CHANGING_INPLACE:
            site.category = "dtype"
        site.nonlocal_target = root is None and not self._is_temporary(receiver)
        after = self.write(site, st, root_values if is_name else receiver, root, rebinds=root is not None,
                           saves_output=SaveEvent(call, display, "output") if out_saved else None, tensor_proof=True)
        return frozenset({after})


def _casts_to(call: cst.Call, imports, dtypes: set[str] | None) -> bool:
    """``x.to(torch.float16)``: does the call name a dtype (in ``dtypes``, or any if None)?"""
    for arg in call.args:
        qual = imports.qualify(arg.value)
        if qual is None or not qual.startswith("torch."):
            continue
        if dtypes is None:
            if qual.rsplit(".", 1)[-1] in ("float32", "float", "float64", "double", "int64", "long", "int32", "int", "bool"):
                return True
        elif qual in dtypes:
            return True
    return False


def _int_index(expr: cst.Subscript) -> int | None:
    if len(expr.slice) != 1 or not isinstance(expr.slice[0].slice, cst.Index):
        return None
    value = expr.slice[0].slice.value
    negative = False
    if isinstance(value, cst.UnaryOperation) and isinstance(value.operator, cst.Minus):
        negative, value = True, value.expression
    if isinstance(value, cst.Integer):
        try:
            n = int(value.value, 0)
        except ValueError:
            return None
        return -n if negative else n
    return None


def _self_attr(expr: cst.BaseExpression, self_name: str | None) -> str | None:
    if (
        self_name
        and isinstance(expr, cst.Attribute)
        and isinstance(expr.value, cst.Name)
        and expr.value.value == self_name
    ):
        return expr.attr.value
    return None


def _first_arg_false(call: cst.Call) -> bool:
    args = positional_args(call)
    mode = keyword_arg(call, "mode")
    value = mode.value if mode is not None else (args[0].value if args else None)
    return isinstance(value, cst.Name) and value.value == "False"


def _all_params(params: cst.Parameters) -> list[cst.Param]:
    out = list(params.posonly_params) + list(params.params)
    if isinstance(params.star_arg, cst.Param):
        out.append(params.star_arg)
    out += list(params.kwonly_params)
    if params.star_kwarg is not None:
        out.append(params.star_kwarg)
    return out


def _annotation_tensor(annotation: cst.Annotation) -> bool | None:
    text = short_code(annotation.annotation, 200)
    containers = ("List", "list", "Tuple", "tuple", "Dict", "dict", "Sequence", "Iterable", "Union", "|")
    if "Tensor" in text and not any(c in text for c in containers):
        return True
    if text in ("int", "float", "bool", "str", "list", "dict", "tuple", "set", "bytes"):
        return False
    return None


def _target_names(target: cst.BaseExpression) -> list[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        out: list[str] = []
        for e in target.elements:
            out += _target_names(e.value)
        return out
    if isinstance(target, cst.StarredElement):
        return _target_names(target.value)
    return []


def _pattern_names(pattern) -> list[str]:
    names = []
    for node in walk_same_scope(pattern):
        if isinstance(node, (cst.MatchAs, cst.MatchStar)) and node.name is not None:
            names.append(node.name.value)
        elif isinstance(node, cst.MatchMapping) and node.rest is not None:
            names.append(node.rest.value)
    return names


def _local_names(fn: cst.FunctionDef) -> set[str]:
    """Names bound in the function's own scope (minus those declared global/nonlocal)."""
    bound: set[str] = {p.name.value for p in _all_params(fn.params)}
    declared: set[str] = set()
    for node in walk_same_scope(fn.body):
        if isinstance(node, (cst.Global, cst.Nonlocal)):
            declared |= {n.name.value for n in node.names}
        elif isinstance(node, cst.Assign):
            for t in node.targets:
                bound |= set(_target_names(t.target))
        elif isinstance(node, (cst.AnnAssign, cst.AugAssign)):
            bound |= set(_target_names(node.target))
        elif isinstance(node, cst.For):
            bound |= set(_target_names(node.target))
        elif isinstance(node, cst.WithItem) and node.asname is not None:
            bound |= set(_target_names(node.asname.name))
        elif isinstance(node, cst.ExceptHandler) and node.name is not None:
            bound |= set(_target_names(node.name.name))
        elif isinstance(node, cst.NamedExpr):
            bound |= set(_target_names(node.target))
        elif isinstance(node, (cst.FunctionDef, cst.ClassDef)) and node is not fn:
            bound.add(node.name.value)
        elif isinstance(node, (cst.Import, cst.ImportFrom)) and not isinstance(node.names, cst.ImportStar):
            for alias in node.names:
                if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                    bound.add(alias.asname.name.value)
                else:
                    bound.add((dotted_name(alias.name) or "").split(".")[0])
        elif isinstance(node, cst.MatchCase):
            bound |= set(_pattern_names(node.pattern))
    return bound - declared


def _expr_children(expr: cst.CSTNode):
    for child in children(expr):
        if isinstance(child, cst.BaseExpression):
            yield child
        elif not isinstance(child, (cst.BaseStatement, cst.BaseSmallStatement)):
            yield from _expr_children(child)


_EVAL = {
    cst.Name: _Analyzer._eval_name,
    cst.Attribute: _Analyzer._eval_attribute,
    cst.Subscript: _Analyzer._eval_subscript,
    cst.Call: _Analyzer._eval_call,
    cst.BinaryOperation: _Analyzer._eval_binary,
    cst.UnaryOperation: _Analyzer._eval_unary,
    cst.BooleanOperation: _Analyzer._eval_boolop,
    cst.Comparison: _Analyzer._eval_compare,
    cst.IfExp: _Analyzer._eval_ifexp,
    cst.Lambda: _Analyzer._eval_lambda,
    cst.NamedExpr: _Analyzer._eval_namedexpr,
    cst.Yield: _Analyzer._eval_yield,
    cst.Await: _Analyzer._eval_await,
    cst.StarredElement: _Analyzer._eval_starred,
    cst.Integer: _Analyzer._eval_literal,
    cst.Float: _Analyzer._eval_literal,
    cst.Imaginary: _Analyzer._eval_literal,
    cst.SimpleString: _Analyzer._eval_literal,
    cst.ConcatenatedString: _Analyzer._eval_literal,
    cst.FormattedString: _Analyzer._eval_literal,
    cst.Ellipsis: _Analyzer._eval_literal,
    cst.Tuple: _Analyzer._eval_container,
    cst.List: _Analyzer._eval_container,
    cst.Set: _Analyzer._eval_container,
    cst.Dict: _Analyzer._eval_container,
    cst.ListComp: _Analyzer._eval_comprehension,
    cst.SetComp: _Analyzer._eval_comprehension,
    cst.GeneratorExp: _Analyzer._eval_comprehension,
    cst.DictComp: _Analyzer._eval_comprehension,
}


def analyze_function(fn: FunctionInfo, index: ModuleIndex, decisions: Mapping[tuple, str | None]) -> FunctionAnalysis:
    """Analyse ``fn``; ``decisions`` maps site keys to the chosen rewrite form (None: not rewritten)."""
    grad_disabled = any(_decorator_disables_grad(d, index) for d in fn.node.decorators)
    return _Analyzer(fn, index, decisions, grad_disabled).run()


def _decorator_disables_grad(decorator: cst.Decorator, index: ModuleIndex) -> bool:
    expr = decorator.decorator
    qual = index.imports.qualify(expr.func if isinstance(expr, cst.Call) else expr)
    if qual in _NO_GRAD:
        return not (isinstance(expr, cst.Call) and _first_arg_false(expr))
    if qual in _SET_GRAD and isinstance(expr, cst.Call):
        args = positional_args(expr)
        return not (args and is_true(args[0].value))
    return False


def may_write_in_place(fn: cst.FunctionDef, inplace_attrs: set[str], self_name: str | None) -> bool:
    """Cheap syntactic test: can this function contain an in-place write at all?"""
    for node in walk_same_scope(fn.body):
        if isinstance(node, cst.AugAssign):
            return True
        if isinstance(node, cst.Assign) and any(isinstance(t.target, cst.Subscript) for t in node.targets):
            return True
        if isinstance(node, cst.Call):
            func = node.func
            if isinstance(func, cst.Attribute):
                attr = func.attr.value
                if attr.endswith("_") and not attr.startswith("__"):
                    return True
                if attr in inplace_attrs and isinstance(func.value, cst.Name) and func.value.value == self_name:
                    return True
                if attr in torch_api.FUNCTIONAL_INPLACE_ARG and len(node.args) > 1:
                    return True
            elif isinstance(func, cst.Name):
                if func.value.endswith("_") and not func.value.startswith("__"):
                    return True
                if func.value in torch_api.FUNCTIONAL_INPLACE_ARG and len(node.args) > 1:
                    return True
            for arg in node.args:
                if arg.keyword is not None and arg.keyword.value in ("inplace", "out"):
                    return True
    return False
